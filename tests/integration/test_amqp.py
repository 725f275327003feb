"""The AMQP adapters against the machine's RabbitMQ, each test under its own exchange prefix.

Topology (quorum queue, delivery limit, dead-lettering), the publisher (confirms, mandatory,
redacted errors within its retry budget) and the RouterService (batches, acks, poison messages,
database outages) with stand-in ``route`` and ``record_dead`` functions.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from adapters.amqp.publisher import BrokerUnavailable, Publisher
from adapters.amqp.router import Failure, RouterService, RoutingFailed, in_thread
from adapters.amqp.topology import ROUTING_KEY, Topology, TopologyMismatch, declare
from exchange.routing import Incoming, Outcome
from exchange.submission import CONTENT_TYPE
from tests.services import AMQP_URL, delete_topology, free_port

DELIVERY_LIMIT = 2


@pytest.fixture
def topology() -> Iterator[Topology]:
    topology = Topology(prefix=f"lt-it-{uuid.uuid4().hex[:10]}", delivery_limit=DELIVERY_LIMIT)
    try:
        yield topology
    finally:
        delete_topology(topology.prefix)


async def with_channel(body: Callable[[AbstractChannel], Awaitable[Any]]) -> Any:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return await body(channel)


async def drain(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    messages = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        messages.append(message)
    return messages


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 15, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def queue_info(name: str) -> dict[str, Any]:
    """The queue as the broker reports it: type and arguments."""
    done = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--formatter", "json", "name", "type", "arguments"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    for queue in json.loads(done.stdout):
        if queue["name"] == name:
            arguments = {key: value for key, _type, value in queue["arguments"]}
            return {"type": queue["type"], "arguments": arguments}
    raise AssertionError(f"the broker has no queue {name}")


def close_connection(name: str) -> None:
    """Have the broker close our own connection of this name (as a restart or a proxy would)."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "pid", "client_properties"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    pids = [line.split("\t", 1)[0] for line in listed.stdout.splitlines() if f'"{name}"' in line]
    assert len(pids) == 1, listed.stdout
    subprocess.run(
        ["rabbitmqctl", "close_connection", pids[0], "closed by the test"],
        capture_output=True,
        check=True,
        timeout=60,
    )


# --- topology ---------------------------------------------------------------------------------


def test_declaring_the_topology_twice_is_idempotent(topology: Topology) -> None:
    async def declare_twice(channel: AbstractChannel) -> None:
        first = await declare(channel, topology)
        await first.submit.publish(
            aio_pika.Message(b"kept"), routing_key=ROUTING_KEY, mandatory=True
        )
        second = await declare(channel, topology)  # as a second process would at start-up
        assert second.router.name == first.router.name
        (kept,) = await drain(second.router)
        assert kept.body == b"kept"

    asyncio.run(with_channel(declare_twice))
    # And again from another connection, the way a restarted router declares it.
    asyncio.run(with_channel(lambda channel: declare(channel, topology)))


def test_redeclaring_with_other_arguments_is_refused(topology: Topology) -> None:
    asyncio.run(with_channel(lambda channel: declare(channel, topology)))
    other = Topology(topology.prefix, delivery_limit=topology.delivery_limit + 1)
    with pytest.raises(TopologyMismatch, match="x-delivery-limit") as refused:
        asyncio.run(with_channel(lambda channel: declare(channel, other)))
    assert "LIENTHONG_DELIVERY_LIMIT" in str(refused.value)


def test_the_router_queue_is_quorum_with_a_delivery_limit_and_dead_lettering(
    topology: Topology,
) -> None:
    asyncio.run(with_channel(lambda channel: declare(channel, topology)))

    router = queue_info(topology.router_queue)
    dead = queue_info(topology.dead_queue)

    assert router["type"] == "quorum"
    assert router["arguments"]["x-delivery-limit"] == DELIVERY_LIMIT
    assert router["arguments"]["x-dead-letter-exchange"] == topology.dead_exchange
    assert router["arguments"]["x-dead-letter-strategy"] == "at-least-once"
    assert router["arguments"]["x-overflow"] == "reject-publish"
    assert dead["type"] == "quorum"


# --- publisher --------------------------------------------------------------------------------


def test_a_publish_is_confirmed_persistent_and_queued(topology: Topology) -> None:
    message_id = str(uuid.uuid4())

    async def scenario() -> list[AbstractIncomingMessage]:
        publisher = Publisher(AMQP_URL, topology)
        try:
            await publisher.publish(b"LTS1 envelope", message_id=message_id)
        finally:
            await publisher.close()
        queued: list[AbstractIncomingMessage] = await with_channel(
            lambda channel: _drain_router(channel, topology)
        )
        return queued

    (message,) = asyncio.run(scenario())
    assert message.body == b"LTS1 envelope"
    assert message.message_id == message_id
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def _drain_router(
    channel: AbstractChannel, topology: Topology
) -> list[AbstractIncomingMessage]:
    return await drain((await declare(channel, topology)).router)


def test_an_unroutable_publish_raises(topology: Topology) -> None:
    async def scenario() -> None:
        publisher = Publisher(AMQP_URL, topology, retries=0, timeout=5)
        try:
            await publisher.ping()  # declared the topology...
            await with_channel(lambda channel: channel.queue_delete(topology.router_queue))
            # ...which is gone now: the broker returns the mandatory message.
            with pytest.raises(BrokerUnavailable, match="NO_ROUTE"):
                await publisher.publish(b"nowhere to go")
        finally:
            await publisher.close()

    asyncio.run(scenario())


def test_a_retried_publish_declares_the_topology_again(topology: Topology) -> None:
    async def scenario() -> list[AbstractIncomingMessage]:
        publisher = Publisher(AMQP_URL, topology, retries=2, timeout=5)
        try:
            await publisher.ping()
            await with_channel(lambda channel: channel.queue_delete(topology.router_queue))
            await publisher.publish(b"after the queue was deleted")
        finally:
            await publisher.close()
        queued: list[AbstractIncomingMessage] = await with_channel(
            lambda channel: _drain_router(channel, topology)
        )
        return queued

    (message,) = asyncio.run(scenario())
    assert message.body == b"after the queue was deleted"


def test_a_publisher_whose_connection_was_closed_publishes_again(topology: Topology) -> None:
    name = f"{topology.prefix}-publisher"

    async def scenario() -> list[AbstractIncomingMessage]:
        publisher = Publisher(AMQP_URL, topology, retries=3, timeout=5, connection_name=name)
        try:
            await publisher.publish(b"before")
            await asyncio.to_thread(close_connection, name)
            await asyncio.sleep(0.2)  # the broker's close has arrived
            await publisher.publish(b"after")
        finally:
            await publisher.close()
        queued: list[AbstractIncomingMessage] = await with_channel(
            lambda channel: _drain_router(channel, topology)
        )
        return queued

    assert [m.body for m in asyncio.run(scenario())] == [b"before", b"after"]


def test_an_unreachable_broker_is_named_without_its_password(topology: Topology) -> None:
    url = f"amqp://lienthong:s3cr3t-pw@127.0.0.1:{free_port()}/"  # nothing listens there
    publisher = Publisher(url, topology, retries=3, timeout=2)
    started = time.monotonic()

    with pytest.raises(BrokerUnavailable) as raised:
        asyncio.run(publisher.publish(b"x"))

    elapsed = time.monotonic() - started
    # Backoff 0.1 + 0.2 + 0.4 s (with jitter up to x1.5) and refused connections.
    assert elapsed < 5, elapsed
    message = str(raised.value)
    assert url.replace("s3cr3t-pw", "***") in message
    assert "s3cr3t-pw" not in message
    assert "Connect call failed" in message


# --- delivery limit and dead-lettering --------------------------------------------------------


def test_a_message_returned_past_the_delivery_limit_is_dead_lettered(topology: Topology) -> None:
    async def scenario(channel: AbstractChannel) -> tuple[int, AbstractIncomingMessage]:
        declared = await declare(channel, topology)
        await declared.submit.publish(
            aio_pika.Message(b"poison", message_id="p-1"), routing_key=ROUTING_KEY, mandatory=True
        )
        deliveries = 0
        while (message := await declared.router.get(fail=False)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
        dead: list[AbstractIncomingMessage] = []

        async def arrived() -> bool:
            dead.extend(await drain(declared.dead))
            return bool(dead)

        await eventually(arrived, what="the dead-lettered message")
        return deliveries, dead[0]

    deliveries, dead = asyncio.run(with_channel(scenario))

    assert deliveries == DELIVERY_LIMIT + 1
    assert dead.body == b"poison"
    assert dead.message_id == "p-1"
    (death,) = dead.headers["x-death"]
    assert isinstance(death, dict)
    assert death["reason"] == "delivery_limit"
    assert death["queue"] == topology.router_queue


# --- RouterService ----------------------------------------------------------------------------


class StandIn:
    """``route`` and ``record_dead`` for a RouterService, counting what they were given."""

    def __init__(
        self, *, poison: bytes = b"poison", outages: int = 0, flaky: dict[bytes, int] | None = None
    ) -> None:
        self.poison = poison
        self.outages = outages
        self.flaky = dict(flaky or {})  # body -> how many more times it fails, then succeeds
        self.lock = threading.Lock()
        self.routed: Counter[bytes] = Counter()
        self.attempts: Counter[bytes] = Counter()  # alone in a batch: one per delivery
        self.batches: list[int] = []
        self.dead: list[tuple[bytes, str | None, str, str]] = []

    def route(self, batch: Sequence[Incoming]) -> list[Outcome]:
        with self.lock:
            self.batches.append(len(batch))
            if len(batch) == 1:
                self.attempts[batch[0].body] += 1
            if self.outages:
                self.outages -= 1
                raise sa.exc.OperationalError("INSERT", {}, ConnectionError("database down"))
            if any(item.body == self.poison for item in batch):
                raise RuntimeError("verification blew up")
            for item in batch:
                if self.flaky.get(item.body, 0) > 0:
                    if len(batch) == 1:  # one delivery of it, decided alone: counts once
                        self.flaky[item.body] -= 1
                    raise RuntimeError("the router holding it went away")
            self.routed.update(item.body for item in batch)
        return [Outcome.STORED] * len(batch)

    def record_dead(self, body: bytes, transport_id: str | None, reason: str, detail: str) -> None:
        with self.lock:
            self.dead.append((body, transport_id, reason, detail))


async def run_router(
    topology: Topology,
    stand_in: StandIn,
    bodies: Sequence[bytes],
    until: Callable[[RouterService], bool],
    depth: int = 1,
    batch_wait_ms: int = 50,
) -> RouterService:
    """Publish ``bodies``, then run a RouterService until ``until()`` and stop it."""

    async def publish(channel: AbstractChannel) -> None:
        declared = await declare(channel, topology)
        for body in bodies:
            await declared.submit.publish(
                aio_pika.Message(body, message_id=body.decode()),
                routing_key=ROUTING_KEY,
                mandatory=True,
            )

    await with_channel(publish)
    service = RouterService(
        AMQP_URL,
        topology,
        in_thread(stand_in.route),
        stand_in.record_dead,
        prefetch=32,
        batch_max=32,
        batch_wait_ms=batch_wait_ms,
        name=f"{topology.prefix}-router",
        depth=depth,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    async def done() -> bool:
        if task.done():
            task.result()  # a crashed router fails the test here
        return until(service)

    try:
        await eventually(done, within=30, what="the router")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
    return service


async def queue_depths(topology: Topology) -> tuple[int, int]:
    async def depths(channel: AbstractChannel) -> tuple[int, int]:
        router = await channel.declare_queue(topology.router_queue, passive=True)
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        assert router.declaration_result.message_count is not None
        assert dead.declaration_result.message_count is not None
        return router.declaration_result.message_count, dead.declaration_result.message_count

    result: tuple[int, int] = await with_channel(depths)
    return result


def test_the_router_dead_letters_a_poison_message_and_acks_the_others(
    topology: Topology,
) -> None:
    good = [f"good-{i}".encode() for i in range(10)]
    stand_in = StandIn()

    async def scenario() -> tuple[RouterService, tuple[int, int]]:
        service = await run_router(
            topology,
            stand_in,
            [*good[:5], b"poison", *good[5:]],
            lambda service: service.stats.dead_lettered == 1,
        )
        return service, await queue_depths(topology)

    service, depths = asyncio.run(scenario())

    assert stand_in.routed == Counter(good)  # each good message stored exactly once
    # Returned DELIVERY_LIMIT + 1 times, then routed once more from the dead queue: still fails.
    assert stand_in.attempts[b"poison"] == DELIVERY_LIMIT + 2
    ((body, transport_id, reason, detail),) = stand_in.dead
    assert (body, transport_id, reason) == (b"poison", "poison", "delivery_limit_exceeded")
    assert topology.router_queue in detail
    assert service.stats.outcomes == {"stored": 10, "retry": DELIVERY_LIMIT + 1}
    assert service.stats.dead_lettered == 1
    assert depths == (0, 0)  # everything settled: acked, or dead-lettered and recorded


def test_a_sound_message_that_reached_the_delivery_limit_is_routed_not_dead_lettered(
    topology: Topology,
) -> None:
    # A quorum queue also counts the returns of routers that died holding a message: one that
    # was unlucky DELIVERY_LIMIT + 1 times but is sound gets a last chance from the dead queue.
    bodies = [b"before", b"flaky", b"after"]
    stand_in = StandIn(flaky={b"flaky": DELIVERY_LIMIT + 1})

    service, depths = run_until_stored(topology, stand_in, bodies)

    assert stand_in.routed == Counter(bodies)
    assert stand_in.dead == []
    assert service.stats.dead_lettered == 0
    assert depths == (0, 0)


def test_a_database_outage_is_waited_out_without_returning_messages(topology: Topology) -> None:
    bodies = [f"m-{i}".encode() for i in range(5)]
    stand_in = StandIn(outages=2)

    service, depths = run_until_stored(topology, stand_in, bodies)

    assert stand_in.routed == Counter(bodies)
    assert service.stats.db_retries == 2
    # The batch was held and retried, never returned: no delivery counted against the limit.
    assert "retry" not in service.stats.outcomes
    assert stand_in.dead == []
    assert depths == (0, 0)


def test_a_message_the_database_refuses_does_not_hold_back_its_batch(
    topology: Topology,
) -> None:
    bodies = [f"m-{i}".encode() for i in range(6)]
    stand_in = StandIn()
    refused = b"m-3"
    route = stand_in.route

    def route_refusing(batch: Sequence[Incoming]) -> list[Outcome]:
        if any(item.body == refused for item in batch):
            if len(batch) == 1:
                with stand_in.lock:
                    stand_in.attempts[refused] += 1
            raise sa.exc.DataError("INSERT", {}, ValueError("text cannot hold NUL"))
        return route(batch)

    stand_in.route = route_refusing  # type: ignore[method-assign]

    async def scenario() -> RouterService:
        return await run_router(
            topology, stand_in, bodies, lambda service: service.stats.dead_lettered == 1
        )

    service = asyncio.run(scenario())

    assert stand_in.routed == Counter(b for b in bodies if b != refused)
    assert stand_in.attempts[refused] == DELIVERY_LIMIT + 2  # the last chance included
    assert [d[0] for d in stand_in.dead] == [refused]
    assert service.stats.db_retries == 0


def test_the_router_consumes_again_after_its_connection_was_closed(topology: Topology) -> None:
    stand_in = StandIn()
    first = [f"first-{i}".encode() for i in range(3)]
    then = [f"then-{i}".encode() for i in range(3)]

    async def publish(bodies: Sequence[bytes]) -> None:
        async def go(channel: AbstractChannel) -> None:
            declared = await declare(channel, topology)
            for body in bodies:
                await declared.submit.publish(
                    aio_pika.Message(body), routing_key=ROUTING_KEY, mandatory=True
                )

        await with_channel(go)

    async def scenario() -> RouterService:
        service = RouterService(
            AMQP_URL,
            topology,
            in_thread(stand_in.route),
            stand_in.record_dead,
            name=f"{topology.prefix}-router",
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(service.run(stop, ready))
        try:
            await asyncio.wait_for(ready.wait(), timeout=15)
            await publish(first)
            await eventually(lambda: _routed(stand_in, len(first)), what="the first messages")
            await asyncio.to_thread(close_connection, f"{topology.prefix}-router")
            await publish(then)
            await eventually(
                lambda: _routed(stand_in, len(first) + len(then)), within=30, what="reconnecting"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)
        return service

    asyncio.run(scenario())
    # At least once: an ack the closed connection swallowed means a redelivery (which the
    # store absorbs by its digest), never a loss.
    assert set(stand_in.routed) == set(first + then)


async def _routed(stand_in: StandIn, count: int) -> bool:
    return sum(stand_in.routed.values()) >= count


# --- routing two batches at once (the router command's depth) -------------------------------


class Slow(StandIn):
    """A stand-in whose routing takes a while (a commit's fsync) and notes the batches that
    were being routed at the same time; given outcomes per body, else stored."""

    def __init__(
        self,
        *,
        outcomes: dict[bytes, list[Outcome]] | None = None,
        failures: list[Failure] | None = None,
        first_takes: float = 0.05,
    ) -> None:
        super().__init__()
        self.outcomes = {body: list(queue) for body, queue in (outcomes or {}).items()}
        self.failures = list(failures or [])  # raised by the first routings, in turn
        self.first_takes = first_takes
        self.routing = 0
        self.overlapped = 0
        self.starts: list[tuple[float, float, int]] = []  # start, end, batch size

    def route(self, batch: Sequence[Incoming]) -> list[Outcome]:
        start = time.monotonic()
        with self.lock:
            self.batches.append(len(batch))
            self.routing += 1
            self.overlapped += self.routing > 1
            failure = self.failures.pop(0) if self.failures else None
        try:
            time.sleep(self.first_takes if not self.starts else 0.05)
            if failure is not None:
                raise RoutingFailed(failure, f"{failure.value}, from the routing process")
            with self.lock:
                # Each body's next outcome of those given for it, else stored.
                outcomes = [(self.outcomes.get(i.body) or [Outcome.STORED]).pop(0) for i in batch]
                self.routed.update(
                    i.body for i, o in zip(batch, outcomes, strict=True) if o is Outcome.STORED
                )
            return outcomes
        finally:
            with self.lock:
                self.routing -= 1
                self.starts.append((start, time.monotonic(), len(batch)))


def run_until_stored(
    topology: Topology, stand_in: StandIn, bodies: Sequence[bytes], depth: int = 1
) -> tuple[RouterService, tuple[int, int]]:
    """Run a RouterService until every body is stored; the queue depths after."""

    async def scenario() -> tuple[RouterService, tuple[int, int]]:
        service = await run_router(
            topology,
            stand_in,
            bodies,
            lambda service: service.stats.outcomes.get("stored") == len(bodies),
            depth=depth,
        )
        return service, await queue_depths(topology)

    return asyncio.run(scenario())


def test_a_router_of_depth_two_routes_the_next_batch_while_the_last_one_is_routed(
    topology: Topology,
) -> None:
    bodies = [f"p-{i}".encode() for i in range(300)]
    slow = Slow()
    service, depths = run_until_stored(topology, slow, bodies, depth=2)

    assert slow.routed == Counter(bodies)  # each once
    assert slow.overlapped > 0  # two batches were being routed at once
    assert max(slow.batches) <= 32 // 4  # half the window routed, the other half waiting
    assert service.holding() == 0
    assert depths == (0, 0)


def test_failures_reported_by_a_routing_process_are_handled_by_their_kind(
    topology: Topology,
) -> None:
    # A conflict is decided again and an outage waited out, both without returning the batch;
    # a failure of another kind isolates the batch, and each message then routes alone.
    bodies = [f"f-{i}".encode() for i in range(10)]
    slow = Slow(failures=[Failure.CONFLICT, Failure.OUTAGE, Failure.FAILED])
    service, depths = run_until_stored(topology, slow, bodies, depth=2)

    assert slow.routed == Counter(bodies)  # nothing lost or doubled
    assert service.stats.db_retries == 2  # the conflict and the outage
    assert "retry" not in service.stats.outcomes
    assert 1 in slow.batches  # the failed batch was routed message by message
    assert depths == (0, 0)


def test_whole_batches_are_acknowledged_at_once_and_only_their_deliveries(
    topology: Topology,
) -> None:
    # Batches that are all acknowledged go with one "up to this tag" frame; one returned to the
    # queue and one dead-lettered sit in batches between them: an acknowledgement that reached
    # past its batch would swallow them (no redelivery, no dead letter) or settle a tag twice.
    bodies = [f"m-{i}".encode() for i in range(200)]
    slow = Slow(outcomes={b"m-57": [Outcome.RETRY], b"m-130": [Outcome.DEAD_LETTER]})

    async def scenario() -> tuple[RouterService, tuple[int, int]]:
        service = await run_router(
            topology,
            slow,
            bodies,
            lambda service: (
                service.stats.outcomes.get("stored") == len(bodies) - 1
                and service.stats.dead_lettered == 1
            ),
            depth=2,
        )
        return service, await queue_depths(topology)

    service, depths = asyncio.run(scenario())

    assert slow.routed == Counter([b for b in bodies if b != b"m-130"])  # m-57 came back
    assert [dead[0] for dead in slow.dead] == [b"m-130"]
    assert service.stats.outcomes == {"stored": 199, "retry": 1, "dead_letter": 1}
    assert service.stats.acked_at_once >= 5  # most batches: 200 messages, at most 8 a batch
    assert depths == (0, 0)  # nothing left unsettled, nothing redelivered again


def test_deliveries_that_came_during_a_routing_do_not_wait_for_a_batch_again(
    topology: Topology,
) -> None:
    # The batch wait counts from a batch's first delivery. Those that arrive while the last
    # batch is being routed have waited already: once it is done they form the next batch at
    # once, not another whole wait later.
    wait_ms, route_s = 600, 1.0
    slow = Slow(first_takes=route_s)
    routing = threading.Event()
    route = slow.route

    def noting(batch: Sequence[Incoming]) -> list[Outcome]:
        routing.set()
        return route(batch)

    slow.route = noting  # type: ignore[method-assign]
    later = [f"later-{i}".encode() for i in range(3)]

    async def publish_later() -> None:
        assert await asyncio.to_thread(routing.wait, 20)

        async def publish(channel: AbstractChannel) -> None:
            declared = await declare(channel, topology)
            for body in later:
                await declared.submit.publish(
                    aio_pika.Message(body, message_id=body.decode()), routing_key=ROUTING_KEY
                )

        await with_channel(publish)

    async def scenario() -> None:
        publishing = asyncio.create_task(publish_later())
        await run_router(
            topology,
            slow,
            [b"first"],
            lambda service: service.stats.outcomes.get("stored") == 1 + len(later),
            batch_wait_ms=wait_ms,
        )
        await publishing

    asyncio.run(scenario())

    assert slow.routed == Counter([b"first", *later])
    (_, first_end, first_size), (second_start, _, second_size) = slow.starts
    assert (first_size, second_size) == (1, len(later))
    # Well under the batch wait (which a wait counted from the gathering would add in full).
    assert second_start - first_end < wait_ms / 1000 / 2
