"""The API's limits at their edges, on a bus configured with small ones (SQLite; the limits do
not depend on the database): the limit itself goes through to the recipient, one more byte or
entry is refused with its problem code."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.support import (
    Parties,
    call,
    message_id_of,
    problem,
    signed_headers,
    submit_body,
    wait_for_state,
)
from tests.e2e.test_limits import read_response
from tests.helpers import G22, H37, Pki, attachment, header_bytes
from tests.services import BusProcesses, delete_topology

KIB = 1024
HEADER = 6 * KIB
REQUEST = 24 * KIB
INLINE = 3 * KIB
PAGE = 3
TRACE_PAGE = 4
SKEW = 30
IDLE = 1


@dataclass
class Limited:
    bus: BusProcesses
    pki: Pki
    parties: Parties
    signature_limit: int

    def send(self, body: bytes) -> int:
        response = call(
            self.parties[G22], "POST", "/v1/messages", body, content_type="application/json"
        )
        return response.status_code


def padded_header(size: int) -> bytes:
    """A header of exactly ``size`` bytes: whitespace before its closing brace."""
    header = header_bytes(recipients=[H37])
    assert len(header) <= size
    return header[:-1] + b" " * (size - len(header)) + b"}"


@pytest.fixture(scope="module")
def limited(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    root: Path = tmp_path_factory.mktemp("limited")
    signature_limit = len(pki.sign(header_bytes(recipients=[H37])))  # seal + issuing CA
    env = {
        "LIENTHONG_MAX_HEADER_BYTES": str(HEADER),
        "LIENTHONG_MAX_SIGNATURE_BYTES": str(signature_limit),
        "LIENTHONG_MAX_REQUEST_BYTES": str(REQUEST),
        "LIENTHONG_MAX_INLINE_ATTACHMENT_BYTES": str(INLINE),
        "LIENTHONG_PAGE_SIZE_MAX": str(PAGE),
        "LIENTHONG_TRACE_PAGE_SIZE_MAX": str(TRACE_PAGE),
        "LIENTHONG_AUTH_SKEW_S": str(SKEW),
        "LIENTHONG_BLOB_IDLE_TIMEOUT_S": str(IDLE),
    }
    bus = BusProcesses(
        root=root, pki_dir=pki.root, database_url=f"sqlite:///{root / 'db'}", extra_env=env
    )
    bus.prepare()
    try:
        bus.start_api()
        bus.start_router()
        parties = Parties(bus, pki)
        try:
            yield Limited(bus, pki, parties, signature_limit)
        finally:
            parties.close()
    finally:
        bus.stop()
        delete_topology(bus.prefix)


def delivered(limited: Limited, header: bytes) -> None:
    assert wait_for_state(limited.parties[G22], message_id_of(header))["state"] == "stored"
    read = call(limited.parties[H37], "GET", f"/v1/inbox/{message_id_of(header)}")
    assert read.status_code == 200, read.text


def test_max_header_bytes(limited: Limited) -> None:
    header = padded_header(HEADER)
    assert limited.send(submit_body(header, limited.pki.sign(header))) == 202
    delivered(limited, header)
    over = padded_header(HEADER + 1)
    response = call(
        limited.parties[G22],
        "POST",
        "/v1/messages",
        submit_body(over, limited.pki.sign(over)),
        content_type="application/json",
    )
    problem(response, 413, "header_too_large")


def test_max_signature_bytes(limited: Limited) -> None:
    header = header_bytes(recipients=[H37])
    signature = limited.pki.sign(header)
    assert len(signature) == limited.signature_limit
    assert limited.send(submit_body(header, signature)) == 202
    delivered(limited, header)
    again = header_bytes(recipients=[H37])
    response = call(
        limited.parties[G22],
        "POST",
        "/v1/messages",
        submit_body(again, limited.pki.sign(again) + b"\x00"),
        content_type="application/json",
    )
    problem(response, 413, "signature_too_large")


def test_max_request_bytes(limited: Limited) -> None:
    header = header_bytes(recipients=[H37])
    body = submit_body(header, limited.pki.sign(header))
    exact = body + b" " * (REQUEST - len(body))  # trailing whitespace: the same JSON
    assert len(exact) == REQUEST
    assert limited.send(exact) == 202
    delivered(limited, header)
    response = call(
        limited.parties[G22], "POST", "/v1/messages", exact + b" ", content_type="application/json"
    )
    problem(response, 413, "request_too_large")


def test_max_inline_attachment_bytes(limited: Limited) -> None:
    for size, ok in ((INLINE, True), (INLINE + 1, False)):
        content = os.urandom(size)
        header = header_bytes(recipients=[H37], attachments=[attachment("pl.bin", content)])
        body = submit_body(header, limited.pki.sign(header), {"pl.bin": content})
        response = call(
            limited.parties[G22], "POST", "/v1/messages", body, content_type="application/json"
        )
        if ok:
            assert response.status_code == 202, response.text
            delivered(limited, header)
        else:
            problem(response, 413, "attachments_too_large")


def test_page_size_max(limited: Limited) -> None:
    for _ in range(PAGE + 1):
        header = header_bytes(recipients=[H37])
        assert limited.send(submit_body(header, limited.pki.sign(header))) == 202
        delivered(limited, header)
    page = call(limited.parties[H37], "GET", "/v1/inbox", query=f"limit={PAGE}").json()
    assert len(page["items"]) == PAGE
    assert page["next_cursor"] is not None
    over = call(limited.parties[H37], "GET", "/v1/inbox", query=f"limit={PAGE + 1}")
    problem(over, 422, "invalid_request")


def test_trace_page_size_max(limited: Limited) -> None:
    admin = limited.parties.admin
    page = call(admin, "GET", "/v1/trace", query=f"limit={TRACE_PAGE}").json()
    assert len(page["items"]) == TRACE_PAGE
    problem(
        call(admin, "GET", "/v1/trace", query=f"limit={TRACE_PAGE + 1}"), 422, "invalid_request"
    )


def test_auth_skew(limited: Limited) -> None:
    """created may drift LIENTHONG_AUTH_SKEW_S either way (checked a second or two inside and
    outside, as the clock ticks between signing and checking)."""
    client = limited.parties[H37]
    now = int(time.time())
    for created, expected in (
        (now - SKEW + 2, 200),
        (now + SKEW - 2, 200),
        (now - SKEW - 3, 401),
        (now + SKEW + 3, 401),
    ):
        headers = signed_headers(client, "GET", "/v1/inbox", now=created, lifetime=2 * SKEW)
        response = client.http.get("/v1/inbox", headers=headers)
        assert response.status_code == expected, (created - now, response.text)
        if expected == 401:
            code = "signature_expired" if created < now else "signature_from_future"
            problem(response, 401, code)


def test_blob_idle_timeout(limited: Limited) -> None:
    """A pause shorter than LIENTHONG_BLOB_IDLE_TIMEOUT_S is an upload; a longer one is cut."""
    for pause, expected in ((IDLE * 0.4, b"201"), (IDLE * 2.5, b"408")):
        content = os.urandom(30_000)
        headers = signed_headers(limited.parties[G22], "POST", "/v1/blobs", content)
        head = (
            f"POST /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1:{limited.bus.port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(content)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        )
        with socket.create_connection(("127.0.0.1", limited.bus.port), timeout=15) as sock:
            sock.sendall(head.encode() + content[:10_000])
            time.sleep(pause)
            with contextlib.suppress(OSError):  # the server cut the stalled upload and closed
                sock.sendall(content[10_000:])
            reply = read_response(sock)
        assert reply.split(b" ")[1] == expected, reply[:300]
        if expected == b"201":
            stored = json.loads(reply.partition(b"\r\n\r\n")[2])
            assert stored["sha256"] == hashlib.sha256(content).hexdigest()
            assert (
                base64.b64decode(
                    call(limited.parties[G22], "GET", f"/v1/blobs/{stored['sha256']}").headers[
                        "content-digest"
                    ][8:-1]
                )
                == hashlib.sha256(content).digest()
            )
