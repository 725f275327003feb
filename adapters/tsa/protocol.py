"""The RFC 3161 messages around a token: TimeStampReq and TimeStampResp, read and written as DER.

Tokens themselves (ContentInfo/SignedData/TSTInfo) are read by ``exchange.timestamps``; this
module is what a client sends and what a TSA answers (RFC 3161 2.4.1 and 2.4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from exchange import der, oids
from exchange import derwrite as w
from exchange.timestamps import TokenError, message_imprint

MEDIA_QUERY = "application/timestamp-query"
MEDIA_REPLY = "application/timestamp-reply"
MAX_REQUEST_BYTES = 16 * 1024


class PkiStatus(IntEnum):
    GRANTED = 0
    GRANTED_WITH_MODS = 1
    REJECTION = 2
    WAITING = 3
    REVOCATION_WARNING = 4
    REVOCATION_NOTIFICATION = 5


class FailInfo(IntEnum):
    """PKIFailureInfo bits (RFC 3161 2.4.2)."""

    BAD_ALG = 0
    BAD_REQUEST = 2
    BAD_DATA_FORMAT = 5
    TIME_NOT_AVAILABLE = 14
    UNACCEPTED_POLICY = 15
    UNACCEPTED_EXTENSION = 16
    ADD_INFO_NOT_AVAILABLE = 17
    SYSTEM_FAILURE = 25


class RequestError(ValueError):
    """A query the TSA refuses, with the failInfo bit that says why."""

    def __init__(self, fail_info: FailInfo, message: str) -> None:
        super().__init__(message)
        self.fail_info = fail_info


@dataclass(frozen=True, slots=True)
class TimeStampRequest:
    imprint: bytes  # DER of the whole MessageImprint, echoed into the TSTInfo as received
    hash_algorithm: bytes  # OID content octets
    hashed_message: bytes
    policy: bytes | None  # OID content octets of reqPolicy
    nonce: int | None
    cert_req: bool
    has_extensions: bool


@dataclass(frozen=True, slots=True)
class TimeStampResponse:
    status: int
    texts: tuple[str, ...] = ()
    fail_info: frozenset[int] = field(default_factory=frozenset)
    token: bytes | None = None  # DER ContentInfo

    @property
    def granted(self) -> bool:
        return self.status in (PkiStatus.GRANTED, PkiStatus.GRANTED_WITH_MODS)


# --- requests --------------------------------------------------------------------------------


def parse_request(data: bytes) -> TimeStampRequest:
    """Read a DER TimeStampReq; RequestError(badDataFormat) when it is not one."""
    try:
        return _request(data)
    except (der.DerError, TokenError, IndexError) as exc:
        raise RequestError(FailInfo.BAD_DATA_FORMAT, f"not a DER TimeStampReq: {exc}") from None


def _request(data: bytes) -> TimeStampRequest:
    start, stop = der.whole(data, der.SEQUENCE)
    parts = der.children(data, start, stop)
    if len(parts) < 2 or parts[0][0] != der.INTEGER or parts[1][0] != der.SEQUENCE:
        raise RequestError(FailInfo.BAD_DATA_FORMAT, "not a TimeStampReq")
    version = der.integer(data, parts[0][2], parts[0][3])
    if version != 1:
        raise RequestError(FailInfo.BAD_REQUEST, f"TimeStampReq version {version} is not 1")
    _, mpos, mstart, mstop = parts[1]
    hash_algorithm, hashed = message_imprint(data, mstart, mstop)
    policy = None
    nonce = None
    cert_req = False
    extensions = False
    rank = 0
    for tag, pos, fstart, fstop in parts[2:]:
        if tag == der.OID and rank < 1:
            policy, rank = der.oid(data, fstart, fstop), 1
        elif tag == der.INTEGER and rank < 2:
            nonce, rank = der.integer(data, fstart, fstop), 2
        elif tag == der.BOOLEAN and rank < 3:
            if fstop - fstart != 1 or data[fstart] not in (0x00, 0xFF):
                raise RequestError(FailInfo.BAD_DATA_FORMAT, "certReq is not a DER BOOLEAN")
            cert_req, rank = data[fstart] == 0xFF, 3
        elif tag == der.context(0) and rank < 4:
            der.children(data, fstart, fstop)
            extensions, rank = True, 4
        else:
            raise RequestError(FailInfo.BAD_DATA_FORMAT, f"unexpected field at offset {pos}")
    return TimeStampRequest(
        imprint=data[mpos:mstop],
        hash_algorithm=hash_algorithm,
        hashed_message=hashed,
        policy=policy,
        nonce=nonce,
        cert_req=cert_req,
        has_extensions=extensions,
    )


def encode_request(
    digest: bytes,
    *,
    hash_algorithm: bytes = oids.SHA256,
    nonce: int | None = None,
    cert_req: bool = True,
    policy: bytes | None = None,
) -> bytes:
    """A DER TimeStampReq for a hash already computed."""
    fields = [w.integer(1), w.sequence(w.algorithm(hash_algorithm), w.octets(digest))]
    if policy is not None:
        fields.append(w.oid(policy))
    if nonce is not None:
        fields.append(w.integer(nonce))
    if cert_req:
        fields.append(w.boolean(True))
    return w.sequence(*fields)


# --- responses -------------------------------------------------------------------------------


def _fail_bits(bits: frozenset[int]) -> bytes:
    """A DER named BIT STRING: trailing zero bits dropped (X.690 11.2.2)."""
    if not bits:
        return w.tlv(der.BIT_STRING, b"\x00")
    top = max(bits)
    octets = bytearray(top // 8 + 1)
    for bit in bits:
        octets[bit // 8] |= 0x80 >> (bit % 8)
    unused = 7 - top % 8
    return w.tlv(der.BIT_STRING, bytes((unused,)) + bytes(octets))


def encode_response(
    status: PkiStatus,
    *,
    token: bytes | None = None,
    text: str | None = None,
    fail_info: FailInfo | None = None,
) -> bytes:
    fields = [w.integer(int(status))]
    if text is not None:
        fields.append(w.sequence(w.utf8(text)))
    if fail_info is not None:
        fields.append(_fail_bits(frozenset({int(fail_info)})))
    parts = [w.sequence(*fields)]
    if token is not None:
        parts.append(token)
    return w.sequence(*parts)


def rejection(fail_info: FailInfo, text: str) -> bytes:
    return encode_response(PkiStatus.REJECTION, text=text, fail_info=fail_info)


def parse_response(data: bytes) -> TimeStampResponse:
    """Read a DER TimeStampResp. Raises TokenError when it is not one."""
    try:
        return _response(data)
    except (der.DerError, IndexError) as exc:
        raise TokenError(f"not a DER TimeStampResp: {exc}") from None


def _response(data: bytes) -> TimeStampResponse:
    start, stop = der.whole(data, der.SEQUENCE)
    parts = der.children(data, start, stop)
    if not 1 <= len(parts) <= 2 or parts[0][0] != der.SEQUENCE:
        raise TokenError("not a TimeStampResp")
    fields = der.children(data, parts[0][2], parts[0][3])
    if not fields or fields[0][0] != der.INTEGER:
        raise TokenError("malformed PKIStatusInfo")
    status = der.small_integer(data, fields[0][2], fields[0][3])
    texts: list[str] = []
    bits: set[int] = set()
    for tag, _, fstart, fstop in fields[1:]:
        if tag == der.SEQUENCE and not texts and not bits:
            for ttag, _, tstart, tstop in der.children(data, fstart, fstop):
                if ttag != der.UTF8_STRING:
                    raise TokenError("statusString is not UTF8String")
                texts.append(data[tstart:tstop].decode("utf-8", "replace"))
        elif tag == der.BIT_STRING and not bits:
            if fstop == fstart or data[fstart] > 7:
                raise TokenError("malformed failInfo")
            for index, octet in enumerate(data[fstart + 1 : fstop]):
                bits |= {index * 8 + i for i in range(8) if octet & (0x80 >> i)}
        else:
            raise TokenError("malformed PKIStatusInfo")
    token = None
    if len(parts) == 2:
        _, tpos, _, tstop = parts[1]
        token = data[tpos:tstop]
    return TimeStampResponse(status, tuple(texts), frozenset(bits), token)
