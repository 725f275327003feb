"""Writing DER: the few constructors signing and the timestamp authority need.

Every function returns complete TLV bytes. ``set_of`` sorts its members by their encodings, as
DER requires (X.690 11.6), so that signed attributes written here verify with any implementation.
"""

from __future__ import annotations

import datetime as dt

from exchange import der


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def sequence(*items: bytes) -> bytes:
    return tlv(der.SEQUENCE, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(der.SET, b"".join(sorted(items)))


def explicit(number: int, content: bytes) -> bytes:
    return tlv(der.context(number), content)


def implicit(number: int, encoded: bytes, *, constructed: bool = True) -> bytes:
    """Re-tag a complete TLV as ``[number] IMPLICIT``."""
    return bytes((der.context(number, constructed=constructed),)) + encoded[1:]


def integer(value: int) -> bytes:
    # Minimal two's complement: the magnitude's bits plus a sign bit (-128 is one octet).
    size = ((~value if value < 0 else value).bit_length() + 8) // 8
    return tlv(der.INTEGER, value.to_bytes(size, "big", signed=True))


def boolean(value: bool) -> bytes:
    return tlv(der.BOOLEAN, b"\xff" if value else b"\x00")


def oid(content: bytes) -> bytes:
    return tlv(der.OID, content)


def octets(value: bytes) -> bytes:
    return tlv(der.OCTET_STRING, value)


def null() -> bytes:
    return b"\x05\x00"


def utf8(text: str) -> bytes:
    return tlv(der.UTF8_STRING, text.encode("utf-8"))


def algorithm(oid_content: bytes, params: bytes | None = None) -> bytes:
    return sequence(oid(oid_content), *([params] if params is not None else []))


def time(value: dt.datetime) -> bytes:
    """RFC 5280 Time: UTCTime for 1950-2049, GeneralizedTime otherwise (whole seconds)."""
    value = value.astimezone(dt.UTC)
    if 1950 <= value.year < 2050:
        return tlv(der.UTC_TIME, value.strftime("%y%m%d%H%M%SZ").encode())
    return generalized_time(value.replace(microsecond=0))


def generalized_time(value: dt.datetime) -> bytes:
    """GeneralizedTime with the fraction DER allows (no trailing zeros)."""
    value = value.astimezone(dt.UTC)
    text = f"{value.year:04d}" + value.strftime("%m%d%H%M%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return tlv(der.GENERALIZED_TIME, (text + "Z").encode())
