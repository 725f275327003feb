"""Hostile JSON and text: deep nesting, repeated keys, invalid UTF-8, in a header (judged by
the router) and in a request body (refused by the API)."""

from __future__ import annotations

import base64
import json

import httpx

from tests.e2e.support import call, message_id_of, signed_headers
from tests.helpers import G22, H37, H37_FINANCE, attachment, header_bytes, header_dict
from tests.security.hostile import Hostile, compact, queued, subject_of


def post_json(hostile: Hostile, body: bytes) -> httpx.Response:
    return call(hostile[G22], "POST", "/v1/messages", body, content_type="application/json")


# --- in a header (the router's verdict) -------------------------------------------------------


def test_deeply_nested_json_in_a_header(hostile: Hostile) -> None:
    fields = header_dict(recipients=[H37])
    text = compact(fields).decode()
    depth = 20_000
    header = (text[:-1] + ',"x":' + "[" * depth + "]" * depth + "}").encode()
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=subject_of(header, signature),
        reason="malformed_header",
        notice_to=None,  # the header cannot be read: no sender to tell
    )


def test_duplicate_recipients_key_in_a_header(hostile: Hostile) -> None:
    """Two parsers could read two recipient lists; the bus refuses to choose."""
    header = header_bytes(recipients=[H37])
    doubled = header.replace(
        f'"recipients":["{H37}"]'.encode(),
        f'"recipients":["{H37}"],"recipients":["{H37_FINANCE}"]'.encode(),
    )
    assert doubled != header
    signature = hostile.pki.sign(doubled)
    hostile.router_rejects(
        lambda: queued(hostile, doubled, signature),
        subject=message_id_of(header),
        reason="malformed_header",
        notice_to=G22,
    )


def test_duplicate_key_spelled_with_an_escape_in_a_header(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    doubled = header.replace(b'"kind":"document"', b'"kind":"document","\\u006bind":"status"')
    signature = hostile.pki.sign(doubled)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(doubled, signature),
        subject=message_id_of(header),
        reason="malformed_header",
        notice_to=G22,
    )


def test_invalid_utf8_in_a_header(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37]).replace("Hà Nội".encode(), b"H\xe0 N\xf4i")
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=subject_of(header, signature),
        reason="malformed_header",
        notice_to=None,
    )


def test_overlong_utf8_encoding_of_a_quote_in_a_header_over_amqp(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37]).replace(b'"STC-BCTC"', b'"STC\xc0\xa2BCTC"')
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=subject_of(header, signature),
        reason="malformed_header",
        notice_to=None,
    )


def test_nul_character_in_the_subject_of_a_header(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37], subject="Về việc\u0000 ẩn")
    hostile.router_rejects(
        lambda: queued(hostile, header, hostile.pki.sign(header)),
        subject=message_id_of(header),
        reason="header_invalid",
        notice_to=G22,
    )


# --- in a request body (the API's answer) ----------------------------------------------------


def test_deeply_nested_json_in_a_request_body(hostile: Hostile) -> None:
    depth = 100_000
    body = b'{"header":"","signature":"","attachments":' + b"[" * depth + b"]" * depth + b"}"
    hostile.api_refuses(lambda: post_json(hostile, body), 422, "invalid_request")


def test_duplicate_header_key_in_a_request_body(hostile: Hostile) -> None:
    """Which header did the agency mean? The one its first key names, or pydantic's last?"""
    first = header_bytes(recipients=[H37])
    second = header_bytes(recipients=[H37_FINANCE])
    signature = base64.b64encode(hostile.pki.sign(second)).decode()
    body = (
        f'{{"header":"{base64.b64encode(first).decode()}",'
        f'"header":"{base64.b64encode(second).decode()}","signature":"{signature}"}}'
    ).encode()
    problem = hostile.api_refuses(lambda: post_json(hostile, body), 422, "invalid_request")
    assert "'header' appears twice" in problem["detail"]
    assert hostile.messages_about(message_id_of(second)) == []


def test_invalid_utf8_in_a_request_body(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    body = json.dumps(
        {"header": "\udcff", "signature": base64.b64encode(hostile.pki.sign(header)).decode()}
    ).encode()
    raw = body.replace(b"\\udcff", b"\xff\xfe")
    hostile.api_refuses(lambda: post_json(hostile, raw), 422, "invalid_request")


def test_request_body_that_is_not_an_object(hostile: Hostile) -> None:
    hostile.api_refuses(
        lambda: post_json(hostile, b'["header", "signature"]'), 422, "invalid_request"
    )


def test_unknown_field_smuggled_into_a_request_body(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    body = json.dumps(
        {
            "header": base64.b64encode(header).decode(),
            "signature": base64.b64encode(hostile.pki.sign(header)).decode(),
            "sender": H37,
        }
    ).encode()
    hostile.api_refuses(lambda: post_json(hostile, body), 422, "invalid_request")


def test_base64_that_is_not_base64_in_a_request_body(hostile: Hostile, http: httpx.Client) -> None:
    body = b'{"header": "e30", "signature": "!!!!"}'
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }
    hostile.api_refuses(
        lambda: http.post("/v1/messages", content=body, headers=headers), 422, "invalid_request"
    )


def test_attachment_named_twice_in_a_request_body(hostile: Hostile) -> None:
    """Which content is the manifest's "cv.pdf"? The body may not say two things."""
    content = b"%PDF-1.7 twice"
    header = header_bytes(recipients=[H37], attachments=[attachment("cv.pdf", content)])
    entry = {"name": "cv.pdf", "content": base64.b64encode(content).decode()}
    body = json.dumps(
        {
            "header": base64.b64encode(header).decode(),
            "signature": base64.b64encode(hostile.pki.sign(header)).decode(),
            "attachments": [entry, {**entry, "content": base64.b64encode(b"other").decode()}],
        }
    ).encode()
    hostile.api_refuses(lambda: post_json(hostile, body), 400, "duplicate_attachment")
    assert hostile.messages_about(message_id_of(header)) == []
