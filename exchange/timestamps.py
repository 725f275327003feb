"""RFC 3161 time-stamp tokens: reading one, and judging it as proof of when a signature existed.

A token (``TimeStampToken``) is a DER ContentInfo holding SignedData whose eContent is a
``TSTInfo``, signed by one time-stamping authority (TSA). A SignerInfo of an envelope may carry one
as the unsigned attribute id-aa-signatureTimeStampToken over its signature value (CAdES-T); its
``genTime`` is then the trusted time at which the signer's certificate chain is judged.

``TimestampVerifier.verify_token`` checks a token, in this fixed order, each failure with its
one reason:

1. ``timestamp_malformed``: not a DER ContentInfo/SignedData with an attached TSTInfo, not exactly
   one SignerInfo, no signed attributes, a malformed or unsupported TSTInfo (version, unknown
   critical extension), more embedded certificates than allowed.
2. ``timestamp_untrusted`` when the TSA's certificate is neither embedded nor supplied: it is found
   by the SignerInfo's sid (issuerAndSerialNumber or subjectKeyIdentifier), never by guessing
   among the certificates a token carries.
3. ``timestamp_invalid``: algorithms (SHA-1, MD5 and unknown ones refused), contentType and
   messageDigest over the TSTInfo, the ESS signingCertificate / signingCertificateV2 binding
   (one of them is required, RFC 3161 2.4.1 / RFC 5816) to the TSA certificate, the signature
   value, the ``tsa`` name of the TSTInfo against the certificate.
4. ``timestamp_untrusted``: the TSA certificate's chain to the TSA trust anchors, judged at
   ``genTime`` (so a token stays good after its TSA certificate expires), and revocation (below).
5. ``timestamp_not_for_timestamping``: the TSA certificate must carry extendedKeyUsage, critical,
   with id-kp-timeStamping as its only purpose (RFC 3161 2.3); not be a CA; and, when it has a
   keyUsage, allow digitalSignature or nonRepudiation.
6. ``timestamp_skew``: a genTime ahead of the verifier's clock by more than ``future_skew``.
7. ``timestamp_imprint_mismatch``: the messageImprint's hash algorithm is weak or unknown, or its
   hash is not that of the data (for CAdES-T: the SignerInfo's signature value).

Revocation of the TSA's chain. CRLs come from the TSA trust store (which may follow the bus's own
trust store, so ``lienthong crl load`` reaches it). With ``TsaRevocation.REQUIRE`` every link
needs a current CRL, exactly as for signers (a missing or stale CRL rejects). With
``TsaRevocation.IF_AVAILABLE`` the chain is checked that way as soon as any CRL of an issuer in it
is loaded, and judged without revocation when none is (a third-party TSA whose CRLs the bus does
not hold). A certificate revoked at or before genTime rejects the token. For the TSA certificate
itself RFC 3161 section 4 is applied: revocation with reason unspecified, affiliationChanged,
superseded or cessationOfOperation leaves the tokens made before it valid; revocation for
keyCompromise, or with no reason code, invalidates every token of that key, whatever its genTime
(a compromised key can write any genTime).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from exchange import cms, der, oids
from exchange.algorithms import HASHLIB_NAMES, WEAK_DIGESTS, scheme_of, signature_holds
from exchange.attributes import signing_certificate_matches
from exchange.certificates import CertFacts, CertificateCache
from exchange.errors import Rejected
from exchange.reasons import Reason
from exchange.trust import TrustStore
from exchange.verification import TimeProof

KIB = 1024
DEFAULT_MAX_TOKEN_BYTES = 64 * KIB
DEFAULT_MAX_TOKEN_CERTIFICATES = 8
EKU_TIME_STAMPING = x509.ObjectIdentifier(oids.EKU_TIME_STAMPING)
# RFC 3161 section 4: a TSA certificate revoked for these reasons leaves earlier tokens valid.
_BENIGN_TSA_REVOCATIONS = frozenset(
    {
        x509.ReasonFlags.unspecified,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
    }
)


class TokenError(ValueError):
    """The bytes are not a well-formed RFC 3161 TimeStampToken."""


@dataclass(frozen=True, slots=True)
class Extension:
    oid: bytes  # DER content octets
    critical: bool
    value: bytes  # the extnValue OCTET STRING's content


@dataclass(frozen=True, slots=True)
class TstInfo:
    """The signed content of a token (RFC 3161 2.4.2)."""

    version: int
    policy: bytes  # OID content octets
    hash_algorithm: bytes  # OID content octets of the messageImprint's hash
    hashed_message: bytes
    serial: int
    gen_time: dt.datetime
    accuracy: dt.timedelta | None
    ordering: bool
    nonce: int | None
    tsa_name: bytes | None  # DER of the GeneralName in ``tsa [0]``
    extensions: tuple[Extension, ...]

    @property
    def policy_dotted(self) -> str:
        return der.decode_oid(self.policy)


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed TimeStampToken: the SignedData, its one SignerInfo and the TSTInfo it signs."""

    der: bytes
    signed: cms.SignedData
    signer: cms.SignerInfo
    tst_der: bytes  # the eContent: DER TSTInfo, exactly as signed
    info: TstInfo


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    info: TstInfo
    tsa: CertFacts
    chain: tuple[CertFacts, ...]  # TSA certificate first, trust anchor last

    @property
    def gen_time(self) -> dt.datetime:
        return self.info.gen_time

    def proof(self) -> TimeProof:
        return TimeProof(self.info.gen_time, self.tsa.cert.subject.rfc4514_string())


class TsaRevocation(StrEnum):
    REQUIRE = "require"  # every link of the TSA's chain needs a current CRL, as for signers
    IF_AVAILABLE = "if_available"  # checked as above when any CRL of the chain is loaded


# --- reading ---------------------------------------------------------------------------------


def _boolean(buf: bytes, start: int, stop: int) -> bool:
    if stop - start != 1 or buf[start] not in (0x00, 0xFF):
        raise TokenError("a BOOLEAN is not DER")
    return buf[start] == 0xFF


def _accuracy(buf: bytes, start: int, stop: int) -> dt.timedelta:
    seconds = millis = micros = 0
    last = -1
    for tag, _, fstart, fstop in der.children(buf, start, stop):
        if tag == der.INTEGER and last < 0:
            seconds = der.integer(buf, fstart, fstop)
            if seconds < 0 or fstop - fstart > 4:
                raise TokenError("accuracy seconds out of range")
            last = 0
        elif tag == der.context(0, constructed=False) and last < 1:
            millis = der.integer(buf, fstart, fstop)
            if not 1 <= millis <= 999:
                raise TokenError("accuracy millis out of range")
            last = 1
        elif tag == der.context(1, constructed=False) and last < 2:
            micros = der.integer(buf, fstart, fstop)
            if not 1 <= micros <= 999:
                raise TokenError("accuracy micros out of range")
            last = 2
        else:
            raise TokenError("malformed accuracy")
    return dt.timedelta(seconds=seconds, milliseconds=millis, microseconds=micros)


def _extensions(buf: bytes, start: int, stop: int) -> tuple[Extension, ...]:
    out: list[Extension] = []
    seen: set[bytes] = set()
    for tag, _, estart, estop in der.children(buf, start, stop):
        if tag != der.SEQUENCE:
            raise TokenError("an extension is not a SEQUENCE")
        parts = der.children(buf, estart, estop)
        if not 2 <= len(parts) <= 3 or parts[0][0] != der.OID or parts[-1][0] != der.OCTET_STRING:
            raise TokenError("malformed extension")
        critical = False
        if len(parts) == 3:
            if parts[1][0] != der.BOOLEAN:
                raise TokenError("malformed extension")
            critical = _boolean(buf, parts[1][2], parts[1][3])
        oid = der.oid(buf, parts[0][2], parts[0][3])
        if oid in seen:
            raise TokenError(f"extension {der.decode_oid(oid)} appears twice")
        seen.add(oid)
        out.append(Extension(oid, critical, buf[parts[-1][2] : parts[-1][3]]))
    return tuple(out)


def message_imprint(buf: bytes, start: int, stop: int) -> tuple[bytes, bytes]:
    """(hash algorithm OID content, hashed message) of a MessageImprint's content."""
    parts = der.children(buf, start, stop)
    if len(parts) != 2 or parts[0][0] != der.SEQUENCE or parts[1][0] != der.OCTET_STRING:
        raise TokenError("malformed messageImprint")
    algorithm = der.children(buf, parts[0][2], parts[0][3])
    if not 1 <= len(algorithm) <= 2 or algorithm[0][0] != der.OID:
        raise TokenError("malformed messageImprint hashAlgorithm")
    if len(algorithm) == 2 and buf[algorithm[1][1] : algorithm[1][3]] != b"\x05\x00":
        raise TokenError("messageImprint hashAlgorithm parameters must be absent or NULL")
    return der.oid(buf, algorithm[0][2], algorithm[0][3]), buf[parts[1][2] : parts[1][3]]


def parse_tst_info(data: bytes) -> TstInfo:
    """Parse a DER TSTInfo. Raises TokenError when it is not one."""
    try:
        return _tst_info(data)
    except (der.DerError, IndexError) as exc:
        raise TokenError(f"malformed TSTInfo: {exc}") from None


def _tst_info(data: bytes) -> TstInfo:
    start, stop = der.whole(data, der.SEQUENCE)
    parts = der.children(data, start, stop)
    if len(parts) < 5:
        raise TokenError("TSTInfo is too short")
    (vtag, _, vstart, vstop), (ptag, _, pstart, pstop), (mtag, _, mstart, mstop) = parts[:3]
    (stag, _, sstart, sstop), (gtag, _, gstart, gstop) = parts[3:5]
    if vtag != der.INTEGER or der.small_integer(data, vstart, vstop) != 1:
        raise TokenError("TSTInfo version is not 1")
    if ptag != der.OID or mtag != der.SEQUENCE or stag != der.INTEGER:
        raise TokenError("malformed TSTInfo")
    if gtag != der.GENERALIZED_TIME:
        raise TokenError("genTime is not a GeneralizedTime")
    hash_algorithm, hashed = message_imprint(data, mstart, mstop)
    accuracy = None
    ordering = False
    nonce = None
    tsa_name = None
    extensions: tuple[Extension, ...] = ()
    rank = 0  # the optional fields, in their order
    for tag, pos, fstart, fstop in parts[5:]:
        if tag == der.SEQUENCE and rank < 1:
            accuracy, rank = _accuracy(data, fstart, fstop), 1
        elif tag == der.BOOLEAN and rank < 2:
            ordering, rank = _boolean(data, fstart, fstop), 2
        elif tag == der.INTEGER and rank < 3:
            nonce, rank = der.integer(data, fstart, fstop), 3
        elif tag == der.context(0) and rank < 4:
            inner = der.children(data, fstart, fstop)
            if len(inner) != 1:
                raise TokenError("tsa is not one GeneralName")
            tsa_name, rank = data[inner[0][1] : inner[0][3]], 4
        elif tag == der.context(1) and rank < 5:
            extensions, rank = _extensions(data, fstart, fstop), 5
        else:
            raise TokenError(f"unexpected field in TSTInfo at offset {pos}")
    return TstInfo(
        version=1,
        policy=der.oid(data, pstart, pstop),
        hash_algorithm=hash_algorithm,
        hashed_message=hashed,
        serial=der.integer(data, sstart, sstop),
        gen_time=der.time(gtag, data, gstart, gstop),
        accuracy=accuracy,
        ordering=ordering,
        nonce=nonce,
        tsa_name=tsa_name,
        extensions=extensions,
    )


def parse_token(data: bytes) -> Token:
    """Parse a DER TimeStampToken. Raises TokenError when it is not one."""
    try:
        signed = cms.parse_signed_data(data)
    except (cms.CmsError, ValueError) as exc:
        raise TokenError(f"not a CMS SignedData: {exc}") from None
    if signed.content_type != oids.TST_INFO:
        raise TokenError("the eContentType is not id-ct-TSTInfo")
    if signed.content is None:
        raise TokenError("the token carries no TSTInfo (detached)")
    if len(signed.signer_infos) != 1:
        raise TokenError(f"a token has exactly one SignerInfo, not {len(signed.signer_infos)}")
    signer = signed.signer_infos[0]
    if signer.signed_attrs is None:
        raise TokenError("the TSA's SignerInfo has no signed attributes")
    info = parse_tst_info(signed.content)
    return Token(data, signed, signer, signed.content, info)


# --- judging ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Judged:
    chain: tuple[CertFacts, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime
    fresh_from: dt.datetime
    fresh_until: dt.datetime


_LIBRARY_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
)
_ALL_TIME = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, tzinfo=dt.UTC))


class TimestampVerifier:
    """Verifies RFC 3161 tokens against TSA trust anchors (a ``TimestampJudge``).

    ``anchors`` is a ``TrustStore`` (used as it is, CRLs included) or the TSA trust anchor
    certificates; in the latter case ``crls`` are CRLs to load, or a ``TrustStore`` whose CRLs
    this verifier follows as they are added (the bus's own store, fed by ``CrlSync``).
    ``certificates`` are TSA certificates (and intermediates) supplied out of band, for tokens
    that do not embed them. One instance serves many threads.
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate] | TrustStore,
        crls: Iterable[x509.CertificateRevocationList] | TrustStore = (),
        *,
        revocation: TsaRevocation = TsaRevocation.REQUIRE,
        certificates: Sequence[x509.Certificate] = (),
        future_skew: dt.timedelta = dt.timedelta(minutes=5),
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        max_certificates: int = DEFAULT_MAX_TOKEN_CERTIFICATES,
        certificate_cache: CertificateCache | None = None,
        cache_size: int = 1024,
    ) -> None:
        self._follow: TrustStore | None = None
        self._followed_generation = -1
        if isinstance(anchors, TrustStore):
            self.trust = anchors
        else:
            self.trust = TrustStore(anchors)
            if isinstance(crls, TrustStore):
                self._follow = crls
            else:
                for crl in crls:
                    self.trust.add_crl(crl)
        self.revocation = TsaRevocation(revocation)
        self.future_skew = future_skew
        self.max_token_bytes = max_token_bytes
        self.max_certificates = max_certificates
        self.certificates = certificate_cache or CertificateCache()
        self.supplied = tuple(
            self.certificates.get(c.public_bytes(Encoding.DER)) for c in certificates
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], _Judged] = OrderedDict()
        self._cache_size = cache_size
        self._crl_issuers: tuple[int, frozenset[bytes]] = (-1, frozenset())
        self._usage: dict[str, Rejected | None] = {}

    # --- the TimestampJudge protocol -------------------------------------------------------

    def genuine_time(self, token: bytes, signature_value: bytes, *, now: dt.datetime) -> TimeProof:
        """The token's genTime and TSA when it is sound for ``signature_value``; Rejected if not."""
        return self.verify_token(token, signature_value, now=now).proof()

    # --- tokens ----------------------------------------------------------------------------

    def verify_token(
        self,
        token: bytes,
        data: bytes | None = None,
        *,
        digest: bytes | None = None,
        now: dt.datetime,
    ) -> VerifiedToken:
        """Check ``token`` as a time-stamp over ``data`` (or over the hash ``digest`` of it, in the
        token's own hash algorithm). Raises Rejected with the first failing check's reason."""
        if (data is None) == (digest is None):
            raise ValueError("give either the data or its digest")
        try:
            return self._verify_token(token, data, digest, now)
        except _LIBRARY_ERRORS as exc:
            # cryptography parses certificate fields lazily: a certificate in a token that is
            # malformed deep inside must reject the token, not escape the verifier.
            raise Rejected(
                Reason.TIMESTAMP_MALFORMED, f"unreadable token material: {exc!r}"
            ) from None

    def _verify_token(
        self, token: bytes, data: bytes | None, digest: bytes | None, now: dt.datetime
    ) -> VerifiedToken:
        parsed = self._parse(token)
        tsa = self._tsa_certificate(parsed)
        self._check_signature(parsed, tsa)
        chain = self._judge_chain(parsed, tsa, now)
        self._check_usage(tsa)
        info = parsed.info
        if info.gen_time > now + self.future_skew:
            raise Rejected(
                Reason.TIMESTAMP_SKEW,
                f"genTime {info.gen_time.isoformat()} is ahead of the clock ({now.isoformat()}) "
                f"by more than {self.future_skew}",
            )
        _check_imprint(info, data, digest)
        return VerifiedToken(info, tsa, chain)

    def _parse(self, token: bytes) -> Token:
        if len(token) > self.max_token_bytes:
            raise Rejected(
                Reason.TIMESTAMP_MALFORMED,
                f"the token is {len(token)} bytes (limit {self.max_token_bytes})",
            )
        try:
            parsed = parse_token(token)
        except TokenError as exc:
            raise Rejected(Reason.TIMESTAMP_MALFORMED, str(exc)) from None
        embedded = len(parsed.signed.certificates) + parsed.signed.other_certificate_count
        if embedded > self.max_certificates:
            raise Rejected(
                Reason.TIMESTAMP_MALFORMED,
                f"the token embeds {embedded} certificates (limit {self.max_certificates})",
            )
        for extension in parsed.info.extensions:
            if extension.critical:
                raise Rejected(
                    Reason.TIMESTAMP_MALFORMED,
                    f"the TSTInfo has an unsupported critical extension "
                    f"{der.decode_oid(extension.oid)}",
                )
        return parsed

    def _embedded(self, parsed: Token) -> list[CertFacts]:
        try:
            return [self.certificates.get(data) for data in parsed.signed.certificates]
        except ValueError as exc:
            raise Rejected(
                Reason.TIMESTAMP_MALFORMED, f"a certificate in the token is malformed: {exc}"
            ) from None

    def _tsa_certificate(self, parsed: Token) -> CertFacts:
        pool = {c.fingerprint: c for c in (*self._embedded(parsed), *self.supplied)}
        sid = parsed.signer.sid
        if isinstance(sid, cms.IssuerSerial):
            matches = [
                c for c in pool.values() if c.serial == sid.serial and c.issuer_der == sid.issuer
            ]
        else:
            matches = [c for c in pool.values() if c.subject_key_id == sid]
        if not matches:
            raise Rejected(
                Reason.TIMESTAMP_UNTRUSTED,
                "the TSA's certificate is neither in the token nor among the supplied ones",
            )
        if len(matches) > 1:
            raise Rejected(
                Reason.TIMESTAMP_MALFORMED, "the TSA's signer identifier names several certificates"
            )
        return matches[0]

    def _check_signature(self, parsed: Token, tsa: CertFacts) -> None:
        signer = parsed.signer
        who = _LazySubject(tsa)
        try:
            scheme = scheme_of(signer.digest_algorithm, signer.signature_algorithm)
        except Rejected as exc:
            raise Rejected(Reason.TIMESTAMP_INVALID, f"TSA signature: {exc.detail}") from None
        if tsa.key_problem is not None:
            raise Rejected(Reason.TIMESTAMP_INVALID, f"TSA key: {tsa.key_problem[1]}")
        try:
            content_type = signer.only_value(oids.ATTR_CONTENT_TYPE)
            message_digest = signer.only_value(oids.ATTR_MESSAGE_DIGEST)
            if content_type is None or message_digest is None:
                raise Rejected(
                    Reason.TIMESTAMP_INVALID,
                    "the TSA's signed attributes lack contentType or messageDigest",
                )
            if cms.decode_oid_value(content_type) != oids.TST_INFO:
                raise Rejected(
                    Reason.TIMESTAMP_INVALID, "the TSA signed a contentType other than TSTInfo"
                )
            expected = cms.decode_octets_value(message_digest)
            bindings = [
                (attr, signer.attributes[attr])
                for attr in (oids.ATTR_SIGNING_CERTIFICATE_V2, oids.ATTR_SIGNING_CERTIFICATE)
                if attr in signer.attributes
            ]
            if not bindings:
                raise Rejected(
                    Reason.TIMESTAMP_INVALID,
                    "the TSA's signed attributes lack ESS signingCertificate(V2) (RFC 3161 2.4.1)",
                )
            for attr, values in bindings:
                if len(values) != 1 or not signing_certificate_matches(
                    values[0], tsa.der, v2=attr == oids.ATTR_SIGNING_CERTIFICATE_V2
                ):
                    raise Rejected(
                        Reason.TIMESTAMP_INVALID,
                        f"the token's signingCertificate does not name the TSA certificate {who}",
                    )
        except (cms.CmsError, ValueError, IndexError) as exc:
            raise Rejected(
                Reason.TIMESTAMP_INVALID, f"malformed TSA signed attribute: {exc}"
            ) from None
        actual = hashlib.new(HASHLIB_NAMES[scheme.digest], parsed.tst_der).digest()
        if actual != expected:
            raise Rejected(
                Reason.TIMESTAMP_INVALID, "the TSTInfo does not match the TSA's messageDigest"
            )
        assert parsed.signer.signed_attrs is not None  # parse_token insists on them
        try:
            holds = signature_holds(
                scheme, tsa.cert.public_key(), signer.signature, parsed.signer.signed_attrs
            )
        except Rejected as exc:
            raise Rejected(Reason.TIMESTAMP_INVALID, f"TSA signature: {exc.detail}") from None
        if not holds:
            raise Rejected(Reason.TIMESTAMP_INVALID, f"the signature of TSA {who} does not verify")
        if parsed.info.tsa_name is not None and not _names_tsa(parsed.info.tsa_name, tsa):
            raise Rejected(
                Reason.TIMESTAMP_INVALID,
                f"the TSTInfo's tsa name is not a name of the TSA certificate {who}",
            )

    def _check_usage(self, tsa: CertFacts) -> None:
        if tsa.fingerprint in self._usage:
            known = self._usage[tsa.fingerprint]
        else:
            known = _usage_problem(tsa)
            if len(self._usage) < self._cache_size:
                self._usage[tsa.fingerprint] = known
        if known is not None:
            raise Rejected(known.reason, known.detail)

    # --- the TSA's chain -------------------------------------------------------------------

    def _sync_crls(self) -> None:
        source = self._follow
        if source is None or source.generation == self._followed_generation:
            return
        with self._lock:
            generation = source.generation
            try:
                held = source.crls
            except RuntimeError:  # the store gained an issuer while we read: next time
                return
            for facts in held:
                self.trust.add_crl(facts.crl)
            self._followed_generation = generation

    def _issuers_with_crls(self) -> frozenset[bytes]:
        generation, issuers = self._crl_issuers
        if generation != self.trust.generation:
            issuers = frozenset(c.issuer_der for c in self.trust.crls)
            self._crl_issuers = (self.trust.generation, issuers)
        return issuers

    def _judge_chain(
        self, parsed: Token, tsa: CertFacts, now: dt.datetime
    ) -> tuple[CertFacts, ...]:
        self._sync_crls()
        at = parsed.info.gen_time
        intermediates = [
            c
            for c in (*self._embedded(parsed), *self.supplied)
            if c.is_ca and c.fingerprint != tsa.fingerprint
        ]
        unique = list({c.fingerprint: c for c in intermediates}.values())
        key = (tsa.fingerprint, tuple(sorted(c.fingerprint for c in unique)), self.trust.generation)
        with self._lock:
            cached = self._cache.get(key)
            if (
                cached is not None
                and cached.valid_from <= at <= cached.valid_until
                and cached.fresh_from <= now <= cached.fresh_until
            ):
                self._cache.move_to_end(key)
                return cached.chain
        judged = self._judge_uncached(tsa, unique, at, now)
        if judged is not None:
            with self._lock:
                if key[2] == self.trust.generation:
                    self._cache[key] = judged
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            return judged.chain
        # Something in the chain is on a CRL (revoked after genTime): judged every time.
        return self._judge_listed(tsa, unique, at, now)

    def _judge_uncached(
        self, tsa: CertFacts, intermediates: Sequence[CertFacts], at: dt.datetime, now: dt.datetime
    ) -> _Judged | None:
        """The judged chain, cacheable; None when a certificate of it is listed on a CRL."""
        try:
            chain = self.trust.validate_path(tsa, intermediates, at)
            check_crls = self.revocation is TsaRevocation.REQUIRE or any(
                c.issuer_der in self._issuers_with_crls() for c in chain[:-1]
            )
            if not check_crls:
                return _Judged(chain, *_validity(chain), *_ALL_TIME)
            result = self.trust.check_path(
                tsa, intermediates, at=at, now=now, require_document_signing=False
            )
        except Rejected as exc:
            raise _untrusted(exc) from None
        if not result.unrevoked:
            return None
        return _Judged(
            result.chain,
            result.valid_from,
            result.valid_until,
            result.fresh_from,
            result.fresh_until,
        )

    def _judge_listed(
        self, tsa: CertFacts, intermediates: Sequence[CertFacts], at: dt.datetime, now: dt.datetime
    ) -> tuple[CertFacts, ...]:
        try:
            result = self.trust.check_path(
                tsa, intermediates, at=at, now=now, require_document_signing=False
            )
        except Rejected as exc:
            raise _untrusted(exc) from None
        chain = result.chain
        entry = self._revocation_entry(tsa, chain[1])
        if entry is not None:
            reason = None
            for ext in entry.extensions:
                if isinstance(ext.value, x509.CRLReason):
                    reason = ext.value.reason
            if reason is not x509.ReasonFlags.remove_from_crl and (
                reason not in _BENIGN_TSA_REVOCATIONS
            ):
                why = reason.value if reason is not None else "no reason code"
                raise Rejected(
                    Reason.TIMESTAMP_UNTRUSTED,
                    f"the TSA certificate {tsa.cert.subject.rfc4514_string()} was revoked at "
                    f"{entry.revocation_date_utc.isoformat()} ({why}): every token of its key is "
                    "void (RFC 3161 section 4)",
                )
        return chain

    def _revocation_entry(
        self, cert: CertFacts, issuer: CertFacts
    ) -> x509.RevokedCertificate | None:
        """The TSA certificate's entry on the newest complete CRL its issuer signed."""
        for facts in self.trust.crls:
            if facts.issuer_der != cert.issuer_der or facts.partial or facts.only_ca_certs:
                continue
            try:
                signed = facts.crl.is_signature_valid(issuer.cert.public_key())  # type: ignore[arg-type]
            except (TypeError, ValueError):
                signed = False
            if signed:
                return facts.crl.get_revoked_certificate_by_serial_number(cert.serial)
        return None


def _validity(chain: Sequence[CertFacts]) -> tuple[dt.datetime, dt.datetime]:
    return (
        max(c.cert.not_valid_before_utc for c in chain),
        min(c.cert.not_valid_after_utc for c in chain),
    )


def _untrusted(exc: Rejected) -> Rejected:
    return Rejected(Reason.TIMESTAMP_UNTRUSTED, f"TSA chain: {exc.reason.value}: {exc.detail}")


def _usage_problem(tsa: CertFacts) -> Rejected | None:
    try:
        _check_usage(tsa)
    except Rejected as problem:
        return problem
    return None


class _LazySubject:
    """A certificate's subject for messages, formatted only when a message is written."""

    __slots__ = ("facts",)

    def __init__(self, facts: CertFacts) -> None:
        self.facts = facts

    def __str__(self) -> str:
        return self.facts.cert.subject.rfc4514_string()


def _check_usage(tsa: CertFacts) -> None:
    who = tsa.cert.subject.rfc4514_string()
    try:
        eku = tsa.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise Rejected(
            Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING, f"TSA certificate {who} has no extendedKeyUsage"
        ) from None
    purposes = list(eku.value)
    if purposes != [EKU_TIME_STAMPING]:
        names = ", ".join(p.dotted_string for p in purposes)
        raise Rejected(
            Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING,
            f"TSA certificate {who} has extendedKeyUsage {names}, not timeStamping alone",
        )
    if not eku.critical:
        raise Rejected(
            Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING,
            f"the timeStamping extendedKeyUsage of TSA certificate {who} is not critical",
        )
    if tsa.is_ca:
        raise Rejected(
            Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING, f"TSA certificate {who} is a CA certificate"
        )
    try:
        usage = tsa.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise Rejected(
            Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING,
            f"keyUsage of TSA certificate {who} allows neither digitalSignature nor nonRepudiation",
        )


def _check_imprint(info: TstInfo, data: bytes | None, digest: bytes | None) -> None:
    algorithm = info.hash_algorithm
    if algorithm in WEAK_DIGESTS:
        raise Rejected(
            Reason.TIMESTAMP_IMPRINT_MISMATCH,
            f"the messageImprint uses {WEAK_DIGESTS[algorithm]}, which is too weak",
        )
    name = HASHLIB_NAMES.get(algorithm)
    if name is None:
        raise Rejected(
            Reason.TIMESTAMP_IMPRINT_MISMATCH,
            f"the messageImprint's hash {der.decode_oid(algorithm)} is not supported",
        )
    expected = digest if digest is not None else hashlib.new(name, data or b"").digest()
    if info.hashed_message != expected:
        raise Rejected(
            Reason.TIMESTAMP_IMPRINT_MISMATCH,
            "the token's messageImprint is the hash of other data than the signature it is on",
        )


def _names_tsa(general_name: bytes, tsa: CertFacts) -> bool:
    """Whether the TSTInfo's ``tsa`` GeneralName is a name of the TSA certificate (RFC 3161 2.4.2:
    the subject for a directoryName, else one of its subjectAltNames), compared as DER."""
    if general_name[:1] == bytes((der.context(4),)):
        start, stop = der.whole(general_name, der.context(4))
        name = general_name[start:stop]
        if name == tsa.subject_der or _same_name(name, tsa.subject_der):
            return True
    try:
        san = tsa.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    encoded = san.public_bytes()
    start, stop = der.whole(encoded, der.SEQUENCE)
    return any(
        encoded[pos:nstop] == general_name
        for _, pos, _, nstop in der.children(encoded, start, stop)
    )


def _same_name(first: bytes, second: bytes) -> bool:
    """Names equal under RFC 5280 7.1 comparison (string types, case, spaces), for the rare TSA
    that writes its name in the TSTInfo with other string types than in its certificate."""
    from asn1crypto import x509 as asn1_x509

    try:
        return bool(asn1_x509.Name.load(first) == asn1_x509.Name.load(second))
    except (ValueError, TypeError):
        return False
