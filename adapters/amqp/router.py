"""The router process: consume the router queue in batches, route, commit, then acknowledge.

One batch is what arrived within ``batch_wait_ms`` of its first message, up to ``batch_max``
(never more than the prefetch window). It is routed (``route``: verify, decide, record, in one
transaction; the router command does it in a process of its own, see
``adapters.routing_process``); only then is each message acknowledged — or returned to the
queue (an unexpected error: the delivery limit dead-letters a poison message), or rejected to
the dead-letter exchange (not a submission at all). Up to ``depth`` batches are routed at once:
with two, the next batch is already waiting when the last one is done. Batches are at most a
share of half the prefetch window, so that as many wait, formed, as are being routed.

While the database is unreachable the router keeps its batch and retries with backoff, so an
outage does not count against the delivery limit. A batch that fails otherwise (an error in
routing, or rows the database refuses) is routed again message by message, so that only the
message behind it is returned to the queue. On SIGTERM it stops consuming, finishes the batches
in hand, and returns the rest.

The connection is robust: when the broker goes away the router keeps what it holds (acks on the
dead channel fail; the broker redelivers and the digest absorbs the copies), reconnects every
``reconnect_interval`` seconds for as long as it takes, and aio-pika restores its two channels
(router queue, dead letters), their qos and declarations; the dead-letter consumer is
aio-pika's, the router queue's a ``LeanConsumer`` that registers itself again.
``broker_state()`` says whether it is connected now, for ``lienthong router --health-port``.

A batch whose messages are all acknowledged is acknowledged with one frame ("up to this tag")
when its deliveries are exactly the next ones of the router channel; otherwise message by
message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import aio_pika
import sqlalchemy as sa
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import AMQPError

from adapters.amqp.consumer import Delivery, LeanConsumer
from adapters.amqp.topology import Topology, declare
from exchange.routing import Incoming, Outcome

log = logging.getLogger(__name__)

RouteFn = Callable[[Sequence[Incoming]], list[Outcome]]
AsyncRouteFn = Callable[[Sequence[Incoming]], Awaitable[list[Outcome]]]
DeadFn = Callable[[bytes, str | None, str, str], None]

# Unique-key conflicts in a row before a batch counts as failing rather than racing.
MAX_CONFLICTS = 3
# Seconds between attempts to reach a broker that went away (aio-pika's default is 5).
RECONNECT_INTERVAL = 1.0
# At most this long for each step of a shutdown that needs the broker to answer.
SHUTDOWN_STEP_S = 5.0
# Dead letters in hand at once (each is recorded, or routed a last time, on its own).
DEAD_PREFETCH = 16


class Failure(StrEnum):
    """Why routing a batch failed, which says what the router does next."""

    CONFLICT = "conflict"  # another router stored one of these first: decide again
    OUTAGE = "outage"  # the database, or the routing process, is not there: wait and retry
    REFUSED = "refused"  # the database refused these rows: no retry of the whole batch helps
    FAILED = "failed"  # anything else: find the message behind it


class RoutingFailed(Exception):
    """Routing failed where it ran (a process of its own): the kind of failure and its text."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


def failure_of(exc: BaseException) -> Failure:
    if isinstance(exc, RoutingFailed):
        return exc.failure
    if isinstance(exc, sa.exc.IntegrityError):
        return Failure.CONFLICT
    if isinstance(exc, sa.exc.DBAPIError):
        return Failure.OUTAGE if is_outage(exc) else Failure.REFUSED
    return Failure.FAILED


def in_thread(route: RouteFn, before: Callable[[], None] | None = None) -> AsyncRouteFn:
    """``route`` run in a worker thread, after ``before`` (the CRL refresh) if given."""

    def step(incoming: Sequence[Incoming]) -> list[Outcome]:
        if before is not None:
            before()
        return route(incoming)

    async def routed(incoming: Sequence[Incoming]) -> list[Outcome]:
        return await asyncio.to_thread(step, incoming)

    return routed


@dataclass
class RouterStats:
    batches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    db_retries: int = 0
    reconnects: int = 0
    acked_at_once: int = 0  # batches acknowledged with one frame
    last_delivery: float | None = None  # time.monotonic() of the last message received

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1


class RouterService:
    def __init__(
        self,
        url: str,
        topology: Topology,
        route: AsyncRouteFn,
        record_dead: DeadFn,
        *,
        prefetch: int = 256,
        batch_max: int = 256,
        batch_wait_ms: int = 15,
        name: str = "lienthong-router",
        reconnect_interval: float = RECONNECT_INTERVAL,
        depth: int = 1,
    ) -> None:
        self.url = url
        self.topology = topology
        self.route = route
        self.record_dead = record_dead
        self.prefetch = prefetch
        self.depth = max(1, depth)
        # Half the window is routed, the other half waits in batches formed already: when a
        # batch is done the next one goes at once, while the broker refills what the done one
        # acknowledged. (With each batch routed at once taking its whole share of the window,
        # routing waited for that refill after every batch: make bench's drain, alternating
        # runs, 2,188 msg/s on average with batches of 128 (5 runs), 2,306 with 64 (6 runs).)
        self.batch_max = max(1, min(batch_max, prefetch // (2 * self.depth)))
        self.batch_wait = batch_wait_ms / 1000
        self.name = name
        self.reconnect_interval = reconnect_interval
        self.stats = RouterStats()
        # Deliveries not yet in a batch. _receive wakes the gatherer only when it has reason to
        # (the first delivery, or a full batch): no wake-up, timer or task per message.
        self._pending: collections.deque[Delivery] = collections.deque()
        self._arrived = asyncio.Event()
        self._wake_at = 1
        # time.monotonic() when the oldest pending delivery arrived (or earlier: what a full
        # batch left pending has waited since before it)
        self._first_at = 0.0
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._held = 0
        # The channel the router queue delivers on, and the tag through which every one of its
        # deliveries is settled (tags count from 1 on each channel, in delivery order); the
        # tags settled beyond it, which it passes over once the gap before them is settled.
        self._through: tuple[object | None, int] = (None, 0)
        self._beyond: set[int] = set()
        # Batches routed at once are settled one at a time: an acknowledgement "up to this
        # tag" goes out only after those it follows on from.
        self._settling = asyncio.Lock()

    def holding(self) -> int:
        """Deliveries received and not yet settled (the batches in hand and those waiting)."""
        return self._held + len(self._pending)

    def broker_state(self) -> str:
        """``ok`` while connected with the consuming channel open; else what is missing."""
        connection, channel = self._connection, self._channel
        if connection is None or channel is None:
            return "unavailable: not connected yet"
        if connection.is_closed:
            return "unavailable: closed"
        if not connection.connected.is_set():
            return "unavailable: reconnecting"
        if channel.is_closed:
            return "unavailable: channel closed, reopening"
        return "ok"

    def _receive(self, message: Delivery) -> None:
        now = self.stats.last_delivery = time.monotonic()
        if not self._pending:
            self._first_at = now
        self._pending.append(message)
        if len(self._pending) >= self._wake_at:
            self._arrived.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        connection = await aio_pika.connect_robust(
            self.url,
            client_properties={"connection_name": self.name},
            reconnect_interval=self.reconnect_interval,
        )
        connection.reconnect_callbacks.add(self._reconnected)
        self._connection = connection
        try:
            channel = await connection.channel()
            self._channel = channel
            await channel.set_qos(prefetch_count=self.prefetch)
            declared = await declare(channel, self.topology)
            # Dead letters come on a channel of their own: delivery tags count per channel, so
            # the router channel's are the router queue's alone, in order (see _in_order).
            dead_channel = await connection.channel()
            await dead_channel.set_qos(prefetch_count=DEAD_PREFETCH)
            # Declared again (idempotent) rather than looked up: each robust channel restores
            # what it declared, whichever reopens first after the broker comes back.
            dead_queue = (await declare(dead_channel, self.topology)).dead
            # The router queue is consumed without aio-pika's per-message wrapper (see
            # adapters.amqp.consumer); the dead letters, few, through aio-pika.
            consumer = LeanConsumer(channel, declared.router.name, self._receive)
            await consumer.start()
            dead_tag = await dead_queue.consume(self._on_dead)
            log.info("router consuming %s (prefetch %d)", self.topology.router_queue, self.prefetch)
            if ready is not None:
                ready.set()
            await self._consume(stop)
            if connection.connected.is_set():
                # Stop deliveries first. Without a broker there is nothing to cancel, and a
                # robust channel would wait for the reconnection before cancelling: skip it.
                with contextlib.suppress(AMQPError, ConnectionError, RuntimeError, TimeoutError):
                    await asyncio.wait_for(consumer.stop(), SHUTDOWN_STEP_S)
                    await asyncio.wait_for(dead_queue.cancel(dead_tag), SHUTDOWN_STEP_S)
            await self._return_unprocessed()
        finally:
            self._channel = None
            with contextlib.suppress(AMQPError, ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(connection.close(), SHUTDOWN_STEP_S)

    def _reconnected(self, _connection: object) -> None:
        self.stats.reconnects += 1
        log.info("router reconnected to the broker (%d time(s))", self.stats.reconnects)

    async def _gather(self, stop: asyncio.Event) -> list[Delivery]:
        """A batch: what arrived within ``batch_wait`` of its first message, up to
        ``batch_max``; empty when nothing arrived for 0.2 s (so that ``stop`` is seen).

        The wait counts from the arrival of the oldest pending delivery, not from this call:
        deliveries that came while the last batch was being decided have waited already.
        """
        pending = self._pending
        if not pending:
            await self._wait_for(1, 0.2)
            if not pending:
                return []
        # No point waiting for more once the prefetch window is used up: none can come until
        # a batch in hand is acknowledged.
        more = min(self.batch_max, self.prefetch - self._held)
        if len(pending) < more and self.batch_wait > 0 and not stop.is_set():
            left = self._first_at + self.batch_wait - time.monotonic()
            if left > 0:
                await self._wait_for(more, left)
        return [pending.popleft() for _ in range(min(len(pending), self.batch_max))]

    async def _wait_for(self, count: int, seconds: float) -> None:
        """Until ``count`` deliveries are pending, or ``seconds`` have passed."""
        self._wake_at = count
        self._arrived.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._arrived.wait()
        except TimeoutError:
            pass
        finally:
            self._wake_at = 1

    async def _consume(self, stop: asyncio.Event) -> None:
        """Gather batches and route up to ``depth`` of them at once, until ``stop``."""
        routing: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(routing) >= self.depth:
                    done, routing = await asyncio.wait(routing, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # a bug in settling stops the router, as it should
                    continue
                batch = await self._gather(stop)
                if batch:
                    # Counted now, not when the task starts: the next gathering must see it.
                    self._held += len(batch)
                    routing.add(asyncio.create_task(self._routed(batch, stop)))
        finally:
            if routing:
                await asyncio.wait(routing)
        for task in routing:
            task.result()

    async def _routed(self, batch: list[Delivery], stop: asyncio.Event) -> None:
        try:
            await self._process(batch, stop)
        finally:
            self._held -= len(batch)

    async def _process(self, batch: list[Delivery], stop: asyncio.Event) -> None:
        incoming = [Incoming(m.body, m.message_id) for m in batch]
        delay = 0.2
        conflicts = 0
        while True:
            try:
                outcomes = await self.route(incoming)
                break
            except Exception as exc:  # noqa: BLE001 - each kind is handled below; logged
                error = exc
            failure = failure_of(error)
            if failure is Failure.CONFLICT and conflicts < MAX_CONFLICTS:
                # Another router stored one of these first; deciding again sees its rows.
                conflicts += 1
                self.stats.db_retries += 1
                continue
            if failure is not Failure.OUTAGE:
                # Rows the database refused (a value it cannot hold), a race lost too often, or
                # not the database's doing: find the message behind it, route the others.
                await self._isolate(batch, stop, error)
                return
            self.stats.db_retries += 1
            log.warning("routing unavailable (%s); retrying in %.1fs", _reason(error), delay)
            if stop.is_set():
                await self._settle(batch, requeue=True)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        await self._settle_outcomes(batch, outcomes)

    async def _settle_outcomes(self, batch: list[Delivery], outcomes: list[Outcome]) -> None:
        self.stats.batches += 1
        for outcome in outcomes:
            self.stats.count(outcome)
        async with self._settling:
            await self._acknowledge(batch, outcomes)

    async def _acknowledge(self, batch: list[Delivery], outcomes: list[Outcome]) -> None:
        if len(batch) > 1 and all(o in _ACKED for o in outcomes) and self._in_order(batch):
            # One frame acknowledges the whole batch: exactly its deliveries (see _in_order).
            self.stats.acked_at_once += 1
            try:
                await batch[-1].ack(multiple=True)
            except (AMQPError, ConnectionError, RuntimeError) as exc:
                log.warning("could not settle a batch (%s); it will be redelivered", exc)
            # _in_order found the batch to follow on from the settled tags without a gap.
            channel, through = self._through
            self._advance(channel, through + len(batch))
            return
        for message, outcome in zip(batch, outcomes, strict=True):
            try:
                if outcome is Outcome.DEAD_LETTER:
                    await message.reject(requeue=False)
                elif outcome is Outcome.RETRY:
                    await message.nack(requeue=True)
                else:
                    await message.ack()
            except (AMQPError, ConnectionError, RuntimeError) as exc:
                # The channel went away; the broker redelivers and the digest absorbs it.
                log.warning("could not settle a message (%s); it will be redelivered", exc)
            self._note_settled(message)

    def _in_order(self, batch: Sequence[Delivery]) -> bool:
        """Whether an acknowledgement "up to the batch's last tag" would cover its deliveries
        and nothing else: they came on the channel whose every earlier delivery is settled, and
        their tags follow on from those without a gap."""
        channel, through = self._through
        if channel is None or any(_channel_of(m) is not channel for m in batch):
            return False
        tags = [m.delivery_tag for m in batch]
        return tags == list(range(through + 1, through + 1 + len(batch)))

    def _note_settled(self, message: Delivery) -> None:
        """Keep the tag through which every delivery of the current channel is settled."""
        channel, tag = _channel_of(message), message.delivery_tag
        if channel is None:
            return
        known, through = self._through
        if channel is not known:
            # A new channel (the first, or a reconnection's: a closed one is None above);
            # its tags count from 1.
            known, through = channel, 0
            self._beyond.clear()
        if tag > through:
            self._beyond.add(tag)
        self._advance(known, through)

    def _advance(self, channel: object | None, through: int) -> None:
        beyond = self._beyond
        while through + 1 in beyond:
            through += 1
            beyond.remove(through)
        self._through = (channel, through)

    async def _isolate(self, batch: list[Delivery], stop: asyncio.Event, exc: Exception) -> None:
        """Route each message of a failed batch alone: one poison message holds back no other.

        The message that fails alone is returned to the queue; at the delivery limit the broker
        dead-letters it, and ``record_dead`` keeps and traces it.
        """
        if len(batch) > 1:
            log.error(
                "routing a batch of %d failed; routing its messages one by one",
                len(batch),
                exc_info=exc,
            )
            for message in batch:
                await self._process([message], stop)
            return
        log.error(
            "routing message %s failed; it returns to the queue",
            batch[0].message_id or "(no id)",
            exc_info=exc,
        )
        self.stats.count(Outcome.RETRY)
        await self._settle(batch, requeue=True)

    async def _settle(self, batch: list[Delivery], *, requeue: bool) -> None:
        for message in batch:
            with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
                await message.nack(requeue=requeue)
            self._note_settled(message)

    async def _return_unprocessed(self) -> None:
        pending = list(self._pending)
        self._pending.clear()
        await self._settle(pending, requeue=True)

    async def _on_dead(self, message: AbstractIncomingMessage) -> None:
        reason, detail = dead_reason(message)
        if reason == "delivery_limit_exceeded" and await self._last_chance(message):
            return
        try:
            await asyncio.to_thread(
                self.record_dead, message.body, message.message_id, reason, detail
            )
        except sa.exc.DBAPIError as exc:
            log.warning("could not record a dead letter (%s); it stays queued", exc.orig)
            with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
                await message.nack(requeue=True)
            await asyncio.sleep(1)
            return
        self.stats.dead_lettered += 1
        with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
            await message.ack()

    async def _last_chance(self, message: AbstractIncomingMessage) -> bool:
        """Route a message that reached the delivery limit once more, alone.

        A quorum queue counts every return towards the limit, also those of a router that was
        killed or lost its connection while holding the message: a sound envelope can reach the
        limit without being poison. Only one that still cannot be decided is a dead letter.
        """
        try:
            (outcome,) = await self.route([Incoming(message.body, message.message_id)])
        except Exception:  # noqa: BLE001 - deciding failed again: a dead letter after all
            log.info("dead letter %s still fails; recording it", message.message_id)
            return False
        if outcome in (Outcome.RETRY, Outcome.DEAD_LETTER):
            return False
        self.stats.count(outcome)
        with contextlib.suppress(AMQPError, ConnectionError, RuntimeError):
            await message.ack()
        return True


_ACKED = frozenset({Outcome.STORED, Outcome.DUPLICATE, Outcome.REJECTED})


def _channel_of(message: Delivery) -> object | None:
    """The channel a delivery came on, or None once that channel is closed."""
    try:
        return message.channel
    except (AMQPError, RuntimeError):
        return None


def is_outage(exc: sa.exc.DBAPIError) -> bool:
    """The database is unreachable or busy (wait and retry), not refusing these rows."""
    return exc.connection_invalidated or isinstance(
        exc, sa.exc.OperationalError | sa.exc.InterfaceError
    )


def _reason(exc: BaseException) -> str:
    """The driver's own error for a database error (its text names the cause), else the
    error's text."""
    return str(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else str(exc)


def dead_reason(message: AbstractIncomingMessage) -> tuple[str, str]:
    deaths = (message.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        why = _text(death.get("reason", "unknown"))
        count = _text(death.get("count", 1))
        queue = _text(death.get("queue", "?"))
        if why == "delivery_limit":
            return "delivery_limit_exceeded", f"failed {count} time(s) in {queue}"
        if why == "rejected":
            return "malformed_submission", f"refused by the router from {queue}"
        return why, f"dead-lettered from {queue}"
    return "unknown", "dead-lettered without x-death"


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
