"""What the end-to-end tests of the bus's public doors share: clients, raw signed requests,
polling, problem-details checks, traces and rejection notices.

Every helper goes through the bus's HTTP API as an agency system or an administrator would;
nothing here reads the database behind the bus's back.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from adapters import httpsig
from adapters.client import ApiError, BusClient
from adapters.files import load_certificates
from exchange.ports import AgencyRecord, SystemClock
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verifier
from tests.helpers import G22, H37, H37_FINANCE, MemoryRegistry, Pki, encode
from tests.services import BusProcesses, postgres_database

BUS_CODE = "000.00.00.LT0"
UNKNOWN = "000.00.99.H37"  # a well-formed code no one registered
AGENCIES = (G22, H37, H37_FINANCE)
PROBLEM = "application/problem+json"

T = TypeVar("T")


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a SQLite file in ``folder`` or of a fresh PostgreSQL database (dropped after),
    for a bus a module starts with settings or a PKI of its own (test_limits)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'lienthong.db'}"
    else:
        with postgres_database() as url:
            yield url


# --- clients -------------------------------------------------------------------------------


def agency_client(bus: BusProcesses, pki: Pki, code: str) -> BusClient:
    cert, key = pki.dev.seal(code)
    return bus.client(cert, key)


def admin_client(bus: BusProcesses, pki: Pki) -> BusClient:
    cert, key = pki.dev.admin
    return bus.client(cert, key)


def signed_headers(
    client: BusClient,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    now: int | None = None,
    lifetime: int = 60,
) -> dict[str, str]:
    """RFC 9421 headers made with the client's key, as BusClient makes them."""
    return httpsig.sign_request(
        client.key,
        client.key_id,
        method,
        path,
        query,
        body,
        now=int(time.time()) if now is None else now,
        lifetime=lifetime,
    )


def call(
    client: BusClient,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    content_type: str | None = None,
) -> httpx.Response:
    """A signed request whose response comes back whatever its status (BusClient raises)."""
    headers = signed_headers(client, method, path, body, query=query)
    if content_type is not None:
        headers["Content-Type"] = content_type
    url = f"{path}?{query}" if query else path
    return client.http.request(method, url, content=body, headers=headers)


def submit_body(
    header: bytes, signature: bytes, attachments: Mapping[str, bytes] | None = None
) -> bytes:
    return json.dumps(
        {
            "header": base64.b64encode(header).decode(),
            "signature": base64.b64encode(signature).decode(),
            "attachments": [
                {"name": name, "content": base64.b64encode(content).decode()}
                for name, content in (attachments or {}).items()
            ],
        }
    ).encode()


def submit(
    client: BusClient,
    header: bytes,
    signature: bytes,
    attachments: Mapping[str, bytes] | None = None,
) -> httpx.Response:
    return call(
        client,
        "POST",
        "/v1/messages",
        submit_body(header, signature, attachments),
        content_type="application/json",
    )


# --- problem details -----------------------------------------------------------------------


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status and code; return its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert body["type"] == f"urn:lienthong:problem:{code}", body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    return body


# --- polling -------------------------------------------------------------------------------


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 20, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def wait_for_state(client: BusClient, message_id: str, timeout: float = 20) -> dict[str, Any]:
    """The sender's view of a message once the router has decided it."""

    def probe() -> dict[str, Any] | None:
        try:
            return client.message_state(message_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None

    return eventually(probe, timeout=timeout, what=f"a verdict on {message_id}")


def wait_for_trace(
    admin: BusClient, subject: str, event: str | None, timeout: float = 20
) -> dict[str, Any]:
    """The timeline of ``subject`` once it holds ``event`` (None: once it exists)."""

    def probe() -> dict[str, Any] | None:
        try:
            timeline = admin.trace(subject)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None
        found = [e["event"] for e in timeline["events"]]
        return timeline if event is None or event in found else None

    return eventually(probe, timeout=timeout, what=f"{event} in the trace of {subject}")


def events(timeline: Mapping[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(event, recipient, reason) of every trace entry, in order."""
    return [(e["event"], e["recipient"], e["reason"]) for e in timeline["events"]]


# --- inboxes -------------------------------------------------------------------------------


def inbox_items(client: BusClient) -> list[dict[str, Any]]:
    """The caller's whole inbox, every page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = client.inbox(cursor=cursor, limit=200)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def in_inbox(client: BusClient, message_id: str) -> bool:
    """Whether GET /v1/inbox/{id} finds the message (and the listing agrees)."""
    listed = message_id in [i["message_id"] for i in inbox_items(client)]
    response = call(client, "GET", f"/v1/inbox/{message_id}")
    if response.status_code == 404:
        problem(response, 404, "not_found")
        assert not listed, f"{message_id} is listed but cannot be read"
        return False
    assert response.status_code == 200, response.text
    assert listed, f"{message_id} can be read but is not listed"
    return True


def wait_for_notice(client: BusClient, about: str, timeout: float = 20) -> dict[str, Any]:
    """The rejection notice about ``about`` in the caller's inbox, read in full."""

    def probe() -> dict[str, Any] | None:
        for item in inbox_items(client):
            if item["kind"] == "status" and item["for_message_id"] == about:
                return item
        return None

    item = eventually(probe, timeout=timeout, what=f"a rejection notice about {about}")
    assert item["sender"] == BUS_CODE, item
    assert item["status_code"] == "02", item
    return client.read(item["message_id"])


def verify_notice(
    pki: Pki,
    message: Mapping[str, Any],
    about: str,
    reason: str,
    *,
    anchors_only: bool = False,
) -> Accepted:
    """Check a rejection notice with the core verifier against the PKI's trust anchors.

    The registry knows the bus's code with only the bus certificate pinned, so the notice must
    be sealed by pki/bus/bus.pem itself. Notices embed the issuing CA; unless ``anchors_only``
    the PKI's chain.pem is trusted as well.
    """
    bus_cert = load_certificates(pki.dev.bus[0])[0]
    bus_fingerprint = hashlib.sha256(bus_cert.public_bytes(Encoding.DER)).hexdigest()
    records = {a.code: AgencyRecord(a.code, a.name, True, frozenset()) for a in pki.dev.agencies()}
    records[BUS_CODE] = AgencyRecord(BUS_CODE, "lienthong", True, frozenset({bus_fingerprint}))
    anchors = pki.anchors() if anchors_only else [*pki.anchors(), *pki.chain()]
    trust = TrustStore(anchors, pki.crls())
    verifier = Verifier(trust, MemoryRegistry(records), SystemClock())
    header = base64.b64decode(message["header"])
    verdict = verifier.verify(header, base64.b64decode(message["signature"]))
    assert isinstance(verdict, Accepted), verdict
    assert verdict.seal.fingerprint == bus_fingerprint
    parsed = verdict.header
    assert parsed.kind == "status"
    assert parsed.status is not None
    assert parsed.sender == BUS_CODE
    assert str(parsed.status.for_message_id) == about
    assert parsed.status.code.value == "02"
    assert parsed.status.description.startswith(f"{reason}: "), parsed.status.description
    return verdict


# --- headers -------------------------------------------------------------------------------


def status_header(
    sender: str,
    recipient: str,
    for_message_id: str,
    *,
    code: str = "03",
    description: str = "Đã nhận văn bản",
    message_id: str | None = None,
) -> bytes:
    return encode(
        {
            "version": 1,
            "message_id": message_id or str(uuid.uuid4()),
            "kind": "status",
            "sender": sender,
            "recipients": [recipient],
            "created_at": dt.datetime.now(dt.UTC)
            .replace(microsecond=0)
            .isoformat()
            .replace("+00:00", "Z"),
            "status": {"for_message_id": for_message_id, "code": code, "description": description},
            "attachments": [],
        }
    )


def message_id_of(header: bytes) -> str:
    value: str = json.loads(header)["message_id"]
    return value


def stored_at(bus: BusProcesses, sha256: str) -> Path:
    return bus.root / "var" / "blobs" / sha256[:2] / sha256


def upload_raw(
    client: BusClient, body: bytes, *, signed_body: bytes | None = None, chunked: bool = False
) -> httpx.Response:
    """POST /v1/blobs, signed over ``signed_body`` (default: the body itself)."""
    headers = signed_headers(
        client, "POST", "/v1/blobs", body if signed_body is None else signed_body
    )
    headers["Content-Type"] = "application/octet-stream"
    if chunked:

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        return client.http.post("/v1/blobs", content=pieces(), headers=headers)
    return client.http.post("/v1/blobs", content=body, headers=headers)


def blob_files(bus: BusProcesses) -> list[Path]:
    """Every file under the bus's blob store, temporary ones included."""
    root = bus.root / "var" / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file())


class Parties:
    """One client per demo agency and one administrator, on one bus."""

    def __init__(self, bus: BusProcesses, pki: Pki) -> None:
        self.bus = bus
        self.pki = pki
        self.agencies = {code: agency_client(bus, pki, code) for code in AGENCIES}
        self.admin = admin_client(bus, pki)

    def __getitem__(self, code: str) -> BusClient:
        return self.agencies[code]

    def close(self) -> None:
        for client in [*self.agencies.values(), self.admin]:
            client.close()
