"""Reading a detached CMS SignedData (RFC 5652) into the parts verification needs.

The reader keeps raw bytes wherever verification needs them exactly as received: the signed
attributes (re-tagged from ``[0] IMPLICIT`` to ``SET OF`` and never re-encoded), the signer
identifier's issuer Name, and each embedded certificate. It decides nothing about trust; it only
says whether the bytes are a well-formed detached SignedData and what they contain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from exchange import der, oids


class CmsError(ValueError):
    """The signature is not a well-formed detached CMS SignedData."""


@dataclass(frozen=True, slots=True)
class AlgorithmId:
    oid: bytes  # DER content octets
    params: bytes | None  # whole DER TLV of the parameters, or None when absent

    @property
    def dotted(self) -> str:
        return der.decode_oid(self.oid)


@dataclass(frozen=True, slots=True)
class IssuerSerial:
    issuer: bytes  # DER of the issuer Name, as in the certificate
    serial: int


@dataclass(frozen=True, slots=True)
class SignerInfo:
    sid: IssuerSerial | bytes  # issuerAndSerialNumber, or a subjectKeyIdentifier
    digest_algorithm: AlgorithmId
    signature_algorithm: AlgorithmId
    signed_attrs: bytes | None  # DER ``SET OF Attribute``, the bytes the signature covers
    attributes: dict[bytes, list[bytes]]  # signed attribute type -> DER of each value
    signature: bytes
    unsigned: dict[bytes, list[bytes]]  # unsigned attribute type -> DER of each value

    def only_value(self, attr: bytes) -> bytes | None:
        """The single value of a signed attribute; None when absent; CmsError when repeated."""
        values = self.attributes.get(attr)
        if values is None:
            return None
        if len(values) != 1:
            raise CmsError(f"signed attribute {der.decode_oid(attr)} must have one value")
        return values[0]


@dataclass(frozen=True, slots=True)
class SignedData:
    content_type: bytes  # eContentType
    content: bytes | None  # eContent when attached (lienthong requires detached: None)
    certificates: list[bytes]  # DER of each embedded X.509 certificate
    other_certificate_count: int  # attribute or other certificate choices, counted and refused
    crl_count: int
    signer_infos: list[SignerInfo]


def _algorithm(buf: bytes, start: int, stop: int) -> AlgorithmId:
    parts = der.children(buf, start, stop)
    if not 1 <= len(parts) <= 2 or parts[0][0] != der.OID:
        raise CmsError("malformed AlgorithmIdentifier")
    _, _, ostart, ostop = parts[0]
    params = None
    if len(parts) == 2:
        _, pstart, _, pstop = parts[1]
        params = buf[pstart:pstop]
    return AlgorithmId(der.oid(buf, ostart, ostop), params)


def _attributes(buf: bytes, start: int, stop: int) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for tag, _, astart, astop in der.children(buf, start, stop):
        if tag != der.SEQUENCE:
            raise CmsError("an attribute is not a SEQUENCE")
        parts = der.children(buf, astart, astop)
        if len(parts) != 2 or parts[0][0] != der.OID or parts[1][0] != der.SET:
            raise CmsError("malformed attribute")
        attr_type = der.oid(buf, parts[0][2], parts[0][3])
        if attr_type in out:
            raise CmsError(f"attribute {der.decode_oid(attr_type)} appears twice")
        values = [
            buf[vpos:vstop] for _, vpos, _, vstop in der.children(buf, parts[1][2], parts[1][3])
        ]
        if not values:
            raise CmsError(f"attribute {der.decode_oid(attr_type)} has no value")
        out[attr_type] = values
    return out


def _signer_info(buf: bytes, start: int, stop: int) -> SignerInfo:
    parts = der.children(buf, start, stop)
    if len(parts) < 5:
        raise CmsError("SignerInfo is too short")
    index = 0
    tag, _, vstart, vstop = parts[index]
    if tag != der.INTEGER:
        raise CmsError("SignerInfo version is not an INTEGER")
    version = der.small_integer(buf, vstart, vstop)
    index += 1
    tag, _, sstart, sstop = parts[index]
    sid: IssuerSerial | bytes
    if tag == der.SEQUENCE and version == 1:
        sid_parts = der.children(buf, sstart, sstop)
        if len(sid_parts) != 2 or sid_parts[0][0] != der.SEQUENCE or sid_parts[1][0] != der.INTEGER:
            raise CmsError("malformed issuerAndSerialNumber")
        _, ipos, _, istop = sid_parts[0]
        sid = IssuerSerial(buf[ipos:istop], der.integer(buf, sid_parts[1][2], sid_parts[1][3]))
    elif tag == der.context(0, constructed=False) and version == 3:
        sid = buf[sstart:sstop]
    else:
        raise CmsError("signer identifier does not match the SignerInfo version")
    index += 1
    tag, _, dstart, dstop = parts[index]
    if tag != der.SEQUENCE:
        raise CmsError("malformed digestAlgorithm")
    digest_algorithm = _algorithm(buf, dstart, dstop)
    index += 1
    signed_attrs = None
    attributes: dict[bytes, list[bytes]] = {}
    tag, apos, astart, astop = parts[index]
    if tag == der.context(0):
        # The signature covers the EXPLICIT SET OF tag, not the IMPLICIT [0] that carries it.
        signed_attrs = b"\x31" + buf[apos + 1 : astop]
        attributes = _attributes(buf, astart, astop)
        index += 1
    if index + 2 > len(parts):
        raise CmsError("SignerInfo is missing its signature")
    tag, _, sastart, sastop = parts[index]
    if tag != der.SEQUENCE:
        raise CmsError("malformed signatureAlgorithm")
    signature_algorithm = _algorithm(buf, sastart, sastop)
    index += 1
    tag, _, sigstart, sigstop = parts[index]
    if tag != der.OCTET_STRING or sigstop == sigstart:
        raise CmsError("signature is not a non-empty OCTET STRING")
    signature = buf[sigstart:sigstop]
    index += 1
    unsigned: dict[bytes, list[bytes]] = {}
    if index < len(parts):
        tag, _, ustart, ustop = parts[index]
        if tag != der.context(1):
            raise CmsError("unexpected field after the signature")
        unsigned = _attributes(buf, ustart, ustop)
        index += 1
    if index != len(parts):
        raise CmsError("unexpected fields at the end of SignerInfo")
    return SignerInfo(
        sid, digest_algorithm, signature_algorithm, signed_attrs, attributes, signature, unsigned
    )


def read_content_info(data: bytes) -> tuple[bytes, int, int]:
    """Unwrap ContentInfo; return the SignedData content bounds inside ``data``."""
    start, stop = der.whole(data, der.SEQUENCE)
    parts = der.children(data, start, stop)
    if len(parts) != 2 or parts[0][0] != der.OID or parts[1][0] != der.context(0):
        raise CmsError("not a CMS ContentInfo")
    if der.oid(data, parts[0][2], parts[0][3]) != oids.SIGNED_DATA:
        raise CmsError("ContentInfo does not hold SignedData")
    inner = der.children(data, parts[1][2], parts[1][3])
    if len(inner) != 1 or inner[0][0] != der.SEQUENCE:
        raise CmsError("malformed SignedData")
    return data, inner[0][2], inner[0][3]


def parse_signed_data(data: bytes) -> SignedData:
    """Parse a DER ContentInfo holding SignedData. Raises CmsError (or DerError) when malformed."""
    try:
        return _parse(data)
    except (der.DerError, IndexError) as exc:
        raise CmsError(str(exc)) from exc


def _parse(data: bytes) -> SignedData:
    buf, start, stop = read_content_info(data)
    parts = der.children(buf, start, stop)
    if len(parts) < 4:
        raise CmsError("SignedData is too short")
    tag, _, vstart, vstop = parts[0]
    if tag != der.INTEGER:
        raise CmsError("SignedData version is not an INTEGER")
    der.small_integer(buf, vstart, vstop)
    if parts[1][0] != der.SET:
        raise CmsError("digestAlgorithms is not a SET")
    for tag, _, dstart, dstop in der.children(buf, parts[1][2], parts[1][3]):
        if tag != der.SEQUENCE:
            raise CmsError("malformed digestAlgorithms")
        _algorithm(buf, dstart, dstop)
    tag, _, estart, estop = parts[2]
    if tag != der.SEQUENCE:
        raise CmsError("encapContentInfo is not a SEQUENCE")
    encap = der.children(buf, estart, estop)
    if not 1 <= len(encap) <= 2 or encap[0][0] != der.OID:
        raise CmsError("malformed encapContentInfo")
    content_type = der.oid(buf, encap[0][2], encap[0][3])
    content = None
    if len(encap) == 2:
        if encap[1][0] != der.context(0):
            raise CmsError("malformed eContent")
        ostart, ostop = der.expect(buf, encap[1][2], encap[1][3], der.OCTET_STRING)
        if ostop != encap[1][3]:
            raise CmsError("trailing bytes in eContent")
        content = buf[ostart:ostop]
    index = 3
    certificates: list[bytes] = []
    other = 0
    crl_count = 0
    if parts[index][0] == der.context(0):
        for tag, cpos, _, cstop in der.children(buf, parts[index][2], parts[index][3]):
            if tag == der.SEQUENCE:
                certificates.append(buf[cpos:cstop])
            else:
                other += 1
        index += 1
    if index < len(parts) and parts[index][0] == der.context(1):
        crl_count = len(der.children(buf, parts[index][2], parts[index][3]))
        index += 1
    if index != len(parts) - 1 or parts[index][0] != der.SET:
        raise CmsError("signerInfos is missing or not last")
    signer_infos = []
    for tag, _, sstart, sstop in der.children(buf, parts[index][2], parts[index][3]):
        if tag != der.SEQUENCE:
            raise CmsError("a SignerInfo is not a SEQUENCE")
        signer_infos.append(_signer_info(buf, sstart, sstop))
    return SignedData(content_type, content, certificates, other, crl_count, signer_infos)


def decode_time_value(value: bytes) -> dt.datetime:
    """Decode a DER Time (UTCTime or GeneralizedTime) TLV, e.g. a signingTime value."""
    tag, start, stop = der.read(value, 0, len(value))
    if stop != len(value):
        raise CmsError("trailing bytes after a time")
    return der.time(tag, value, start, stop)


def decode_octets_value(value: bytes) -> bytes:
    """Decode a DER OCTET STRING TLV, e.g. a messageDigest value."""
    start, stop = der.whole(value, der.OCTET_STRING)
    return value[start:stop]


def decode_oid_value(value: bytes) -> bytes:
    """Decode a DER OBJECT IDENTIFIER TLV into content octets."""
    start, stop = der.whole(value, der.OID)
    return der.oid(value, start, stop)
