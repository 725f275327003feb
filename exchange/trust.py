"""Trust anchors, CRLs, and the judgement of a signer's certificate chain at a given time.

``TrustStore`` answers one question: does this certificate, with the intermediates that came
with it, chain to a trust anchor at time *t*, with a usage that allows document signing, and
unrevoked according to CRLs that are current *now*? Path building and RFC 5280 path validation
are cryptography's (``x509.verification``); revocation is done here, because cryptography does
none. Failures are diagnosed into one ``Reason``.

Results are cached per (certificate, intermediates, store generation): any change to anchors or
CRLs starts a new generation, so a cached result never outlives the CRLs it was judged with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from exchange import der
from exchange.certificates import CertFacts, certificate_facts
from exchange.errors import ConfigurationError, Rejected
from exchange.reasons import Reason

DEFAULT_MAX_CHAIN_DEPTH = 5
_FAR_PAST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_FAR_FUTURE = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def _require_ca(_policy: Policy, _cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("basicConstraints.cA must be asserted by an issuing certificate")


def _require_cert_sign(
    _policy: Policy, _cert: x509.Certificate, value: x509.KeyUsage | None
) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("keyUsage of an issuing certificate lacks keyCertSign")


# RFC 5280 path validation without the Web PKI's profile: no SAN or EKU demands, no required AKI
# (a national CA's root-issued intermediates do not always carry one). Unknown critical
# extensions are still refused by cryptography. Document-signing usage is judged by CertFacts.
CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _require_ca)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _require_cert_sign)
)
EE_POLICY = ExtensionPolicy.permit_all()
# lienthong does no certificate-policy processing (RFC 5280 6.1.3 d-f, 6.1.4 a-b/g-i), so a path in
# which a certificate constrains it is refused, critical or not: cryptography refuses the critical
# ones as unhandled, and a non-critical requireExplicitPolicy must not be silently ignored.
_POLICY_CONTROLS = {
    ExtensionOID.POLICY_CONSTRAINTS: "policyConstraints",
    ExtensionOID.POLICY_MAPPINGS: "policyMappings",
    ExtensionOID.INHIBIT_ANY_POLICY: "inhibitAnyPolicy",
}


@dataclass(frozen=True, slots=True)
class CrlFacts:
    crl: x509.CertificateRevocationList
    issuer_der: bytes
    number: int
    this_update: dt.datetime
    next_update: dt.datetime | None
    fingerprint: str
    only_user_certs: bool
    only_ca_certs: bool
    partial: bool  # delta CRL, indirect CRL, reason-partitioned: not a complete CRL for us
    # The issuingDistributionPoint's names: the CRL covers only certificates whose
    # cRLDistributionPoints name one of them. None: no distribution point, it covers them all.
    scope: frozenset[x509.GeneralName] | None


def crl_facts(crl: x509.CertificateRevocationList) -> CrlFacts:
    data = crl.public_bytes(Encoding.DER)
    start, stop = der.whole(data, der.SEQUENCE)
    tbs_start, tbs_stop = der.expect(data, start, stop, der.SEQUENCE)
    fields = der.children(data, tbs_start, tbs_stop)
    index = 1 if fields and fields[0][0] == der.INTEGER else 0
    _, ipos, _, istop = fields[index + 1]
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    only_user = only_ca = False
    partial = False
    scope: frozenset[x509.GeneralName] | None = None
    for ext in crl.extensions:
        value = ext.value
        if isinstance(value, x509.IssuingDistributionPoint):
            only_user, only_ca = value.only_contains_user_certs, value.only_contains_ca_certs
            if value.full_name is not None or value.relative_name is not None:
                scope = _point_names(value.full_name, value.relative_name, crl.issuer)
            partial = partial or bool(
                value.indirect_crl or value.only_some_reasons or value.only_contains_attribute_certs
            )
        elif isinstance(value, x509.DeltaCRLIndicator) or (
            ext.critical and not isinstance(value, x509.CRLNumber)
        ):
            partial = True
    return CrlFacts(
        crl=crl,
        issuer_der=data[ipos:istop],
        number=number,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        fingerprint=hashlib.sha256(data).hexdigest(),
        only_user_certs=only_user,
        only_ca_certs=only_ca,
        partial=partial,
        scope=scope,
    )


def _point_names(
    full_name: Iterable[x509.GeneralName] | None,
    relative_name: x509.RelativeDistinguishedName | None,
    crl_issuer: x509.Name,
) -> frozenset[x509.GeneralName]:
    """A distribution point's names; a relative name is relative to the CRL issuer."""
    if full_name is not None:
        return frozenset(full_name)
    if relative_name is not None:
        return frozenset({x509.DirectoryName(x509.Name([*crl_issuer.rdns, relative_name]))})
    return frozenset()


def _distribution_points(cert: CertFacts) -> frozenset[x509.GeneralName]:
    """Names of the CRLs the certificate's own issuer publishes for it (RFC 5280 6.3.3 b)."""
    try:
        points = cert.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return frozenset()
    names: set[x509.GeneralName] = set()
    for point in points:
        if not point.crl_issuer:  # a cRLIssuer's CRL is an indirect CRL: not used here
            names |= _point_names(point.full_name, point.relative_name, cert.cert.issuer)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ChainResult:
    chain: tuple[CertFacts, ...]  # signer first, trust anchor last
    valid_from: dt.datetime  # the chain math holds for any trusted time in this window
    valid_until: dt.datetime
    fresh_from: dt.datetime  # the revocation answer holds while "now" is in this window
    fresh_until: dt.datetime
    unrevoked: bool  # no certificate of the chain is on a CRL at all


class TrustStore:
    """Trust anchors and CRLs. Mutations start a new generation and so drop cached results."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList] = (),
        *,
        max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH,
        cache_size: int = 4096,
    ) -> None:
        if not anchors:
            raise ConfigurationError("a trust store needs at least one trust anchor")
        self.anchors = tuple(certificate_facts(a.public_bytes(Encoding.DER)) for a in anchors)
        self._store = Store([a.cert for a in self.anchors])
        self._anchor_fps = frozenset(a.fingerprint for a in self.anchors)
        self.max_chain_depth = max_chain_depth
        self._crls: dict[bytes, list[CrlFacts]] = {}
        self._crl_ok: dict[tuple[str, str], bool] = {}
        self.generation = 0
        self._cache: OrderedDict[tuple[object, ...], ChainResult] = OrderedDict()
        self._cache_size = cache_size
        # API threads judge credentials while a CRL poll may add CRLs: mutations replace whole
        # lists, and the cache is touched under this lock only.
        self._lock = threading.Lock()
        for crl in crls:
            self.add_crl(crl)

    # --- CRLs ------------------------------------------------------------------------------

    def add_crl(self, crl: x509.CertificateRevocationList) -> bool:
        """Load a CRL. Returns False when it adds nothing (same CRL, or an older number).

        Candidates are kept per issuer Name, highest CRL number first; at check time the first
        one that the issuer's key signed is used, so a stale CRL never resurrects a certificate
        that a newer one revoked, and a CRL signed by another key is never believed.
        """
        facts = crl_facts(crl)
        with self._lock:
            bucket = self._crls.get(facts.issuer_der, [])
            if any(c.fingerprint == facts.fingerprint for c in bucket):
                return False
            self._crls[facts.issuer_der] = sorted(
                [*bucket, facts], key=lambda c: (c.number, c.this_update), reverse=True
            )
            self.generation += 1
            self._cache.clear()
        return True

    @property
    def crls(self) -> list[CrlFacts]:
        return [c for bucket in self._crls.values() for c in bucket]

    def _crl_signed_by(self, crl: CrlFacts, issuer: CertFacts) -> bool:
        key = (crl.fingerprint, issuer.fingerprint)
        known = self._crl_ok.get(key)
        if known is None:
            try:
                known = crl.crl.is_signature_valid(issuer.cert.public_key())  # type: ignore[arg-type]
            except (InvalidSignature, TypeError, ValueError):
                known = False
            self._crl_ok[key] = known
        return known

    def _revocation(
        self, cert: CertFacts, issuer: CertFacts, at: dt.datetime, now: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime, bool]:
        """Check ``cert`` against its issuer's CRL; return the CRL's freshness window."""
        points = _distribution_points(cert)
        candidates = [
            c
            for c in self._crls.get(cert.issuer_der, ())
            if not c.partial
            and not (c.only_user_certs and cert.is_ca)
            and not (c.only_ca_certs and not cert.is_ca)
            and (c.scope is None or not c.scope.isdisjoint(points))
        ]
        if not candidates:
            raise Rejected(Reason.CRL_MISSING, f"no CRL is loaded for the issuer of {_who(cert)}")
        crl = next((c for c in candidates if self._crl_signed_by(c, issuer)), None)
        if crl is None:
            raise Rejected(
                Reason.CRL_INVALID,
                f"no CRL for the issuer of {_who(cert)} is signed by that issuer's key",
            )
        try:
            usage = issuer.cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.crl_sign:
            raise Rejected(Reason.CRL_INVALID, f"{_who(issuer)} may not sign CRLs (no cRLSign)")
        if crl.this_update > now:
            raise Rejected(Reason.CRL_INVALID, f"CRL of {_who(issuer)} is issued in the future")
        if crl.next_update is None or crl.next_update < now:
            raise Rejected(
                Reason.CRL_EXPIRED,
                f"CRL of {_who(issuer)} (number {crl.number}) was due for renewal at "
                f"{crl.next_update.isoformat() if crl.next_update else 'an unstated time'}",
            )
        entry = crl.crl.get_revoked_certificate_by_serial_number(cert.serial)
        listed = entry is not None
        if entry is not None:
            effective = entry.revocation_date_utc
            reason = None
            for ext in entry.extensions:
                if isinstance(ext.value, x509.InvalidityDate):
                    effective = min(effective, ext.value.invalidity_date_utc)
                elif isinstance(ext.value, x509.CRLReason):
                    reason = ext.value.reason
            if reason is x509.ReasonFlags.remove_from_crl:
                listed = False
            elif effective <= at:
                why = f" ({reason.value})" if reason is not None else ""
                raise Rejected(
                    Reason.CERTIFICATE_REVOKED,
                    f"{_who(cert)} was revoked at {effective.isoformat()}{why}",
                )
        return crl.this_update, crl.next_update, not listed

    # --- chains ----------------------------------------------------------------------------

    def judge(
        self,
        signer: CertFacts,
        intermediates: Sequence[CertFacts],
        *,
        at: dt.datetime,
        now: dt.datetime,
    ) -> ChainResult:
        """Chain, key usage and revocation of ``signer`` at trusted time ``at``; CRLs at ``now``.

        Raises Rejected with the first failing check, in the order: chain (untrusted, expired,
        not yet valid, weak), key usage, revocation.
        """
        key = (
            signer.fingerprint,
            tuple(sorted(i.fingerprint for i in intermediates)),
            self.generation,
        )
        with self._lock:
            cached = self._cache.get(key)
            if (
                cached is not None
                and cached.unrevoked
                and cached.valid_from <= at <= cached.valid_until
                and cached.fresh_from <= now <= cached.fresh_until
            ):
                self._cache.move_to_end(key)
                return cached
        result = self.check_path(signer, intermediates, at=at, now=now)
        with self._lock:
            if result.unrevoked and key[2] == self.generation:
                self._cache[key] = result
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result

    def check_path(
        self,
        signer: CertFacts,
        intermediates: Sequence[CertFacts],
        *,
        at: dt.datetime,
        now: dt.datetime,
        require_document_signing: bool = True,
    ) -> ChainResult:
        """``judge`` without its cache; ``require_document_signing=False`` skips the key-usage
        check of the signer (for path-validation test suites whose end entities are not
        document signers). The verifier always goes through ``judge``."""
        chain = self.validate_path(signer, intermediates, at)
        if require_document_signing and signer.usage_problem is not None:
            raise Rejected(Reason.KEY_USAGE_INVALID, f"{_who(signer)}: {signer.usage_problem}")
        fresh_from, fresh_until, unrevoked = _FAR_PAST, _FAR_FUTURE, True
        for cert, issuer in itertools.pairwise(chain):
            start, until, clean = self._revocation(cert, issuer, at, now)
            fresh_from, fresh_until = max(fresh_from, start), min(fresh_until, until)
            unrevoked = unrevoked and clean
        return ChainResult(
            chain=chain,
            valid_from=max(c.cert.not_valid_before_utc for c in chain),
            valid_until=min(c.cert.not_valid_after_utc for c in chain),
            fresh_from=fresh_from,
            fresh_until=fresh_until,
            unrevoked=unrevoked,
        )

    def validate_path(
        self, signer: CertFacts, intermediates: Sequence[CertFacts], at: dt.datetime
    ) -> tuple[CertFacts, ...]:
        """RFC 5280 path validation at ``at`` (no revocation, no document-signing usage)."""
        by_fp = {c.fingerprint: c for c in (*intermediates, *self.anchors)}
        try:
            verifier = (
                PolicyBuilder()
                .store(self._store)
                .time(at)
                .max_chain_depth(self.max_chain_depth)
                .extension_policies(ca_policy=CA_POLICY, ee_policy=EE_POLICY)
                .build_client_verifier()
            )
            verified = verifier.verify(signer.cert, [i.cert for i in intermediates])
        except VerificationError as exc:
            raise self._diagnose(signer, intermediates, at, str(exc)) from None
        chain: list[CertFacts] = [signer]
        for cert in verified.chain[1:]:
            fp = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
            chain.append(by_fp[fp])
        for link in chain[:-1]:  # the trust anchor's own extensions constrain nothing
            for ext in link.cert.extensions:
                if ext.oid in _POLICY_CONTROLS:
                    raise Rejected(
                        Reason.UNTRUSTED_CHAIN,
                        f"{_who(link)} carries {_POLICY_CONTROLS[ext.oid]}, and lienthong does "
                        "no certificate-policy processing",
                    )
        return tuple(chain)

    def _diagnose(
        self,
        signer: CertFacts,
        intermediates: Sequence[CertFacts],
        at: dt.datetime,
        message: str,
    ) -> Rejected:
        """Name the most specific reason a path failed, walking the likely path by Names."""
        path = [signer]
        pool = [*intermediates, *self.anchors]
        while len(path) <= self.max_chain_depth + 1:
            current = path[-1]
            if current.fingerprint in self._anchor_fps:
                break
            issuer = next(
                (
                    c
                    for c in pool
                    if c.subject_der == current.issuer_der and c not in path and _issued(current, c)
                ),
                None,
            )
            if issuer is None:
                break
            path.append(issuer)
        for cert in path:
            if cert.fingerprint in self._anchor_fps:
                continue
            if cert.key_problem is not None and cert.key_problem[0] is Reason.WEAK_ALGORITHM:
                return Rejected(Reason.WEAK_ALGORITHM, f"{_who(cert)}: {cert.key_problem[1]}")
            if cert.signature_problem is not None:
                return Rejected(Reason.WEAK_ALGORITHM, f"{_who(cert)}: {cert.signature_problem}")
        for cert in path:
            if at > cert.cert.not_valid_after_utc:
                return Rejected(
                    Reason.CERTIFICATE_EXPIRED,
                    f"{_who(cert)} expired at {cert.cert.not_valid_after_utc.isoformat()} "
                    f"(trusted time {at.isoformat()})",
                )
            if at < cert.cert.not_valid_before_utc:
                return Rejected(
                    Reason.CERTIFICATE_NOT_YET_VALID,
                    f"{_who(cert)} is valid from {cert.cert.not_valid_before_utc.isoformat()} "
                    f"(trusted time {at.isoformat()})",
                )
        return Rejected(Reason.UNTRUSTED_CHAIN, f"{_who(signer)}: {message}")


def _issued(child: CertFacts, parent: CertFacts) -> bool:
    try:
        child.cert.verify_directly_issued_by(parent.cert)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _who(cert: CertFacts) -> str:
    return f"certificate '{cert.display_name}' (serial {cert.serial:x})"
