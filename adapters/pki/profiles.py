"""Certificate profiles of the development PKI, shaped like a national government CA's.

Root and issuing CAs; organisation (seal) certificates carrying the agency code in
``organizationIdentifier`` and the ETSI legal-person policy; personal certificates of the
leaders who sign, with name, title and the agency's code, under the natural-person policy; a
time-stamping certificate with the critical timeStamping EKU; and the bus's own certificate.
The builders take every parameter tests need to make deliberately bad certificates too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from exchange import oids


class KeyAlgorithm(StrEnum):
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    EC_P256 = "ec-p256"
    ED25519 = "ed25519"


def generate_key(algorithm: KeyAlgorithm | str) -> CertificateIssuerPrivateKeyTypes:
    algorithm = KeyAlgorithm(algorithm)
    if algorithm is KeyAlgorithm.RSA2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm is KeyAlgorithm.RSA3072:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def signing_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """The hash a CA key signs certificates and CRLs with (None for Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()


DOCUMENT_SIGNING = ObjectIdentifier(oids.EKU_DOCUMENT_SIGNING)
ORG_ID = ObjectIdentifier(oids.ORGANIZATION_IDENTIFIER)


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def starting(cls, now: dt.datetime, days: int) -> Validity:
        # An hour of back-dating absorbs clock differences between machines.
        start = now.replace(microsecond=0) - dt.timedelta(hours=1)
        return cls(start, start + dt.timedelta(days=days))


@dataclass(frozen=True)
class Profile:
    """Everything that varies between the certificates of the development PKI."""

    subject: x509.Name
    ca: bool = False
    path_length: int | None = None
    key_usage: dict[str, bool] = field(default_factory=dict)
    extended_key_usage: Sequence[ObjectIdentifier] = ()
    eku_critical: bool = False
    policies: Sequence[str] = ()
    extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = ()
    crl_distribution_point: str | None = None
    with_authority_key_id: bool = True


_KU_FIELDS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def key_usage(**flags: bool) -> dict[str, bool]:
    return {name: flags.get(name, False) for name in _KU_FIELDS}


def build_certificate(
    profile: Profile,
    public_key: CertificatePublicKeyTypes,
    issuer_name: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    validity: Validity,
    serial: int,
    *,
    hash_algorithm: hashes.HashAlgorithm | str | None = "default",
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(
            x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if profile.with_authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if profile.key_usage:
        builder = builder.add_extension(x509.KeyUsage(**profile.key_usage), critical=True)
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=profile.eku_critical
        )
    if profile.policies:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(ObjectIdentifier(p), None) for p in profile.policies]
            ),
            critical=False,
        )
    if profile.crl_distribution_point:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(profile.crl_distribution_point)],
                        None,
                        None,
                        None,
                    )
                ]
            ),
            critical=False,
        )
    for extension, critical in profile.extra_extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, signing_hash(issuer_key))


def ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lienthong development PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def root_profile(common_name: str = "lienthong Development Root CA") -> Profile:
    return Profile(
        subject=ca_name(common_name),
        ca=True,
        key_usage=key_usage(key_cert_sign=True, crl_sign=True),
        with_authority_key_id=False,
    )


def issuing_profile(common_name: str = "lienthong Development Issuing CA") -> Profile:
    return Profile(
        subject=ca_name(common_name),
        ca=True,
        path_length=0,
        key_usage=key_usage(key_cert_sign=True, crl_sign=True, digital_signature=True),
    )


def _leaf_usage() -> dict[str, bool]:
    return key_usage(digital_signature=True, content_commitment=True)


def seal_profile(code: str, name: str, province: str | None = None) -> Profile:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if province:
        attributes.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, province))
    attributes += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        x509.NameAttribute(ORG_ID, code),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ]
    return Profile(
        subject=x509.Name(attributes),
        key_usage=_leaf_usage(),
        extended_key_usage=[DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION],
        policies=[oids.POLICY_QCP_LEGAL],
    )


def personal_profile(code: str, agency: str, full_name: str, title: str) -> Profile:
    return Profile(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, agency),
                x509.NameAttribute(ORG_ID, code),
                x509.NameAttribute(NameOID.TITLE, title),
                x509.NameAttribute(NameOID.COMMON_NAME, full_name),
            ]
        ),
        key_usage=_leaf_usage(),
        extended_key_usage=[DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION],
        policies=[oids.POLICY_QCP_NATURAL],
    )


def tsa_profile(common_name: str = "lienthong Development TSA") -> Profile:
    return Profile(
        subject=ca_name(common_name),
        key_usage=key_usage(digital_signature=True, content_commitment=True),
        extended_key_usage=[ExtendedKeyUsageOID.TIME_STAMPING],
        eku_critical=True,
    )


def bus_profile(code: str, common_name: str = "lienthong bus") -> Profile:
    return Profile(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lienthong"),
                x509.NameAttribute(ORG_ID, code),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        ),
        key_usage=_leaf_usage(),
        extended_key_usage=[DOCUMENT_SIGNING, ExtendedKeyUsageOID.CLIENT_AUTH],
        policies=[oids.POLICY_QCP_LEGAL],
    )


def build_crl(
    issuer: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    number: int,
    revoked: Sequence[tuple[int, dt.datetime, x509.ReasonFlags | None]],
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for serial, when, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer_key, signing_hash(issuer_key))
