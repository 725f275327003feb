"""Issue 3's acceptance: a router SIGKILLed amid 1,000 messages loses and doubles nothing.

1,000 signed envelopes are published (confirmed) to a bus whose router is a real ``lienthong
router`` process; when some hundreds are stored it is killed with SIGKILL, a new router takes
over, and the database must hold every sent id in the recipient's inbox exactly once, with no
rejection and exactly one ``stored`` event in each trace.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import aio_pika
import pytest
import sqlalchemy as sa

from adapters.amqp.publisher import Publisher
from adapters.amqp.topology import Topology
from adapters.db import trace
from adapters.db.tables import dead_letters, inbox, messages, rejections, trace_events
from exchange.signing import sign_detached
from exchange.submission import Submission
from exchange.tracing import verify_chain
from tests.helpers import G22, H37, Pki, header_bytes
from tests.services import AMQP_URL, BusProcesses, children, delete_topology, process_gone

MESSAGES = 1000
KILL_AT = 300  # stored messages when the router is killed


@pytest.fixture
def processes(
    pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BusProcesses]:
    """A prepared bus (schema, agencies) whose routers the test starts and kills itself."""
    bus = BusProcesses(
        root=tmp_path_factory.mktemp("crash"), pki_dir=pki.root, database_url=database_url
    )
    bus.prepare()
    try:
        yield bus
    finally:
        bus.stop()
        delete_topology(bus.prefix)


def signed_envelopes(pki: Pki, count: int) -> dict[str, bytes]:
    """``count`` submissions from G22 to H37: one header template, a new message id each.

    Signed as ``Pki.sign`` signs (the G22 seal, the CA chain embedded), with the key loaded once.
    """
    seal, chain = pki.seal(G22), pki.chain()
    bodies = {}
    for _ in range(count):
        message_id = str(uuid.uuid4())
        header = header_bytes(message_id=message_id, recipients=[H37])
        bodies[message_id] = Submission(header, sign_detached(header, [seal], chain=chain)).encode()
    return bodies


async def publish_all(topology: Topology, bodies: dict[str, bytes]) -> None:
    """Publish concurrently on one confirming channel; return when the broker confirmed all."""
    publisher = Publisher(AMQP_URL, topology)
    window = asyncio.Semaphore(200)

    async def one(message_id: str, body: bytes) -> None:
        async with window:
            await publisher.publish(body, message_id=message_id)

    try:
        await asyncio.gather(*(one(i, b) for i, b in bodies.items()))
    finally:
        await publisher.close()


async def queued(topology: Topology) -> int:
    """Messages ready in the router queue (not counting those delivered and unacknowledged)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.router_queue, passive=True)
        return queue.declaration_result.message_count or 0


def unsettled(topology: Topology) -> int:
    """Messages in the router queue, ready or delivered and not yet acknowledged."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "name", "messages"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    for line in listed.stdout.splitlines():
        name, _, count = line.partition("\t")
        if name == topology.router_queue:
            return int(count)
    raise AssertionError(f"no queue {topology.router_queue}")


def wait_for(
    what: str, check: Callable[[], bool], router: BusProcesses, within: float, poll: float = 0.01
) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{router.logs()}")
        for process in router.routers:
            if process.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"a router exited while {what}\n{router.logs()}")
        time.sleep(poll)


def test_a_router_killed_mid_run_loses_nothing_and_doubles_nothing(
    processes: BusProcesses, pki: Pki
) -> None:
    started = time.monotonic()
    topology = Topology(processes.prefix)
    bodies = signed_envelopes(pki, MESSAGES)
    asyncio.run(publish_all(topology, bodies))
    published = time.monotonic()

    engine = sa.create_engine(processes.database_url, poolclass=sa.NullPool)
    try:

        def stored() -> int:
            with engine.connect() as conn:
                value = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar()
            return int(value or 0)

        first = processes.start_router()
        wait_for("the first router to store some", lambda: stored() >= KILL_AT, processes, 30)
        routing = children(first.pid)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        at_kill = stored()
        assert first.returncode == -signal.SIGKILL
        assert at_kill < MESSAGES, "the router finished before it could be killed"
        # Its routing process finishes the batch in hand (racing the next router for it),
        # then exits: its pipe to the killed router has closed.
        assert len(routing) == 1
        wait_for("its routing process to exit", lambda: process_gone(routing[0]), processes, 30)

        processes.start_router()
        wait_for("every message to be stored", lambda: stored() == MESSAGES, processes, 40, 0.05)
        # Redeliveries of what the killed router had stored but not acknowledged come back as
        # duplicates; wait until every message is settled, then stop the router gracefully.
        wait_for("the router queue to drain", lambda: unsettled(topology) == 0, processes, 20, 0.2)
        processes.stop()
        assert asyncio.run(queued(topology)) == 0, "the router returned work it did not do"

        with engine.connect() as conn:
            delivered = conn.execute(
                sa.select(inbox.c.message_id, sa.func.count())
                .where(inbox.c.recipient == H37)
                .group_by(inbox.c.message_id)
            ).all()
            stored_events = conn.execute(
                sa.select(trace_events.c.subject, sa.func.count())
                .where(trace_events.c.event == "stored")
                .group_by(trace_events.c.subject)
            ).all()
            duplicates = conn.execute(
                sa.select(sa.func.count())
                .select_from(trace_events)
                .where(trace_events.c.event == "duplicate")
            ).scalar()
            refused = conn.execute(sa.select(sa.func.count()).select_from(rejections)).scalar()
            dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar()
            rows = conn.execute(
                sa.select(trace_events).order_by(trace_events.c.subject, trace_events.c.seq)
            ).all()
        chains = {
            subject: [trace._stored(r) for r in group]
            for subject, group in itertools.groupby(rows, key=lambda r: r.subject)
        }
    finally:
        engine.dispose()

    sent = set(bodies)
    assert {message_id for message_id, _ in delivered} == sent
    assert all(n == 1 for _, n in delivered), "a message reached the inbox twice"
    assert len(delivered) == MESSAGES
    assert refused == 0
    assert dead == 0
    assert dict(stored_events) == dict.fromkeys(sent, 1)
    assert set(chains) == sent
    assert all(verify_chain(events) is None for events in chains.values())
    elapsed = time.monotonic() - started
    print(  # shown with -s: what the kill left to the second router
        f"\n{processes.database_url.split(':')[0]}: killed at {at_kill} stored, "
        f"{duplicates} duplicate(s) absorbed; published in {published - started:.1f}s, "
        f"total {elapsed:.1f}s"
    )
    assert elapsed < 60
