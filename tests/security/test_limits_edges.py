"""Every limit of the verification policy at its edge: the limit itself is accepted, one more is
refused with its reason. The verifier is the router's (``Settings.policy()``), judged in process;
the API's own limits are at their edges in test_limits_api.py. docs/limits.md lists them all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from adapters import bootstrap
from adapters.pki import profiles as p
from adapters.settings import Settings
from exchange.policy import Freshness, Limits, VerificationPolicy
from exchange.ports import AgencyRecord, FixedClock, Measured
from exchange.signing import SigningKey, sign_detached
from exchange.timestamps import TimestampVerifier
from exchange.trust import TrustStore
from exchange.verification import Accepted, Rejection, Verdict, Verifier
from schemas.header import AttachmentRef
from tests import timestamping
from tests.forge import Authority, rsa_key
from tests.helpers import G22, H37, MemoryRegistry, Pki, encode, header_bytes, header_dict
from tests.security import material as m


def _now() -> dt.datetime:
    """The wall clock, read when a test runs: the suite runs long, and a time read at import
    would lie minutes behind the certificates, CRLs and signatures made later."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class AsDeclared:
    """Attachments exactly as their manifest entries say."""

    def measure(self, ref: AttachmentRef) -> Measured:
        return Measured(ref.size, ref.sha256)


def accepted(verdict: Verdict) -> Accepted:
    assert isinstance(verdict, Accepted), verdict
    return verdict


def refused(verdict: Verdict, reason: str) -> None:
    assert isinstance(verdict, Rejection), verdict
    assert verdict.reason.value == reason, verdict


def verifier(
    pki: Pki,
    *,
    limits: Limits | None = None,
    registry: Any = "default",
    trust: TrustStore | None = None,
    clock: FixedClock | None = None,
    freshness: Freshness | None = None,
    timestamps: TimestampVerifier | None = None,
    skew: dt.timedelta = dt.timedelta(minutes=10),
) -> Verifier:
    policy = VerificationPolicy(limits or Limits(), timestamp_skew=skew, freshness=freshness)
    trust = trust or pki.trust()
    return Verifier(
        trust,
        pki.registry() if registry == "default" else registry,
        clock or FixedClock(_now() + dt.timedelta(seconds=1)),
        policy,
        timestamps=timestamps,
    )


def registry_of(codes: Sequence[str], pki: Pki) -> MemoryRegistry:
    records = {a.code: a for a in (pki.registry().agency(c) for c in (G22, H37)) if a}
    for code in codes:
        records.setdefault(code, AgencyRecord(code, code, True, frozenset()))
    return MemoryRegistry(records)


# --- byte budgets ---------------------------------------------------------------------------


def test_max_header_bytes(pki: Pki) -> None:
    header = header_bytes(recipients=[H37])
    limits = Limits(max_header_bytes=len(header))
    accepted(verifier(pki, limits=limits).verify(header, pki.sign(header)))
    longer = header + b" "  # still the same JSON
    refused(verifier(pki, limits=limits).verify(longer, pki.sign(longer)), "header_too_large")


def test_max_signature_bytes(pki: Pki) -> None:
    header = header_bytes(recipients=[H37])
    signature = pki.sign(header)
    limits = Limits(max_signature_bytes=len(signature))
    accepted(verifier(pki, limits=limits).verify(header, signature))
    refused(verifier(pki, limits=limits).verify(header, signature + b"\x00"), "signature_too_large")


# --- counts ---------------------------------------------------------------------------------


def test_max_certificates(pki: Pki) -> None:
    """Seal + issuing CA + 6 unrelated certificates = 8 accepted; one more is refused."""
    issuing = m.issuing(pki)
    extra = [m.seal_from(issuing, key=rsa_key(2048, 100 + i)).certificate for i in range(7)]
    header = header_bytes(recipients=[H37])
    for count, ok in ((6, True), (7, False)):
        signature = sign_detached(header, [pki.seal(G22)], chain=[*pki.chain(), *extra[:count]])
        verdict = verifier(pki).verify(header, signature)
        accepted(verdict) if ok else refused(verdict, "too_many_certificates")


def test_max_signers(pki: Pki) -> None:
    """The seal and three personal signers of G22 (4) are accepted; a fifth is refused."""
    issuing = m.issuing(pki)
    people = [
        SigningKey(
            issuing.issue(
                p.personal_profile(G22, m.SEAL_NAME, f"Cán bộ {i}", "Chuyên viên"),
                rsa_key(2048, 110 + i).public_key(),
            ),
            rsa_key(2048, 110 + i),
        )
        for i in range(4)
    ]
    header = header_bytes(recipients=[H37])
    for count, ok in ((3, True), (4, False)):
        signature = sign_detached(header, [pki.seal(G22), *people[:count]], chain=pki.chain())
        verdict = verifier(pki).verify(header, signature)
        accepted(verdict) if ok else refused(verdict, "too_many_signers")


def test_max_recipients(pki: Pki) -> None:
    codes = [f"000.{i // 100:02d}.{i % 100:02d}.H98" for i in range(257)]
    registry = registry_of(codes, pki)
    for count, ok in ((256, True), (257, False)):
        header = header_bytes(recipients=codes[:count])
        verdict = verifier(pki, registry=registry).verify(header, pki.sign(header))
        accepted(verdict) if ok else refused(verdict, "too_many_recipients")


def test_max_attachments(pki: Pki) -> None:
    refs = [
        {"name": f"pl-{i}.pdf", "media_type": "application/pdf", "size": i, "sha256": f"{i:064x}"}
        for i in range(33)
    ]
    for count, ok in ((32, True), (33, False)):
        header = header_bytes(recipients=[H37], attachments=refs[:count])
        verdict = verifier(pki).verify(header, pki.sign(header), AsDeclared())
        accepted(verdict) if ok else refused(verdict, "too_many_attachments")


def test_max_attachment_bytes(pki: Pki) -> None:
    """LIENTHONG_MAX_BLOB_BYTES: the largest attachment a manifest may declare."""
    limit = 256 * 1024 * 1024
    for size, ok in ((limit, True), (limit + 1, False)):
        ref = {"name": "a.pdf", "media_type": "application/pdf", "size": size, "sha256": "0" * 64}
        header = header_bytes(recipients=[H37], attachments=[ref])
        verdict = verifier(pki).verify(header, pki.sign(header), AsDeclared())
        accepted(verdict) if ok else refused(verdict, "attachment_too_large")


def test_max_chain_depth(pki: Pki) -> None:
    """Five intermediates between the seal and the root are accepted; six are not."""
    root = Authority.of(pki.dev, "root-ca")
    cas = []
    parent = root
    for depth in range(6):
        parent = m.sub_ca(parent, f"Depth CA {depth}", 120 + depth)
        cas.append(parent)
    crls = [*pki.crls(), *(ca.crl(1) for ca in cas)]
    trust = TrustStore(pki.anchors(), crls, max_chain_depth=5)
    header = header_bytes(recipients=[H37])
    for depth, ok in ((5, True), (6, False)):
        seal = m.seal_from(cas[depth - 1])
        signature = m.sign_with(header, seal, [ca.cert for ca in cas[:depth]])
        verdict = verifier(pki, trust=trust, registry=None).verify(header, signature)
        accepted(verdict) if ok else refused(verdict, "untrusted_chain")


# --- time -----------------------------------------------------------------------------------


def test_timestamp_skew(pki: Pki) -> None:
    """genTime may lie LIENTHONG_TIMESTAMP_SKEW_S from signingTime, not a second more."""
    now = _now()
    skew = dt.timedelta(seconds=600)
    signing = now - dt.timedelta(hours=1)
    for gap, ok in ((skew, True), (skew + dt.timedelta(seconds=1), False)):
        tsa = timestamping.authority(pki, clock=FixedClock(signing + gap))
        header = header_bytes(recipients=[H37])
        signature = sign_detached(
            header,
            [pki.seal(G22)],
            chain=pki.chain(),
            signing_time=signing,
            timestamper=timestamping.InProcessTimestamper(tsa),
        )
        trust = pki.trust()
        judge = verifier(pki, trust=trust, timestamps=TimestampVerifier(trust), skew=skew)
        verdict = judge.verify(header, signature)
        accepted(verdict) if ok else refused(verdict, "timestamp_skew")


def test_timestamp_future_skew(pki: Pki) -> None:
    """A token's genTime may be LIENTHONG_FUTURE_SKEW_S ahead of the bus clock, no more."""
    now = _now()
    skew = dt.timedelta(seconds=300)
    for ahead, ok in ((skew, True), (skew + dt.timedelta(seconds=1), False)):
        gen_time = now + ahead
        tsa = timestamping.authority(pki, clock=FixedClock(gen_time))
        header = header_bytes(recipients=[H37])
        signature = sign_detached(
            header,
            [pki.seal(G22)],
            chain=pki.chain(),
            signing_time=now,
            timestamper=timestamping.InProcessTimestamper(tsa),
        )
        trust = pki.trust()
        judge = verifier(
            pki,
            trust=trust,
            clock=FixedClock(now),
            timestamps=TimestampVerifier(trust, future_skew=skew),
        )
        verdict = judge.verify(header, signature)
        accepted(verdict) if ok else refused(verdict, "timestamp_skew")


def test_acceptance_window(pki: Pki) -> None:
    now = _now()
    window = dt.timedelta(seconds=2 * 24 * 3600)
    freshness = Freshness(acceptance_window=window)
    for age, ok in ((window, True), (window + dt.timedelta(seconds=1), False)):
        header = header_bytes(recipients=[H37], created_at=now - age)
        judge = verifier(pki, clock=FixedClock(now), freshness=freshness)
        verdict = judge.verify(header, pki.sign(header, signing_time=now))
        accepted(verdict) if ok else refused(verdict, "message_stale")


def test_future_skew(pki: Pki) -> None:
    now = _now()
    skew = dt.timedelta(seconds=300)
    freshness = Freshness(future_skew=skew)
    for ahead, ok in ((skew, True), (skew + dt.timedelta(seconds=1), False)):
        fields = header_dict(recipients=[H37], created_at=now + ahead)
        header = encode(fields)
        judge = verifier(pki, clock=FixedClock(now), freshness=freshness)
        verdict = judge.verify(header, pki.sign(header, signing_time=now))
        accepted(verdict) if ok else refused(verdict, "message_from_future")


# --- the settings that carry them -----------------------------------------------------------


def configured(**values: Any) -> Settings:
    """Settings as LIENTHONG_* variables would give them (validated the same way)."""
    return Settings(**values)


def test_every_policy_limit_is_a_setting_with_its_default() -> None:
    settings = Settings()
    defaults = Limits()
    policy = settings.policy()
    assert policy.limits == defaults
    assert policy.timestamp_skew == VerificationPolicy().timestamp_skew
    assert policy.freshness == Freshness()
    mapped = {f.name for f in dataclasses.fields(Limits)}
    named = {"max_attachment_bytes": "max_blob_bytes"}
    for name in mapped:
        value = getattr(defaults, name) + 7
        changed = configured(**{named.get(name, name): value}).policy().limits
        assert getattr(changed, name) == value, name


def test_max_chain_depth_setting_reaches_the_trust_store(pki: Pki, tmp_path: Any) -> None:
    settings = Settings(pki_dir=pki.root, max_chain_depth=2).resolved()
    assert bootstrap.trust_store(settings).max_chain_depth == 2


def test_every_setting_has_a_description() -> None:
    missing = [name for name, f in Settings.model_fields.items() if not f.description]
    assert missing == []


BOUNDS = [
    ("delivery_limit", 1, 100),
    ("prefetch", 1, 10_000),
    ("batch_max", 1, 10_000),
    ("batch_wait_ms", 0, 1000),
    ("publish_retries", 0, 100),
    ("tsa_accuracy_ms", 1, 60_000),
    ("page_size_max", 1, None),
    ("trace_page_size_max", 1, None),
    ("max_request_bytes", 1, None),
    ("max_header_bytes", 1, None),
    ("max_certificates", 1, None),
    ("max_signers", 1, None),
    ("max_recipients", 1, None),
    ("auth_skew_s", 0, None),
    ("acceptance_window_s", 0, None),
]


@pytest.mark.parametrize(("name", "low", "high"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_setting_bounds(name: str, low: int, high: int | None) -> None:
    assert getattr(configured(**{name: low}), name) == low
    with pytest.raises(ValidationError):
        configured(**{name: low - 1})
    if high is not None:
        assert getattr(configured(**{name: high}), name) == high
        with pytest.raises(ValidationError):
            configured(**{name: high + 1})
