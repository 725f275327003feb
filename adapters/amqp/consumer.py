"""Consuming a queue through the channel under aio-pika's, restored after every reconnection.

aio-pika hands each delivery to a consumer as an ``IncomingMessage``, built (every property
decoded, every attribute set through a guarded ``__setattr__``) in a task of its own on top of
the one aiormq creates for it. For the router that was about a quarter of the event loop's CPU
per delivery: a consume-only loop at 700 msg/s, open loop, on this project's 2-core machine,
took 164-177 µs of CPU per message through ``Queue.consume`` and 125-130 µs through aiormq's
``basic_consume`` (two runs each). ``LeanConsumer`` keeps aio-pika's robust connection and
channel, which reconnect, reopen, and restore the qos and the declarations, and consumes
through the aiormq channel underneath: each delivery is a ``Delivery``, its body and what
settling it needs.

aio-pika does not know of such a consumer, so it does not restore it: ``LeanConsumer``
registers it again on each reopened channel (the robust channel's reopen callbacks run once
the qos and the declarations are restored) and when the broker cancels it (its queue deleted,
say), retrying until the channel takes it or closes (then the next reopening takes over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

log = logging.getLogger(__name__)

# Seconds between two attempts to consume again after the broker cancelled the consumer.
RETRY_S = 1.0


class Delivery:
    """A message delivered by a ``LeanConsumer``: its body and what settling it needs."""

    __slots__ = ("_channel", "body", "delivery_tag", "message_id")

    def __init__(self, message: DeliveredMessage) -> None:
        self.body: bytes = message.body
        self.message_id: str | None = message.header.properties.message_id
        tag = message.delivery_tag
        if tag is None:
            raise ValueError("a consumed message without a delivery tag")
        self.delivery_tag: int = tag
        self._channel = message.channel

    @property
    def channel(self) -> aiormq.abc.AbstractChannel:
        """The channel it came on; ChannelInvalidStateError once that channel is closed (its
        delivery tags mean nothing on another)."""
        if self._channel.is_closed:
            raise ChannelInvalidStateError(f"{self._channel!r} closed")
        return self._channel

    async def ack(self, *, multiple: bool = False) -> None:
        await self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, *, requeue: bool = True) -> None:
        await self.channel.basic_nack(self.delivery_tag, requeue=requeue)

    async def reject(self, *, requeue: bool = False) -> None:
        await self.channel.basic_reject(self.delivery_tag, requeue=requeue)


class LeanConsumer:
    """``on_delivery`` called with each message of ``queue`` on ``channel`` (manual acks)."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        *,
        retry_s: float = RETRY_S,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.on_delivery = on_delivery
        self.retry_s = retry_s
        self.tag: str | None = None
        self.subscriptions = 0  # times the consumer was registered (1 + restorations)
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._stopped = False
        self._retrying: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.channel.reopen_callbacks.add(self._reopened)
        await self._subscribe()

    async def stop(self) -> None:
        """Cancel the consumer (deliveries in hand stay the caller's to settle)."""
        self._stopped = True
        self.channel.reopen_callbacks.discard(self._reopened)
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        underlay, tag = self._underlay, self.tag
        if underlay is not None and tag is not None and not underlay.is_closed:
            await underlay.basic_cancel(tag)

    async def _subscribe(self) -> None:
        underlay = await self.channel.get_underlay_channel()
        if underlay is not self._underlay:
            underlay.on_consumer_cancel_callbacks.add(self._cancelled)
        self._underlay = underlay
        ok = await underlay.basic_consume(self.queue, self._deliver, consumer_tag=self.tag)
        self.tag = ok.consumer_tag
        self.subscriptions += 1

    async def _deliver(self, message: DeliveredMessage) -> None:
        self.on_delivery(Delivery(message))

    async def _reopened(self, _channel: Any) -> None:
        if not self._stopped:
            await self._subscribe_until_done()

    def _cancelled(self, frame: Basic.Cancel) -> None:
        if self._stopped or frame.consumer_tag != self.tag:
            return
        log.warning("the broker cancelled the consumer of %s; consuming again", self.queue)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._subscribe_until_done())

    async def _subscribe_until_done(self) -> None:
        while not self._stopped:
            try:
                await self._subscribe()
                return
            except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
                underlay = self._underlay
                if underlay is None or underlay.is_closed:
                    return  # the robust channel reopens, and this runs again then
                log.warning("could not consume %s again (%s); retrying", self.queue, exc)
            await asyncio.sleep(self.retry_s)
