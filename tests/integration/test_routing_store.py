"""SqlRoutingStore against real SQLite and PostgreSQL: one transaction per batch, races settled.

Decisions are made by the real core (``adapters.bootstrap.build`` over a development PKI and a
migrated database), then committed through the store; every assertion reads the tables back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters import bootstrap
from adapters.db import keys, migrate, trace
from adapters.db import registry as reg
from adapters.db import routing as db_routing
from adapters.db.engine import create_engine
from adapters.db.tables import (
    dead_letters,
    inbox,
    message_attachments,
    messages,
    rejections,
    trace_events,
)
from adapters.files import load_certificates
from adapters.settings import Settings
from exchange import submission
from exchange.envelope import envelope_digest
from exchange.reasons import Reason
from exchange.routing import Accept, Decision, Incoming, Outcome, Reject, Unparseable
from exchange.submission import Submission
from exchange.tracing import Event, TraceEvent, verify_chain
from tests.helpers import G22, H37, H37_FINANCE, Pki, encode, header_bytes, header_dict
from tests.services import postgres_database

RECORD_TABLES = (messages, inbox, message_attachments, rejections, trace_events, dead_letters)


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'lienthong.db'}"
    else:
        with postgres_database() as url:
            yield url


@contextlib.contextmanager
def wired(pki: Pki, kind: str, tmp_path: Path) -> Iterator[bootstrap.Bus]:
    """The wired core over a migrated database with the demo agencies registered."""
    with database(kind, tmp_path) as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as conn:
            for agency in pki.dev.agencies():
                reg.add_agency(conn, agency.code, agency.name, now)
                for cert in load_certificates(pki.dev.seal(agency.code)[0]):
                    reg.pin_certificate(conn, agency.code, cert, now)
        engine.dispose()
        settings = Settings(data_dir=tmp_path / "var", database_url=url, pki_dir=pki.root)
        built = bootstrap.build(settings)
        try:
            yield built
        finally:
            built.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def bus(request: pytest.FixtureRequest, pki: Pki, tmp_path: Path) -> Iterator[bootstrap.Bus]:
    with wired(pki, request.param, tmp_path) as built:
        yield built


@pytest.fixture
def pg_bus(pki: Pki, tmp_path: Path) -> Iterator[bootstrap.Bus]:
    with wired(pki, "postgresql", tmp_path) as built:
        yield built


@pytest.fixture
def sqlite_bus(pki: Pki, tmp_path: Path) -> Iterator[bootstrap.Bus]:
    with wired(pki, "sqlite", tmp_path) as built:
        yield built


def envelope(pki: Pki, *, message_id: str | None = None, **header: Any) -> bytes:
    body = header_bytes(message_id=message_id, **header)
    return Submission(body, pki.sign(body)).encode()


def digest_of(body: bytes) -> str:
    sub = submission.decode(
        body, max_header=1 << 20, max_signature=1 << 20, max_attachments=8, max_inline_bytes=1 << 20
    )
    return envelope_digest(sub.header, sub.signature)


def decide(bus: bootstrap.Bus, *bodies: bytes) -> list[Decision]:
    return bus.router.decide([Incoming(body) for body in bodies])


def count(engine: sa.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()
    return int(value or 0)


def events_of(engine: sa.Engine, subject: str) -> list[str]:
    with engine.connect() as conn:
        return [e.event.event.value for e in trace.timeline(conn, subject)]


def trace_subjects(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(trace_events.c.subject).distinct()).scalars())


def assert_chains_hold(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        subjects = conn.execute(sa.select(trace_events.c.subject).distinct()).scalars().all()
        for subject in subjects:
            timeline = trace.timeline(conn, subject)
            assert timeline, subject
            assert verify_chain(timeline) is None, subject
    return len(subjects)


def test_a_batch_is_stored_with_inbox_and_trace(bus: bootstrap.Bus, pki: Pki) -> None:
    good_id = str(uuid.uuid4())
    good = envelope(pki, message_id=good_id, recipients=[H37, H37_FINANCE])
    forged_header = header_bytes()
    forged = Submission(forged_header.replace(b"2491", b"2492"), pki.sign(forged_header)).encode()
    decisions = decide(bus, good, forged, b"not a submission")
    assert [type(d) for d in decisions] == [Accept, Reject, Unparseable]

    outcomes = bus.store.commit(decisions)

    assert outcomes == [Outcome.STORED, Outcome.REJECTED, Outcome.DEAD_LETTER]
    engine = bus.engine
    with engine.connect() as conn:
        recipients = conn.execute(
            sa.select(inbox.c.recipient).where(inbox.c.message_id == good_id)
        ).scalars()
        assert sorted(recipients) == [H37, H37_FINANCE]
        (rejection,) = conn.execute(sa.select(rejections)).all()
    assert rejection.reason == Reason.DIGEST_MISMATCH.value
    assert rejection.sender == G22
    # The rejected sender is told: a bus-signed notice in its inbox.
    assert count(engine, inbox, inbox.c.recipient == G22) == 1
    assert count(engine, messages) == 2
    assert events_of(engine, good_id) == [
        "submitted",
        "verified",
        "stored",
        "delivered",
        "delivered",
    ]
    forged_id = rejection.message_id
    assert events_of(engine, forged_id) == ["submitted", "rejected", "notice"]
    assert assert_chains_hold(engine) == 4  # good, forged, its notice, the unparseable digest


def test_inline_attachments_are_kept_under_the_digest_measured(
    sqlite_bus: bootstrap.Bus, pki: Pki
) -> None:
    content = "Phụ lục: dự toán ngân sách 2027\n".encode() * 2000
    sha256 = hashlib.sha256(content).hexdigest()
    ref = {
        "name": "phu-luc.txt",
        "media_type": "text/plain",
        "size": len(content),
        "sha256": sha256,
    }
    header = header_bytes(attachments=[ref])
    body = Submission(header, pki.sign(header), {"phu-luc.txt": content}).encode()
    (decision,) = decide(sqlite_bus, body)
    assert isinstance(decision, Accept)
    assert decision.inline_sha256 == {"phu-luc.txt": sha256}  # measured once, while verifying

    assert sqlite_bus.router.record([decision]) == [Outcome.STORED]

    assert sqlite_bus.blobs.path(sha256).read_bytes() == content
    assert hashlib.sha256(sqlite_bus.blobs.path(sha256).read_bytes()).hexdigest() == sha256


def test_an_attachment_that_cannot_be_written_commits_nothing(
    sqlite_bus: bootstrap.Bus, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attachment files are written while the rows are inserted; a file that fails fails the
    commit, so no stored message ever references a file that is not on disk."""
    content = "Phụ lục kèm theo\n".encode() * 4000
    sha256 = hashlib.sha256(content).hexdigest()
    ref = {"name": "pl.txt", "media_type": "text/plain", "size": len(content), "sha256": sha256}
    header = header_bytes(attachments=[ref])
    body = Submission(header, pki.sign(header), {"pl.txt": content}).encode()
    decisions = decide(sqlite_bus, body, envelope(pki))
    store = sqlite_bus.blobs
    real_put = store.put

    def full_disk(content: bytes | memoryview, sha256: str | None = None) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "put", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sqlite_bus.router.record(decisions)
    for table in RECORD_TABLES:
        assert count(sqlite_bus.engine, table) == 0, table.name
    assert not store.path(sha256).exists()

    monkeypatch.setattr(store, "put", real_put)
    assert sqlite_bus.router.record(decisions) == [Outcome.STORED, Outcome.STORED]
    assert store.path(sha256).read_bytes() == content


def test_a_failure_mid_commit_leaves_nothing_written(
    bus: bootstrap.Bus, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions = decide(bus, envelope(pki, recipients=[H37, H37_FINANCE]), b"junk")

    def broken(conn: sa.Connection, events: Sequence[TraceEvent]) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trace, "append", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        bus.store.commit(decisions)

    for table in RECORD_TABLES:
        assert count(bus.engine, table) == 0, table.name
    monkeypatch.undo()
    # The same decisions commit cleanly afterwards: the failed attempt left no trace of itself.
    assert bus.store.commit(decisions) == [Outcome.STORED, Outcome.DEAD_LETTER]


def processed(bus: bootstrap.Bus, digests: list[str]) -> set[str]:
    with bus.store.recall([], digests) as done:
        return done


def test_recall_sees_committed_digests_only(bus: bootstrap.Bus, pki: Pki) -> None:
    stored_id = str(uuid.uuid4())
    stored = envelope(pki, message_id=stored_id)
    forged_header = header_bytes()
    rejected = Submission(forged_header + b" ", pki.sign(forged_header)).encode()
    waiting = envelope(pki)
    digests = [digest_of(b) for b in (stored, rejected, waiting)]
    assert processed(bus, digests) == set()

    bus.store.commit(decide(bus, stored, rejected))

    assert processed(bus, digests) == set(digests[:2])
    assert processed(bus, []) == set()
    other_id = str(uuid.uuid4())
    with bus.store.recall([stored_id, other_id], digests) as done:
        assert done == set(digests[:2])
        # What was accepted under the ids it was told of, from the one lookup.
        assert bus.store.envelope_digest(stored_id) == digests[0]
        assert bus.store.envelope_digest(other_id) is None
    # Deciding again now recognises both by their bytes.
    again = decide(bus, stored, rejected, waiting)
    assert [type(d).__name__ for d in again] == ["Duplicate", "Duplicate", "Accept"]


def test_same_id_same_bytes_is_a_duplicate(bus: bootstrap.Bus, pki: Pki) -> None:
    message_id = str(uuid.uuid4())
    body = envelope(pki, message_id=message_id)
    first = decide(bus, body)
    second = decide(bus, body)  # decided before the first commit, as a second router would

    assert bus.store.commit(first) == [Outcome.STORED]
    assert bus.store.commit(second) == [Outcome.DUPLICATE]

    assert count(bus.engine, messages) == 1
    assert count(bus.engine, inbox) == 1
    assert count(bus.engine, rejections) == 0
    assert events_of(bus.engine, message_id) == [
        "submitted",
        "verified",
        "stored",
        "delivered",
        "duplicate",
    ]
    assert_chains_hold(bus.engine)


def test_same_id_other_bytes_is_a_recorded_replay(bus: bootstrap.Bus, pki: Pki) -> None:
    message_id = str(uuid.uuid4())
    original = envelope(pki, message_id=message_id)
    replay = envelope(pki, message_id=message_id, subject="Một nội dung khác, cùng mã")
    first, second = decide(bus, original), decide(bus, replay)
    assert isinstance(first[0], Accept)
    assert isinstance(second[0], Accept)

    assert bus.store.commit(first) == [Outcome.STORED]
    assert bus.store.commit(second) == [Outcome.REJECTED]

    with bus.engine.connect() as conn:
        stored_digest = conn.execute(sa.select(messages.c.envelope_digest)).scalar_one()
        (rejection,) = conn.execute(sa.select(rejections)).all()
    assert stored_digest == digest_of(original)
    assert rejection.envelope_digest == digest_of(replay)
    assert rejection.reason == Reason.REPLAY.value
    assert rejection.message_id == message_id
    assert count(bus.engine, inbox) == 1
    assert events_of(bus.engine, message_id) == [
        "submitted",
        "verified",
        "stored",
        "delivered",
        "submitted",
        "rejected",
    ]
    # The replay is now processed: its redelivery is a duplicate, not a second rejection.
    assert bus.store.commit(second) == [Outcome.DUPLICATE]
    assert count(bus.engine, rejections) == 1
    assert_chains_hold(bus.engine)


def test_a_tampered_trace_row_breaks_its_chain(bus: bootstrap.Bus, pki: Pki) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    bus.store.commit(
        decide(bus, *(envelope(pki, message_id=i, recipients=[H37, H37_FINANCE]) for i in ids))
    )
    assert assert_chains_hold(bus.engine) == 3
    with bus.engine.begin() as conn:
        conn.execute(
            trace_events.update()
            .where(trace_events.c.subject == ids[1], trace_events.c.seq == 3)
            .values(detail="stored somewhere else")
        )
    with bus.engine.connect() as conn:
        assert verify_chain(trace.timeline(conn, ids[1])) == 2
        assert verify_chain(trace.timeline(conn, ids[0])) is None
        assert verify_chain(trace.timeline(conn, ids[2])) is None
        # Removing an event is detected too: every later link names its predecessor.
        conn.execute(
            trace_events.delete().where(trace_events.c.subject == ids[2], trace_events.c.seq == 2)
        )
        assert verify_chain(trace.timeline(conn, ids[2])) == 1


def test_events_appended_later_continue_the_chain(bus: bootstrap.Bus, pki: Pki) -> None:
    message_id = str(uuid.uuid4())
    bus.store.commit(decide(bus, envelope(pki, message_id=message_id)))
    with bus.engine.begin() as conn:
        trace.append(
            conn,
            [TraceEvent(message_id, Event.FETCHED, dt.datetime.now(dt.UTC), recipient=H37)],
        )
    assert events_of(bus.engine, message_id)[-1] == "fetched"
    assert_chains_hold(bus.engine)


def commit_in_threads(
    bus: bootstrap.Bus, decisions: Sequence[Decision]
) -> tuple[list[list[Outcome]], list[sa.exc.SQLAlchemyError]]:
    """Two routers commit the same batch at once, each on its own thread and connection."""
    outcomes: list[list[Outcome]] = []
    errors: list[sa.exc.SQLAlchemyError] = []
    start = threading.Barrier(2, timeout=20)

    def router() -> None:
        try:
            start.wait()
            outcomes.append(bus.store.commit(decisions))
        except sa.exc.SQLAlchemyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=router) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    return outcomes, errors


def test_concurrent_transactions_on_postgres_insert_one_message_id_once(
    pg_bus: bootstrap.Bus, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = pg_bus
    message_id = str(uuid.uuid4())
    decisions = decide(bus, envelope(pki, message_id=message_id, recipients=[H37, H37_FINANCE]))
    inside = threading.Barrier(2, timeout=20)
    flush = db_routing._Batch._flush

    def flush_together(self: db_routing._Batch) -> None:
        # Both transactions have read "not stored yet" before either one writes.
        inside.wait()
        flush(self)

    monkeypatch.setattr(db_routing._Batch, "_flush", flush_together)
    outcomes, errors = commit_in_threads(bus, decisions)

    assert outcomes == [[Outcome.STORED]]
    (error,) = errors
    assert isinstance(error, sa.exc.IntegrityError), repr(error)
    assert count(bus.engine, messages, messages.c.message_id == message_id) == 1
    assert count(bus.engine, inbox) == 2
    assert events_of(bus.engine, message_id).count("stored") == 1

    # RouterService retries the loser's batch; the second attempt sees the stored row.
    monkeypatch.undo()
    assert bus.store.commit(decisions) == [Outcome.DUPLICATE]
    assert count(bus.engine, messages) == 1
    assert count(bus.engine, inbox) == 2
    assert events_of(bus.engine, message_id)[-1] == "duplicate"
    assert_chains_hold(bus.engine)


def test_concurrent_transactions_on_sqlite_are_serialised(
    sqlite_bus: bootstrap.Bus, pki: Pki
) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: the second writer waits, then reads the
    # first one's row, and its batch becomes a duplicate without an error.
    bus = sqlite_bus
    message_id = str(uuid.uuid4())
    decisions = decide(bus, envelope(pki, message_id=message_id, recipients=[H37, H37_FINANCE]))

    outcomes, errors = commit_in_threads(bus, decisions)

    assert errors == []
    assert sorted(outcomes) == [[Outcome.DUPLICATE], [Outcome.STORED]]
    assert count(bus.engine, messages) == 1
    assert count(bus.engine, inbox) == 2
    assert events_of(bus.engine, message_id).count("stored") == 1
    assert_chains_hold(bus.engine)


@pytest.mark.parametrize("message_id", ["0b8e6f2c-5d1a-4c3e-9f7a-2e4d6c8b1a3f", "not-a-uuid"])
def test_a_rejection_quoting_control_characters_is_stored(
    bus: bootstrap.Bus, pki: Pki, message_id: str
) -> None:
    # The unknown field's name is quoted in the reason's detail; PostgreSQL refuses NUL in
    # text, and a notice's description refuses control characters.
    header = header_dict(message_id=message_id)
    header["n\u0000te\u001b"] = "x"
    body = encode(header)
    decisions = decide(bus, Submission(body, pki.sign(body)).encode())
    (decision,) = decisions
    assert isinstance(decision, Reject), decision
    assert decision.reason is Reason.HEADER_UNKNOWN_FIELD
    assert decision.detail == "field 'n\\x00te\\x1b' is not part of envelope v1"

    assert bus.store.commit(decisions) == [Outcome.REJECTED]

    with bus.engine.connect() as conn:
        (rejection,) = conn.execute(sa.select(rejections)).all()
    assert rejection.detail == decision.detail
    notices = count(bus.engine, inbox, inbox.c.recipient == G22)
    assert notices == (1 if message_id != "not-a-uuid" else 0)
    assert_chains_hold(bus.engine)


def test_a_dead_letter_keeps_what_the_publisher_sent_within_the_columns(
    bus: bootstrap.Bus, pki: Pki
) -> None:
    body = envelope(pki)
    now = dt.datetime.now(dt.UTC)
    db_routing.record_dead_letter(
        bus.engine, body, "id\u0000" * 100, "delivery_limit_exceeded" * 4, "x\u0000y", now
    )
    db_routing.record_dead_letter(bus.engine, b"\x00junk", None, "rejected", "refused", now)

    with bus.engine.connect() as conn:
        rows = conn.execute(sa.select(dead_letters).order_by(dead_letters.c.id)).all()
    assert [r.body for r in rows] == [body, b"\x00junk"]
    assert rows[0].envelope_digest == digest_of(body)
    assert len(rows[0].transport_id) == 128
    assert len(rows[0].reason) == 64
    assert rows[0].detail == "x\\x00y"
    (message_id,) = {s for s in trace_subjects(bus.engine) if not s.startswith("digest:")}
    assert events_of(bus.engine, message_id) == ["dead_lettered"]
    assert assert_chains_hold(bus.engine) == 2


def test_a_replay_of_a_stored_message_is_rejected_when_decided(
    bus: bootstrap.Bus, pki: Pki
) -> None:
    message_id = str(uuid.uuid4())
    bus.store.commit(decide(bus, envelope(pki, message_id=message_id)))
    replay = envelope(pki, message_id=message_id, subject="Cùng mã, nội dung khác")
    again = envelope(pki)

    decisions = decide(bus, replay, again)

    first, second = decisions
    assert isinstance(first, Reject)
    assert first.reason is Reason.REPLAY
    assert first.notice is not None  # the verifier's verdict: the sender hears about it
    assert isinstance(second, Accept)
    assert bus.store.commit(decisions) == [Outcome.REJECTED, Outcome.STORED]


def test_deciding_a_batch_asks_the_database_per_batch_not_per_envelope(
    bus: bootstrap.Bus, pki: Pki
) -> None:
    bodies = [envelope(pki) for _ in range(20)]
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(bus.engine, "before_cursor_execute", count)
    try:
        decisions = decide(bus, *bodies)
    finally:
        sa.event.remove(bus.engine, "before_cursor_execute", count)

    assert all(isinstance(d, Accept) for d in decisions)
    # One query for the batch (processed digests, accepted ids), not one per envelope.
    assert len([s for s in statements if "SELECT" in s]) == 1, statements


def test_lists_longer_than_one_query_are_asked_in_pieces(bus: bootstrap.Bus, pki: Pki) -> None:
    bodies = [envelope(pki) for _ in range(3)]
    decisions = decide(bus, *bodies)
    bus.store.commit(decisions)
    stored = [d.digest for d in decisions if isinstance(d, Accept)]
    ids = [str(d.accepted.header.message_id) for d in decisions if isinstance(d, Accept)]
    assert len(stored) == 3
    # Far more keys than one query takes. Keys are asked in sorted order, and these unknown ones
    # sort before any real digest or id: the known keys are in the last piece.
    unknown = [f"{i:08x}".rjust(64, "0") for i in range(2 * keys.PER_QUERY)]
    digests = [stored[0], *unknown, stored[1], stored[2]]
    message_ids = [ids[0], *(str(uuid.UUID(int=i)) for i in range(keys.PER_QUERY)), ids[2]]
    with bus.engine.connect() as conn:
        seen = db_routing._look_up(conn, stored=digests, rejected=digests, by_id=message_ids)
    assert seen.stored == set(stored)
    assert seen.rejected == set()
    assert seen.by_id == {ids[0]: stored[0], ids[2]: stored[2]}
    # The trace finds every subject's head across pieces too: each chain goes on from it.
    now = dt.datetime.now(dt.UTC)
    subjects = [*(f"digest:{u}" for u in unknown[: keys.PER_QUERY + 10]), *ids]
    with bus.engine.begin() as conn:
        trace.append(conn, [TraceEvent(s, Event.FETCHED, now, recipient=H37) for s in subjects])
    with bus.engine.begin() as conn:
        trace.append(conn, [TraceEvent(s, Event.ACKNOWLEDGED, now, actor=H37) for s in subjects])
    assert events_of(bus.engine, ids[2])[-2:] == ["fetched", "acknowledged"]
    assert events_of(bus.engine, subjects[0]) == ["fetched", "acknowledged"]
    assert assert_chains_hold(bus.engine) == len(subjects)
