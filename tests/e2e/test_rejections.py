"""Envelopes the bus refuses: each is rejected with one reason, traced, kept out of every inbox,
and answered with a rejection notice the bus signs; identical re-sends are absorbed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import (
    AGENCIES,
    UNKNOWN,
    Parties,
    call,
    events,
    in_inbox,
    inbox_items,
    message_id_of,
    problem,
    submit,
    verify_notice,
    wait_for_notice,
    wait_for_state,
    wait_for_trace,
)
from tests.helpers import G22, H37, H37_FINANCE, Pki, attachment, header_bytes
from tests.services import BusProcesses


@pytest.fixture(scope="module")
def parties(shared_bus: BusProcesses, pki: Pki) -> Iterator[Parties]:
    opened = Parties(shared_bus, pki)
    yield opened
    opened.close()


def deliver(parties: Parties, header: bytes, signature: bytes) -> str:
    """Submit as the header's sender (G22) and wait until the message is stored."""
    response = submit(parties[G22], header, signature)
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert response.json()["message_id"] == message_id
    assert response.headers["location"] == f"/v1/messages/{message_id}"
    assert wait_for_state(parties[G22], message_id)["state"] == "stored"
    return message_id


def assert_rejected_and_traced(parties: Parties, sender: str, message_id: str, reason: str) -> None:
    """The sender sees the reason, the trace records it, no inbox holds the message, and the
    claimed sender receives a notice sealed by the bus."""
    state = wait_for_state(parties[sender], message_id)
    assert state["state"] == "rejected", state
    assert state["reason"] == reason, state
    assert state["recipients"] == []
    assert state["statuses"] == []
    timeline = wait_for_trace(parties.admin, message_id, "notice")
    assert timeline["chain_intact"] is True
    assert events(timeline)[:2] == [("submitted", None, None), ("rejected", None, reason)]
    assert "delivered" not in [e for e, _, _ in events(timeline)]
    for code in AGENCIES:
        assert not in_inbox(parties[code], message_id), code
    notice = wait_for_notice(parties[sender], message_id)
    verify_notice(parties.pki, notice, message_id, reason)
    # The notice is the claimed sender's alone.
    for code in AGENCIES:
        if code != sender:
            assert notice["message_id"] not in [i["message_id"] for i in inbox_items(parties[code])]


def test_a_header_altered_after_signing_is_a_digest_mismatch(parties: Parties) -> None:
    header = header_bytes(recipients=[H37])
    signature = parties.pki.sign(header)
    forged = header.replace(b'"number":"2491"', b'"number":"2492"')
    assert forged != header
    response = submit(parties[G22], forged, signature)
    assert response.status_code == 202, response.text
    assert_rejected_and_traced(parties, G22, message_id_of(forged), "digest_mismatch")


def test_the_seal_of_another_agency_is_a_sender_mismatch(parties: Parties) -> None:
    header = header_bytes(sender=G22, recipients=[H37_FINANCE])
    signature = parties.pki.sign(header, sender=H37)  # H37's seal on a header "from" G22
    response = submit(parties[G22], header, signature)
    assert response.status_code == 202, response.text
    assert_rejected_and_traced(parties, G22, message_id_of(header), "sender_mismatch")


def test_an_unknown_recipient_is_rejected(parties: Parties) -> None:
    header = header_bytes(recipients=[H37, UNKNOWN])
    signature = parties.pki.sign(header)
    response = submit(parties[G22], header, signature)
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert_rejected_and_traced(parties, G22, message_id, "recipient_unknown")
    # The same rejected bytes again are absorbed: no second rejection, no second notice.
    assert submit(parties[G22], header, signature).status_code == 202
    timeline = wait_for_trace(parties.admin, message_id, "duplicate")
    assert [e for e, _, _ in events(timeline)] == ["submitted", "rejected", "notice", "duplicate"]
    notices = [i for i in inbox_items(parties[G22]) if i["for_message_id"] == message_id]
    assert len(notices) == 1


def test_the_same_id_with_other_bytes_is_a_replay(parties: Parties) -> None:
    first = header_bytes(recipients=[H37], subject="Bản gốc")
    message_id = deliver(parties, first, parties.pki.sign(first))
    again = header_bytes(recipients=[H37, H37_FINANCE], message_id=message_id, subject="Giả mạo")
    response = submit(parties[G22], again, parties.pki.sign(again))
    assert response.status_code == 202, response.text
    timeline = wait_for_trace(parties.admin, message_id, "notice")
    assert events(timeline) == [
        ("submitted", None, None),
        ("verified", None, None),
        ("stored", None, None),
        ("delivered", H37, None),
        ("submitted", None, None),
        ("rejected", None, "replay"),
        ("notice", G22, None),
    ]
    assert timeline["chain_intact"] is True
    # The original stands, delivered once to its one recipient; the replay reached no one.
    state = parties[G22].message_state(message_id)
    assert state["state"] == "stored"
    assert [r["recipient"] for r in state["recipients"]] == [H37]
    assert state["statuses"] == [], "a bus notice is not a recipient's status"
    assert [i["message_id"] for i in inbox_items(parties[H37])].count(message_id) == 1
    assert not in_inbox(parties[H37_FINANCE], message_id)
    assert parties[H37].read(message_id)["header_json"]["document"]["subject"] == "Bản gốc"
    verify_notice(parties.pki, wait_for_notice(parties[G22], message_id), message_id, "replay")


def test_a_replay_by_another_agency_does_not_touch_the_original(parties: Parties) -> None:
    first = header_bytes(recipients=[H37_FINANCE])
    message_id = deliver(parties, first, parties.pki.sign(first))
    # H37 reuses G22's message id for an envelope of its own (its own seal, its own sender).
    stolen = header_bytes(sender=H37, recipients=[H37_FINANCE], message_id=message_id)
    response = submit(parties[H37], stolen, parties.pki.sign(stolen, sender=H37))
    assert response.status_code == 202, response.text
    state = wait_for_state(parties[H37], message_id)
    assert (state["state"], state["reason"]) == ("rejected", "replay")
    verify_notice(parties.pki, wait_for_notice(parties[H37], message_id), message_id, "replay")
    original = parties[G22].message_state(message_id)
    assert original["state"] == "stored"
    assert [r["recipient"] for r in original["recipients"]] == [H37_FINANCE]
    assert original["statuses"] == [], "G22 must not see a notice sent to H37 as its status"
    assert [i["message_id"] for i in inbox_items(parties[H37_FINANCE])].count(message_id) == 1
    assert parties[H37_FINANCE].read(message_id)["sender"] == G22


def test_a_rejection_notice_verifies_against_the_trust_anchors_alone(parties: Parties) -> None:
    header = header_bytes(recipients=[UNKNOWN])
    response = submit(parties[G22], header, parties.pki.sign(header))
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    notice = wait_for_notice(parties[G22], message_id)
    verify_notice(parties.pki, notice, message_id, "recipient_unknown", anchors_only=True)


def test_an_identical_resend_is_absorbed(parties: Parties) -> None:
    header = header_bytes(recipients=[H37, H37_FINANCE])
    signature = parties.pki.sign(header)
    message_id = deliver(parties, header, signature)
    response = submit(parties[G22], header, signature)
    assert response.status_code == 202, response.text
    timeline = wait_for_trace(parties.admin, message_id, "duplicate")
    assert [e for e, _, _ in events(timeline)] == [
        "submitted",
        "verified",
        "stored",
        "delivered",
        "delivered",
        "duplicate",
    ]
    for code in (H37, H37_FINANCE):
        assert [i["message_id"] for i in inbox_items(parties[code])].count(message_id) == 1
    state = parties[G22].message_state(message_id)
    assert [r["recipient"] for r in state["recipients"]] == [H37, H37_FINANCE]


def test_a_header_over_64_kib_is_refused_by_the_api(parties: Parties) -> None:
    header = header_bytes(recipients=[H37]) + b" " * (64 * 1024)
    response = submit(parties[G22], header, parties.pki.sign(header))
    problem(response, 413, "header_too_large")
    refused_and_traced(parties, message_id_of(header), "header_too_large")


def test_inline_attachments_over_the_limit_are_refused_by_the_api(parties: Parties) -> None:
    content = b"\x00" * (4 * 1024 * 1024 + 1)
    header = header_bytes(recipients=[H37], attachments=[attachment("big.bin", content)])
    response = submit(parties[G22], header, parties.pki.sign(header), {"big.bin": content})
    problem(response, 413, "attachments_too_large")
    refused_and_traced(parties, message_id_of(header), "attachments_too_large")


def refused_and_traced(parties: Parties, message_id: str, reason: str) -> None:
    """A refusal at the door: traced as submitted and rejected, never queued, in no inbox
    (checked after a message sent later has gone through, so a late arrival would have shown)."""
    marker = header_bytes(recipients=[H37])
    deliver(parties, marker, parties.pki.sign(marker))
    timeline = parties.admin.trace(message_id)
    assert [(e, r) for e, _, r in events(timeline)] == [("submitted", None), ("rejected", reason)]
    problem(call(parties[G22], "GET", f"/v1/messages/{message_id}"), 404, "not_found")
    for code in AGENCIES:
        assert not in_inbox(parties[code], message_id)


def test_a_header_over_64_kib_sent_over_amqp_is_rejected_by_the_router(
    parties: Parties, shared_bus: BusProcesses, tmp_path: Path
) -> None:
    header = header_bytes(recipients=[H37]) + b" " * (64 * 1024)
    message_id = message_id_of(header)
    (tmp_path / "header.json").write_bytes(header)
    (tmp_path / "signature.der").write_bytes(parties.pki.sign(header))
    shared_bus.cli(
        "send", "--header", tmp_path / "header.json", "--signature", tmp_path / "signature.der"
    )
    # Whatever the router did with it, it traced it under the message id.
    timeline = wait_for_trace(parties.admin, message_id, None)
    assert ("rejected", None, "header_too_large") in events(timeline), events(timeline)
    state = wait_for_state(parties[G22], message_id, timeout=5)
    assert (state["state"], state["reason"]) == ("rejected", "header_too_large")
