"""LeanConsumer against the machine's RabbitMQ: deliveries, settling, and staying subscribed.

Each test has a quorum queue of its own on a robust connection named after the test, as the
router has; the broker closes that connection, or cancels the consumer, as a restart or an
operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.common import FieldTable

from adapters.amqp.consumer import Delivery, LeanConsumer
from tests.integration.test_amqp import close_connection, eventually
from tests.services import AMQP_URL

QUORUM: FieldTable = {"x-queue-type": "quorum"}


class Bench:
    """A robust connection and channel, a queue of the test's own, and what was delivered."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractRobustChannel,
        queue: str,
        name: str,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.queue = queue
        self.name = name
        self.delivered: list[Delivery] = []

    async def publish(self, *bodies: bytes) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for body in bodies:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=body.decode(), delivery_mode=2),
                    routing_key=self.queue,
                    mandatory=True,
                )

    async def queued(self) -> int:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(self.queue, durable=True, arguments=QUORUM)
            count = declared.declaration_result.message_count
            assert count is not None
            return count

    def bodies(self) -> list[bytes]:
        return [d.body for d in self.delivered]

    async def received(self, count: int) -> None:
        async def enough() -> bool:
            return len(self.delivered) >= count

        await eventually(enough, what=f"{count} deliveries")


@contextlib.asynccontextmanager
async def a_bench() -> AsyncIterator[Bench]:
    name = f"lt-it-consumer-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(
        AMQP_URL, client_properties={"connection_name": name}, reconnect_interval=0.5
    )
    channel = await connection.channel()
    assert isinstance(channel, AbstractRobustChannel)
    await channel.set_qos(prefetch_count=16)
    await channel.declare_queue(name, durable=True, arguments=QUORUM)
    try:
        yield Bench(connection, channel, name, name)
    finally:
        await connection.close()
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup:
            await (await cleanup.channel()).queue_delete(name)


def run(scenario: Callable[[Bench], Awaitable[None]]) -> None:
    async def main() -> None:
        async with a_bench() as bench:
            await scenario(bench)

    asyncio.run(main())


def consumer(bench: Bench, on: Callable[[Delivery], None] | None = None) -> LeanConsumer:
    return LeanConsumer(bench.channel, bench.queue, on or bench.delivered.append, retry_s=0.2)


def test_a_delivery_carries_its_body_id_and_tag_and_settles() -> None:
    run(_test_a_delivery_carries_its_body_id_and_tag_and_settles)


async def _test_a_delivery_carries_its_body_id_and_tag_and_settles(bench: Bench) -> None:
    lean = consumer(bench)
    await lean.start()
    await bench.publish(b"one", b"two", b"three")
    await bench.received(3)

    _, two, three = bench.delivered
    assert bench.bodies() == [b"one", b"two", b"three"]
    assert [d.message_id for d in bench.delivered] == ["one", "two", "three"]
    assert [d.delivery_tag for d in bench.delivered] == [1, 2, 3]
    await three.nack(requeue=True)  # back to the queue: delivered again, with a new tag
    await bench.received(4)
    assert bench.delivered[3].body == b"three"
    assert bench.delivered[3].delivery_tag == 4
    await two.ack(multiple=True)  # "up to tag 2": one and two
    await bench.delivered[3].reject(requeue=False)  # no dead-letter exchange: dropped
    await lean.stop()
    assert await bench.queued() == 0


def test_after_the_broker_closes_the_connection_it_consumes_again() -> None:
    run(_test_after_the_broker_closes_the_connection_it_consumes_again)


async def _test_after_the_broker_closes_the_connection_it_consumes_again(bench: Bench) -> None:
    lean = consumer(bench)
    await lean.start()
    await bench.publish(b"before")
    await bench.received(1)
    before = bench.delivered[0]

    await asyncio.to_thread(close_connection, bench.name)

    async def subscribed_again() -> bool:
        return lean.subscriptions == 2

    await eventually(subscribed_again, what="the consumer registered on the reopened channel")
    # The unacknowledged delivery came back on the new channel; the old one's tag is void.
    await bench.publish(b"after")
    await bench.received(3)
    assert sorted(bench.bodies()[1:]) == [b"after", b"before"]
    with pytest.raises(ChannelInvalidStateError):
        await before.ack()
    for delivery in bench.delivered[1:]:
        await delivery.ack()
    await lean.stop()
    assert await bench.queued() == 0


def test_after_the_broker_cancels_it_it_consumes_again() -> None:
    run(_test_after_the_broker_cancels_it_it_consumes_again)


async def _test_after_the_broker_cancels_it_it_consumes_again(bench: Bench) -> None:
    lean = consumer(bench)
    await lean.start()
    # Deleting the queue makes the broker cancel its consumers; the robust channel stays open.
    other = await aio_pika.connect(AMQP_URL)
    async with other:
        channel = await other.channel()
        await channel.queue_delete(bench.queue)
        await asyncio.sleep(0.5)  # the consumer retries against a queue that is not there
        await channel.declare_queue(bench.queue, durable=True, arguments=QUORUM)

    async def subscribed_again() -> bool:
        return lean.subscriptions == 2

    await eventually(subscribed_again, what="the consumer registered again")
    await bench.publish(b"after the cancel")
    await bench.received(1)
    assert bench.bodies() == [b"after the cancel"]
    await bench.delivered[0].ack()
    await lean.stop()


def test_once_stopped_nothing_more_is_delivered() -> None:
    run(_test_once_stopped_nothing_more_is_delivered)


async def _test_once_stopped_nothing_more_is_delivered(bench: Bench) -> None:
    lean = consumer(bench)
    await lean.start()
    await bench.publish(b"taken")
    await bench.received(1)
    await bench.delivered[0].ack()
    await lean.stop()

    await bench.publish(b"left")
    await asyncio.sleep(0.3)
    assert bench.bodies() == [b"taken"]
    assert await bench.queued() == 1


def test_a_failing_callback_does_not_stop_the_deliveries() -> None:
    run(_test_a_failing_callback_does_not_stop_the_deliveries)


async def _test_a_failing_callback_does_not_stop_the_deliveries(bench: Bench) -> None:
    seen: list[bytes] = []

    def on(delivery: Delivery) -> None:
        seen.append(delivery.body)
        if delivery.body == b"bad":
            raise RuntimeError("a bug in the caller")
        bench.delivered.append(delivery)

    lean = consumer(bench, on)
    await lean.start()
    await bench.publish(b"bad", b"good")
    await bench.received(1)
    assert seen == [b"bad", b"good"]
    await bench.delivered[0].ack(multiple=True)
    await lean.stop()
