"""Making detached CMS signatures over header bytes: an organisation seal and personal signers.

The result is DER ContentInfo/SignedData (RFC 5652) with, per signer, the signed attributes
contentType, signingTime, messageDigest and signingCertificateV2 (the CAdES-BES set), and
optionally an RFC 3161 token over the signature value (CAdES-T) supplied by a ``Timestamper``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from exchange import derwrite as w
from exchange import oids
from exchange.certificates import facts_from_certificate
from exchange.errors import InputError


class Timestamper(Protocol):
    """Obtains an RFC 3161 token (DER ContentInfo) over the given signature value."""

    def timestamp(self, signature_value: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SigningKey:
    certificate: x509.Certificate
    private_key: PrivateKeyTypes


def scheme_for(
    key: PrivateKeyTypes, *, rsa_oid: bytes = oids.RSA_ENCRYPTION
) -> tuple[bytes, bytes, str]:
    """(digestAlgorithm DER, signatureAlgorithm DER, hashlib name) a key signs CMS with.

    RSA keys sign PKCS#1 v1.5 with SHA-256, named ``rsa_oid`` (rsaEncryption, as OpenSSL writes
    it, or sha256WithRSAEncryption); EC keys with the hash of their curve; Ed25519 per RFC 8419.
    Raises InputError for other keys.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return w.algorithm(oids.SHA256), w.algorithm(rsa_oid, w.null()), "sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP384R1):
            return w.algorithm(oids.SHA384), w.algorithm(oids.ECDSA_WITH_SHA384), "sha384"
        if isinstance(key.curve, ec.SECP521R1):
            return w.algorithm(oids.SHA512), w.algorithm(oids.ECDSA_WITH_SHA512), "sha512"
        return w.algorithm(oids.SHA256), w.algorithm(oids.ECDSA_WITH_SHA256), "sha256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return w.algorithm(oids.SHA512), w.algorithm(oids.ED25519), "sha512"
    raise InputError(f"{type(key).__name__} keys cannot sign envelopes")


def raw_sign(key: PrivateKeyTypes, data: bytes, hash_name: str) -> bytes:
    """The signature value over ``data`` in the scheme ``scheme_for`` named."""
    algorithm: hashes.HashAlgorithm = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }[hash_name]
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise InputError(f"{type(key).__name__} keys cannot sign envelopes")


def _attribute(type_oid: bytes, *values: bytes) -> bytes:
    return w.sequence(w.oid(type_oid), w.set_of(*values))


def _signer_info(
    signer: SigningKey, content: bytes, signing_time: dt.datetime, timestamper: Timestamper | None
) -> tuple[bytes, bytes]:
    facts = facts_from_certificate(signer.certificate)
    digest_alg, signature_alg, hash_name = scheme_for(signer.private_key)
    cert_der = facts.der
    ess_id = w.sequence(
        w.octets(hashlib.sha256(cert_der).digest()),
        w.sequence(
            w.sequence(w.explicit(4, facts.issuer_der)),  # GeneralNames: [4] directoryName
            w.integer(facts.serial),
        ),
    )
    attributes = w.set_of(
        _attribute(oids.ATTR_CONTENT_TYPE, w.oid(oids.DATA)),
        _attribute(oids.ATTR_SIGNING_TIME, w.time(signing_time)),
        _attribute(oids.ATTR_MESSAGE_DIGEST, w.octets(hashlib.new(hash_name, content).digest())),
        _attribute(oids.ATTR_SIGNING_CERTIFICATE_V2, w.sequence(w.sequence(ess_id))),
    )
    signature = raw_sign(signer.private_key, attributes, hash_name)
    fields = [
        w.integer(1),
        w.sequence(facts.issuer_der, w.integer(facts.serial)),
        digest_alg,
        w.implicit(0, attributes),
        signature_alg,
        w.octets(signature),
    ]
    if timestamper is not None:
        token = timestamper.timestamp(signature)
        fields.append(
            w.implicit(1, w.set_of(_attribute(oids.ATTR_SIGNATURE_TIMESTAMP_TOKEN, token)))
        )
    return w.sequence(*fields), digest_alg


def sign_detached(
    content: bytes,
    signers: Sequence[SigningKey],
    *,
    chain: Sequence[x509.Certificate] = (),
    signing_time: dt.datetime | None = None,
    timestamper: Timestamper | None = None,
) -> bytes:
    """A DER detached CMS SignedData over ``content``, one SignerInfo per signer."""
    if not signers:
        raise InputError("at least one signer is needed")
    when = signing_time or dt.datetime.now(dt.UTC)
    infos, digests = zip(
        *(_signer_info(s, content, when, timestamper) for s in signers), strict=True
    )
    certificates: list[bytes] = []
    for cert in [*(s.certificate for s in signers), *chain]:
        encoded = cert.public_bytes(Encoding.DER)
        if encoded not in certificates:
            certificates.append(encoded)
    signed_data = w.sequence(
        w.integer(1),
        w.set_of(*set(digests)),
        w.sequence(w.oid(oids.DATA)),
        w.tlv(0xA0, b"".join(sorted(certificates))),
        w.set_of(*infos),
    )
    return w.sequence(w.oid(oids.SIGNED_DATA), w.explicit(0, signed_data))
