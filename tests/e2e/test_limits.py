"""Doors that need a bus of their own: upload limits and the idle cut (a small
LIENTHONG_MAX_BLOB_BYTES and LIENTHONG_BLOB_IDLE_TIMEOUT_S=1 in its environment), and a revoked
credential (its own development PKI, whose seal a test revokes). Only the API runs: none of
this reaches the router.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.client import BusClient
from adapters.pki.folder import DevPki
from tests.e2e.support import (
    blob_files,
    call,
    database,
    eventually,
    problem,
    signed_headers,
    stored_at,
    upload_raw,
)
from tests.helpers import G22, H37
from tests.services import BusProcesses

LIMIT = 64 * 1024  # LIENTHONG_MAX_BLOB_BYTES


@dataclass(frozen=True)
class Own:
    bus: BusProcesses
    pki: DevPki

    def client(self, code: str) -> BusClient:
        return self.bus.client(*self.pki.seal(code))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def own(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Own]:
    root: Path = tmp_path_factory.mktemp("own")
    pki = DevPki(root / "pki")
    pki.init()
    env = {"LIENTHONG_MAX_BLOB_BYTES": str(LIMIT), "LIENTHONG_BLOB_IDLE_TIMEOUT_S": "1"}
    with database(request.param, root) as url:
        processes = BusProcesses(root=root, pki_dir=pki.root, database_url=url, extra_env=env)
        processes.prepare()
        try:
            processes.start_api()
            yield Own(processes, pki)
        finally:
            processes.stop()


# --- blob limits -----------------------------------------------------------------------------


def test_an_upload_at_the_limit_is_stored(own: Own) -> None:
    content = os.urandom(LIMIT)
    with own.client(G22) as client:
        response = upload_raw(client, content)
    assert response.status_code == 201, response.text
    assert stored_at(own.bus, hashlib.sha256(content).hexdigest()).read_bytes() == content


def test_an_upload_declared_over_the_limit_is_refused_and_not_kept(own: Own) -> None:
    content = os.urandom(LIMIT + 1)
    before = blob_files(own.bus)
    with own.client(G22) as client:
        problem(upload_raw(client, content), 413, "blob_too_large")
    assert blob_files(own.bus) == before
    assert not stored_at(own.bus, hashlib.sha256(content).hexdigest()).exists()


def test_a_chunked_upload_growing_over_the_limit_is_cut_and_not_kept(own: Own) -> None:
    content = os.urandom(4 * LIMIT)
    before = blob_files(own.bus)
    with own.client(G22) as client:
        problem(upload_raw(client, content, chunked=True), 413, "blob_too_large")
    assert blob_files(own.bus) == before


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response (head and Content-Length body), or b"" if the peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_stalled_upload_is_cut_and_not_kept(own: Own) -> None:
    content = os.urandom(50_000)
    before = blob_files(own.bus)
    with own.client(G22) as client:
        headers = signed_headers(client, "POST", "/v1/blobs", content)
    head = (
        "POST /v1/blobs HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{own.bus.port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(content)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", own.bus.port), timeout=10) as sock:
        sock.sendall(head.encode() + content[:1000])  # ... and nothing more
        started = time.monotonic()
        reply = read_response(sock)
        waited = time.monotonic() - started
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert 0.5 <= waited < 5, waited
    if reply:
        assert b"upload_stalled" in reply
        assert b"application/problem+json" in reply
    assert blob_files(own.bus) == before
    assert not stored_at(own.bus, hashlib.sha256(content).hexdigest()).exists()


# --- revocation ------------------------------------------------------------------------------


def test_a_revoked_certificate_stops_working_within_the_crl_poll(
    own: Own,
) -> None:
    bus, dev = own.bus, own.pki
    with bus.client(*dev.seal(H37)) as revoked, bus.client(*dev.seal(G22)) as bystander:
        assert call(revoked, "GET", "/v1/inbox").status_code == 200
        dev.revoke(dev.seal(H37)[0])
        started = time.monotonic()

        def refused() -> httpx.Response | None:
            response = call(revoked, "GET", "/v1/inbox")
            return response if response.status_code != 200 else None

        response = eventually(refused, timeout=5, what="the revoked seal to be refused")
        assert time.monotonic() - started < 3, "the API polls CRL files every 0.5 s"
        problem(response, 401, "certificate_revoked")
        problem(call(revoked, "GET", "/v1/agencies"), 401, "certificate_revoked")
        assert call(bystander, "GET", "/v1/inbox").status_code == 200
