"""Object-level authorisation: an agency reaches only its own inbox, its own sent messages and
the blobs of messages it is a party to; administrator routes need an administrator.

A = G22 sends to H37; B = H37_FINANCE is not a party.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.support import (
    Parties,
    call,
    events,
    in_inbox,
    message_id_of,
    problem,
    submit,
    submit_body,
    wait_for_state,
)
from tests.helpers import G22, H37, H37_FINANCE, Pki, attachment, header_bytes
from tests.services import BusProcesses

A, RECIPIENT, B = G22, H37, H37_FINANCE


@pytest.fixture(scope="module")
def parties(shared_bus: BusProcesses, pki: Pki) -> Iterator[Parties]:
    opened = Parties(shared_bus, pki)
    yield opened
    opened.close()


@dataclass(frozen=True)
class Sent:
    message_id: str
    inline_sha256: str  # an inline attachment of the message
    uploaded_sha256: str  # a blob A uploaded and referenced
    unreferenced_sha256: str  # a blob A uploaded and never used


@pytest.fixture(scope="module")
def sent(parties: Parties) -> Sent:
    """One message of A's to RECIPIENT with an inline and an uploaded attachment.

    The tests below run in file order: RECIPIENT first reads it in the third one."""
    inline = b"%PDF-1.7\n" + os.urandom(2048)
    uploaded = os.urandom(300_000)
    spare = os.urandom(1000)
    assert parties[A].upload(uploaded)["sha256"] == hashlib.sha256(uploaded).hexdigest()
    assert parties[A].upload(spare)["sha256"] == hashlib.sha256(spare).hexdigest()
    header = header_bytes(
        recipients=[RECIPIENT],
        attachments=[attachment("cong-van.pdf", inline), attachment("phu-luc.bin", uploaded)],
    )
    response = submit(parties[A], header, parties.pki.sign(header), {"cong-van.pdf": inline})
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert wait_for_state(parties[A], message_id)["state"] == "stored"
    return Sent(
        message_id,
        hashlib.sha256(inline).hexdigest(),
        hashlib.sha256(uploaded).hexdigest(),
        hashlib.sha256(spare).hexdigest(),
    )


def test_only_the_sender_sees_the_delivery_state(parties: Parties, sent: Sent) -> None:
    assert parties[A].message_state(sent.message_id)["state"] == "stored"
    for code in (B, RECIPIENT):  # not even the recipient reads the sender's view
        problem(call(parties[code], "GET", f"/v1/messages/{sent.message_id}"), 404, "not_found")
    problem(call(parties.admin, "GET", f"/v1/messages/{sent.message_id}"), 403, "agency_only")


def test_another_agency_cannot_read_or_acknowledge_an_inbox_entry(
    parties: Parties, sent: Sent
) -> None:
    problem(call(parties[B], "GET", f"/v1/inbox/{sent.message_id}"), 404, "not_found")
    problem(call(parties[B], "POST", f"/v1/inbox/{sent.message_id}/ack"), 404, "not_found")
    # The sender cannot acknowledge in its recipient's name either.
    problem(call(parties[A], "POST", f"/v1/inbox/{sent.message_id}/ack"), 404, "not_found")
    assert not in_inbox(parties[B], sent.message_id)
    # Nothing changed: the entry is still only delivered, and no one but the bus acted on it.
    state = parties[A].message_state(sent.message_id)
    assert [(r["recipient"], r["state"]) for r in state["recipients"]] == [(RECIPIENT, "delivered")]
    timeline = parties.admin.trace(sent.message_id)
    assert [e for e, _, _ in events(timeline)] == ["submitted", "verified", "stored", "delivered"]
    assert all(e["actor"] in (None, A) for e in timeline["events"]), timeline


def test_the_recipient_acts_on_its_own_entry_and_b_still_cannot(
    parties: Parties, sent: Sent
) -> None:
    assert parties[RECIPIENT].read(sent.message_id)["sender"] == A
    problem(call(parties[B], "GET", f"/v1/inbox/{sent.message_id}"), 404, "not_found")
    problem(call(parties[B], "POST", f"/v1/inbox/{sent.message_id}/ack"), 404, "not_found")
    state = parties[A].message_state(sent.message_id)
    assert [(r["recipient"], r["state"]) for r in state["recipients"]] == [(RECIPIENT, "fetched")]
    actors = {e["actor"] for e in parties.admin.trace(sent.message_id)["events"]}
    assert B not in actors


def test_blobs_are_for_the_parties_of_a_message(parties: Parties, sent: Sent) -> None:
    for sha256 in (sent.inline_sha256, sent.uploaded_sha256):
        assert hashlib.sha256(parties[A].blob(sha256)).hexdigest() == sha256
        assert hashlib.sha256(parties[RECIPIENT].blob(sha256)).hexdigest() == sha256
        problem(call(parties[B], "GET", f"/v1/blobs/{sha256}"), 404, "not_found")
    # An upload no message references is its uploader's alone.
    assert parties[A].blob(sent.unreferenced_sha256)
    for code in (RECIPIENT, B):
        problem(
            call(parties[code], "GET", f"/v1/blobs/{sent.unreferenced_sha256}"), 404, "not_found"
        )


def test_another_agencys_upload_cannot_be_borrowed_by_reference(
    parties: Parties, sent: Sent
) -> None:
    """B knows the SHA-256 of a blob A uploaded (not its content) and names it in a manifest."""
    size = len(parties[A].blob(sent.unreferenced_sha256))
    ref = {
        "name": "borrowed.bin",
        "media_type": "application/octet-stream",
        "size": size,
        "sha256": sent.unreferenced_sha256,
    }
    header = header_bytes(sender=B, recipients=[B], attachments=[ref])
    response = submit(parties[B], header, parties.pki.sign(header, sender=B))
    assert response.status_code == 202, response.text
    state = wait_for_state(parties[B], message_id_of(header))
    assert (state["state"], state["reason"]) == ("rejected", "attachment_missing")
    assert not in_inbox(parties[B], message_id_of(header))
    problem(call(parties[B], "GET", f"/v1/blobs/{sent.unreferenced_sha256}"), 404, "not_found")


def test_an_agency_cannot_submit_in_another_agencys_name(parties: Parties) -> None:
    header = header_bytes(sender=A, recipients=[RECIPIENT])
    body = problem(submit(parties[B], header, parties.pki.sign(header)), 403, "not_your_sender")
    assert f"you are {B}" in body["detail"]
    assert f"sent by {A}" in body["detail"]
    problem(call(parties[B], "GET", f"/v1/messages/{message_id_of(header)}"), 404, "not_found")
    problem(call(parties[A], "GET", f"/v1/messages/{message_id_of(header)}"), 404, "not_found")


def test_administrator_routes_refuse_agencies(parties: Parties, sent: Sent) -> None:
    for code in (A, RECIPIENT, B):
        problem(call(parties[code], "GET", f"/v1/trace/{sent.message_id}"), 403, "admin_only")
        problem(call(parties[code], "GET", "/v1/trace", query=f"sender={A}"), 403, "admin_only")
    timeline = parties.admin.trace(sent.message_id)
    assert timeline["chain_intact"] is True
    stored_at = next(e["at"] for e in timeline["events"] if e["event"] == "stored")
    found = parties.admin.search_trace(sender=A, status="stored", since=stored_at)
    assert sent.message_id in [e["subject"] for e in found["items"]]
    assert all(e["event"] == "stored" and e["sender"] == A for e in found["items"])
    before = parties.admin.search_trace(sender=A, status="stored", until=stored_at)
    assert sent.message_id not in [e["subject"] for e in before["items"]]


def test_administrators_do_not_act_as_agencies(parties: Parties, pki: Pki) -> None:
    admin = parties.admin
    problem(call(admin, "GET", "/v1/inbox"), 403, "agency_only")
    header = header_bytes(recipients=[RECIPIENT])
    body = submit_body(header, pki.sign(header))
    problem(
        call(admin, "POST", "/v1/messages", body, content_type="application/json"),
        403,
        "agency_only",
    )
    problem(
        call(admin, "POST", "/v1/blobs", b"x", content_type="application/octet-stream"),
        403,
        "agency_only",
    )


def test_inbox_listings_hold_only_the_callers_entries(parties: Parties, sent: Sent) -> None:
    listed = call(parties[B], "GET", "/v1/inbox", query="limit=200").json()
    assert sent.message_id not in [i["message_id"] for i in listed["items"]]
    # A cursor is a position, not an identity: B's cursor reveals nothing of others' inboxes.
    forged = base64.urlsafe_b64encode(b"u:0").decode().rstrip("=")
    page = call(parties[B], "GET", "/v1/inbox", query=f"cursor={forged}&limit=200").json()
    assert sent.message_id not in [i["message_id"] for i in page["items"]]
