"""Envelope rules: from header bytes to a ``Header``, with one reason when they are not one.

Steps 0-3 of the verification order live here: the byte budget, malformed JSON (invalid UTF-8,
not an object, duplicate keys, NaN, nesting beyond the parser's limit), count limits, and the
schema. The successful path is one pydantic pass and a count of the keys in the text against
the fields the parsed objects hold (a repeated key makes them differ); the standard-library
parse that names a repeated key, and the slower diagnosis, run only when something is wrong or
the text has escapes that the count does not follow.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from exchange import digests
from exchange.errors import Rejected
from exchange.policy import Limits
from exchange.reasons import Reason
from schemas.header import Header


def envelope_digest(header: bytes, signature: bytes) -> str:
    """Identity of an envelope's bytes: what replay detection compares."""
    length = len(header).to_bytes(8, "big")
    value: str = digests.digest("sha256", length, header, signature).hexdigest()
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    return result


def _loads_strictly(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(Reason.MALFORMED_HEADER, f"header is not well-formed JSON: {exc}") from None


_WHITESPACE = b" \t\r\n"


def _key_count(data: bytes) -> int | None:
    """How many object keys valid JSON text holds, or None when it has a backslash.

    Without escapes every quote opens or closes a string, so splitting at quotes alternates
    between the text outside strings and the strings; a string is a key when the text after it
    starts, past whitespace, with a colon. Each string becomes one NUL in the outside text.
    """
    if b"\\" in data:
        return None
    outside = b"\0".join(data.split(b'"')[::2])
    return outside.translate(None, _WHITESPACE).count(b"\0:")


def _members(header: Header) -> int:
    """Keys the header's objects were given (a field given as null counts; none is free-form)."""
    count = len(header.model_fields_set)
    document = header.document
    if document is not None:
        count += len(document.model_fields_set)
        if document.signer is not None:
            count += len(document.signer.model_fields_set)
    if header.status is not None:
        count += len(header.status.model_fields_set)
    for ref in header.attachments:
        count += len(ref.model_fields_set)
    return count


def _check_counts(recipients: int, attachments: int, limits: Limits) -> None:
    if recipients > limits.max_recipients:
        raise Rejected(
            Reason.TOO_MANY_RECIPIENTS,
            f"{recipients} recipients (limit {limits.max_recipients})",
        )
    if attachments > limits.max_attachments:
        raise Rejected(
            Reason.TOO_MANY_ATTACHMENTS,
            f"{attachments} attachments (limit {limits.max_attachments})",
        )


def _at_agency_code(loc: tuple[int | str, ...]) -> bool:
    """Whether an error is about one agency code: the sender, or one recipient (not the list)."""
    return loc == ("sender",) or (len(loc) == 2 and loc[0] == "recipients")


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(header)"


def _diagnose(data: bytes, error: ValidationError, limits: Limits) -> Rejected:
    """Name the first failing step for a header pydantic refused, in the documented order."""
    errors = error.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return Rejected(Reason.MALFORMED_HEADER, f"header is not JSON: {errors[0]['msg']}")
    parsed = _loads_strictly(data)
    if not isinstance(parsed, dict):
        return Rejected(Reason.MALFORMED_HEADER, "header is not a JSON object")
    recipients, attachments = parsed.get("recipients"), parsed.get("attachments")
    _check_counts(
        len(recipients) if isinstance(recipients, list) else 0,
        len(attachments) if isinstance(attachments, list) else 0,
        limits,
    )
    for e in errors:
        if e["type"] == "extra_forbidden":
            return Rejected(
                Reason.HEADER_UNKNOWN_FIELD,
                f"field {_location(e['loc'])!r} is not part of envelope v1",
            )
    for e in errors:
        if _at_agency_code(e["loc"]) and e["type"] != "missing":
            value = e.get("input")
            return Rejected(
                Reason.INVALID_AGENCY_CODE,
                f"{_location(e['loc'])}: {value!r} is not a canonical agency code",
            )
    first = errors[0]
    return Rejected(Reason.HEADER_INVALID, f"{_location(first['loc'])}: {first['msg']}")


def parse_header(data: bytes, limits: Limits) -> Header:
    """Parse and validate header bytes (steps 0-3). Raises Rejected."""
    if len(data) > limits.max_header_bytes:
        raise Rejected(
            Reason.HEADER_TOO_LARGE,
            f"header is {len(data)} bytes (limit {limits.max_header_bytes})",
        )
    try:
        header = Header.model_validate_json(data)
    except ValidationError as exc:
        raise _diagnose(data, exc, limits) from None
    # pydantic keeps the last of repeated keys; the header must have none (a signed header that
    # two parsers read differently is an attack). Every object is closed, so the text has as
    # many keys as the parsed objects have fields given exactly when no key repeats; else (or
    # when escapes hide the count) the standard parser looks once more and names the key.
    if _key_count(data) != _members(header):
        _loads_strictly(data)
    _check_counts(len(header.recipients), len(header.attachments), limits)
    return header
