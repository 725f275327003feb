"""A document travels through the whole bus: submit -> verify -> inbox -> pull -> ack -> trace."""

from __future__ import annotations

import base64
import time
from typing import Any

from adapters.client import ApiError, BusClient
from tests.helpers import G22, H37, H37_FINANCE, Pki, attachment, header_bytes
from tests.services import BusProcesses


def wait_for_state(client: BusClient, message_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.message_state(message_id)
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def agency_client(bus: BusProcesses, pki: Pki, code: str) -> BusClient:
    cert, key = pki.dev.seal(code)
    return bus.client(cert, key)


def test_document_is_delivered_pulled_and_acknowledged(bus: BusProcesses, pki: Pki) -> None:
    pdf = b"%PDF-1.7\n" + "Quyết định số 2491".encode() * 200
    header = header_bytes(
        recipients=[H37, H37_FINANCE], attachments=[attachment("quyet-dinh.pdf", pdf)]
    )
    signature = pki.sign(header, personal=True)
    with (
        agency_client(bus, pki, G22) as sender,
        agency_client(bus, pki, H37) as receiver,
    ):
        queued = sender.submit(header, signature, {"quyet-dinh.pdf": pdf})
        message_id = queued["message_id"]
        state = wait_for_state(sender, message_id)
        assert state["state"] == "stored", state
        assert {r["recipient"]: r["state"] for r in state["recipients"]} == {
            H37: "delivered",
            H37_FINANCE: "delivered",
        }
        page = receiver.inbox()
        assert message_id in [item["message_id"] for item in page["items"]]
        message = receiver.read(message_id)
        assert base64.b64decode(message["header"]) == header
        assert base64.b64decode(message["signature"]) == signature
        assert [s["name"] for s in message["signers"]] == ["Văn phòng Chính phủ", "Trần Văn Minh"]
        (link,) = message["attachments"]
        assert receiver.blob(link["sha256"]) == pdf
        receiver.ack(message_id)
        after = sender.message_state(message_id)
        states = {r["recipient"]: r["state"] for r in after["recipients"]}
        assert states == {H37: "acknowledged", H37_FINANCE: "delivered"}
    admin_cert, admin_key = pki.dev.admin
    with bus.client(admin_cert, admin_key) as admin:
        timeline = admin.trace(message_id)
    assert timeline["chain_intact"] is True
    events = [(e["event"], e["recipient"]) for e in timeline["events"]]
    assert events == [
        ("submitted", None),
        ("verified", None),
        ("stored", None),
        ("delivered", H37),
        ("delivered", H37_FINANCE),
        ("fetched", H37),
        ("acknowledged", H37),
    ]
