"""Every route, called without a credential, with the wrong method, or (the TSA) with what is
not a time-stamp query."""

from __future__ import annotations

import base64
import os

import httpx
import pytest

from adapters.tsa.protocol import MEDIA_QUERY, MEDIA_REPLY, parse_response
from tests.e2e.support import call
from tests.helpers import G22
from tests.security.hostile import Hostile, new_id

SHA = "0" * 64
AUTHENTICATED = [
    ("POST", "/v1/messages"),
    ("GET", f"/v1/messages/{new_id()}"),
    ("POST", "/v1/blobs"),
    ("GET", f"/v1/blobs/{SHA}"),
    ("GET", "/v1/inbox"),
    ("GET", f"/v1/inbox/{new_id()}"),
    ("POST", f"/v1/inbox/{new_id()}/ack"),
    ("GET", "/v1/agencies"),
    ("GET", f"/v1/trace/{new_id()}"),
    ("GET", "/v1/trace"),
]


@pytest.fixture(scope="module")
def http(hostile: Hostile) -> httpx.Client:
    return hostile.admin.http


@pytest.mark.parametrize(
    ("method", "path"), AUTHENTICATED, ids=[f"{m} {p}" for m, p in AUTHENTICATED]
)
def test_call_without_a_credential(
    hostile: Hostile, http: httpx.Client, method: str, path: str
) -> None:
    response = hostile.api_refuses(
        lambda: http.request(method, path, content=b"{}"), 401, "unauthenticated"
    )
    assert "signature-input" in response["detail"]


def test_call_with_a_method_the_route_does_not_have(hostile: Hostile, http: httpx.Client) -> None:
    def attack() -> httpx.Response:
        response = http.delete("/v1/inbox")
        assert response.headers["allow"] == "GET", response.headers
        return response

    hostile.api_refuses(attack, 405, "method_not_allowed")


def test_garbage_time_stamp_query_gets_a_pki_status_rejection(
    hostile: Hostile, http: httpx.Client
) -> None:
    before = hostile.counts()
    response = http.post("/v1/tsa", content=os.urandom(300), headers={"Content-Type": MEDIA_QUERY})
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_REPLY
    reply = parse_response(response.content)
    assert not reply.granted
    assert reply.token is None
    hostile.assert_written(before, hostile.counts(), messages=0, rejections=0, trace_events=0)
    hostile.assert_alive()


def test_oversized_time_stamp_query(hostile: Hostile, http: httpx.Client) -> None:
    response = http.post(
        "/v1/tsa", content=b"\x30" * 1_000_000, headers={"Content-Type": MEDIA_QUERY}
    )
    assert response.status_code == 413
    assert not parse_response(response.content).granted
    hostile.assert_alive()


def test_time_stamp_query_sent_as_json(hostile: Hostile, http: httpx.Client) -> None:
    response = http.post("/v1/tsa", json={"hash": SHA})
    assert response.status_code == 415
    assert not parse_response(response.content).granted
    hostile.assert_alive()


def test_trace_cursor_past_the_largest_row_id(hostile: Hostile) -> None:
    """A cursor no BIGINT holds (it reached the database, a 500, before the route bounded it)."""
    hostile.api_refuses(
        lambda: call(hostile.admin, "GET", "/v1/trace", query=f"cursor={2**63}"),
        422,
        "invalid_request",
    )


def test_inbox_cursor_past_the_largest_row_id(hostile: Hostile) -> None:
    forged = base64.urlsafe_b64encode(f"u:{2**64}".encode()).decode().rstrip("=")
    hostile.api_refuses(
        lambda: call(hostile[G22], "GET", "/v1/inbox", query=f"cursor={forged}"),
        400,
        "bad_cursor",
    )


def test_trace_search_since_a_time_with_no_utc_equivalent(hostile: Hostile) -> None:
    """Year 1 at +14:00 is before the year 1 in UTC (it was a 500 before the route said so)."""
    hostile.api_refuses(
        lambda: call(hostile.admin, "GET", "/v1/trace", query="since=0001-01-01T00:00:00%2B14:00"),
        400,
        "bad_time",
    )
