"""The broker topology lienthong declares at start-up (idempotently: same names, same arguments).

    lienthong.submit  (direct exchange, durable)
        --"envelope"--> lienthong.router   (quorum queue; x-delivery-limit; dead-letters to:)
    lienthong.dead    (fanout exchange, durable)
        --------------> lienthong.dead     (quorum queue: what the router could not take)

Every submission is published persistent and mandatory, with publisher confirms, to the submit
exchange. The router queue dead-letters at least once (a dead-lettered message is not lost if
the dead queue is briefly unavailable), which needs ``x-overflow: reject-publish``.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.common import FieldTable

from exchange.errors import ConfigurationError

ROUTING_KEY = "envelope"


@dataclass(frozen=True)
class Topology:
    prefix: str = "lienthong"
    delivery_limit: int = 5

    @property
    def submit_exchange(self) -> str:
        return f"{self.prefix}.submit"

    @property
    def router_queue(self) -> str:
        return f"{self.prefix}.router"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    def router_arguments(self) -> FieldTable:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


@dataclass(frozen=True)
class Declared:
    submit: AbstractExchange
    router: AbstractQueue
    dead: AbstractQueue


class TopologyMismatch(ConfigurationError):
    """The broker holds our queues or exchanges declared with other arguments."""


async def declare(channel: AbstractChannel, topology: Topology) -> Declared:
    try:
        return await _declare(channel, topology)
    except ChannelPreconditionFailed as exc:
        raise TopologyMismatch(
            f"RabbitMQ refused lienthong's topology ({exc}): a queue or exchange of prefix "
            f"{topology.prefix!r} exists with other arguments (e.g. x-delivery-limit "
            f"{topology.delivery_limit}); set LIENTHONG_DELIVERY_LIMIT to match it, or delete it "
            "once it is drained"
        ) from None


async def _declare(channel: AbstractChannel, topology: Topology) -> Declared:
    submit = await channel.declare_exchange(
        topology.submit_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dead_exchange = await channel.declare_exchange(
        topology.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    router = await channel.declare_queue(
        topology.router_queue, durable=True, arguments=topology.router_arguments()
    )
    await router.bind(submit, ROUTING_KEY)
    dead = await channel.declare_queue(
        topology.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dead_exchange)
    return Declared(submit, router, dead)
