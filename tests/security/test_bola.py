"""Object routes called by another agency (BOLA), administrator routes called by agencies, and
agency routes called by the administrator. A = G22 sends to H37; B = H37_FINANCE is no party."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import pytest

from tests.e2e.support import call, inbox_items, message_id_of, status_header, submit, submit_body
from tests.helpers import G22, H37, H37_FINANCE, attachment, header_bytes
from tests.security.hostile import Hostile

A, RECIPIENT, B = G22, H37, H37_FINANCE


@dataclass(frozen=True)
class Objects:
    delivered: str  # a document of A's to RECIPIENT
    rejected: str  # a document of A's the router rejected
    notice: str  # the rejection notice about it, in A's inbox
    blob: str  # an attachment of the delivered document (uploaded by A)


@pytest.fixture(scope="module")
def objects(hostile: Hostile) -> Objects:
    content = os.urandom(50_000)
    assert hostile[A].upload(content)["sha256"] == hashlib.sha256(content).hexdigest()
    header = header_bytes(recipients=[RECIPIENT], attachments=[attachment("pl.bin", content)])
    delivered = hostile.deliver(header, hostile.pki.sign(header))
    bad = header_bytes(recipients=[RECIPIENT, "000.00.77.H37"])
    response = submit(hostile[A], bad, hostile.pki.sign(bad))
    assert response.status_code == 202
    hostile.timeline(message_id_of(bad), "notice")
    (notice,) = [i for i in inbox_items(hostile[A]) if i["for_message_id"] == message_id_of(bad)]
    return Objects(
        delivered, message_id_of(bad), notice["message_id"], hashlib.sha256(content).hexdigest()
    )


def test_another_agency_reads_a_delivery_state(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[B], "GET", f"/v1/messages/{objects.delivered}"), 404, "not_found"
    )


def test_another_agency_reads_why_a_message_was_rejected(
    hostile: Hostile, objects: Objects
) -> None:
    assert hostile[A].message_state(objects.rejected)["reason"] == "recipient_unknown"
    for code in (B, RECIPIENT):
        hostile.api_refuses(
            lambda code=code: call(hostile[code], "GET", f"/v1/messages/{objects.rejected}"),  # type: ignore[misc]
            404,
            "not_found",
        )


def test_another_agency_reads_an_inbox_entry(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[B], "GET", f"/v1/inbox/{objects.delivered}"), 404, "not_found"
    )


def test_another_agency_reads_a_rejection_notice(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[RECIPIENT], "GET", f"/v1/inbox/{objects.notice}"), 404, "not_found"
    )


def test_another_agency_acknowledges_an_inbox_entry(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[B], "POST", f"/v1/inbox/{objects.delivered}/ack"), 404, "not_found"
    )
    state = hostile[A].message_state(objects.delivered)
    assert [r["acknowledged_at"] for r in state["recipients"]] == [None]


def test_another_agency_acknowledges_a_rejection_notice(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[B], "POST", f"/v1/inbox/{objects.notice}/ack"), 404, "not_found"
    )


def test_sender_acknowledges_in_its_recipients_name(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[A], "POST", f"/v1/inbox/{objects.delivered}/ack"), 404, "not_found"
    )


def test_another_agency_downloads_an_attachment(hostile: Hostile, objects: Objects) -> None:
    assert call(hostile[RECIPIENT], "GET", f"/v1/blobs/{objects.blob}").status_code == 200
    hostile.api_refuses(
        lambda: call(hostile[B], "GET", f"/v1/blobs/{objects.blob}"), 404, "not_found"
    )


def test_another_agency_answers_a_message_it_never_received(
    hostile: Hostile, objects: Objects
) -> None:
    """B sends a signed status about A's document as if it had received it."""
    header = status_header(B, A, objects.delivered, code="06")
    signature = hostile.pki.sign(header, sender=B)

    def attack() -> None:
        response = submit(hostile[B], header, signature)
        assert response.status_code == 202, response.text

    hostile.router_rejects(
        attack, subject=message_id_of(header), reason="status_unrelated", notice_to=B
    )
    assert hostile[A].message_state(objects.delivered)["statuses"] == []


def test_agency_calls_the_trace_of_its_own_message(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile[A], "GET", f"/v1/trace/{objects.delivered}"), 403, "admin_only"
    )


def test_agency_searches_the_trace(hostile: Hostile) -> None:
    hostile.api_refuses(
        lambda: call(hostile[B], "GET", "/v1/trace", query=f"sender={A}"), 403, "admin_only"
    )


def test_administrator_reads_an_agencys_inbox_entry(hostile: Hostile, objects: Objects) -> None:
    hostile.api_refuses(
        lambda: call(hostile.admin, "GET", f"/v1/inbox/{objects.delivered}"), 403, "agency_only"
    )


def test_administrator_submits_in_an_agencys_name(hostile: Hostile) -> None:
    header = header_bytes(recipients=[RECIPIENT])
    body = submit_body(header, hostile.pki.sign(header))
    hostile.api_refuses(
        lambda: call(hostile.admin, "POST", "/v1/messages", body, content_type="application/json"),
        403,
        "agency_only",
    )
