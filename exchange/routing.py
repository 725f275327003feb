"""Routing: what the router decides for each submission, and what it records.

The router takes a batch of submissions (one prefetch window), decides each one — duplicate of
bytes already processed, accepted, or rejected with one reason — and hands all decisions to the
store to record in a single transaction. Only after that commit does the transport acknowledge
them. A decision is pure given the verifier and the store's answers; the store's commit is
where races between routers are settled (a message id is inserted once; the same id with other
bytes becomes a replay rejection).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from exchange import digests, submission
from exchange.envelope import envelope_digest
from exchange.policy import Limits
from exchange.ports import Clock, Measured
from exchange.reasons import Reason
from exchange.verification import Accepted, Rejection, Verifier
from schemas.agency import is_agency_code
from schemas.header import AttachmentRef


@dataclass(frozen=True, slots=True)
class Incoming:
    body: bytes
    transport_id: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A bus-signed status envelope telling a sender why its envelope was rejected."""

    header: bytes
    signature: bytes
    message_id: str
    recipient: str


@dataclass(frozen=True, slots=True)
class Accept:
    accepted: Accepted
    header: bytes
    signature: bytes
    digest: str
    received_at: dt.datetime
    inline: Mapping[str, bytes | memoryview] = field(default_factory=dict)
    # The SHA-256 of each inline attachment, as the router computed it while verifying.
    inline_sha256: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reject:
    reason: Reason
    detail: str
    digest: str
    received_at: dt.datetime
    message_id: str | None = None
    sender: str | None = None
    notice: Notice | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    digest: str
    received_at: dt.datetime
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Not even a submission: traced, then dead-lettered by the transport."""

    detail: str
    digest: str
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Failed:
    """Deciding raised an unexpected error: returned to the queue, dead-lettered at its limit."""

    detail: str
    digest: str


Decision = Accept | Reject | Duplicate | Unparseable | Failed


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    DEAD_LETTER = "dead_letter"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Parties:
    sender: str
    recipients: frozenset[str]


class RoutingStore(Protocol):
    def recall(
        self, message_ids: Collection[str], digests: Collection[str]
    ) -> AbstractContextManager[set[str]]:
        """While open, know what was accepted under these message ids; yields which of these
        envelope digests were already accepted or rejected. One lookup for both.

        The verifier asks, for each envelope, what was accepted under its message id (its
        replay check); when the store is also the verifier's ReplayGuard it answers those from
        this lookup rather than with one query each (and with a query of its own for an id it
        was not given). The answers are as of the lookup, as a single query's would be: what
        two envelopes of one batch, or two routers, do at once is settled by ``commit``.
        """
        ...

    def uploaded_blob(self, sha256: str, agency: str) -> Measured | None:
        """A blob ``agency`` uploaded with this digest, if any."""
        ...

    def parties(self, message_id: str) -> Parties | None:
        """Sender and recipients of a stored message."""
        ...

    def commit(
        self, decisions: Sequence[Decision], before_commit: Callable[[], None] | None = None
    ) -> list[Outcome]:
        """Record every decision in one transaction; return what each became.

        ``before_commit`` runs inside the transaction once its rows are written, just before
        they are committed; if it raises, nothing is committed.
        """
        ...


class BlobStore(Protocol):
    def put(self, content: bytes | memoryview, sha256: str | None = None) -> str:
        """Store content under its SHA-256 (idempotent); return the hex digest.

        ``sha256``, when given, is that digest as the caller computed it from these very bytes;
        the store does not hash them again.
        """
        ...


class NoticeSigner(Protocol):
    def notice(
        self, rejected_message_id: str, sender: str, reason: Reason, detail: str
    ) -> Notice: ...


class _Attachments:
    """Inline attachments of the submission, else blobs the sender uploaded before."""

    def __init__(
        self, inline: Mapping[str, bytes | memoryview], store: RoutingStore, header: bytes
    ) -> None:
        self.inline = inline
        self.store = store
        self.header = header
        self.sha256: dict[str, str] = {}  # of the inline attachments measured

    def measure(self, ref: AttachmentRef) -> Measured | None:
        content = self.inline.get(ref.name)
        if content is not None:
            digest = self.sha256[ref.name] = digests.digest("sha256", content).hexdigest()
            return Measured(len(content), digest)
        # Asked only once the header has verified, so its sender is the signing agency.
        _, sender = loose_identity(self.header)
        return None if sender is None else self.store.uploaded_blob(ref.sha256, sender)


# Attachment files written at once while a batch's rows are inserted.
BLOB_WRITERS = 4


class Router:
    def __init__(
        self,
        verifier: Verifier,
        store: RoutingStore,
        blobs: BlobStore,
        clock: Clock,
        *,
        max_inline_bytes: int,
        notices: NoticeSigner | None = None,
        blob_writers: int = BLOB_WRITERS,
    ) -> None:
        self.verifier = verifier
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.max_inline_bytes = max_inline_bytes
        self.notices = notices
        # Threads start on the first attachment; a write is mostly a wait on the disk (fsync).
        self._writers = concurrent.futures.ThreadPoolExecutor(
            blob_writers, thread_name_prefix="lienthong-blobs"
        )

    @property
    def limits(self) -> Limits:
        return self.verifier.policy.limits

    def route(self, batch: Sequence[Incoming]) -> list[Outcome]:
        """Decide and record a batch; the caller acknowledges only after this returns."""
        return self.record(self.decide(batch))

    def record(self, decisions: Sequence[Decision]) -> list[Outcome]:
        """Commit every decision; the accepted envelopes' inline attachments are written to
        the blob store meanwhile, and are on disk before the commit.

        ``decide`` and ``record`` may run for different batches at once (a router decides the
        next batch while the last one commits): what a decision assumed about the store is
        checked again inside the commit, as it is between routers.
        """
        writes = [
            self._writers.submit(self.blobs.put, content, decision.inline_sha256.get(name))
            for decision in decisions
            if isinstance(decision, Accept)
            for name, content in decision.inline.items()
        ]

        def written() -> None:
            # Every file is on disk before the commit that references it: content-addressed,
            # so a crash in between leaves at worst an unreferenced file, never a dangling
            # reference. A write that failed fails the commit (and the batch is routed again).
            for write in writes:
                write.result()

        # The files are written while the rows are: the disk's waits overlap the inserts.
        return self.store.commit(decisions, before_commit=written)

    def decide(self, batch: Sequence[Incoming]) -> list[Decision]:
        now = self.clock.now()
        parsed: list[tuple[submission.Submission, str] | Unparseable] = []
        for item in batch:
            try:
                # The framing only has to be sound; the verifier judges the sizes inside it
                # (header_too_large...), so an oversized envelope gets a verdict, a trace and a
                # notice rather than the dead-letter queue. The broker bounds the whole body.
                sub = submission.decode(
                    item.body,
                    max_header=FRAME_LIMIT,
                    max_signature=FRAME_LIMIT,
                    max_attachments=self.limits.max_attachments,
                    max_inline_bytes=self.max_inline_bytes,
                )
            except submission.SubmissionError as exc:
                parsed.append(
                    Unparseable(printable(str(exc)), hashlib.sha256(item.body).hexdigest(), now)
                )
                continue
            parsed.append((sub, envelope_digest(sub.header, sub.signature)))
        submissions = [p for p in parsed if isinstance(p, tuple)]
        ids = {i for sub, _ in submissions if (i := message_id_hint(sub.header)) is not None}
        seen: set[str] = set()
        decisions: list[Decision] = []
        with self.store.recall(ids, [digest for _, digest in submissions]) as done:
            for p in parsed:
                if isinstance(p, Unparseable):
                    decisions.append(p)
                    continue
                sub, digest = p
                if digest in done or digest in seen:
                    decisions.append(Duplicate(digest, now, loose_identity(sub.header)[0]))
                    continue
                seen.add(digest)
                try:
                    decisions.append(self._verify(sub, digest, now))
                except Exception as exc:
                    log.exception("deciding envelope %s failed", digest)
                    decisions.append(Failed(f"{type(exc).__name__}: {exc}", digest))
        return decisions

    def _verify(self, sub: submission.Submission, digest: str, now: dt.datetime) -> Decision:
        source = _Attachments(sub.attachments, self.store, sub.header)
        verdict = self.verifier.verify(sub.header, sub.signature, source, digest=digest)
        if isinstance(verdict, Accepted):
            verdict = self._check_routing(verdict, sub)
        if isinstance(verdict, Accepted):
            return Accept(
                verdict, sub.header, sub.signature, digest, now, sub.attachments, source.sha256
            )
        message_id, sender = loose_identity(sub.header)
        # A detail may quote the submission (an unknown field's name): keep it storable.
        detail = printable(verdict.detail)
        notice = None
        if self.notices is not None and message_id is not None and sender is not None:
            notice = self.notices.notice(message_id, sender, verdict.reason, detail)
        return Reject(verdict.reason, detail, digest, now, message_id, sender, notice)

    def _check_routing(
        self, accepted: Accepted, sub: submission.Submission
    ) -> Accepted | Rejection:
        header = accepted.header
        unused = set(sub.attachments) - {a.name for a in header.attachments}
        if unused:
            return Rejection(
                Reason.ATTACHMENT_UNDECLARED,
                f"inline attachments not in the manifest: {', '.join(sorted(unused))}",
            )
        if header.kind != "status" or header.status is None:
            return accepted
        # A status update answers a message its sender received, and goes back to its sender.
        parties = self.store.parties(str(header.status.for_message_id))
        if parties is None or header.sender not in parties.recipients:
            return Rejection(
                Reason.STATUS_UNRELATED,
                f"{header.sender} received no message {header.status.for_message_id}",
            )
        if header.recipients != [parties.sender]:
            return Rejection(
                Reason.STATUS_UNRELATED,
                f"a status about {header.status.for_message_id} goes to {parties.sender} only",
            )
        return accepted


log = logging.getLogger(__name__)
FRAME_LIMIT = 64 * 1024 * 1024  # any single part of a submission body
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(text: str) -> str:
    """Text with control characters and lone surrogates escaped: what every store can hold
    (PostgreSQL refuses NUL in text) and a notice may quote."""
    return text.translate(_CONTROLS).encode("utf-8", "backslashreplace").decode("utf-8")


_MESSAGE_ID = re.compile(rb'"message_id"\s*:\s*"(' + _UUID.pattern.encode() + rb')"')


def message_id_hint(header: bytes) -> str | None:
    """The message id a header appears to carry, found without parsing it: what the store
    looks up ahead for a batch. Only a hint (the verifier reads the id from the parsed header,
    and asks the store again for one it was not told of)."""
    found = _MESSAGE_ID.search(header)
    return found.group(1).decode("ascii") if found else None


def loose_identity(header: bytes) -> tuple[str | None, str | None]:
    """message_id and sender of a header that may be invalid in other ways (for traces)."""
    try:
        parsed = json.loads(header)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    message_id, sender = parsed.get("message_id"), parsed.get("sender")
    return (
        message_id if isinstance(message_id, str) and _UUID.fullmatch(message_id) else None,
        sender if isinstance(sender, str) and is_agency_code(sender) else None,
    )
