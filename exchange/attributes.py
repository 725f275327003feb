"""Optional signed attributes that bind a signature to its certificate and its algorithms.

- signingCertificateV2 / signingCertificate (RFC 5035 / RFC 2634, required by CAdES): the first
  ESSCertID's hash must be the hash of the certificate that signed.
- CMSAlgorithmProtection (RFC 6211): the algorithms it names must be those of the SignerInfo.
"""

from __future__ import annotations

import hashlib

from exchange import der
from exchange.algorithms import HASHLIB_NAMES
from exchange.cms import AlgorithmId


def signing_certificate_matches(
    value: bytes, cert_der: bytes, *, v2: bool, sha256_hex: str | None = None
) -> bool:
    """Whether the attribute's first ESSCertID names ``cert_der`` (its SHA-256 may be given)."""
    start, stop = der.whole(value, der.SEQUENCE)
    parts = der.children(value, start, stop)
    if not parts or parts[0][0] != der.SEQUENCE:
        return False
    ids = der.children(value, parts[0][2], parts[0][3])
    if not ids or ids[0][0] != der.SEQUENCE:
        return False
    fields = der.children(value, ids[0][2], ids[0][3])
    hash_name = "sha1"
    index = 0
    if v2:
        hash_name = "sha256"
        if fields and fields[0][0] == der.SEQUENCE:
            algorithm = der.children(value, fields[0][2], fields[0][3])
            oid = der.oid(value, algorithm[0][2], algorithm[0][3])
            if oid not in HASHLIB_NAMES:
                return False
            hash_name = HASHLIB_NAMES[oid]
            index = 1
    if index >= len(fields) or fields[index][0] != der.OCTET_STRING:
        return False
    cert_hash = value[fields[index][2] : fields[index][3]]
    if hash_name == "sha256" and sha256_hex is not None:
        return bytes.fromhex(sha256_hex) == cert_hash
    return hashlib.new(hash_name, cert_der).digest() == cert_hash


def algorithm_protection_matches(
    value: bytes, digest_algorithm: AlgorithmId, signature_algorithm: AlgorithmId
) -> bool:
    start, stop = der.whole(value, der.SEQUENCE)
    parts = der.children(value, start, stop)
    if len(parts) != 2 or parts[0][0] != der.SEQUENCE or parts[1][0] != der.context(1):
        return False
    digest = der.children(value, parts[0][2], parts[0][3])
    signature = der.children(value, parts[1][2], parts[1][3])
    if not digest or not signature or digest[0][0] != der.OID or signature[0][0] != der.OID:
        return False
    return (
        der.oid(value, digest[0][2], digest[0][3]) == digest_algorithm.oid
        and der.oid(value, signature[0][2], signature[0][3]) == signature_algorithm.oid
    )
