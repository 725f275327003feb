"""Appending to and reading the hash-chained trace log."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from adapters.db.bulk import BulkInsert
from adapters.db.keys import KeyQuery, chunks
from adapters.db.tables import trace_events
from exchange.tracing import GENESIS, Event, StoredEvent, TraceEvent, chain_hash


def append(conn: sa.Connection, events: Sequence[TraceEvent]) -> None:
    """Append events, each subject's after its current head, in the caller's transaction.

    Two writers appending to one subject at once collide on (subject, seq); the loser's
    transaction fails and is retried by its caller, so the chain never forks.
    """
    if not events:
        return
    subjects = sorted({e.subject for e in events})
    heads: dict[str, tuple[int, str]] = {}
    for chunk in chunks(subjects):
        for subject, seq, digest in _HEADS.rows(conn, chunk):
            heads[subject] = (seq, digest)
    rows_out = []
    for event in events:
        seq, prev = heads.get(event.subject, (0, GENESIS))
        seq += 1
        digest = chain_hash(prev, event, seq)
        heads[event.subject] = (seq, digest)
        rows_out.append(
            {
                "subject": event.subject,
                "seq": seq,
                "at": event.at,
                "event": event.event.value,
                "sender": event.sender,
                "recipient": event.recipient,
                "actor": event.actor,
                "reason": event.reason,
                "detail": event.detail,
                "prev_hash": prev,
                "hash": digest,
            }
        )
    _INSERT(conn, rows_out)


_INSERT = BulkInsert(trace_events)
# Each subject's last event (the table's name from its metadata: no value is spliced in).
_HEADS = KeyQuery(
    f"SELECT t.subject, t.seq, t.hash FROM {trace_events.name} t JOIN "  # noqa: S608
    f"(SELECT subject, max(seq) AS seq FROM {trace_events.name} "
    "WHERE subject {keys} GROUP BY subject) last "
    "ON t.subject = last.subject AND t.seq = last.seq"
)


def _stored(row: sa.Row[tuple[object, ...]]) -> StoredEvent:
    m = row._mapping
    return StoredEvent(
        TraceEvent(
            subject=m["subject"],
            event=Event(m["event"]),
            at=m["at"],
            sender=m["sender"],
            recipient=m["recipient"],
            actor=m["actor"],
            reason=m["reason"],
            detail=m["detail"],
        ),
        seq=m["seq"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


def timeline(conn: sa.Connection, subject: str) -> list[StoredEvent]:
    rows = conn.execute(
        sa.select(trace_events)
        .where(trace_events.c.subject == subject)
        .order_by(trace_events.c.seq)
    )
    return [_stored(r) for r in rows]


def search(
    conn: sa.Connection,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    event: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[tuple[int, StoredEvent]]:
    query = sa.select(trace_events).where(trace_events.c.id > after_id)
    if sender is not None:
        query = query.where(trace_events.c.sender == sender)
    if recipient is not None:
        query = query.where(trace_events.c.recipient == recipient)
    if event is not None:
        query = query.where(trace_events.c.event == event)
    if since is not None:
        query = query.where(trace_events.c.at >= since)
    if until is not None:
        query = query.where(trace_events.c.at < until)
    rows = conn.execute(query.order_by(trace_events.c.id).limit(limit))
    return [(r._mapping["id"], _stored(r)) for r in rows]
