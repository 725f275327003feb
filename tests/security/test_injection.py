"""Script and SQL text in metadata: stored and returned verbatim as data, never interpreted;
no SQL error on either database; the JSON the API writes escapes it as JSON must."""

from __future__ import annotations

import base64
import json

import httpx

from tests.e2e.support import call, message_id_of, submit
from tests.helpers import G22, H37, attachment, header_bytes, header_dict
from tests.security.hostile import Hostile, compact

SCRIPT = '<script>alert("lienthong")</script>'
SQL = "'); DROP TABLE messages; --"
PAYLOAD = f"{SCRIPT} {SQL} \" \\ ' OR '1'='1"


def assert_json_document(response: httpx.Response) -> object:
    """A JSON document, served as one (never text/html), that parses strictly."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert response.headers.get("x-content-type-options") == "nosniff"
    return json.loads(response.content)


def test_script_and_sql_in_the_subject_are_returned_verbatim(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37], subject=PAYLOAD)
    message_id = hostile.deliver(header, hostile.pki.sign(header))
    reader = hostile[H37]
    message = assert_json_document(call(reader, "GET", f"/v1/inbox/{message_id}"))
    assert isinstance(message, dict)
    assert message["subject"] == PAYLOAD
    assert message["header_json"]["document"]["subject"] == PAYLOAD
    assert base64.b64decode(message["header"]) == header  # the signed bytes, untouched
    listing = assert_json_document(call(reader, "GET", "/v1/inbox", query="limit=200"))
    assert isinstance(listing, dict)
    assert PAYLOAD in [i["subject"] for i in listing["items"]]
    raw = call(reader, "GET", f"/v1/inbox/{message_id}").content
    assert b"<script>" in raw
    assert b'\\"lienthong\\"' in raw
    assert hostile.counts()["messages"] > 0  # the tables are all still there
    hostile.assert_alive()


def test_script_and_sql_in_an_unknown_field_name_are_quoted_in_the_trace(
    hostile: Hostile,
) -> None:
    name = f"{SCRIPT}{SQL}"
    fields = {**header_dict(recipients=[H37]), name: 1}
    header = compact(fields)
    timeline = hostile.router_rejects(
        lambda: _queued(hostile, header),
        subject=message_id_of(header),
        reason="header_unknown_field",
        notice_to=G22,
    )
    (rejected,) = [e for e in timeline["events"] if e["event"] == "rejected"]
    # Quoted as a literal: the name's own quote is escaped, nothing else touched.
    assert repr(name) in rejected["detail"], rejected
    state = hostile[G22].message_state(message_id_of(header))
    assert repr(name) in state["detail"]
    response = call(hostile.admin, "GET", f"/v1/trace/{message_id_of(header)}")
    assert assert_json_document(response) == timeline


def test_control_characters_in_an_unknown_field_name_are_escaped_in_the_trace(
    hostile: Hostile,
) -> None:
    """A NUL (which PostgreSQL text cannot hold) and a line break, quoted by the trace."""
    fields = {**header_dict(recipients=[H37]), "evil\u0000\nname": 1}
    header = compact(fields)
    timeline = hostile.router_rejects(
        lambda: _queued(hostile, header),
        subject=message_id_of(header),
        reason="header_unknown_field",
        notice_to=G22,
    )
    (rejected,) = [e for e in timeline["events"] if e["event"] == "rejected"]
    assert repr("evil\u0000\nname") in rejected["detail"], rejected
    assert "\u0000" not in rejected["detail"]


def test_script_in_an_attachment_name_is_stored_verbatim(hostile: Hostile) -> None:
    name = '<img src=x onerror="alert(1)">\'--.pdf'
    content = b"%PDF-1.7 injection"
    header = header_bytes(recipients=[H37], attachments=[attachment(name, content)])
    response = submit(hostile[G22], header, hostile.pki.sign(header), {name: content})
    assert response.status_code == 202, response.text
    hostile.timeline(message_id_of(header), "delivered")
    message = assert_json_document(call(hostile[H37], "GET", f"/v1/inbox/{message_id_of(header)}"))
    assert isinstance(message, dict)
    assert [a["name"] for a in message["attachments"]] == [name]
    hostile.assert_alive()


def test_sql_in_trace_search_parameters_is_data(hostile: Hostile) -> None:
    for params in (
        "sender=%27%20OR%20%271%27%3D%271",
        "status=stored%27%20OR%201%3D1--",
        "recipient=%27%3B%20DROP%20TABLE%20inbox%3B--",
    ):
        response = call(hostile.admin, "GET", "/v1/trace", query=params)
        assert assert_json_document(response) == {"items": [], "next_cursor": None}, params
    hostile.assert_alive()


def _queued(hostile: Hostile, header: bytes) -> None:
    response = submit(hostile[G22], header, hostile.pki.sign(header))
    assert response.status_code == 202, response.text
