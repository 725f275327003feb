"""What agencies read and do through the API: inboxes, sent messages, blobs, nonces."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from adapters.db import trace
from adapters.db.tables import (
    auth_nonces,
    blob_uploads,
    blobs,
    inbox,
    message_attachments,
    messages,
    rejections,
)
from exchange.tracing import Event, TraceEvent

T = TypeVar("T")
MAX_ROW_ID = 2**63 - 1  # the largest BIGINT (row ids of inbox and trace_events)


def retrying(engine: sa.Engine, work: Callable[[sa.Connection], T], attempts: int = 5) -> T:
    """Run ``work`` in a transaction; retry when a concurrent trace append wins the race."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                return work(conn)
        except sa.exc.IntegrityError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Cursor:
    acknowledged: bool
    after_id: int

    def encode(self) -> str:
        raw = f"{'a' if self.acknowledged else 'u'}:{self.after_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            flag, number = raw.split(":", 1)
            if flag not in ("a", "u"):
                raise ValueError(flag)
            # Digits only (int() would take "+1", " 1", "1_0"), and an id a BIGINT can hold:
            # a larger number reaches the database as an error (SQLite: OverflowError).
            if not (number.isascii() and number.isdigit()) or int(number) > MAX_ROW_ID:
                raise ValueError(number)
            return cls(flag == "a", int(number))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor this API issued") from None


_ENTRY = (
    inbox.c.id,
    inbox.c.message_id,
    messages.c.kind,
    messages.c.sender,
    messages.c.subject,
    messages.c.status_code,
    messages.c.for_message_id,
    inbox.c.delivered_at,
    inbox.c.fetched_at,
    inbox.c.acknowledged_at,
)


def inbox_page(
    conn: sa.Connection, recipient: str, cursor: Cursor | None, limit: int
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Unacknowledged entries first (oldest first), then acknowledged ones."""
    rows: list[dict[str, Any]] = []
    position = cursor or Cursor(False, 0)
    phases = [False, True] if not position.acknowledged else [True]
    for acknowledged in phases:
        after = position.after_id if acknowledged == position.acknowledged else 0
        query = (
            sa.select(*_ENTRY)
            .join(messages, messages.c.message_id == inbox.c.message_id)
            .where(
                inbox.c.recipient == recipient,
                inbox.c.acknowledged_at.is_not(None)
                if acknowledged
                else inbox.c.acknowledged_at.is_(None),
                inbox.c.id > after,
            )
            .order_by(inbox.c.id)
            .limit(limit + 1 - len(rows))
        )
        fetched = [dict(r._mapping) for r in conn.execute(query)]
        rows += fetched
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            return rows, Cursor(last["acknowledged_at"] is not None, last["id"])
    return rows, None


def inbox_message(conn: sa.Connection, recipient: str, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(
            *_ENTRY,
            messages.c.header,
            messages.c.signature,
            messages.c.signers,
            messages.c.trusted_time,
            messages.c.time_source,
        )
        .join(messages, messages.c.message_id == inbox.c.message_id)
        .where(inbox.c.recipient == recipient, inbox.c.message_id == message_id)
    ).first()
    if row is None:
        return None
    result = dict(row._mapping)
    result["attachments"] = [
        dict(a._mapping)
        for a in conn.execute(
            sa.select(
                message_attachments.c.name,
                message_attachments.c.media_type,
                message_attachments.c.size,
                message_attachments.c.sha256,
            )
            .where(message_attachments.c.message_id == message_id)
            .order_by(message_attachments.c.name)
        )
    ]
    return result


def mark_fetched(
    conn: sa.Connection, recipient: str, message_id: str, sender: str, now: dt.datetime
) -> None:
    updated = conn.execute(
        inbox.update()
        .where(
            inbox.c.recipient == recipient,
            inbox.c.message_id == message_id,
            inbox.c.fetched_at.is_(None),
        )
        .values(fetched_at=now)
    )
    if updated.rowcount:
        trace.append(
            conn,
            [
                TraceEvent(
                    message_id,
                    Event.FETCHED,
                    now,
                    sender=sender,
                    recipient=recipient,
                    actor=recipient,
                )
            ],
        )


def acknowledge(
    conn: sa.Connection, recipient: str, message_id: str, now: dt.datetime
) -> dt.datetime | None:
    """Acknowledge an inbox entry (idempotent); None when it is not in this inbox."""
    row = conn.execute(
        sa.select(inbox.c.acknowledged_at, messages.c.sender)
        .join(messages, messages.c.message_id == inbox.c.message_id)
        .where(inbox.c.recipient == recipient, inbox.c.message_id == message_id)
    ).first()
    if row is None:
        return None
    if row.acknowledged_at is not None:
        acknowledged: dt.datetime = row.acknowledged_at
        return acknowledged
    conn.execute(
        inbox.update()
        .where(inbox.c.recipient == recipient, inbox.c.message_id == message_id)
        .values(acknowledged_at=now, fetched_at=sa.func.coalesce(inbox.c.fetched_at, now))
    )
    trace.append(
        conn,
        [
            TraceEvent(
                message_id,
                Event.ACKNOWLEDGED,
                now,
                sender=row.sender,
                recipient=recipient,
                actor=recipient,
            )
        ],
    )
    return now


def message_state(conn: sa.Connection, sender: str, message_id: str) -> dict[str, Any] | None:
    """What the sender may know of a message it sent: per-recipient delivery, or its rejection."""
    row = conn.execute(
        sa.select(messages.c.kind, messages.c.received_at).where(
            messages.c.message_id == message_id, messages.c.sender == sender
        )
    ).first()
    if row is None:
        rejected = conn.execute(
            sa.select(rejections.c.reason, rejections.c.detail, rejections.c.rejected_at)
            .where(rejections.c.message_id == message_id, rejections.c.sender == sender)
            .order_by(rejections.c.rejected_at.desc())
        ).first()
        if rejected is None:
            return None
        return {
            "message_id": message_id,
            "state": "rejected",
            "received_at": rejected.rejected_at,
            "reason": rejected.reason,
            "detail": rejected.detail,
        }
    recipients = []
    for r in conn.execute(
        sa.select(inbox).where(inbox.c.message_id == message_id).order_by(inbox.c.recipient)
    ):
        state = "acknowledged" if r.acknowledged_at else "fetched" if r.fetched_at else "delivered"
        recipients.append(
            {
                "recipient": r.recipient,
                "state": state,
                "delivered_at": r.delivered_at,
                "fetched_at": r.fetched_at,
                "acknowledged_at": r.acknowledged_at,
            }
        )
    # Status updates its recipients sent back to the caller. A rejection notice about another
    # envelope that reused this id (a replay) also names it, but is neither from a recipient
    # nor, when another agency replayed it, addressed to the caller.
    parties = [r["recipient"] for r in recipients]
    statuses = [
        {
            "message_id": s.message_id,
            "sender": s.sender,
            "code": s.status_code,
            "received_at": s.received_at,
        }
        for s in conn.execute(
            sa.select(
                messages.c.message_id,
                messages.c.sender,
                messages.c.status_code,
                messages.c.received_at,
            )
            .join(inbox, inbox.c.message_id == messages.c.message_id)
            .where(
                messages.c.for_message_id == message_id,
                messages.c.kind == "status",
                messages.c.sender.in_(parties),
                inbox.c.recipient == sender,
            )
            .order_by(messages.c.received_at)
        )
    ]
    return {
        "message_id": message_id,
        "state": "stored",
        "kind": row.kind,
        "received_at": row.received_at,
        "recipients": recipients,
        "statuses": statuses,
    }


def blob_visible_to(conn: sa.Connection, sha256: str, agency: str) -> bool:
    """The uploader, or a sender or recipient of a message that references the blob."""
    uploaded = conn.execute(
        sa.select(blob_uploads.c.sha256).where(
            blob_uploads.c.sha256 == sha256, blob_uploads.c.agency_code == agency
        )
    ).first()
    if uploaded is not None:
        return True
    referencing = sa.select(message_attachments.c.message_id).where(
        message_attachments.c.sha256 == sha256
    )
    as_sender = conn.execute(
        sa.select(messages.c.message_id).where(
            messages.c.message_id.in_(referencing), messages.c.sender == agency
        )
    ).first()
    if as_sender is not None:
        return True
    as_recipient = conn.execute(
        sa.select(inbox.c.id).where(
            inbox.c.message_id.in_(referencing), inbox.c.recipient == agency
        )
    ).first()
    return as_recipient is not None


def record_blob(conn: sa.Connection, sha256: str, size: int, agency: str, now: dt.datetime) -> None:
    if conn.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256 == sha256)).first() is None:
        conn.execute(blobs.insert().values(sha256=sha256, size=size, stored_at=now))
    if (
        conn.execute(
            sa.select(blob_uploads.c.sha256).where(
                blob_uploads.c.sha256 == sha256, blob_uploads.c.agency_code == agency
            )
        ).first()
        is None
    ):
        conn.execute(
            blob_uploads.insert().values(sha256=sha256, agency_code=agency, uploaded_at=now)
        )


def forget_expired_nonces(engine: sa.Engine, now: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(auth_nonces.delete().where(auth_nonces.c.expires_at < now))


def use_nonce(engine: sa.Engine, key_id: str, nonce: str, expires_at: dt.datetime) -> bool:
    """Record a request nonce; False when it was used before (a replayed request)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                auth_nonces.insert().values(key_id=key_id, nonce=nonce, expires_at=expires_at)
            )
    except sa.exc.IntegrityError:
        return False
    return True
