"""A small, strict DER reader for the structures lienthong verifies on its hot path.

Parsing a CMS SignedData with a general ASN.1 library costs several times the RSA verification
it guards, so the verifier walks the bytes itself with these few functions. They accept DER
only: definite lengths in minimal form, low tag numbers, minimal INTEGER encodings, and content
that fits exactly inside its parent. Anything else raises ``DerError``. The reader is tested
against asn1crypto on generated input (tests/unit/test_der_properties.py), fuzzed with atheris,
and run over third-party CMS and RFC 3161 vectors.

Positions are plain indexes into an immutable ``bytes``; a TLV is ``(tag, start, end)`` where
``start:end`` is its content.
"""

from __future__ import annotations

import datetime as dt
import re

# Universal tags (with the constructed bit where DER requires it).
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31


# The longest OBJECT IDENTIFIER arc accepted, in base-128 octets: 224 bits, far above any arc in
# use (a UUID under 2.25 needs 19 octets) and far below what makes decoding costly or makes
# ``str(int)`` refuse the number (Python's 4300-digit limit).
MAX_OID_ARC_OCTETS = 32
# An arc that starts with 0x80 (not minimal), or a run of continuation octets that is too long.
_BAD_OID = re.compile(rb"(?:\A|[\x00-\x7f])\x80|[\x80-\xff]{%d}" % MAX_OID_ARC_OCTETS)
_DOTTED = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+", re.ASCII)


def context(number: int, *, constructed: bool = True) -> int:
    """The tag byte of a context-specific ``[number]`` field."""
    return 0x80 | (0x20 if constructed else 0) | number


class DerError(ValueError):
    """The bytes are not the DER the reader expected."""


def read(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read the TLV at ``pos`` that must end by ``end``; return ``(tag, start, stop)``."""
    if pos + 2 > end:
        raise DerError(f"truncated TLV at offset {pos}")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"high tag number at offset {pos}")
    first = buf[pos + 1]
    if first < 0x80:  # short form, the common case
        stop = pos + 2 + first
        if stop > end:
            raise DerError(f"content at offset {pos} runs past its container")
        return tag, pos + 2, stop
    count = first & 0x7F
    if count == 0:
        raise DerError(f"indefinite length at offset {pos} (BER, not DER)")
    if count > 4:
        raise DerError(f"length of {count} octets at offset {pos}")
    start = pos + 2 + count
    if start > end:
        raise DerError(f"truncated length at offset {pos}")
    length = int.from_bytes(buf[pos + 2 : start], "big")
    if length < 0x80 or buf[pos + 2] == 0:
        raise DerError(f"non-minimal length at offset {pos}")
    stop = start + length
    if stop > end:
        raise DerError(f"content at offset {pos} runs past its container")
    return tag, start, stop


def expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Read a TLV that must carry ``tag``; return its content ``(start, stop)``."""
    got, start, stop = read(buf, pos, end)
    if got != tag:
        raise DerError(f"expected tag 0x{tag:02x} at offset {pos}, found 0x{got:02x}")
    return start, stop


def children(buf: bytes, start: int, stop: int) -> list[tuple[int, int, int, int]]:
    """The TLVs that exactly fill ``start:stop``, as ``(tag, tlv_start, start, stop)``."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < stop:
        tag, cstart, cstop = read(buf, pos, stop)
        out.append((tag, pos, cstart, cstop))
        pos = cstop
    return out


def whole(buf: bytes, tag: int) -> tuple[int, int]:
    """Content bounds of a buffer that must be exactly one TLV with ``tag``."""
    start, stop = expect(buf, 0, len(buf), tag)
    if stop != len(buf):
        raise DerError(f"{len(buf) - stop} trailing bytes after the outer TLV")
    return start, stop


def integer(buf: bytes, start: int, stop: int) -> int:
    """Decode INTEGER content, insisting on the minimal two's-complement form."""
    if stop <= start:
        raise DerError("empty INTEGER")
    if stop - start > 1:
        lead, nxt = buf[start], buf[start + 1]
        if (lead == 0x00 and nxt < 0x80) or (lead == 0xFF and nxt >= 0x80):
            raise DerError("non-minimal INTEGER")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def small_integer(buf: bytes, start: int, stop: int, *, limit: int = 1 << 16) -> int:
    """Decode a version-like INTEGER that must be small and non-negative."""
    if stop - start > 3:
        raise DerError("INTEGER too large for a version")
    value = integer(buf, start, stop)
    if not 0 <= value < limit:
        raise DerError(f"INTEGER {value} out of range")
    return value


def encode_oid(dotted: str) -> bytes:
    """DER content octets of an OBJECT IDENTIFIER given in canonical dotted form."""
    if not _DOTTED.fullmatch(dotted):
        raise ValueError(f"not an OID in dotted form: {dotted!r}")
    arcs = [int(part) for part in dotted.split(".")]
    if arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an OID: {dotted}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return check_oid(bytes(out))


def check_oid(content: bytes) -> bytes:
    """Return ``content`` if it is valid OID content (minimal arcs, none too long), else raise."""
    if not content or content[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER")
    # Fast path: without an 0x80 octet no arc starts with one, and a short OID has short arcs.
    if (len(content) > MAX_OID_ARC_OCTETS or 0x80 in content) and _BAD_OID.search(content):
        raise DerError("non-minimal or oversized OBJECT IDENTIFIER arc")
    return content


def decode_oid(content: bytes) -> str:
    """Dotted form of OID content octets (for messages and foreign OIDs)."""
    check_oid(content)
    arcs: list[int] = []
    value = 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in [*head, *arcs[1:]])


def oid(buf: bytes, start: int, stop: int) -> bytes:
    """OID content octets, validated, as bytes to compare with ``encode_oid`` constants.

    Validated fully, so that ``decode_oid`` of what this returns never fails: an OID that came
    through here may be printed in any later error message.
    """
    return check_oid(buf[start:stop])


def time(tag: int, buf: bytes, start: int, stop: int) -> dt.datetime:
    """Decode a DER UTCTime or GeneralizedTime (UTC, ``Z``, whole or fractional seconds)."""
    text = buf[start:stop]
    if tag == UTC_TIME:
        if len(text) != 13 or not text[:12].isdigit() or text[12:] != b"Z":
            raise DerError("UTCTime must be YYMMDDHHMMSSZ")
        year = int(text[0:2])
        year += 2000 if year < 50 else 1900
        rest = text[2:12]
        fraction = b""
    elif tag == GENERALIZED_TIME:
        if len(text) < 15 or not text[:14].isdigit() or not text.endswith(b"Z"):
            raise DerError("GeneralizedTime must be YYYYMMDDHHMMSS[.f]Z")
        year = int(text[0:4])
        rest = text[4:14]
        fraction = text[15:-1]
        if len(text) > 15 and (
            text[14:15] != b"."
            or not fraction.isdigit()
            or fraction.endswith(b"0")
            or len(fraction) > 6
        ):
            raise DerError("GeneralizedTime fraction is not minimal DER")
    else:
        raise DerError(f"tag 0x{tag:02x} is not a time")
    try:
        return dt.datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]),
            int(fraction.ljust(6, b"0")) if fraction else 0,
            tzinfo=dt.UTC,
        )
    except ValueError as exc:
        raise DerError(f"impossible date: {exc}") from exc
