"""Too much: recipients, attachments, bodies, and bodies that lie about their length or stall."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Iterator

import httpx

from exchange.submission import Submission
from tests.e2e.support import blob_files, message_id_of, signed_headers
from tests.e2e.test_limits import read_response
from tests.helpers import G22, H37, attachment, header_bytes
from tests.security.hostile import IDLE_TIMEOUT_S, Hostile, body_subject, queued

MIB = 1024 * 1024


def raw_request(
    hostile: Hostile, head: str, body: bytes, *, stall_after: int | None = None
) -> bytes:
    """Send a request as bytes over a socket (what no HTTP client library lets one send)."""
    with socket.create_connection(("127.0.0.1", hostile.bus.port), timeout=15) as sock:
        sent = body if stall_after is None else body[:stall_after]
        sock.sendall(head.encode() + sent)
        return read_response(sock)


def head_of(hostile: Hostile, path: str, headers: dict[str, str], length: int) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{hostile.bus.port}\r\n"
        f"Content-Length: {length}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )


def test_recipient_list_over_the_limit(hostile: Hostile) -> None:
    """257 recipients (LIENTHONG_MAX_RECIPIENTS is 256)."""
    recipients = [f"000.{i // 100:02d}.{i % 100:02d}.H99" for i in range(257)]
    header = header_bytes(recipients=recipients)
    hostile.router_rejects(
        lambda: queued(hostile, header, hostile.pki.sign(header)),
        subject=message_id_of(header),
        reason="too_many_recipients",
        notice_to=G22,
    )


def test_attachment_declared_larger_than_the_limit(hostile: Hostile) -> None:
    ref = {**attachment("lon.pdf", b"x"), "size": 256 * MIB + 1}
    header = header_bytes(recipients=[H37], attachments=[ref])
    hostile.router_rejects(
        lambda: queued(hostile, header, hostile.pki.sign(header)),
        subject=message_id_of(header),
        reason="attachment_too_large",
        notice_to=G22,
    )


def test_attachment_larger_than_its_manifest_entry_over_amqp(hostile: Hostile) -> None:
    content = b"%PDF-1.7\n" + os.urandom(1000)
    header = header_bytes(recipients=[H37], attachments=[attachment("cv.pdf", content)])
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature, {"cv.pdf": content + b"\x00"}),
        subject=message_id_of(header),
        reason="attachment_size_mismatch",
        notice_to=G22,
    )


def test_inline_attachments_over_the_limit_over_amqp(hostile: Hostile) -> None:
    """4 MiB + 1 of inline files, past what the API would ever queue: not a submission the
    router takes (dead-lettered, kept for administrators)."""
    content = os.urandom(4 * MIB + 1)
    header = header_bytes(recipients=[H37], attachments=[attachment("big.bin", content)])
    body = Submission(header, hostile.pki.sign(header), {"big.bin": content}).encode()
    hostile.dead_letters(
        lambda: hostile.publish(body),
        subject=body_subject(body),
        reason="malformed_submission",
        dead_subject=message_id_of(header),
    )


def test_submission_frame_that_lies_about_its_lengths_over_amqp(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    body = Submission(header, hostile.pki.sign(header)).encode()
    lying = body[:4] + (len(header) + 10).to_bytes(4, "big") + body[8:]
    hostile.dead_letters(
        lambda: hostile.publish(lying), subject=body_subject(lying), reason="malformed_submission"
    )


def test_huge_base64_request_body(hostile: Hostile, http: httpx.Client) -> None:
    """9 MiB of base64 in the header field (LIENTHONG_MAX_REQUEST_BYTES is 8 MiB)."""
    blob = base64.b64encode(os.urandom(9 * MIB * 3 // 4)).decode()
    body = f'{{"header":"{blob}","signature":""}}'.encode()
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }
    hostile.api_refuses(
        lambda: http.post("/v1/messages", content=body, headers=headers), 413, "request_too_large"
    )


def test_huge_body_streamed_without_a_length(hostile: Hostile, http: httpx.Client) -> None:
    body = b'{"header":"' + b"A" * (9 * MIB) + b'","signature":""}'
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    hostile.api_refuses(
        lambda: http.post("/v1/messages", content=chunks(), headers=headers),
        413,
        "request_too_large",
    )


def test_upload_larger_than_its_content_length(hostile: Hostile) -> None:
    """Content-Length says 1000; 5000 bytes follow, signed as a whole. The HTTP server takes
    the surplus for a second request, which is not one: 400 for the connection, nothing kept."""
    content = os.urandom(5000)
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/blobs", content),
        "Content-Type": "application/octet-stream",
    }
    before = blob_files(hostile.bus)

    def attack() -> httpx.Response:
        reply = raw_request(hostile, head_of(hostile, "/v1/blobs", headers, 1000), content)
        return _response(reply)

    assert hostile.server_refuses(attack, 400) == "Invalid HTTP request received."
    assert blob_files(hostile.bus) == before
    for size in (1000, 5000):
        digest = hashlib.sha256(content[:size]).hexdigest()
        assert not (hostile.bus.root / "var" / "blobs" / digest[:2] / digest).exists()


def test_submission_larger_than_its_content_length(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    from tests.e2e.support import submit_body

    body = submit_body(header, hostile.pki.sign(header))
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }

    def attack() -> httpx.Response:
        return _response(raw_request(hostile, head_of(hostile, "/v1/messages", headers, 100), body))

    assert hostile.server_refuses(attack, 400) == "Invalid HTTP request received."
    assert hostile.messages_about(message_id_of(header)) == []


def test_stalled_submission_body_is_cut(hostile: Hostile) -> None:
    """Slowloris on POST /v1/messages: the head and 100 bytes, then nothing."""
    header = header_bytes(recipients=[H37])
    from tests.e2e.support import submit_body

    body = submit_body(header, hostile.pki.sign(header))
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/messages", body),
        "Content-Type": "application/json",
    }

    def attack() -> httpx.Response:
        started = time.monotonic()
        reply = raw_request(
            hostile, head_of(hostile, "/v1/messages", headers, len(body)), body, stall_after=100
        )
        waited = time.monotonic() - started
        assert IDLE_TIMEOUT_S * 0.5 <= waited < IDLE_TIMEOUT_S + 4, waited
        return _response(reply)

    hostile.api_refuses(attack, 408, "request_stalled")
    assert hostile.messages_about(message_id_of(header)) == []


def test_stalled_upload_is_cut(hostile: Hostile) -> None:
    content = os.urandom(20_000)
    headers = {
        **signed_headers(hostile[G22], "POST", "/v1/blobs", content),
        "Content-Type": "application/octet-stream",
    }
    before = blob_files(hostile.bus)

    def attack() -> httpx.Response:
        head = head_of(hostile, "/v1/blobs", headers, len(content))
        return _response(raw_request(hostile, head, content, stall_after=500))

    hostile.api_refuses(attack, 408, "upload_stalled")
    assert blob_files(hostile.bus) == before


def _response(reply: bytes) -> httpx.Response:
    """An httpx.Response from the raw bytes of one HTTP/1.1 response."""
    assert reply, "the server closed the connection without answering"
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines[1:])]
    return httpx.Response(status, headers=headers, content=body)
