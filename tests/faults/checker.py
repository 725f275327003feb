"""The fault suite's checker, in the model of the rabbitmq/jepsen tests.

Publishers keep a ``History``: every message they *sent* (attempted to publish), with its
recipients, and which of those the broker (or the API) confirmed. Afterwards the database is read
into an ``Observation``: inbox rows per (message, recipient), ``stored`` and ``duplicate`` trace
events, dead letters and rejections. ``check`` classifies every message:

- **ok**: every recipient holds it exactly once, and the trace has exactly one ``stored``;
- **lost**: confirmed (or expected as a dead letter), yet not delivered to every recipient;
- **duplicated**: a recipient holds it more than once, or the trace stores it more than once;
- **unexpected**: delivered, stored or dead-lettered, but never sent (or a poison message
  delivered);
- **untraced**: delivered, but the trace does not account for it (no ``stored`` event, or an
  inbox row without one);
- **dead_lettered**: a poison message the scenario expected in the dead-letter store: there,
  with its ``dead_lettered`` trace event, and delivered to nobody;
- **unconfirmed_missing**: sent, never confirmed, not delivered: allowed (the publisher was told
  it failed, or gave up), reported apart.

``recovered`` counts the messages delivered although their publisher never saw a confirm (allowed:
the broker took them and the confirm was lost), and ``duplicates_absorbed`` the copies the
router recognised (``duplicate`` trace events): proof that redeliveries happened and were
absorbed rather than delivered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from adapters.db.tables import dead_letters, inbox, rejections, trace_events


@dataclass
class History:
    """What the publishers saw. ``recipients`` has one entry per message sent."""

    recipients: dict[str, frozenset[str]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    expected_dead: set[str] = field(default_factory=set)

    def sent(self, message_id: str, recipients: Iterable[str]) -> None:
        self.recipients[message_id] = frozenset(recipients)

    def confirm(self, message_id: str) -> None:
        if message_id not in self.recipients:
            raise ValueError(f"{message_id} was confirmed but never sent")
        self.confirmed.add(message_id)


@dataclass(frozen=True)
class Observation:
    """What the bus's database holds at the end of a scenario."""

    inbox: Counter[tuple[str, str]]  # (message_id, recipient) -> rows
    stored: Counter[str]  # message_id -> "stored" trace events
    delivered_events: Counter[tuple[str, str]]  # (message_id, recipient) -> "delivered" events
    duplicate_events: int
    dead_letters: Counter[str]  # message_id -> dead_letters rows
    dead_lettered_events: Counter[str]  # message_id -> "dead_lettered" trace events
    rejected: Mapping[str, str]  # message_id -> reason


@dataclass
class Verdict:
    ok: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    duplicated: set[str] = field(default_factory=set)
    unexpected: set[str] = field(default_factory=set)
    untraced: set[str] = field(default_factory=set)
    dead_lettered: set[str] = field(default_factory=set)
    unconfirmed_missing: set[str] = field(default_factory=set)
    recovered: set[str] = field(default_factory=set)
    duplicates_absorbed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.untraced)

    def counts(self) -> dict[str, int]:
        return {
            "ok": len(self.ok),
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected": len(self.unexpected),
            "untraced": len(self.untraced),
            "dead_lettered": len(self.dead_lettered),
            "unconfirmed_missing": len(self.unconfirmed_missing),
            "recovered": len(self.recovered),
            "duplicates_absorbed": self.duplicates_absorbed,
        }

    def explain(self, limit: int = 5) -> str:
        lines = [f"{name}: {count}" for name, count in self.counts().items() if count]
        for name in ("lost", "duplicated", "unexpected", "untraced"):
            ids = sorted(getattr(self, name))[:limit]
            if ids:
                lines.append(f"{name} e.g. {', '.join(ids)}")
        return "; ".join(lines + self.notes)


def check(history: History, seen: Observation) -> Verdict:
    verdict = Verdict(duplicates_absorbed=seen.duplicate_events)
    delivered_ids = {message_id for message_id, _ in seen.inbox}
    touched = delivered_ids | set(seen.stored) | set(seen.dead_letters)
    for message_id in sorted(set(history.recipients) | touched):
        recipients = history.recipients.get(message_id)
        if recipients is None:
            verdict.unexpected.add(message_id)
            continue
        copies = [seen.inbox[(message_id, r)] for r in sorted(recipients)]
        stored = seen.stored[message_id]
        confirmed = message_id in history.confirmed
        if message_id in history.expected_dead:
            if any(copies) or stored:
                verdict.unexpected.add(message_id)
                verdict.notes.append(f"poison message {message_id} was delivered")
            elif seen.dead_letters[message_id] and seen.dead_lettered_events[message_id]:
                verdict.dead_lettered.add(message_id)
            elif confirmed:
                verdict.lost.add(message_id)
            else:
                verdict.unconfirmed_missing.add(message_id)
            continue
        if any(n > 1 for n in copies) or stored > 1:
            verdict.duplicated.add(message_id)
        elif all(n == 1 for n in copies):
            traced = stored == 1 and all(
                seen.delivered_events[(message_id, r)] == 1 for r in recipients
            )
            (verdict.ok if traced else verdict.untraced).add(message_id)
            if not confirmed:
                verdict.recovered.add(message_id)
        elif any(copies):
            verdict.lost.add(message_id)  # some recipients have it, others never will
        elif stored:
            verdict.untraced.add(message_id)  # stored, traced, in nobody's inbox
        elif confirmed:
            verdict.lost.add(message_id)
        else:
            verdict.unconfirmed_missing.add(message_id)
        if message_id in seen.rejected and message_id not in verdict.ok:
            verdict.notes.append(f"{message_id} rejected: {seen.rejected[message_id]}")
        if seen.dead_letters[message_id] and message_id not in verdict.ok:
            verdict.notes.append(f"{message_id} was dead-lettered")
    return verdict


def observe(engine: sa.Engine) -> Observation:
    """Read what the bus recorded; rows without a message id (digest subjects) are left out."""
    with engine.connect() as conn:
        inbox_rows = conn.execute(
            sa.select(inbox.c.message_id, inbox.c.recipient, sa.func.count()).group_by(
                inbox.c.message_id, inbox.c.recipient
            )
        ).all()
        events = conn.execute(
            sa.select(
                trace_events.c.subject,
                trace_events.c.event,
                trace_events.c.recipient,
                sa.func.count(),
            ).group_by(trace_events.c.subject, trace_events.c.event, trace_events.c.recipient)
        ).all()
        dead = conn.execute(
            sa.select(dead_letters.c.transport_id, dead_letters.c.envelope_digest)
        ).all()
        refused = conn.execute(sa.select(rejections.c.message_id, rejections.c.reason)).all()
        # Dead letters are keyed by the message id of their trace subject: the trace names it.
        dead_subjects = conn.execute(
            sa.select(trace_events.c.subject).where(trace_events.c.event == "dead_lettered")
        ).scalars()
        dead_by_subject = Counter(dead_subjects)
    stored: Counter[str] = Counter()
    delivered: Counter[tuple[str, str]] = Counter()
    duplicates = 0
    dead_events: Counter[str] = Counter()
    for subject, event, recipient, count in events:
        if event == "stored":
            stored[subject] += count
        elif event == "delivered" and recipient is not None:
            delivered[(subject, recipient)] += count
        elif event == "duplicate":
            duplicates += count
        elif event == "dead_lettered":
            dead_events[subject] += count
    dead_rows: Counter[str] = Counter()
    for transport_id, digest in dead:
        dead_rows[transport_id or f"digest:{digest}"] += 1
    if sum(dead_by_subject.values()) != len(dead):
        raise AssertionError(
            f"{len(dead)} dead_letters rows but {sum(dead_by_subject.values())} "
            "dead_lettered trace events"
        )
    return Observation(
        inbox=Counter({(m, r): n for m, r, n in inbox_rows}),
        stored=stored,
        delivered_events=delivered,
        duplicate_events=duplicates,
        dead_letters=dead_rows,
        dead_lettered_events=dead_events,
        rejected={m: reason for m, reason in refused if m is not None},
    )
