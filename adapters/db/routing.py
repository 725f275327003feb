"""The router's side of the database: what was processed, and recording a batch of decisions.

``commit`` writes a whole batch in one transaction: messages, inbox entries, attachment
references, rejections, rejection notices and trace events. It settles races between routers
here: a message id already stored with the same bytes is a duplicate, with other bytes a replay.
On PostgreSQL two routers inserting the same id at once collide on the primary key; the loser
gets an IntegrityError and the caller retries the batch, which then sees the stored row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from adapters.db import trace
from adapters.db.bulk import BulkInsert
from adapters.db.engine import reading
from adapters.db.keys import KeyQuery, chunks
from adapters.db.tables import (
    agencies,
    blob_uploads,
    blobs,
    dead_letters,
    inbox,
    message_attachments,
    messages,
    rejections,
)
from exchange import submission
from exchange.envelope import envelope_digest
from exchange.ports import Measured
from exchange.reasons import Reason
from exchange.routing import (
    Accept,
    Decision,
    Duplicate,
    Failed,
    Notice,
    Outcome,
    Parties,
    Reject,
    Unparseable,
    loose_identity,
    printable,
)
from exchange.tracing import Event, TraceEvent, subject_for
from exchange.verification import Accepted

# What a batch needs to know of earlier ones, asked in one query: which of some digests were
# stored, which were rejected, and what was stored under which message ids. (The text holds
# table names from the metadata and this module's constants; keys are parameters.)
_STORED, _REJECTED, _BY_ID = "stored", "rejected", "by_id"
_SEEN = KeyQuery(
    f"SELECT '{_STORED}', envelope_digest, envelope_digest FROM {messages.name} "  # noqa: S608
    "WHERE envelope_digest {keys} "
    f"UNION ALL SELECT '{_REJECTED}', envelope_digest, envelope_digest FROM {rejections.name} "
    "WHERE envelope_digest {keys} "
    f"UNION ALL SELECT '{_BY_ID}', message_id, envelope_digest FROM {messages.name} "
    "WHERE message_id {keys}"
)


@dataclass
class _Seen:
    stored: set[str] = field(default_factory=set)  # digests
    rejected: set[str] = field(default_factory=set)  # digests
    by_id: dict[str, str] = field(default_factory=dict)  # message id -> digest stored


def _look_up(
    conn: sa.Connection,
    *,
    stored: Collection[str] = (),
    rejected: Collection[str] = (),
    by_id: Collection[str] = (),
) -> _Seen:
    """One query (one per ``keys.PER_QUERY`` of each kind) for what earlier batches left."""
    seen = _Seen()
    asked = [chunks(sorted(set(keys))) for keys in (stored, rejected, by_id)]
    for i in range(max(len(pieces) for pieces in asked)):
        lists = [pieces[i] if i < len(pieces) else () for pieces in asked]
        for kind, key, digest in _SEEN.rows(conn, *lists):
            if kind == _STORED:
                seen.stored.add(key)
            elif kind == _REJECTED:
                seen.rejected.add(key)
            else:
                seen.by_id[key] = digest
    return seen


_INSERT_MESSAGES = BulkInsert(messages)
_INSERT_ATTACHMENTS = BulkInsert(message_attachments)
_INSERT_INBOX = BulkInsert(inbox)
_INSERT_REJECTIONS = BulkInsert(rejections)


class SqlRoutingStore:
    """RoutingStore and ReplayGuard over SQLAlchemy."""

    def __init__(self, engine: sa.Engine, *, bus_code: str) -> None:
        self.engine = engine
        self.bus_code = bus_code
        # Per thread (each router batch is decided on one): the ids of the batch being decided
        # and the digests accepted under them (see ``recall``).
        self._recalled = threading.local()

    # --- questions asked while deciding ---------------------------------------------------

    @contextlib.contextmanager
    def recall(self, message_ids: Collection[str], digests: Collection[str]) -> Iterator[set[str]]:
        seen = _Seen()
        if message_ids or digests:
            with reading(self.engine) as conn:
                seen = _look_up(conn, stored=digests, rejected=digests, by_id=message_ids)
        self._recalled.view = (frozenset(message_ids), seen.by_id)
        try:
            yield seen.stored | seen.rejected
        finally:
            self._recalled.view = None

    def uploaded_blob(self, sha256: str, agency: str) -> Measured | None:
        with reading(self.engine) as conn:
            size = conn.execute(
                sa.select(blobs.c.size)
                .join(blob_uploads, blob_uploads.c.sha256 == blobs.c.sha256)
                .where(blobs.c.sha256 == sha256, blob_uploads.c.agency_code == agency)
            ).scalar()
        return None if size is None else Measured(size, sha256)

    def parties(self, message_id: str) -> Parties | None:
        with reading(self.engine) as conn:
            sender = conn.execute(
                sa.select(messages.c.sender).where(messages.c.message_id == message_id)
            ).scalar()
            if sender is None:
                return None
            recipients = conn.execute(
                sa.select(inbox.c.recipient).where(inbox.c.message_id == message_id)
            ).scalars()
            return Parties(sender, frozenset(recipients))

    def envelope_digest(self, message_id: Any) -> str | None:
        key = str(message_id)
        view: tuple[frozenset[str], dict[str, str]] | None = getattr(self._recalled, "view", None)
        if view is not None and key in view[0]:
            return view[1].get(key)
        with reading(self.engine) as conn:
            value: str | None = conn.execute(
                sa.select(messages.c.envelope_digest).where(
                    messages.c.message_id == str(message_id)
                )
            ).scalar()
        return value

    # --- recording ------------------------------------------------------------------------

    def commit(
        self, decisions: Sequence[Decision], before_commit: Callable[[], None] | None = None
    ) -> list[Outcome]:
        with self.engine.begin() as conn:
            outcomes = _Batch(conn, self.bus_code).record(decisions)
            if before_commit is not None:
                before_commit()
            return outcomes


class _Batch:
    def __init__(self, conn: sa.Connection, bus_code: str) -> None:
        self.conn = conn
        self.bus_code = bus_code
        self.events: list[TraceEvent] = []
        self.message_rows: list[dict[str, Any]] = []
        self.inbox_rows: list[dict[str, Any]] = []
        self.attachment_rows: list[dict[str, Any]] = []
        self.rejection_rows: list[dict[str, Any]] = []

    def record(self, decisions: Sequence[Decision]) -> list[Outcome]:
        accepted_ids = [
            str(d.accepted.header.message_id) for d in decisions if isinstance(d, Accept)
        ]
        seen = _look_up(
            self.conn,
            rejected=[d.digest for d in decisions if isinstance(d, Reject | Accept)],
            by_id=accepted_ids,
        )
        stored, rejected = seen.by_id, seen.rejected
        active = self._active_agencies(
            {d.sender for d in decisions if isinstance(d, Reject) and d.sender}
        )
        outcomes: list[Outcome] = []
        for decision in decisions:
            if isinstance(decision, Accept):
                message_id = str(decision.accepted.header.message_id)
                earlier = stored.get(message_id)
                if earlier is None:
                    stored[message_id] = decision.digest
                    self._store(decision)
                    outcomes.append(Outcome.STORED)
                elif earlier == decision.digest:
                    self._duplicate(decision.digest, message_id, decision.received_at)
                    outcomes.append(Outcome.DUPLICATE)
                else:
                    # Another router stored this id first, with other bytes: a replay.
                    # (Its redelivery, once this rejection is recorded, is a duplicate.)
                    header = decision.accepted.header
                    replay = Reject(
                        Reason.REPLAY,
                        f"message_id {message_id} was accepted before with other bytes",
                        decision.digest,
                        decision.received_at,
                        message_id,
                        header.sender,
                    )
                    outcomes.append(self._reject(replay, rejected, active))
            elif isinstance(decision, Reject):
                outcomes.append(self._reject(decision, rejected, active))
            elif isinstance(decision, Duplicate):
                self._duplicate(decision.digest, decision.message_id, decision.received_at)
                outcomes.append(Outcome.DUPLICATE)
            elif isinstance(decision, Unparseable):
                subject = subject_for(None, decision.digest)
                self.events += [
                    TraceEvent(subject, Event.SUBMITTED, decision.received_at),
                    TraceEvent(
                        subject,
                        Event.REJECTED,
                        decision.received_at,
                        reason=Reason.MALFORMED_SUBMISSION.value,
                        detail=decision.detail,
                    ),
                ]
                outcomes.append(Outcome.DEAD_LETTER)
            elif isinstance(decision, Failed):
                outcomes.append(Outcome.RETRY)
        self._flush()
        return outcomes

    def _active_agencies(self, codes: set[str]) -> set[str]:
        if not codes:
            return set()
        return set(
            self.conn.execute(
                sa.select(agencies.c.code).where(
                    agencies.c.code.in_(sorted(codes)), agencies.c.active
                )
            ).scalars()
        )

    def _store(self, decision: Accept) -> None:
        accepted: Accepted = decision.accepted
        header = accepted.header
        message_id = str(header.message_id)
        now = decision.received_at
        sender = header.sender
        self.message_rows.append(
            {
                "message_id": message_id,
                "kind": header.kind,
                "sender": sender,
                "envelope_digest": decision.digest,
                "header": decision.header,
                "signature": decision.signature,
                "signers": [accepted.seal.as_dict()] + [s.as_dict() for s in accepted.personal],
                "subject": header.document.subject if header.document else None,
                "for_message_id": str(header.status.for_message_id) if header.status else None,
                "status_code": header.status.code.value if header.status else None,
                "created_at": header.created_at,
                "trusted_time": accepted.trusted_time,
                "time_source": accepted.time_source,
                "received_at": now,
            }
        )
        for ref in header.attachments:
            self.attachment_rows.append(
                {
                    "message_id": message_id,
                    "name": ref.name,
                    "sha256": ref.sha256,
                    "size": ref.size,
                    "media_type": ref.media_type,
                }
            )
        seal = accepted.seal
        self.events += [
            TraceEvent(message_id, Event.SUBMITTED, now, sender=sender, actor=sender),
            TraceEvent(
                message_id,
                Event.VERIFIED,
                now,
                sender=sender,
                detail=f"seal {seal.name} sha256:{seal.fingerprint}; "
                f"{len(accepted.personal)} personal signer(s); "
                f"trusted time {accepted.trusted_time.isoformat()} ({accepted.time_source})",
            ),
            TraceEvent(message_id, Event.STORED, now, sender=sender),
        ]
        for recipient in header.recipients:
            self.inbox_rows.append(
                {"message_id": message_id, "recipient": recipient, "delivered_at": now}
            )
            self.events.append(
                TraceEvent(message_id, Event.DELIVERED, now, sender=sender, recipient=recipient)
            )
        if header.status is not None:
            about = str(header.status.for_message_id)
            self.events.append(
                TraceEvent(
                    about,
                    Event.STATUS,
                    now,
                    sender=header.recipients[0],
                    actor=sender,
                    detail=f"{header.status.code.value} {header.status.code.name.lower()} "
                    f"(status message {message_id})",
                )
            )

    def _reject(self, decision: Reject, rejected: set[str], active: set[str]) -> Outcome:
        if decision.digest in rejected:
            self._duplicate(decision.digest, decision.message_id, decision.received_at)
            return Outcome.DUPLICATE
        rejected.add(decision.digest)
        self.rejection_rows.append(
            {
                "envelope_digest": decision.digest,
                "message_id": decision.message_id,
                "sender": decision.sender,
                "reason": decision.reason.value,
                "detail": decision.detail,
                "rejected_at": decision.received_at,
            }
        )
        subject = subject_for(decision.message_id, decision.digest)
        self.events += [
            TraceEvent(subject, Event.SUBMITTED, decision.received_at, sender=decision.sender),
            TraceEvent(
                subject,
                Event.REJECTED,
                decision.received_at,
                sender=decision.sender,
                reason=decision.reason.value,
                detail=decision.detail,
            ),
        ]
        if decision.notice is not None and decision.sender in active:
            self._notice(decision.notice, subject, decision.received_at)
        return Outcome.REJECTED

    def _notice(self, notice: Notice, about: str, now: dt.datetime) -> None:
        self.message_rows.append(
            {
                "message_id": notice.message_id,
                "kind": "status",
                "sender": self.bus_code,
                "envelope_digest": envelope_digest(notice.header, notice.signature),
                "header": notice.header,
                "signature": notice.signature,
                "signers": [],
                "subject": None,
                "for_message_id": about if not about.startswith("digest:") else None,
                "status_code": "02",
                "created_at": now,
                "trusted_time": now,
                "time_source": "clock",
                "received_at": now,
            }
        )
        self.inbox_rows.append(
            {"message_id": notice.message_id, "recipient": notice.recipient, "delivered_at": now}
        )
        self.events += [
            TraceEvent(
                about,
                Event.NOTICE,
                now,
                sender=notice.recipient,
                recipient=notice.recipient,
                detail=f"rejection notice {notice.message_id}",
            ),
            TraceEvent(notice.message_id, Event.STORED, now, sender=self.bus_code),
            TraceEvent(
                notice.message_id,
                Event.DELIVERED,
                now,
                sender=self.bus_code,
                recipient=notice.recipient,
            ),
        ]

    def _duplicate(self, digest: str, message_id: str | None, now: dt.datetime) -> None:
        self.events.append(
            TraceEvent(
                subject_for(message_id, digest),
                Event.DUPLICATE,
                now,
                detail=f"same bytes again (envelope {digest[:16]}...); nothing delivered twice",
            )
        )

    def _flush(self) -> None:
        _INSERT_MESSAGES(self.conn, self.message_rows)
        _INSERT_ATTACHMENTS(self.conn, self.attachment_rows)
        _INSERT_INBOX(self.conn, self.inbox_rows)
        _INSERT_REJECTIONS(self.conn, self.rejection_rows)
        trace.append(self.conn, self.events)


def record_dead_letter(
    engine: sa.Engine,
    body: bytes,
    transport_id: str | None,
    reason: str,
    detail: str,
    now: dt.datetime,
) -> None:
    """Keep a dead-lettered body for administrators and trace it under its message or digest."""
    message_id = sender = None
    digest = hashlib.sha256(body).hexdigest()
    # The transport id and the x-death header are whatever a publisher put there.
    transport_id = printable(transport_id)[:128] if transport_id is not None else None
    reason, detail = printable(reason)[:64], printable(detail)
    try:
        sub = submission.decode(
            body,
            max_header=1 << 20,
            max_signature=1 << 20,
            max_attachments=1 << 10,
            max_inline_bytes=1 << 30,
        )
        digest = envelope_digest(sub.header, sub.signature)
        message_id, sender = loose_identity(sub.header)
    except submission.SubmissionError:
        pass
    with engine.begin() as conn:
        conn.execute(
            dead_letters.insert().values(
                envelope_digest=digest,
                transport_id=transport_id,
                reason=reason,
                detail=detail,
                body=body,
                dead_at=now,
            )
        )
        trace.append(
            conn,
            [
                TraceEvent(
                    subject_for(message_id, digest),
                    Event.DEAD_LETTERED,
                    now,
                    sender=sender,
                    reason=reason,
                    detail=detail,
                )
            ],
        )
