"""Agency authentication: RFC 9421 request signatures with the key of a certificate pinned to the
agency, checked for freshness, replay, key, body, the agency's standing and revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from adapters import httpsig
from adapters.client import BusClient
from tests.e2e.support import (
    Parties,
    call,
    problem,
    signed_headers,
    submit_body,
)
from tests.forge import rsa_key
from tests.helpers import G22, H37, H37_FINANCE, Pki, header_bytes
from tests.services import BusProcesses


@pytest.fixture(scope="module")
def parties(shared_bus: BusProcesses, pki: Pki) -> Iterator[Parties]:
    opened = Parties(shared_bus, pki)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def http(shared_bus: BusProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_bus.url, timeout=10) as client:
        yield client


def test_a_request_without_signature_headers_is_unauthenticated(http: httpx.Client) -> None:
    for method, path in (
        ("GET", "/v1/inbox"),
        ("GET", "/v1/agencies"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/blobs"),
        ("GET", "/v1/trace"),
    ):
        body = problem(http.request(method, path), 401, "unauthenticated")
        assert "signature-input" in body["detail"]


def test_the_401_tells_the_client_how_to_sign(http: httpx.Client) -> None:
    response = http.get("/v1/inbox")
    problem(response, 401, "unauthenticated")
    assert response.headers["accept-signature"].startswith('sig1=("@method" "@path"')


def test_a_captured_request_cannot_be_replayed(parties: Parties, http: httpx.Client) -> None:
    headers = signed_headers(parties[H37], "GET", "/v1/inbox")
    assert http.get("/v1/inbox", headers=headers).status_code == 200
    problem(http.get("/v1/inbox", headers=headers), 401, "replayed_request")


def test_an_expired_signature_is_refused(parties: Parties, http: httpx.Client) -> None:
    headers = signed_headers(parties[H37], "GET", "/v1/inbox", now=int(time.time()) - 600)
    problem(http.get("/v1/inbox", headers=headers), 401, "signature_expired")


def test_a_signature_past_its_expiry_is_refused_even_if_recent(
    parties: Parties, http: httpx.Client
) -> None:
    # Created 20 s ago (within the skew) but it said it expires after 10 s.
    headers = signed_headers(
        parties[H37], "GET", "/v1/inbox", now=int(time.time()) - 20, lifetime=10
    )
    problem(http.get("/v1/inbox", headers=headers), 401, "signature_expired")


def test_a_signature_from_the_future_is_refused(parties: Parties, http: httpx.Client) -> None:
    headers = signed_headers(parties[H37], "GET", "/v1/inbox", now=int(time.time()) + 600)
    problem(http.get("/v1/inbox", headers=headers), 401, "signature_from_future")


def test_a_signature_that_lives_too_long_is_refused(parties: Parties, http: httpx.Client) -> None:
    headers = signed_headers(parties[H37], "GET", "/v1/inbox", lifetime=3600)
    problem(http.get("/v1/inbox", headers=headers), 401, "signature_lifetime")


def test_the_key_of_an_unregistered_certificate_is_unknown(
    pki: Pki, shared_bus: BusProcesses, http: httpx.Client
) -> None:
    # The leader's personal certificate chains to the trust anchor but is pinned to nothing.
    cert, key = pki.dev.leader(G22)
    with shared_bus.client(cert, key) as leader:
        headers = signed_headers(leader, "GET", "/v1/inbox")
    problem(http.get("/v1/inbox", headers=headers), 401, "unknown_key")


def test_a_signature_by_another_key_under_a_registered_keyid_is_refused(
    parties: Parties, shared_bus: BusProcesses, http: httpx.Client
) -> None:
    impostor = BusClient(shared_bus.url, parties.pki.seal(H37).certificate, rsa_key(2048, slot=7))
    with impostor:
        headers = signed_headers(impostor, "GET", "/v1/inbox")
    problem(http.get("/v1/inbox", headers=headers), 401, "bad_request_signature")


def test_a_body_altered_after_signing_is_refused(parties: Parties, http: httpx.Client) -> None:
    header = header_bytes(sender=H37, recipients=[G22])
    body = submit_body(header, parties.pki.sign(header, sender=H37))
    headers = signed_headers(parties[H37], "POST", "/v1/messages", body)
    headers["Content-Type"] = "application/json"
    altered = body.replace(b'"attachments": []', b'"attachments":[]')
    assert len(altered) == len(body) - 1
    problem(
        http.post("/v1/messages", content=altered, headers=headers), 401, "content_digest_mismatch"
    )


def test_a_content_digest_swapped_with_the_body_breaks_the_signature(
    parties: Parties, http: httpx.Client
) -> None:
    body = b'{"header":"", "signature":""}'
    headers = signed_headers(parties[H37], "POST", "/v1/messages", b"something else")
    headers["Content-Digest"] = httpsig.content_digest(body)  # matches the body, not the signature
    problem(http.post("/v1/messages", content=body, headers=headers), 401, "bad_request_signature")


def test_a_signature_is_bound_to_its_method_path_and_query(
    parties: Parties, http: httpx.Client
) -> None:
    headers = signed_headers(parties[H37], "GET", "/v1/inbox")
    problem(http.get("/v1/agencies", headers=headers), 401, "bad_request_signature")
    headers = signed_headers(parties[H37], "GET", "/v1/inbox", query="limit=1")
    problem(http.get("/v1/inbox?limit=2", headers=headers), 401, "bad_request_signature")
    headers = signed_headers(parties[H37], "POST", "/v1/inbox")
    problem(http.get("/v1/inbox", headers=headers), 401, "bad_request_signature")


def test_malformed_signature_headers_are_refused(parties: Parties, http: httpx.Client) -> None:
    good = signed_headers(parties[H37], "GET", "/v1/inbox")
    for name, value in (
        ("Signature-Input", 'sig1=("@method");created=1;keyid="x"'),
        ("Signature", "sig1=not-base64"),
        ("Content-Digest", "sha-512=:AAAA:"),
    ):
        problem(http.get("/v1/inbox", headers={**good, name: value}), 401, "bad_signature_headers")


def test_a_disabled_agency_is_forbidden_until_enabled_again(
    parties: Parties, shared_bus: BusProcesses
) -> None:
    client = parties[H37_FINANCE]
    assert call(client, "GET", "/v1/inbox").status_code == 200
    shared_bus.cli("agency", "disable", H37_FINANCE)
    try:
        problem(call(client, "GET", "/v1/inbox"), 403, "agency_disabled")
        header = header_bytes(sender=H37_FINANCE, recipients=[G22])
        body = submit_body(header, parties.pki.sign(header, sender=H37_FINANCE))
        problem(
            call(client, "POST", "/v1/messages", body, content_type="application/json"),
            403,
            "agency_disabled",
        )
        # Other agencies are unaffected.
        assert call(parties[H37], "GET", "/v1/inbox").status_code == 200
    finally:
        shared_bus.cli("agency", "enable", H37_FINANCE)
    assert call(client, "GET", "/v1/inbox").status_code == 200


def test_the_administrator_credential_opens_administrator_routes(
    parties: Parties, http: httpx.Client
) -> None:
    response = call(parties.admin, "GET", "/v1/trace", query="limit=1")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"items", "next_cursor"}


# --- problem details for what the framework refuses -----------------------------------------


def test_errors_outside_authentication_are_problem_details(
    parties: Parties, http: httpx.Client
) -> None:
    problem(http.get("/v1/nowhere"), 404, "not_found")
    problem(http.put("/v1/inbox"), 405, "method_not_allowed")
    client = parties[H37]
    problem(call(client, "GET", "/v1/inbox/not-a-uuid"), 422, "invalid_request")
    problem(call(client, "GET", "/v1/inbox", query="limit=0"), 422, "invalid_request")
    problem(call(client, "GET", "/v1/inbox", query="cursor=bm9wZQ"), 400, "bad_cursor")
    post = {"content_type": "application/json"}
    problem(call(client, "POST", "/v1/messages", b"{", **post), 422, "invalid_request")
    bad_base64 = b'{"header": "YQ", "signature": "YQ=="}'
    problem(call(client, "POST", "/v1/messages", bad_base64, **post), 400, "bad_base64")
    problem(call(parties.admin, "GET", "/v1/trace", query="since=yesterday"), 400, "bad_time")
