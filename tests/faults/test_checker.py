"""The fault suite's checker on hand-made histories and observations (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import pytest

from tests.faults.checker import History, Observation, Verdict, check

A, B = "000.00.00.H37", "000.00.01.H37"


def history(
    sent: Mapping[str, Iterable[str]],
    confirmed: Iterable[str],
    expected_dead: Iterable[str] = (),
) -> History:
    h = History(expected_dead=set(expected_dead))
    for message_id, recipients in sent.items():
        h.sent(message_id, recipients)
    for message_id in confirmed:
        h.confirm(message_id)
    return h


def delivered(
    rows: Iterable[tuple[str, str]],
    *,
    stored: Iterable[str] | None = None,
    duplicates: int = 0,
    dead: Iterable[str] = (),
    dead_events: Iterable[str] | None = None,
    rejected: Mapping[str, str] | None = None,
) -> Observation:
    """An observation as a consistent bus records it, unless told otherwise."""
    inbox = Counter(rows)
    return Observation(
        inbox=inbox,
        stored=Counter({m for m, _ in inbox} if stored is None else stored),
        delivered_events=Counter(inbox),
        duplicate_events=duplicates,
        dead_letters=Counter(dead),
        dead_lettered_events=Counter(dead if dead_events is None else dead_events),
        rejected=dict(rejected or {}),
    )


def classes(verdict: Verdict) -> dict[str, set[str]]:
    return {
        name: ids
        for name in (
            "ok",
            "lost",
            "duplicated",
            "unexpected",
            "untraced",
            "dead_lettered",
            "unconfirmed_missing",
            "recovered",
        )
        if (ids := getattr(verdict, name))
    }


def test_every_confirmed_message_delivered_once_is_valid() -> None:
    verdict = check(
        history({"m1": [A], "m2": [A, B]}, ["m1", "m2"]),
        delivered([("m1", A), ("m2", A), ("m2", B)], duplicates=3),
    )
    assert classes(verdict) == {"ok": {"m1", "m2"}}
    assert verdict.valid
    assert verdict.duplicates_absorbed == 3


def test_a_confirmed_message_missing_is_lost() -> None:
    verdict = check(history({"m1": [A], "m2": [A]}, ["m1", "m2"]), delivered([("m1", A)]))
    assert classes(verdict) == {"ok": {"m1"}, "lost": {"m2"}}
    assert not verdict.valid


def test_an_unconfirmed_message_missing_is_allowed_and_reported_apart() -> None:
    verdict = check(history({"m1": [A], "m2": [A]}, ["m1"]), delivered([("m1", A)]))
    assert classes(verdict) == {"ok": {"m1"}, "unconfirmed_missing": {"m2"}}
    assert verdict.valid


def test_an_unconfirmed_message_delivered_is_ok_and_counted_as_recovered() -> None:
    verdict = check(history({"m1": [A]}, []), delivered([("m1", A)]))
    assert classes(verdict) == {"ok": {"m1"}, "recovered": {"m1"}}
    assert verdict.valid


def test_two_inbox_rows_for_one_recipient_are_a_duplicate() -> None:
    verdict = check(history({"m1": [A]}, ["m1"]), delivered([("m1", A), ("m1", A)]))
    assert classes(verdict) == {"duplicated": {"m1"}}
    assert not verdict.valid


def test_two_stored_events_are_a_duplicate_even_with_one_inbox_row() -> None:
    seen = delivered([("m1", A)])
    seen.stored["m1"] = 2
    verdict = check(history({"m1": [A]}, ["m1"]), seen)
    assert classes(verdict) == {"duplicated": {"m1"}}


def test_a_delivery_never_sent_is_unexpected() -> None:
    verdict = check(history({"m1": [A]}, ["m1"]), delivered([("m1", A), ("zz", A)]))
    assert classes(verdict) == {"ok": {"m1"}, "unexpected": {"zz"}}
    assert not verdict.valid


def test_a_message_stored_but_never_sent_is_unexpected_even_without_an_inbox_row() -> None:
    verdict = check(history({}, []), delivered([], stored=["zz"]))
    assert classes(verdict) == {"unexpected": {"zz"}}


def test_a_message_missing_for_one_of_its_recipients_is_lost() -> None:
    verdict = check(history({"m1": [A, B]}, ["m1"]), delivered([("m1", A)]))
    assert classes(verdict) == {"lost": {"m1"}}


def test_a_partial_delivery_is_lost_even_unconfirmed() -> None:
    verdict = check(history({"m1": [A, B]}, []), delivered([("m1", B)]))
    assert classes(verdict) == {"lost": {"m1"}}


def test_a_delivery_without_a_stored_event_is_untraced() -> None:
    verdict = check(history({"m1": [A]}, ["m1"]), delivered([("m1", A)], stored=[]))
    assert classes(verdict) == {"untraced": {"m1"}}
    assert not verdict.valid


def test_a_delivery_without_its_delivered_event_is_untraced() -> None:
    seen = delivered([("m1", A), ("m1", B)])
    del seen.delivered_events[("m1", B)]
    verdict = check(history({"m1": [A, B]}, ["m1"]), seen)
    assert classes(verdict) == {"untraced": {"m1"}}


def test_a_stored_event_without_any_inbox_row_is_untraced() -> None:
    verdict = check(history({"m1": [A]}, ["m1"]), delivered([], stored=["m1"]))
    assert classes(verdict) == {"untraced": {"m1"}}


def test_a_confirmed_message_dead_lettered_instead_of_delivered_is_lost() -> None:
    verdict = check(history({"m1": [A]}, ["m1"]), delivered([], dead=["m1"]))
    assert classes(verdict) == {"lost": {"m1"}}
    assert any("dead-lettered" in note for note in verdict.notes)


def test_a_confirmed_message_rejected_is_lost_and_the_reason_noted() -> None:
    verdict = check(
        history({"m1": [A]}, ["m1"]), delivered([], rejected={"m1": "signature_invalid"})
    )
    assert classes(verdict) == {"lost": {"m1"}}
    assert "m1 rejected: signature_invalid" in verdict.notes


def test_an_expected_poison_message_in_the_dead_letters_and_traced_is_dead_lettered() -> None:
    verdict = check(
        history({"m1": [A], "p1": [A]}, ["m1", "p1"], expected_dead=["p1"]),
        delivered([("m1", A)], dead=["p1"]),
    )
    assert classes(verdict) == {"ok": {"m1"}, "dead_lettered": {"p1"}}
    assert verdict.valid


def test_a_poison_message_dead_lettered_without_its_trace_event_is_lost() -> None:
    verdict = check(
        history({"p1": [A]}, ["p1"], expected_dead=["p1"]),
        delivered([], dead=["p1"], dead_events=[]),
    )
    assert classes(verdict) == {"lost": {"p1"}}


def test_a_poison_message_that_was_delivered_is_unexpected() -> None:
    verdict = check(history({"p1": [A]}, ["p1"], expected_dead=["p1"]), delivered([("p1", A)]))
    assert classes(verdict) == {"unexpected": {"p1"}}
    assert not verdict.valid


def test_a_confirmed_poison_message_neither_dead_nor_delivered_is_lost() -> None:
    verdict = check(history({"p1": [A]}, ["p1"], expected_dead=["p1"]), delivered([]))
    assert classes(verdict) == {"lost": {"p1"}}


def test_a_dead_letter_never_sent_is_unexpected() -> None:
    verdict = check(history({}, []), delivered([], dead=["zz"]))
    assert classes(verdict) == {"unexpected": {"zz"}}


def test_confirming_a_message_never_sent_is_a_harness_error() -> None:
    with pytest.raises(ValueError, match="never sent"):
        History().confirm("m1")


def test_explain_names_the_failures() -> None:
    verdict = check(
        history({"m1": [A], "m2": [A]}, ["m1", "m2"]), delivered([("m1", A), ("m1", A)])
    )
    text = verdict.explain()
    assert "lost: 1" in text
    assert "duplicated: 1" in text
    assert "lost e.g. m2" in text
    assert "duplicated e.g. m1" in text
