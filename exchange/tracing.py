"""The trace log's events and its hash chain.

Events are grouped by *subject*: a message id, or ``digest:<hex>`` for a submission that never
yielded one. Each subject's events form a chain: ``hash = SHA-256(prev_hash || canonical
event)``, starting from 64 zeros, so that altering, removing or reordering an event breaks every
later hash of that subject. ``verify_chain`` recomputes a subject's chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring  # the C encoder json.dumps uses

GENESIS = "0" * 64


class Event(StrEnum):
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REJECTED = "rejected"
    STORED = "stored"
    DELIVERED = "delivered"
    FETCHED = "fetched"
    ACKNOWLEDGED = "acknowledged"
    STATUS = "status"  # a status update about this message arrived
    NOTICE = "notice"  # the bus sent the sender a rejection notice
    DUPLICATE = "duplicate"  # the same bytes again: absorbed, nothing delivered twice
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    subject: str
    event: Event
    at: dt.datetime
    sender: str | None = None
    recipient: str | None = None
    actor: str | None = None
    reason: str | None = None
    detail: str | None = None

    def canonical(self, seq: int) -> bytes:
        """The event as hashed: JSON with sorted keys, no spaces, text unescaped (UTF-8).

        Written out by hand for speed (every stored event is hashed): byte for byte what
        ``json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` gives
        for the same members, as a test holds it to.
        """
        at = _instant(self.at)
        return (
            f'{{"actor":{_json(self.actor)},"at":{_json(at)},"detail":{_json(self.detail)},'
            f'"event":{_json(self.event.value)},"reason":{_json(self.reason)},'
            f'"recipient":{_json(self.recipient)},"sender":{_json(self.sender)},'
            f'"seq":{int(seq)},"subject":{_json(self.subject)}}}'
        ).encode()


# The last time written out, and its text: a batch's events share one time, one object.
_last_instant: tuple[dt.datetime, str] = (dt.datetime.min.replace(tzinfo=dt.UTC), "")


def _instant(at: dt.datetime) -> str:
    """``at`` in UTC with microseconds, e.g. ``2026-11-28T08:00:00.000000+00:00``."""
    global _last_instant  # one pair, swapped whole: safe across threads
    last = _last_instant
    if at is last[0]:  # held by the pair, so no other object can have its identity
        return last[1]
    text = at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    _last_instant = (at, text)
    return text


def _json(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


def chain_hash(prev_hash: str, event: TraceEvent, seq: int) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + event.canonical(seq)).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: TraceEvent
    seq: int
    prev_hash: str
    hash: str


def verify_chain(events: Sequence[StoredEvent]) -> int | None:
    """Index of the first event that breaks its subject's chain, or None when all hold."""
    prev = GENESIS
    for index, stored in enumerate(events):
        if (
            stored.seq != index + 1
            or stored.prev_hash != prev
            or chain_hash(prev, stored.event, stored.seq) != stored.hash
        ):
            return index
        prev = stored.hash
    return None


def subject_for(message_id: str | None, digest: str) -> str:
    return message_id if message_id is not None else f"digest:{digest}"
