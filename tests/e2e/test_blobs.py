"""Large attachments: uploaded to /v1/blobs (streamed, content-addressed, kept only when the body
is its signed Content-Digest), referenced from a header's manifest, downloaded by the recipient.

Size limits and the cut of a stalled upload need a bus configured for them: test_limits.py."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator

import pytest

from tests.e2e.support import (
    Parties,
    blob_files,
    call,
    message_id_of,
    problem,
    stored_at,
    submit,
    upload_raw,
    wait_for_state,
)
from tests.helpers import G22, H37, Pki, attachment, header_bytes
from tests.services import BusProcesses

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def parties(shared_bus: BusProcesses, pki: Pki) -> Iterator[Parties]:
    opened = Parties(shared_bus, pki)
    yield opened
    opened.close()


def test_a_3_mib_upload_referenced_by_a_manifest_reaches_the_recipient(
    parties: Parties, shared_bus: BusProcesses
) -> None:
    content = os.urandom(3 * MIB)
    sha256 = hashlib.sha256(content).hexdigest()
    assert parties[G22].upload(content) == {"sha256": sha256, "size": len(content)}
    assert stored_at(shared_bus, sha256).read_bytes() == content
    header = header_bytes(
        recipients=[H37],
        attachments=[attachment("du-toan-2027.xlsx", content, "application/octet-stream")],
    )
    response = submit(parties[G22], header, parties.pki.sign(header))  # nothing inline
    assert response.status_code == 202, response.text
    message_id = message_id_of(header)
    assert wait_for_state(parties[G22], message_id)["state"] == "stored"
    message = parties[H37].read(message_id)
    assert message["attachments"] == [
        {
            "name": "du-toan-2027.xlsx",
            "media_type": "application/octet-stream",
            "size": len(content),
            "sha256": sha256,
            "href": f"/v1/blobs/{sha256}",
        }
    ]
    download = call(parties[H37], "GET", f"/v1/blobs/{sha256}")
    assert download.status_code == 200
    assert download.content == content
    assert download.headers["content-type"] == "application/octet-stream"
    expected = base64.b64encode(hashlib.sha256(content).digest()).decode()
    assert download.headers["content-digest"] == f"sha-256=:{expected}:"


def test_uploading_the_same_content_twice_keeps_one_file(
    parties: Parties, shared_bus: BusProcesses
) -> None:
    content = os.urandom(10_000)
    first = parties[G22].upload(content)
    second = parties[H37].upload(content)
    assert first == second
    assert [p.name for p in blob_files(shared_bus)].count(first["sha256"]) == 1


def test_an_upload_whose_body_is_not_its_content_digest_is_refused_and_not_kept(
    parties: Parties, shared_bus: BusProcesses
) -> None:
    announced, sent = os.urandom(100_000), os.urandom(100_000)
    before = blob_files(shared_bus)
    problem(upload_raw(parties[G22], sent, signed_body=announced), 401, "content_digest_mismatch")
    for content in (announced, sent):
        assert not stored_at(shared_bus, hashlib.sha256(content).hexdigest()).exists()
    assert blob_files(shared_bus) == before
    problem(
        call(parties[G22], "GET", f"/v1/blobs/{hashlib.sha256(sent).hexdigest()}"),
        404,
        "not_found",
    )


def test_an_unknown_blob_is_not_found(parties: Parties) -> None:
    problem(call(parties[G22], "GET", f"/v1/blobs/{'0' * 64}"), 404, "not_found")
    problem(call(parties[G22], "GET", "/v1/blobs/not-a-digest"), 422, "invalid_request")
