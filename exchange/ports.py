"""The ports of the core: what verification and routing need from the outside world.

Each is a Protocol; adapters implement them (SQL, files, HTTP), and tests use the in-memory
versions in ``exchange.memory``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from schemas.header import AttachmentRef


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The machine's clock (UTC)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class FixedClock:
    """A clock stopped at one instant (``lienthong verify --at``, tests)."""

    instant: dt.datetime

    def now(self) -> dt.datetime:
        return self.instant


@dataclass(frozen=True, slots=True)
class AgencyRecord:
    code: str
    name: str
    active: bool = True
    # SHA-256 fingerprints of the seal certificates registered (pinned) for this agency.
    seal_fingerprints: frozenset[str] = field(default_factory=frozenset)


class Registry(Protocol):
    """The directory of agencies and their registered seal certificates."""

    def agency(self, code: str) -> AgencyRecord | None: ...


@dataclass(frozen=True, slots=True)
class Measured:
    size: int
    sha256: str  # lowercase hex


class AttachmentSource(Protocol):
    """Where the attachments of one envelope can be measured (inline bytes, a folder, blobs)."""

    def measure(self, ref: AttachmentRef) -> Measured | None:
        """Size and SHA-256 of the content supplied for ``ref``; None when none was supplied."""
        ...


class ReplayGuard(Protocol):
    """What the bus has already accepted, by message id."""

    def envelope_digest(self, message_id: uuid.UUID) -> str | None:
        """Digest of the envelope accepted under ``message_id``, or None if none was."""
        ...
