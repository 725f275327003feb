"""The message id a router looks up ahead for a batch, found without parsing the header."""

from __future__ import annotations

import json

from exchange.routing import message_id_hint
from tests.helpers import header_bytes, header_dict

ID = "0b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b"


def test_the_id_of_a_header_is_found() -> None:
    assert message_id_hint(header_bytes(message_id=ID)) == ID


def test_spaces_around_the_colon_are_allowed() -> None:
    header = json.dumps(header_dict(message_id=ID), indent=2).encode()
    assert message_id_hint(header) == ID


def test_the_id_a_status_answers_is_not_taken_for_the_header_s() -> None:
    header = json.dumps({"status": {"for_message_id": ID}}).encode()
    assert message_id_hint(header) is None


def test_an_escaped_key_or_a_malformed_id_gives_no_hint() -> None:
    # No hint only costs the verifier's own query for that id; a wrong one is never used.
    assert message_id_hint(b'{"message\\u005fid":"' + ID.encode() + b'"}') is None
    assert message_id_hint(b'{"message_id":"' + ID.upper().encode() + b'"}') is None
    assert message_id_hint(b"\xff\xfe not json") is None
