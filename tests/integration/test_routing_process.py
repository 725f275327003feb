"""The routing process: a real child (``python -m adapters.routing_process``) that builds the
bus from its environment and routes real signed envelopes into a real database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.amqp.router import Failure, RoutingFailed
from adapters.db.tables import inbox, messages
from adapters.routing_process import RoutingProcess, _read_request, _request_frame
from exchange.routing import Incoming, Outcome
from exchange.submission import Submission
from tests.helpers import H37, Pki, header_bytes
from tests.services import LIENTHONG, BusProcesses, process_gone


@pytest.fixture
def bus(pki: Pki, tmp_path: Path) -> BusProcesses:
    """A prepared bus (schema, agencies) on SQLite; only its environment is used here."""
    bus = BusProcesses(
        root=tmp_path, pki_dir=pki.root, database_url=f"sqlite:///{tmp_path / 'bus.db'}"
    )
    bus.prepare()
    return bus


def envelope(pki: Pki) -> tuple[str, bytes]:
    message_id = str(uuid.uuid4())
    header = header_bytes(message_id=message_id, recipients=[H37])
    return message_id, Submission(header, pki.sign(header)).encode()


def forged(pki: Pki) -> bytes:
    """A header signed, then another one sent with that signature."""
    signed = header_bytes(message_id=str(uuid.uuid4()), recipients=[H37])
    sent = header_bytes(message_id=str(uuid.uuid4()), recipients=[H37])
    return Submission(sent, pki.sign(signed)).encode()


def test_the_routing_process_routes_into_the_database(bus: BusProcesses, pki: Pki) -> None:
    sent = [envelope(pki) for _ in range(5)]
    batch = [Incoming(body, message_id) for message_id, body in sent]

    async def scenario() -> tuple[list[Outcome], list[Outcome], str]:
        routing = RoutingProcess(env=bus.env)
        try:
            await routing.start()
            first = await routing.route([*batch, Incoming(forged(pki), None)])
            # Sent again (a redelivery): the digest makes each a duplicate.
            again = await routing.route(batch[:2])
            return first, again, routing.state()
        finally:
            await routing.close()

    first, again, state = asyncio.run(scenario())

    assert first == [Outcome.STORED] * 5 + [Outcome.REJECTED]
    assert again == [Outcome.DUPLICATE] * 2
    assert state == "ok"
    engine = sa.create_engine(bus.database_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(messages.c.message_id)).scalars())
            delivered = set(
                conn.execute(
                    sa.select(inbox.c.message_id).where(inbox.c.recipient == H37)
                ).scalars()
            )
    finally:
        engine.dispose()
    sent_ids = {message_id for message_id, _ in sent}
    assert delivered == sent_ids
    # Besides them, only the bus's notice of the rejection to its sender.
    assert len(stored - sent_ids) == 1


def test_a_routing_process_that_dies_fails_what_it_held_and_is_started_again(
    bus: BusProcesses, pki: Pki
) -> None:
    async def scenario() -> tuple[RoutingFailed, list[Outcome], int, int]:
        routing = RoutingProcess(env=bus.env)
        try:
            await routing.start()
            first = routing.pid()
            assert first is not None
            os.kill(first, signal.SIGSTOP)  # it holds the batch below and cannot answer
            holding = asyncio.create_task(routing.route([Incoming(envelope(pki)[1], None)]))
            await asyncio.sleep(0.5)
            os.kill(first, signal.SIGKILL)
            with pytest.raises(RoutingFailed) as failed:
                await asyncio.wait_for(holding, 30)
            after = await routing.route([Incoming(envelope(pki)[1], None)])
            second = routing.pid()
            assert second is not None
            return failed.value, after, first, second
        finally:
            await routing.close()

    failed, after, first, second = asyncio.run(scenario())

    assert failed.failure is Failure.FAILED  # the router isolates the batch it was in
    assert "exited" in str(failed)
    assert after == [Outcome.STORED]
    assert second != first


def test_a_routing_process_that_cannot_start_says_why(bus: BusProcesses, tmp_path: Path) -> None:
    env = {**bus.env, "LIENTHONG_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}

    async def scenario() -> RoutingFailed:
        routing = RoutingProcess(env=env)
        with pytest.raises(RoutingFailed) as failed:
            await routing.start()
        assert routing.state().startswith("unavailable")
        await routing.close()
        return failed.value

    failed = asyncio.run(scenario())

    # An outage for the router: it waits and retries rather than returning its messages.
    assert failed.failure is Failure.OUTAGE
    assert "cannot start" in str(failed)
    assert "lienthong db upgrade" in str(failed)


def test_the_routing_process_ignores_signals_and_exits_when_its_pipe_closes(
    bus: BusProcesses, pki: Pki
) -> None:
    # Ctrl-C reaches the whole process group: the router, not its child, decides when to stop.
    async def scenario() -> tuple[list[Outcome], int, float]:
        routing = RoutingProcess(env=bus.env)
        await routing.start()
        pid = routing.pid()
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        outcomes = await routing.route([Incoming(envelope(pki)[1], None)])
        started = time.monotonic()
        await routing.close()
        return outcomes, pid, time.monotonic() - started

    outcomes, pid, closing = asyncio.run(scenario())

    assert outcomes == [Outcome.STORED]
    assert closing < 5
    assert process_gone(pid)


def test_a_router_whose_routing_process_cannot_start_exits_with_the_reason(
    bus: BusProcesses,
) -> None:
    env = {k: v for k, v in bus.env.items() if k != "LIENTHONG_PKI_DIR"}  # no trust anchors

    done = subprocess.run([LIENTHONG, "router"], env=env, capture_output=True, timeout=120)

    assert done.returncode == 2  # unusable as configured, as for the API
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("lienthong: the routing process cannot start: no trust anchors"), last
    assert b"Traceback" not in done.stderr


def test_a_batch_crosses_the_pipe_as_it_was_sent() -> None:
    """Bodies of every size (empty, one byte, larger than a pipe holds) and transport ids or
    none come out of ``_read_request`` as ``_request_frame`` wrote them, in order; a batch cut
    short by the end of the pipe is the end, not a batch."""
    batch = [
        Incoming(b"", None),
        Incoming(b"x", "tid-1"),
        Incoming(os.urandom(3 << 20), "tid-2"),
        Incoming(os.urandom(7000), None),
    ]
    read, write = os.pipe()
    with os.fdopen(read, "rb") as source:
        writer = os.fdopen(write, "wb")

        def send() -> None:
            with writer:
                for _ in range(2):
                    for part in _request_frame(batch):
                        writer.write(part)
                writer.write(b"".join(_request_frame(batch))[:-1])  # cut short in a body

        sending = threading.Thread(target=send)
        sending.start()
        first, second, cut = (_read_request(source) for _ in range(3))
        sending.join()
        assert first == second == [(item.body, item.transport_id) for item in batch]
        assert cut is None
        assert _read_request(source) is None
    # Cut short in the index.
    read, write = os.pipe()
    with os.fdopen(read, "rb") as source:
        with os.fdopen(write, "wb") as writer:
            writer.write(b"".join(_request_frame(batch[:2]))[:6])
        assert _read_request(source) is None
