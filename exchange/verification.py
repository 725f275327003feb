"""The verifier: header bytes + signature bytes + trust + registry + clock -> a verdict.

Verification is pure (all outside state comes in through ``TrustStore`` and the ports) and fails
closed: the first failing check, in this fixed order, names the one reason of a rejection.

 0. byte budgets of the header and the signature, before any parser sees them
 1. the signature is a DER, detached CMS SignedData
 2. counts: embedded certificates, signers
 3. the header: well-formed JSON object, counts (recipients, attachments), envelope v1 schema
 4. per signer: algorithms, signed attributes, signer certificate, messageDigest, signature value
 5. per signer: chain to a trust anchor at the trusted time (the signer's RFC 3161 genTime when
    a timestamp verifier is configured and the token is good, else the clock; when the token is
    bad and the chain fails at the clock, the token's problem is the reason)
 6. per signer: key usage allows document signing
 7. per signer: revocation by current CRLs (missing or stale CRL rejects)
 8. sender binding: exactly one seal, organizationIdentifier == sender, personal signers of the
    same agency, the sender registered and active with that seal certificate pinned
 9. time: no signingTime after the trusted time (beyond the skew); timestamp tokens (TSA chain,
    timeStamping EKU, imprint, genTime near signingTime), and the policy's requirement of one
10. freshness of created_at (when the policy sets a window)
11. replay: a message_id seen before with other bytes
12. recipients registered and active
13. attachments: size limit, present, size and SHA-256 as in the manifest
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from exchange import cms, digests, oids
from exchange.algorithms import HASHLIB_NAMES, SignatureScheme, scheme_of, signature_holds
from exchange.attributes import algorithm_protection_matches, signing_certificate_matches
from exchange.certificates import CertFacts, CertificateCache, CertKind
from exchange.envelope import envelope_digest, parse_header
from exchange.errors import ConfigurationError, Rejected
from exchange.policy import VerificationPolicy
from exchange.ports import AttachmentSource, Clock, Registry, ReplayGuard
from exchange.reasons import Reason
from exchange.trust import TrustStore
from schemas.header import Header


class TimestampJudge(Protocol):
    """Checks an RFC 3161 token carried by a SignerInfo (see ``exchange.timestamps``)."""

    def genuine_time(self, token: bytes, signature_value: bytes, *, now: dt.datetime) -> TimeProof:
        """The token's genTime and TSA when it is sound for ``signature_value``; Rejected if not."""
        ...


@dataclass(frozen=True, slots=True)
class TimeProof:
    gen_time: dt.datetime
    tsa: str  # the TSA certificate's subject, for summaries


@dataclass(frozen=True, slots=True)
class SignerSummary:
    role: CertKind
    name: str
    title: str | None
    organization: str | None
    agency_code: str | None
    fingerprint: str
    serial: str
    issuer: str
    signing_time: dt.datetime
    timestamp: dt.datetime | None
    tsa: str | None

    def as_dict(self) -> dict[str, str | None]:
        """The summary as JSON-ready values (what the API returns and the database keeps)."""
        return {
            "role": self.role.value,
            "name": self.name,
            "title": self.title,
            "organization": self.organization,
            "agency_code": self.agency_code,
            "fingerprint_sha256": self.fingerprint,
            "serial": self.serial,
            "issuer": self.issuer,
            "signing_time": self.signing_time.isoformat(),
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "tsa": self.tsa,
        }


@dataclass(frozen=True, slots=True)
class Accepted:
    header: Header
    seal: SignerSummary
    personal: tuple[SignerSummary, ...]
    trusted_time: dt.datetime  # the seal's: its genTime when time-stamped, else the clock
    time_source: str  # "timestamp" or "clock"
    envelope_digest: str
    registry_checked: bool

    @property
    def sender(self) -> str:
        return self.header.sender


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str


Verdict = Accepted | Rejection


@dataclass(slots=True)
class _Signer:
    info: cms.SignerInfo
    cert: CertFacts
    scheme: SignatureScheme
    signing_time: dt.datetime
    token: bytes | None
    proof: TimeProof | None = None
    token_problem: Rejected | None = None


class Verifier:
    """Verifies envelopes; one instance serves many, keeping certificate and chain caches warm.

    ``registry`` may be None only for offline use (``lienthong verify`` without ``--registry``):
    the sender's registration and the recipients are then not checked, and the verdict says so.
    """

    def __init__(
        self,
        trust: TrustStore,
        registry: Registry | None,
        clock: Clock,
        policy: VerificationPolicy | None = None,
        *,
        timestamps: TimestampJudge | None = None,
        replay: ReplayGuard | None = None,
        certificates: CertificateCache | None = None,
    ) -> None:
        self.trust = trust
        self.registry = registry
        self.clock = clock
        self.policy = policy or VerificationPolicy()
        if self.policy.require_timestamp and timestamps is None:
            raise ConfigurationError(
                "the policy requires RFC 3161 timestamps but no timestamp verifier is configured"
            )
        self.timestamps = timestamps
        self.replay = replay
        self.certificates = certificates or CertificateCache()

    def verify(
        self,
        header: bytes,
        signature: bytes,
        attachments: AttachmentSource | None = None,
        *,
        digest: str | None = None,
    ) -> Verdict:
        """The verdict on one envelope.

        ``digest``, when given, is ``envelope_digest(header, signature)`` as the caller already
        computed it from these very bytes (the router does, to find copies): not hashed again.
        """
        try:
            return self._verify(header, signature, attachments, digest)
        except Rejected as rejected:
            return Rejection(rejected.reason, rejected.detail)

    def _verify(
        self,
        header_bytes: bytes,
        signature: bytes,
        attachments: AttachmentSource | None,
        digest: str | None,
    ) -> Accepted:
        limits = self.policy.limits
        now = self.clock.now()
        # 0. Byte budgets.
        if len(header_bytes) > limits.max_header_bytes:
            raise Rejected(
                Reason.HEADER_TOO_LARGE,
                f"header is {len(header_bytes)} bytes (limit {limits.max_header_bytes})",
            )
        if len(signature) > limits.max_signature_bytes:
            raise Rejected(
                Reason.SIGNATURE_TOO_LARGE,
                f"signature is {len(signature)} bytes (limit {limits.max_signature_bytes})",
            )
        # 1. Well-formed detached SignedData.
        try:
            signed = cms.parse_signed_data(signature)
        except (cms.CmsError, ValueError) as exc:
            raise Rejected(Reason.MALFORMED_SIGNATURE, str(exc)) from None
        if signed.content is not None:
            raise Rejected(Reason.MALFORMED_SIGNATURE, "the signature is not detached")
        if not signed.signer_infos:
            raise Rejected(Reason.MALFORMED_SIGNATURE, "the signature has no signer")
        # 2. Counts.
        embedded = len(signed.certificates) + signed.other_certificate_count
        if embedded > limits.max_certificates:
            raise Rejected(
                Reason.TOO_MANY_CERTIFICATES,
                f"{embedded} embedded certificates (limit {limits.max_certificates})",
            )
        if len(signed.signer_infos) > limits.max_signers:
            raise Rejected(
                Reason.TOO_MANY_SIGNERS,
                f"{len(signed.signer_infos)} signers (limit {limits.max_signers})",
            )
        if signed.other_certificate_count:
            raise Rejected(Reason.MALFORMED_SIGNATURE, "only X.509 certificates may be embedded")
        try:
            certs = [self.certificates.get(data) for data in signed.certificates]
        except ValueError as exc:
            raise Rejected(
                Reason.MALFORMED_SIGNATURE, f"an embedded certificate is malformed: {exc}"
            ) from None
        # 3. Header.
        header = parse_header(header_bytes, limits)
        # 4. Signature math, per signer.
        signers = [
            self._check_signer(info, signed, certs, header_bytes) for info in signed.signer_infos
        ]
        # 5-7. Chain, key usage and revocation, each signer at its trusted time.
        if self.timestamps is not None:
            for signer in signers:
                if signer.token is not None:
                    try:
                        signer.proof = self.timestamps.genuine_time(
                            signer.token, signer.info.signature, now=now
                        )
                    except Rejected as problem:
                        signer.token_problem = problem
        intermediates = [c for c in certs if c.is_ca]
        for signer in signers:
            at = signer.proof.gen_time if signer.proof is not None else now
            try:
                self.trust.judge(signer.cert, intermediates, at=at, now=now)
            except Rejected:
                # A token that could not establish the trusted time is why the chain was judged
                # at the clock: its problem is the reason, not the chain's at the wrong time.
                if signer.token_problem is not None:
                    raise signer.token_problem from None
                raise
        # 8. Sender binding.
        seal = self._bind_sender(header, signers)
        # 9. Timestamps.
        self._check_timestamps(signers, now)
        # 10. Freshness.
        freshness = self.policy.freshness
        if freshness is not None:
            if header.created_at < now - freshness.acceptance_window:
                raise Rejected(
                    Reason.MESSAGE_STALE,
                    f"created_at {header.created_at.isoformat()} is older than "
                    f"{freshness.acceptance_window}",
                )
            if header.created_at > now + freshness.future_skew:
                raise Rejected(
                    Reason.MESSAGE_FROM_FUTURE,
                    f"created_at {header.created_at.isoformat()} is ahead of the bus clock "
                    f"({now.isoformat()}) by more than {freshness.future_skew}",
                )
        # 11. Replay.
        if digest is None:
            digest = envelope_digest(header_bytes, signature)
        if self.replay is not None:
            earlier = self.replay.envelope_digest(header.message_id)
            if earlier is not None and earlier != digest:
                raise Rejected(
                    Reason.REPLAY,
                    f"message_id {header.message_id} was accepted before with other bytes",
                )
        # 12. Recipients.
        if self.registry is not None:
            for code in header.recipients:
                record = self.registry.agency(code)
                if record is None:
                    raise Rejected(Reason.RECIPIENT_UNKNOWN, f"recipient {code} is not registered")
                if not record.active:
                    raise Rejected(Reason.RECIPIENT_DISABLED, f"recipient {code} is disabled")
        # 13. Attachments.
        self._check_attachments(header, attachments)
        personal = tuple(self._summary(s) for s in signers if s is not seal)
        return Accepted(
            header=header,
            seal=self._summary(seal),
            personal=personal,
            trusted_time=seal.proof.gen_time if seal.proof is not None else now,
            time_source="timestamp" if seal.proof is not None else "clock",
            envelope_digest=digest,
            registry_checked=self.registry is not None,
        )

    # --- step 4 ----------------------------------------------------------------------------

    def _check_signer(
        self,
        info: cms.SignerInfo,
        signed: cms.SignedData,
        certs: Sequence[CertFacts],
        content: bytes,
    ) -> _Signer:
        scheme = scheme_of(info.digest_algorithm, info.signature_algorithm)
        if info.signed_attrs is None:
            raise Rejected(Reason.SIGNED_ATTRIBUTES_INVALID, "a signer has no signed attributes")
        try:
            content_type = info.only_value(oids.ATTR_CONTENT_TYPE)
            message_digest = info.only_value(oids.ATTR_MESSAGE_DIGEST)
            signing_time_value = info.only_value(oids.ATTR_SIGNING_TIME)
            if content_type is None or message_digest is None or signing_time_value is None:
                raise Rejected(
                    Reason.SIGNED_ATTRIBUTES_INVALID,
                    "contentType, messageDigest and signingTime are all required",
                )
            if cms.decode_oid_value(content_type) != oids.DATA or signed.content_type != oids.DATA:
                raise Rejected(Reason.SIGNED_ATTRIBUTES_INVALID, "the content type is not id-data")
            expected_digest = cms.decode_octets_value(message_digest)
            signing_time = cms.decode_time_value(signing_time_value)
        except (cms.CmsError, ValueError) as exc:
            raise Rejected(Reason.SIGNED_ATTRIBUTES_INVALID, str(exc)) from None
        cert = self._signer_certificate(info, certs)
        if cert.key_problem is not None:
            raise Rejected(cert.key_problem[0], f"signer key: {cert.key_problem[1]}")
        _check_bindings(info, cert)
        actual = digests.digest(HASHLIB_NAMES[scheme.digest], content).digest()
        if actual != expected_digest:
            raise Rejected(
                Reason.DIGEST_MISMATCH,
                f"the header's digest differs from the messageDigest signed by "
                f"'{cert.display_name}'",
            )
        if not signature_holds(scheme, cert.cert.public_key(), info.signature, info.signed_attrs):
            raise Rejected(
                Reason.BAD_SIGNATURE, f"the signature of '{cert.display_name}' does not verify"
            )
        tokens = info.unsigned.get(oids.ATTR_SIGNATURE_TIMESTAMP_TOKEN)
        if tokens is not None and len(tokens) != 1:
            raise Rejected(Reason.TIMESTAMP_MALFORMED, "a signer carries more than one token")
        return _Signer(info, cert, scheme, signing_time, tokens[0] if tokens else None)

    @staticmethod
    def _signer_certificate(info: cms.SignerInfo, certs: Sequence[CertFacts]) -> CertFacts:
        sid = info.sid
        if isinstance(sid, cms.IssuerSerial):
            matches = [c for c in certs if c.serial == sid.serial and c.issuer_der == sid.issuer]
        else:
            matches = [c for c in certs if c.subject_key_id == sid]
        if len(matches) != 1:
            problem = "is not embedded" if not matches else "is ambiguous (several match)"
            raise Rejected(Reason.SIGNER_CERTIFICATE_MISSING, f"a signer's certificate {problem}")
        return matches[0]

    # --- step 8 ----------------------------------------------------------------------------

    def _bind_sender(self, header: Header, signers: Sequence[_Signer]) -> _Signer:
        seals = [s for s in signers if s.cert.kind is CertKind.ORGANISATION]
        if not seals:
            raise Rejected(Reason.SEAL_MISSING, "no signer holds an organisation certificate")
        if len(seals) > 1:
            raise Rejected(Reason.MULTIPLE_SEALS, f"{len(seals)} organisation certificates sign")
        seal = seals[0]
        if seal.cert.organization_identifier != header.sender:
            raise Rejected(
                Reason.SENDER_MISMATCH,
                f"the seal belongs to {seal.cert.organization_identifier!r}, "
                f"the header names {header.sender!r}",
            )
        for signer in signers:
            if signer.cert.organization_identifier != header.sender:
                raise Rejected(
                    Reason.SIGNER_AGENCY_MISMATCH,
                    f"personal signer '{signer.cert.display_name}' belongs to "
                    f"{signer.cert.organization_identifier!r}, not {header.sender!r}",
                )
        if self.registry is not None:
            record = self.registry.agency(header.sender)
            if record is None:
                raise Rejected(Reason.SENDER_UNKNOWN, f"sender {header.sender} is not registered")
            if not record.active:
                raise Rejected(Reason.SENDER_DISABLED, f"sender {header.sender} is disabled")
            if seal.cert.fingerprint not in record.seal_fingerprints:
                raise Rejected(
                    Reason.CERTIFICATE_NOT_REGISTERED,
                    f"seal certificate {seal.cert.fingerprint[:16]}... is not registered for "
                    f"{header.sender}",
                )
        return seal

    # --- step 9 ----------------------------------------------------------------------------

    def _check_timestamps(self, signers: Sequence[_Signer], now: dt.datetime) -> None:
        for signer in signers:
            trusted = signer.proof.gen_time if signer.proof is not None else now
            if signer.signing_time > trusted + self.policy.timestamp_skew:
                raise Rejected(
                    Reason.SIGNING_TIME_IN_FUTURE,
                    f"'{signer.cert.display_name}' claims signingTime "
                    f"{signer.signing_time.isoformat()}, after the trusted time "
                    f"{trusted.isoformat()}",
                )
        for signer in signers:
            if signer.token_problem is not None:
                raise signer.token_problem
            if signer.proof is None:
                if self.policy.require_timestamp:
                    raise Rejected(
                        Reason.TIMESTAMP_REQUIRED,
                        f"'{signer.cert.display_name}' signed without an RFC 3161 timestamp",
                    )
                continue
            gap = abs(signer.proof.gen_time - signer.signing_time)
            if gap > self.policy.timestamp_skew:
                raise Rejected(
                    Reason.TIMESTAMP_SKEW,
                    f"genTime {signer.proof.gen_time.isoformat()} is {gap} from signingTime "
                    f"{signer.signing_time.isoformat()} (allowed {self.policy.timestamp_skew})",
                )

    # --- step 13 ---------------------------------------------------------------------------

    def _check_attachments(self, header: Header, source: AttachmentSource | None) -> None:
        limit = self.policy.limits.max_attachment_bytes
        for ref in header.attachments:
            if ref.size > limit:
                raise Rejected(
                    Reason.ATTACHMENT_TOO_LARGE,
                    f"attachment {ref.name!r} declares {ref.size} bytes (limit {limit})",
                )
            measured = source.measure(ref) if source is not None else None
            if measured is None:
                raise Rejected(Reason.ATTACHMENT_MISSING, f"attachment {ref.name!r} is missing")
            if measured.size != ref.size:
                raise Rejected(
                    Reason.ATTACHMENT_SIZE_MISMATCH,
                    f"attachment {ref.name!r} is {measured.size} bytes, the manifest says "
                    f"{ref.size}",
                )
            if measured.sha256 != ref.sha256:
                raise Rejected(
                    Reason.ATTACHMENT_DIGEST_MISMATCH,
                    f"attachment {ref.name!r} does not match its SHA-256 in the manifest",
                )

    @staticmethod
    def _summary(signer: _Signer) -> SignerSummary:
        cert = signer.cert
        return SignerSummary(
            role=cert.kind,
            name=cert.display_name,
            title=cert.title,
            organization=cert.organization,
            agency_code=cert.organization_identifier,
            fingerprint=cert.fingerprint,
            serial=f"{cert.serial:x}",
            issuer=cert.issuer_name,
            signing_time=signer.signing_time,
            timestamp=signer.proof.gen_time if signer.proof is not None else None,
            tsa=signer.proof.tsa if signer.proof is not None else None,
        )


def _check_bindings(info: cms.SignerInfo, cert: CertFacts) -> None:
    """Optional signed attributes must agree with the certificate and algorithms used."""
    try:
        protection = info.attributes.get(oids.ATTR_CMS_ALGORITHM_PROTECTION)
        if protection is not None and (
            len(protection) != 1
            or not algorithm_protection_matches(
                protection[0], info.digest_algorithm, info.signature_algorithm
            )
        ):
            raise Rejected(
                Reason.SIGNED_ATTRIBUTES_INVALID,
                "CMSAlgorithmProtection names other algorithms than the SignerInfo",
            )
        _check_signing_certificate(info, cert)
    except (ValueError, IndexError) as exc:
        raise Rejected(Reason.SIGNED_ATTRIBUTES_INVALID, f"malformed attribute: {exc}") from None


def _check_signing_certificate(info: cms.SignerInfo, cert: CertFacts) -> None:
    for attr in (oids.ATTR_SIGNING_CERTIFICATE_V2, oids.ATTR_SIGNING_CERTIFICATE):
        value = info.attributes.get(attr)
        if value is None:
            continue
        if len(value) != 1 or not signing_certificate_matches(
            value[0],
            cert.der,
            v2=attr == oids.ATTR_SIGNING_CERTIFICATE_V2,
            sha256_hex=cert.fingerprint,
        ):
            raise Rejected(
                Reason.SIGNED_ATTRIBUTES_INVALID,
                "the signingCertificate attribute names another certificate",
            )
