"""Digest and signature algorithms a SignerInfo may use, and how to check a signature with them.

Accepted: SHA-256/384/512 and SHA3-256/384/512 digests; RSA PKCS#1 v1.5 and RSASSA-PSS, ECDSA on
P-256/384/521, and Ed25519 (RFC 8419, with SHA-512 as the digest). SHA-1, MD5 and SHA-224 are
refused as weak; anything else as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from exchange import der, oids
from exchange.cms import AlgorithmId
from exchange.errors import Rejected
from exchange.reasons import Reason

DIGESTS: dict[bytes, type[hashes.HashAlgorithm]] = {
    oids.SHA256: hashes.SHA256,
    oids.SHA384: hashes.SHA384,
    oids.SHA512: hashes.SHA512,
    oids.SHA3_256: hashes.SHA3_256,
    oids.SHA3_384: hashes.SHA3_384,
    oids.SHA3_512: hashes.SHA3_512,
}
HASHLIB_NAMES: dict[bytes, str] = {
    oids.SHA256: "sha256",
    oids.SHA384: "sha384",
    oids.SHA512: "sha512",
    oids.SHA3_256: "sha3_256",
    oids.SHA3_384: "sha3_384",
    oids.SHA3_512: "sha3_512",
}
WEAK_DIGESTS = {oids.SHA1: "SHA-1", oids.MD5: "MD5", oids.SHA224: "SHA-224"}
WEAK_SIGNATURES = {
    oids.SHA1_WITH_RSA: "sha1WithRSAEncryption",
    oids.MD5_WITH_RSA: "md5WithRSAEncryption",
    oids.ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    oids.DSA_WITH_SHA1: "dsa-with-sha1",
    oids.SHA224_WITH_RSA: "sha224WithRSAEncryption",
    oids.ECDSA_WITH_SHA224: "ecdsa-with-SHA224",
}
# signature algorithm -> (family, the digest it implies or None when the digest field decides)
SIGNATURES: dict[bytes, tuple[str, bytes | None]] = {
    oids.RSA_ENCRYPTION: ("rsa", None),
    oids.SHA256_WITH_RSA: ("rsa", oids.SHA256),
    oids.SHA384_WITH_RSA: ("rsa", oids.SHA384),
    oids.SHA512_WITH_RSA: ("rsa", oids.SHA512),
    oids.RSASSA_PSS: ("pss", None),
    oids.ECDSA_WITH_SHA256: ("ecdsa", oids.SHA256),
    oids.ECDSA_WITH_SHA384: ("ecdsa", oids.SHA384),
    oids.ECDSA_WITH_SHA512: ("ecdsa", oids.SHA512),
    oids.ED25519: ("ed25519", None),
}


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    family: str
    digest: bytes  # digest OID, the same for messageDigest and for the signed attributes
    pss_salt: int = 0


def digest_of(algorithm: AlgorithmId) -> bytes:
    """The digest OID of a digestAlgorithm, refusing weak and unknown ones."""
    if algorithm.oid in WEAK_DIGESTS:
        raise Rejected(Reason.WEAK_ALGORITHM, f"digest {WEAK_DIGESTS[algorithm.oid]} is too weak")
    if algorithm.oid not in DIGESTS:
        raise Rejected(Reason.UNSUPPORTED_ALGORITHM, f"digest {algorithm.dotted} is not supported")
    return algorithm.oid


def _pss_params(params: bytes | None, digest: bytes) -> int:
    """Salt length of RSASSA-PSS-params, which must name ``digest`` and MGF1 with it."""
    if params is None:
        raise Rejected(Reason.UNSUPPORTED_ALGORITHM, "RSASSA-PSS without parameters")
    start, stop = der.whole(params, der.SEQUENCE)
    hash_oid, mgf_hash, salt = oids.SHA1, oids.SHA1, 20
    for tag, _, fstart, fstop in der.children(params, start, stop):
        if tag == der.context(0):
            astart, astop = der.expect(params, fstart, fstop, der.SEQUENCE)
            hash_oid = der.oid(params, *der.expect(params, astart, astop, der.OID))
        elif tag == der.context(1):
            astart, astop = der.expect(params, fstart, fstop, der.SEQUENCE)
            parts = der.children(params, astart, astop)
            if len(parts) != 2 or der.oid(params, parts[0][2], parts[0][3]) != oids.MGF1:
                raise Rejected(Reason.UNSUPPORTED_ALGORITHM, "RSASSA-PSS mask is not MGF1")
            inner = der.children(params, parts[1][2], parts[1][3])
            mgf_hash = der.oid(params, inner[0][2], inner[0][3])
        elif tag == der.context(2):
            salt = der.small_integer(params, *der.expect(params, fstart, fstop, der.INTEGER))
        elif (
            tag == der.context(3)
            and der.small_integer(params, *der.expect(params, fstart, fstop, der.INTEGER)) != 1
        ):
            raise Rejected(Reason.UNSUPPORTED_ALGORITHM, "RSASSA-PSS trailer is not 1")
    if hash_oid in WEAK_DIGESTS or mgf_hash in WEAK_DIGESTS:
        raise Rejected(Reason.WEAK_ALGORITHM, "RSASSA-PSS with SHA-1")
    if hash_oid != digest or mgf_hash != digest:
        raise Rejected(
            Reason.UNSUPPORTED_ALGORITHM, "RSASSA-PSS hash differs from the digest algorithm"
        )
    return salt


def scheme_of(digest_algorithm: AlgorithmId, signature_algorithm: AlgorithmId) -> SignatureScheme:
    """Check that the pair of algorithms is acceptable and consistent."""
    if signature_algorithm.oid in WEAK_SIGNATURES:
        name = WEAK_SIGNATURES[signature_algorithm.oid]
        raise Rejected(Reason.WEAK_ALGORITHM, f"signature algorithm {name} is too weak")
    digest = digest_of(digest_algorithm)
    known = SIGNATURES.get(signature_algorithm.oid)
    if known is None:
        raise Rejected(
            Reason.UNSUPPORTED_ALGORITHM,
            f"signature algorithm {signature_algorithm.dotted} is not supported",
        )
    family, implied = known
    if implied is not None and implied != digest:
        raise Rejected(
            Reason.UNSUPPORTED_ALGORITHM,
            "the signature algorithm's digest differs from the SignerInfo's digestAlgorithm",
        )
    if family == "ed25519" and digest != oids.SHA512:
        raise Rejected(Reason.UNSUPPORTED_ALGORITHM, "Ed25519 in CMS requires SHA-512 (RFC 8419)")
    salt = 0
    if family == "pss":
        try:
            salt = _pss_params(signature_algorithm.params, digest)
        except (der.DerError, IndexError) as exc:
            raise Rejected(
                Reason.UNSUPPORTED_ALGORITHM, f"bad RSASSA-PSS parameters: {exc}"
            ) from None
    return SignatureScheme(family, digest, salt)


def signature_holds(
    scheme: SignatureScheme, key: CertificatePublicKeyTypes, signature: bytes, data: bytes
) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``key``. Raises Rejected on a mismatch
    between the key type and the algorithm."""
    try:
        if scheme.family in ("rsa", "pss") and isinstance(key, rsa.RSAPublicKey):
            algorithm = DIGESTS[scheme.digest]()
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if scheme.family == "rsa"
                else padding.PSS(padding.MGF1(algorithm), scheme.pss_salt)
            )
            key.verify(signature, data, pad, algorithm)
        elif scheme.family == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(DIGESTS[scheme.digest]()))
        elif scheme.family == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise Rejected(
                Reason.UNSUPPORTED_ALGORITHM,
                f"a {type(key).__name__} cannot make a {scheme.family} signature",
            )
    except InvalidSignature:
        return False
    return True
