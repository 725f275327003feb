"""Status updates a recipient sends back to the sender, and the ``lienthong pull``, ``ack`` and
``trace`` commands against the running bus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import (
    Parties,
    call,
    events,
    in_inbox,
    inbox_items,
    message_id_of,
    problem,
    status_header,
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


def send_document(parties: Parties, recipient: str, **kwargs: object) -> str:
    header = header_bytes(recipients=[recipient], **kwargs)
    response = submit(parties[G22], header, parties.pki.sign(header))
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert wait_for_state(parties[G22], message_id)["state"] == "stored"
    return message_id


def send_status(parties: Parties, sender: str, recipient: str, about: str, code: str) -> str:
    header = status_header(sender, recipient, about, code=code)
    response = submit(parties[sender], header, parties.pki.sign(header, sender=sender))
    assert response.status_code == 202, response.text
    return message_id_of(header)


# --- status updates --------------------------------------------------------------------------


def test_a_received_status_goes_back_to_the_sender(parties: Parties) -> None:
    document = send_document(parties, H37)
    assert parties[H37].read(document)["kind"] == "document"
    status = send_status(parties, H37, G22, document, "03")
    assert wait_for_state(parties[H37], status)["state"] == "stored"
    # The sender's view of its document lists the answer ...
    statuses = parties[G22].message_state(document)["statuses"]
    assert [(s["message_id"], s["sender"], s["code"]) for s in statuses] == [(status, H37, "03")]
    # ... and the status itself is in the sender's inbox, signed by the recipient's seal.
    (item,) = [i for i in inbox_items(parties[G22]) if i["message_id"] == status]
    assert (item["kind"], item["sender"], item["status_code"], item["for_message_id"]) == (
        "status",
        H37,
        "03",
        document,
    )
    message = parties[G22].read(status)
    assert message["header_json"]["status"] == {
        "for_message_id": document,
        "code": "03",
        "description": "Đã nhận văn bản",
    }
    assert [(s["role"], s["agency_code"]) for s in message["signers"]] == [("organisation", H37)]
    # Nobody else got it, and the document's trace records the answer.
    assert not in_inbox(parties[H37_FINANCE], status)
    timeline = parties.admin.trace(document)
    assert ("status", None, None) in events(timeline)
    (traced,) = [e for e in timeline["events"] if e["event"] == "status"]
    assert traced["actor"] == H37
    assert status in traced["detail"]


def test_a_status_about_a_message_never_received_is_unrelated(parties: Parties) -> None:
    document = send_document(parties, H37)
    status = send_status(parties, H37_FINANCE, G22, document, "03")
    state = wait_for_state(parties[H37_FINANCE], status)
    assert (state["state"], state["reason"]) == ("rejected", "status_unrelated")
    assert not in_inbox(parties[G22], status)
    assert parties[G22].message_state(document)["statuses"] == []
    timeline = wait_for_trace(parties.admin, status, "notice")
    assert events(timeline)[:2] == [
        ("submitted", None, None),
        ("rejected", None, "status_unrelated"),
    ]
    assert "status" not in [e for e, _, _ in events(parties.admin.trace(document))]
    notice = wait_for_notice(parties[H37_FINANCE], status)
    verify_notice(parties.pki, notice, status, "status_unrelated")


def test_a_status_goes_to_the_documents_sender_only(parties: Parties) -> None:
    document = send_document(parties, H37)
    status = send_status(parties, H37, H37_FINANCE, document, "05")
    state = wait_for_state(parties[H37], status)
    assert (state["state"], state["reason"]) == ("rejected", "status_unrelated")
    assert not in_inbox(parties[H37_FINANCE], status)
    assert parties[G22].message_state(document)["statuses"] == []


def test_a_status_about_an_unknown_message_is_unrelated(parties: Parties) -> None:
    status = send_status(parties, H37, G22, str(uuid.uuid4()), "03")
    state = wait_for_state(parties[H37], status)
    assert (state["state"], state["reason"]) == ("rejected", "status_unrelated")


# --- the commands ----------------------------------------------------------------------------


def lienthong(processes: BusProcesses, *args: str | Path, code: int = 0) -> str:
    done = processes.cli(*args, check=False)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    return done.stdout.decode() + done.stderr.decode()


def test_pull_ack_and_trace_commands(
    parties: Parties, shared_bus: BusProcesses, tmp_path: Path
) -> None:
    pdf = b"%PDF-1.7\n" + "Quyết định".encode() * 500
    header = header_bytes(
        recipients=[H37_FINANCE],
        attachments=[attachment("quyet-dinh.pdf", pdf)],
        subject="Về việc giao dự toán",
    )
    signature = parties.pki.sign(header)
    response = submit(parties[G22], header, signature, {"quyet-dinh.pdf": pdf})
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert wait_for_state(parties[G22], message_id)["state"] == "stored"
    cert, key = parties.pki.dev.seal(H37_FINANCE)
    login = ("--cert", cert, "--key", key, "--api", shared_bus.url)
    pull = ("pull", *login, "--limit", "200")  # the shared bus's inbox may hold others' messages

    out = lienthong(shared_bus, *pull, "--out", tmp_path)
    assert f"{message_id}  from {G22}  document: Về việc giao dự toán" in out
    saved = tmp_path / message_id
    assert (saved / "header.json").read_bytes() == header
    assert (saved / "signature.der").read_bytes() == signature
    assert (saved / "quyet-dinh.pdf").read_bytes() == pdf
    recipients = parties[G22].message_state(message_id)["recipients"]
    assert [(r["recipient"], r["state"]) for r in recipients] == [(H37_FINANCE, "fetched")]

    out = lienthong(shared_bus, "ack", message_id, *login)
    assert out.startswith(f"acknowledged {message_id} at ")
    recipients = parties[G22].message_state(message_id)["recipients"]
    assert [(r["recipient"], r["state"]) for r in recipients] == [(H37_FINANCE, "acknowledged")]
    assert "404 not_found" in lienthong(shared_bus, "ack", str(uuid.uuid4()), *login, code=1)

    text = lienthong(shared_bus, "trace", message_id)
    lines = text.splitlines()
    assert lines[0] == f"trace of {message_id}"
    assert [line.split()[2] for line in lines[1:-1]] == [
        "submitted",
        "verified",
        "stored",
        "delivered",
        "fetched",
        "acknowledged",
    ]
    assert f"from {G22}" in lines[1]
    assert f"to {H37_FINANCE}" in lines[4]
    assert f"by {H37_FINANCE}" in lines[6]
    assert lines[-1] == "  chain: intact"

    # pull --ack acknowledges whatever else is pending (other tests' messages and notices).
    lienthong(shared_bus, *pull, "--ack")
    assert all(i["acknowledged_at"] is not None for i in inbox_items(parties[H37_FINANCE]))


def test_pull_with_an_unregistered_credential_fails_with_the_problem(
    parties: Parties, shared_bus: BusProcesses
) -> None:
    cert, key = parties.pki.dev.leader(H37_FINANCE)  # a valid certificate, pinned to nothing
    out = lienthong(
        shared_bus, "pull", "--cert", cert, "--key", key, "--api", shared_bus.url, code=1
    )
    assert "401 unknown_key" in out
    problem(call(parties[H37_FINANCE], "GET", f"/v1/inbox/{uuid.uuid4()}"), 404, "not_found")
