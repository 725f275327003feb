"""What lienthong needs to know about one X.509 certificate, worked out once and cached.

A ``CertFacts`` holds the parsed certificate with the facts verification asks about: raw issuer
and subject Names (compared as DER bytes, never re-encoded), the agency code in
``organizationIdentifier``, whether it is an organisation seal or a personal certificate, and
whether its key, signature and usage are acceptable for signing documents.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from exchange import der, oids
from exchange.reasons import Reason

MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
DOCUMENT_SIGNING_EKUS = frozenset(
    ObjectIdentifier(dotted)
    for dotted in (
        oids.EKU_DOCUMENT_SIGNING,
        oids.EKU_EMAIL_PROTECTION,
        oids.EKU_ANY,
        oids.EKU_MS_DOCUMENT_SIGNING,
        oids.EKU_ADOBE_AUTHENTIC_DOCUMENTS,
    )
)
_LEGAL_POLICIES = frozenset(
    ObjectIdentifier(p) for p in (oids.POLICY_QCP_LEGAL, oids.POLICY_QCP_LEGAL_QSCD)
)
_NATURAL_POLICIES = frozenset(
    ObjectIdentifier(p) for p in (oids.POLICY_QCP_NATURAL, oids.POLICY_QCP_NATURAL_QSCD)
)
_PERSONAL_NAME_ATTRIBUTES = (
    NameOID.GIVEN_NAME,
    NameOID.SURNAME,
    NameOID.PSEUDONYM,
    NameOID.TITLE,
)
_ORG_ID = ObjectIdentifier(oids.ORGANIZATION_IDENTIFIER)
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)


class CertKind(StrEnum):
    ORGANISATION = "organisation"  # the agency's seal
    PERSONAL = "personal"  # a leader who signs


@dataclass(frozen=True, slots=True)
class CertFacts:
    cert: x509.Certificate
    der: bytes
    fingerprint: str  # SHA-256 of the DER, lowercase hex
    issuer_der: bytes
    subject_der: bytes
    serial: int
    subject_key_id: bytes | None
    organization_identifier: str | None
    kind: CertKind
    common_name: str | None
    title: str | None
    organization: str | None
    is_ca: bool
    issuer_name: str  # RFC 4514, for summaries
    key_problem: tuple[Reason, str] | None  # weak or unsupported public key
    signature_problem: str | None  # the certificate itself is signed with a weak hash
    usage_problem: str | None  # why it may not sign documents, if it may not

    @property
    def display_name(self) -> str:
        return self.common_name or self.organization or self.fingerprint[:16]


def _tbs_names(data: bytes) -> tuple[bytes, bytes]:
    """Raw DER of issuer and subject, read from the TBSCertificate as received."""
    start, stop = der.whole(data, der.SEQUENCE)
    tbs_start, tbs_stop = der.expect(data, start, stop, der.SEQUENCE)
    fields = der.children(data, tbs_start, tbs_stop)
    index = 1 if fields and fields[0][0] == der.context(0) else 0
    # serialNumber, signature, issuer, validity, subject
    _, ipos, _, istop = fields[index + 2]
    _, spos, _, sstop = fields[index + 4]
    return data[ipos:istop], data[spos:sstop]


def _first(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _key_problem(cert: x509.Certificate) -> tuple[Reason, str] | None:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        return Reason.UNSUPPORTED_ALGORITHM, f"public key cannot be used: {exc}"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return Reason.WEAK_ALGORITHM, f"RSA key of {key.key_size} bits (minimum {MIN_RSA_BITS})"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            return Reason.UNSUPPORTED_ALGORITHM, f"elliptic curve {key.curve.name} is not allowed"
        return None
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    return Reason.UNSUPPORTED_ALGORITHM, f"{type(key).__name__} keys are not supported"


def _signature_problem(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"signature algorithm {cert.signature_algorithm_oid.dotted_string} is unsupported"
    if isinstance(algorithm, _WEAK_HASHES):
        return f"certificate is signed with {algorithm.name}"
    return None


def _kind(cert: x509.Certificate) -> CertKind:
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        policies = None
    if policies is not None:
        declared = {p.policy_identifier for p in policies}
        if declared & _LEGAL_POLICIES:
            return CertKind.ORGANISATION
        if declared & _NATURAL_POLICIES:
            return CertKind.PERSONAL
    for oid in _PERSONAL_NAME_ATTRIBUTES:
        if cert.subject.get_attributes_for_oid(oid):
            return CertKind.PERSONAL
    return CertKind.ORGANISATION


def _usage_problem(cert: x509.Certificate, is_ca: bool) -> str | None:
    if is_ca:
        return "a CA certificate may not sign documents"
    try:
        usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None:
        return "keyUsage is missing (digitalSignature or contentCommitment is required)"
    if not (usage.digital_signature or usage.content_commitment):
        return "keyUsage has neither digitalSignature nor contentCommitment"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not DOCUMENT_SIGNING_EKUS.intersection(eku):
        names = ", ".join(o.dotted_string for o in eku)
        return f"extendedKeyUsage ({names}) does not allow document signing"
    return None


def certificate_facts(data: bytes) -> CertFacts:
    """Parse a DER certificate. Raises ValueError when it is not one."""
    try:
        return _facts(data)
    except (TypeError, x509.InvalidVersion, x509.DuplicateExtension) as exc:
        # cryptography parses names and extensions lazily and reports some malformations with
        # its own exception types; all of them mean "not a usable certificate" here.
        raise ValueError(f"malformed certificate: {exc}") from None


def _facts(data: bytes) -> CertFacts:
    cert = x509.load_der_x509_certificate(data)
    issuer_der, subject_der = _tbs_names(data)
    try:
        ski: bytes | None = cert.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        ski = None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertFacts(
        cert=cert,
        der=data,
        fingerprint=hashlib.sha256(data).hexdigest(),
        issuer_der=issuer_der,
        subject_der=subject_der,
        serial=cert.serial_number,
        subject_key_id=ski,
        organization_identifier=_first(cert.subject, _ORG_ID),
        kind=_kind(cert),
        common_name=_first(cert.subject, NameOID.COMMON_NAME),
        title=_first(cert.subject, NameOID.TITLE),
        organization=_first(cert.subject, NameOID.ORGANIZATION_NAME),
        is_ca=is_ca,
        issuer_name=cert.issuer.rfc4514_string(),
        key_problem=_key_problem(cert),
        signature_problem=_signature_problem(cert),
        usage_problem=_usage_problem(cert, is_ca),
    )


class CertificateCache:
    """Parsed certificates by their DER bytes: the same seal arrives with every envelope."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, CertFacts] = OrderedDict()

    def get(self, data: bytes) -> CertFacts:
        facts = self._entries.get(data)
        if facts is None:
            facts = certificate_facts(data)
            self._entries[data] = facts
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return facts

    def __len__(self) -> int:
        return len(self._entries)


def facts_from_certificate(cert: x509.Certificate) -> CertFacts:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate_facts(cert.public_bytes(Encoding.DER))
