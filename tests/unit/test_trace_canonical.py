"""The trace's canonical form of an event: byte for byte the standard library's JSON.

Every stored event's hash covers this form, so it may never change: events hashed by an earlier
version must still verify. The reference is json.dumps with sorted keys, no spaces and text
unescaped, over the same members.
"""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.tracing import GENESIS, Event, StoredEvent, TraceEvent, chain_hash, verify_chain

TEXT = st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
EVENTS = st.builds(
    TraceEvent,
    subject=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80),
    event=st.sampled_from(list(Event)),
    at=st.datetimes(timezones=st.timezones()),
    sender=TEXT,
    recipient=TEXT,
    actor=TEXT,
    reason=TEXT,
    detail=TEXT,
)


def reference(event: TraceEvent, seq: int) -> bytes:
    members = {
        "subject": event.subject,
        "seq": seq,
        "event": event.event.value,
        "at": event.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "sender": event.sender,
        "recipient": event.recipient,
        "actor": event.actor,
        "reason": event.reason,
        "detail": event.detail,
    }
    text = json.dumps(members, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text.encode("utf-8")


@settings(max_examples=500, deadline=None)
@given(EVENTS, st.integers(min_value=1, max_value=2**40))
def test_the_canonical_form_is_the_standard_json(event: TraceEvent, seq: int) -> None:
    assert event.canonical(seq) == reference(event, seq)


# Hashes an earlier version (json.JSONEncoder over a dict) computed for these two events.
EARLIER = (
    "dbd5826e88a6f7e1c319e8500e09546b2b55989aee5d8d6d58c9b8b0c67c9d5b",
    "56073a67bfd5c373846f434b20cd838cac62dd1ca2ea1989731adbca3a0e44cb",
)


def test_a_chain_hashed_by_an_earlier_version_still_verifies() -> None:
    at = dt.datetime(2026, 11, 27, 14, 5, 9, 123456, tzinfo=dt.UTC)
    subject = "0b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b"
    events = [
        TraceEvent(subject, Event.SUBMITTED, at, sender="000.00.00.G22"),
        TraceEvent(
            subject,
            Event.REJECTED,
            at,
            reason="digest_mismatch",
            detail='trích yếu "<script>" \x00\n',
        ),
    ]
    stored = [
        StoredEvent(events[0], 1, GENESIS, EARLIER[0]),
        StoredEvent(events[1], 2, EARLIER[0], EARLIER[1]),
    ]
    assert chain_hash(GENESIS, events[0], 1) == EARLIER[0]
    assert verify_chain(stored) is None


def test_events_that_share_a_time_object_and_those_that_do_not_each_get_their_own_time() -> None:
    # A batch's events share one datetime object, whose text is reused; any other time object,
    # even an equal instant in another zone, is written out from its own value.
    hanoi = dt.timezone(dt.timedelta(hours=7))
    first = dt.datetime(2026, 11, 28, 15, 0, 0, 1, tzinfo=hanoi)
    same_instant = first.astimezone(dt.UTC)
    later = dt.datetime(2026, 11, 28, 8, 0, 1, tzinfo=dt.UTC)
    for at in (first, first, same_instant, later, first, later, later):
        event = TraceEvent("0b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b", Event.STORED, at)
        assert event.canonical(7) == reference(event, 7)
