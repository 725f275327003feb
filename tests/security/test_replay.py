"""Replays: of envelopes (under a new AMQP transport id, or re-signed under a known message id)
and of captured request credentials."""

from __future__ import annotations

import time

import httpx

from exchange.submission import Submission
from tests.e2e.support import message_id_of, problem, signed_headers, submit_body
from tests.helpers import G22, H37, H37_FINANCE, header_bytes
from tests.security.hostile import Hostile, new_id


def test_envelope_replayed_under_a_new_transport_id(hostile: Hostile) -> None:
    """The same submission published again with another AMQP message id: absorbed by its
    digest, never delivered twice, whatever the transport says."""
    header = header_bytes(recipients=[H37])
    body = Submission(header, hostile.pki.sign(header)).encode()
    message_id = message_id_of(header)
    hostile.publish(body, transport_id=message_id)
    hostile.timeline(message_id, "delivered")
    timeline = hostile.router_absorbs(
        lambda: hostile.publish(body, transport_id=new_id()), subject=message_id
    )
    assert [e["event"] for e in timeline["events"]].count("delivered") == 1
    assert hostile.inbox_of(message_id) == [H37]


def test_transport_id_naming_another_message_changes_nothing(hostile: Hostile) -> None:
    """An envelope published with the AMQP message id of a stored message is judged and stored
    by its own header; the message the transport id names is untouched."""
    first = header_bytes(recipients=[H37_FINANCE])
    victim = hostile.deliver(first, hostile.pki.sign(first))
    trace_before = hostile.admin.trace(victim)["events"]
    header = header_bytes(recipients=[H37])
    hostile.publish_envelope(header, hostile.pki.sign(header), transport_id=victim)
    hostile.timeline(message_id_of(header), "delivered")
    assert hostile.inbox_of(message_id_of(header)) == [H37]
    assert hostile.inbox_of(victim) == [H37_FINANCE]
    assert hostile.admin.trace(victim)["events"] == trace_before
    hostile.assert_alive()


def test_envelope_resigned_under_a_known_message_id_over_amqp(hostile: Hostile) -> None:
    """Same header bytes, a new signature (a later signingTime): other bytes, same id."""
    header = header_bytes(recipients=[H37])
    message_id = hostile.deliver(header, hostile.pki.sign(header))
    time.sleep(1.1)  # signingTime has whole seconds
    again = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, again, transport_id=message_id),
        subject=message_id,
        reason="replay",
        notice_to=G22,
        stored_before=True,
    )
    assert hostile.inbox_of(message_id) == [H37]


def test_captured_submission_request_replayed(hostile: Hostile, http: httpx.Client) -> None:
    header = header_bytes(recipients=[H37])
    body = submit_body(header, hostile.pki.sign(header))
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }
    assert http.post("/v1/messages", content=body, headers=headers).status_code == 202
    message_id = message_id_of(header)
    hostile.timeline(message_id, "delivered")
    hostile.api_refuses(
        lambda: http.post("/v1/messages", content=body, headers=headers),
        401,
        "replayed_request",
    )
    events = [e["event"] for e in hostile.admin.trace(message_id)["events"]]
    assert events.count("submitted") == 1, events


def test_captured_upload_request_replayed(hostile: Hostile, http: httpx.Client) -> None:
    content = b"%PDF-1.7 captured " + new_id().encode()
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/blobs", content),
        "Content-Type": "application/octet-stream",
    }
    assert http.post("/v1/blobs", content=content, headers=headers).status_code == 201
    hostile.api_refuses(
        lambda: http.post("/v1/blobs", content=content, headers=headers),
        401,
        "replayed_request",
    )


def test_captured_request_replayed_by_another_agency_keyid(
    hostile: Hostile, http: httpx.Client
) -> None:
    """H37 copies G22's captured signature and nonce but names its own certificate."""
    headers = signed_headers(hostile[G22], "GET", "/v1/inbox")
    stolen = headers["Signature-Input"].replace(hostile[G22].key_id, hostile[H37].key_id)
    hostile.api_refuses(
        lambda: http.get("/v1/inbox", headers={**headers, "Signature-Input": stolen}),
        401,
        "bad_request_signature",
    )


def test_captured_credential_replayed_after_it_expired(
    hostile: Hostile, http: httpx.Client
) -> None:
    headers = signed_headers(hostile[G22], "GET", "/v1/inbox", now=int(time.time()) - 61)
    body = problem(http.get("/v1/inbox", headers=headers), 401, "signature_expired")
    assert body["detail"]
    hostile.api_refuses(lambda: http.get("/v1/inbox", headers=headers), 401, "signature_expired")


def test_blank_submission_body_is_refused(hostile: Hostile, http: httpx.Client) -> None:
    headers = signed_headers(hostile[G22], "POST", "/v1/messages", b"")
    hostile.api_refuses(
        lambda: http.post("/v1/messages", content=b"", headers=headers),
        422,
        "invalid_request",
    )
