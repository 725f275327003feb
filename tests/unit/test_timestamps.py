"""Trusted time (reason groups 9-11): CAdES-T envelopes, their RFC 3161 tokens, the signer's chain
judged at genTime, freshness of created_at and replay.

Every token is made by lienthong's TSA (``adapters.tsa.authority``) in this process with a TSA
certificate issued by the development PKI's CA keys; attacks change what a real attacker can:
the token's bytes, what was stamped, which TSA stamped, where the token sits, the clocks.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.pki import profiles as p
from adapters.pki.folder import DEMO_AGENCIES, DevPki
from adapters.tsa.authority import TimeStampAuthority
from exchange import derwrite as w
from exchange import reasons
from exchange.certificates import facts_from_certificate
from exchange.envelope import envelope_digest
from exchange.errors import ConfigurationError, Rejected
from exchange.policy import Freshness, VerificationPolicy
from exchange.ports import FixedClock
from exchange.reasons import Reason
from exchange.signing import SigningKey
from exchange.timestamps import TimestampVerifier, TsaRevocation, VerifiedToken, parse_token
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verifier
from tests import forge
from tests.forge import Authority, rejection
from tests.helpers import G22, Pki, header_bytes
from tests.timestamping import (
    VPCP,
    InProcessTimestamper,
    authority,
    drop_token,
    fresh_crls,
    move_token,
    sign_stamped,
    signer_index,
    tamper_gen_time,
    token_for,
    tokens_of,
    tsa_certificate,
    verifier,
)

MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(pki: Pki) -> Pki:
    return forge.KeyCachingPki(pki.dev)


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> TimeStampAuthority:
    return authority(pki)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A separate PKI (EC P-256) whose CA and TSA names are those of the session PKI."""
    dev = DevPki(tmp_path_factory.mktemp("other-pki"))
    dev.init(p.KeyAlgorithm.EC_P256, agencies=DEMO_AGENCIES[:1])
    return forge.KeyCachingPki(dev)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _reason(verdict: object) -> Reason:
    return rejection(verdict).reason  # type: ignore[arg-type]


def _seal_valid(pki: Pki, validity: p.Validity) -> SigningKey:
    """A seal of G22 issued by the issuing CA with the given validity."""
    return Authority.of(pki.dev, forge.ISSUING_CA).signer(
        p.seal_profile(G22, VPCP), forge.rsa_key(2048, 3), validity=validity
    )


# --- accepted ----------------------------------------------------------------------------------


def test_time_stamped_seal_and_leader_are_accepted_with_their_gen_times(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    stamper = InProcessTimestamper(tsa)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)
    signature = sign_stamped(pki, header, stamper, signers=[pki.seal(), pki.leader()])
    verdict = verifier(pki, registry=pki.registry()).verify(header, signature)
    assert isinstance(verdict, Accepted), verdict
    assert len(stamper.tokens) == 2
    assert all(token is not None for token in tokens_of(signature))
    assert verdict.time_source == "timestamp"
    assert verdict.seal.timestamp == verdict.trusted_time
    assert before <= verdict.trusted_time <= dt.datetime.now(dt.UTC)
    assert verdict.personal[0].timestamp is not None
    assert verdict.seal.tsa == tsa.certificate.subject.rfc4514_string()


def test_envelope_without_a_token_is_judged_at_the_clock(pki: Pki) -> None:
    header = header_bytes()
    clock = FixedClock(utcnow())
    verdict = verifier(pki, clock=clock).verify(header, sign_stamped(pki, header, None))
    assert isinstance(verdict, Accepted), verdict
    assert verdict.time_source == "clock"
    assert verdict.trusted_time == clock.instant
    assert verdict.seal.timestamp is None


# --- 9. the token -------------------------------------------------------------------------------


def test_token_with_an_altered_gen_time_is_timestamp_invalid(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa, tamper=tamper_gen_time))
    verdict = rejection(verifier(pki).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_INVALID
    assert "messageDigest" in verdict.detail


def test_token_with_a_flipped_signature_byte_is_timestamp_invalid(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    # The TSA's signature value is the token's last field.
    signature = sign_stamped(
        pki, header, InProcessTimestamper(tsa, tamper=lambda t: forge.flip(t, -3))
    )
    verdict = rejection(verifier(pki).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_INVALID
    assert "does not verify" in verdict.detail


def test_truncated_token_is_timestamp_malformed(pki: Pki, tsa: TimeStampAuthority) -> None:
    header = header_bytes()
    signature = sign_stamped(
        pki, header, InProcessTimestamper(tsa, tamper=lambda t: w.sequence(t[4:-40]))
    )
    assert _reason(verifier(pki).verify(header, signature)) is Reason.TIMESTAMP_MALFORMED


def test_a_cms_signature_instead_of_a_token_is_timestamp_malformed(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    # A well-formed SignedData, but over id-data and detached: not a TSTInfo.
    header = header_bytes()
    other_signature = pki.sign(b"something else")
    signature = sign_stamped(
        pki, header, InProcessTimestamper(tsa, tamper=lambda _: other_signature)
    )
    verdict = rejection(verifier(pki).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_MALFORMED
    assert "TSTInfo" in verdict.detail


def test_token_over_other_data_is_timestamp_imprint_mismatch(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    stamper = InProcessTimestamper(tsa, stamped=lambda value: b"other data" + value)
    verdict = rejection(verifier(pki).verify(header, sign_stamped(pki, header, stamper)))
    assert verdict.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH


def test_token_over_the_header_instead_of_the_signature_is_timestamp_imprint_mismatch(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    stamper = InProcessTimestamper(tsa, stamped=lambda _value: header)
    verdict = rejection(verifier(pki).verify(header, sign_stamped(pki, header, stamper)))
    assert verdict.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH


def test_token_moved_from_the_seal_to_the_personal_signer_is_timestamp_imprint_mismatch(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    seal, leader = pki.seal(), pki.leader()
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa), signers=[seal, leader])
    assert isinstance(verifier(pki).verify(header, signature), Accepted)
    source = signer_index(signature, seal.certificate)
    target = signer_index(signature, leader.certificate)
    moved = move_token(signature, source, target)
    assert tokens_of(moved)[source] is None
    assert tokens_of(moved)[target] == tokens_of(signature)[source]
    verdict = rejection(verifier(pki).verify(header, moved))
    assert verdict.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH


def test_token_of_a_look_alike_tsa_is_timestamp_untrusted(pki: Pki, other: Pki) -> None:
    # The other PKI's TSA has the same name as ours, and a critical timeStamping EKU.
    look_alike = authority(other, chain=other.chain())
    assert look_alike.certificate.subject == authority(pki).certificate.subject
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(look_alike))
    verdict = rejection(verifier(pki).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_UNTRUSTED
    assert "untrusted_chain" in verdict.detail


def test_token_of_a_self_signed_tsa_is_timestamp_untrusted(pki: Pki) -> None:
    key = forge.rsa_key(2048, 8)
    name = p.ca_name("Self-made TSA")
    profile = p.Profile(
        subject=name,
        key_usage=p.key_usage(digital_signature=True),
        extended_key_usage=[ExtendedKeyUsageOID.TIME_STAMPING],
        eku_critical=True,
    )
    cert = p.build_certificate(
        profile, key.public_key(), name, key, forge.window(-1, 30), x509.random_serial_number()
    )
    rogue = authority(pki, signer=SigningKey(cert, key), chain=[])
    header = header_bytes()
    verdict = rejection(
        verifier(pki).verify(header, sign_stamped(pki, header, InProcessTimestamper(rogue)))
    )
    assert verdict.reason is Reason.TIMESTAMP_UNTRUSTED


@pytest.mark.parametrize(
    ("eku", "critical"),
    [
        pytest.param((), False, id="no-eku"),
        pytest.param((ExtendedKeyUsageOID.TIME_STAMPING,), False, id="eku-not-critical"),
        pytest.param(
            (ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING),
            True,
            id="eku-with-another-purpose",
        ),
        pytest.param((ExtendedKeyUsageOID.CODE_SIGNING,), True, id="code-signing-eku"),
    ],
)
def test_tsa_certificate_without_a_critical_sole_timestamping_eku_is_not_for_timestamping(
    pki: Pki, eku: tuple[x509.ObjectIdentifier, ...], critical: bool
) -> None:
    signer = tsa_certificate(pki, eku=eku, eku_critical=critical)
    not_a_tsa = authority(pki, signer=signer, strict=False)
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(not_a_tsa))
    verdict = rejection(verifier(pki).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING


def test_the_tsa_refuses_to_run_with_a_certificate_that_is_not_for_timestamping(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="timeStamping"):
        authority(pki, signer=tsa_certificate(pki, eku=(), eku_critical=False))


def test_signing_certificate_attribute_naming_another_certificate_is_timestamp_invalid(
    pki: Pki,
) -> None:
    tsa = authority(pki)
    # The ESS signingCertificateV2 the TSA signs now names the seal's certificate.
    impostor = authority(pki, signer=pki.seal(), strict=False)
    tsa._signing_certificate = impostor._signing_certificate
    header = header_bytes()
    verdict = rejection(
        verifier(pki).verify(header, sign_stamped(pki, header, InProcessTimestamper(tsa)))
    )
    assert verdict.reason is Reason.TIMESTAMP_INVALID
    assert "signingCertificate" in verdict.detail


def test_tsa_name_that_is_not_the_certificates_is_timestamp_invalid(pki: Pki) -> None:
    tsa = authority(pki)
    seal_subject = facts_from_certificate(pki.seal().certificate).subject_der
    tsa._tsa_name = w.explicit(0, w.explicit(4, seal_subject))
    header = header_bytes()
    verdict = rejection(
        verifier(pki).verify(header, sign_stamped(pki, header, InProcessTimestamper(tsa)))
    )
    assert verdict.reason is Reason.TIMESTAMP_INVALID
    assert "tsa name" in verdict.detail


def test_gen_time_further_from_signing_time_than_the_skew_is_timestamp_skew(pki: Pki) -> None:
    signed_at = utcnow()
    late = authority(pki, clock=FixedClock(signed_at + 20 * MINUTE))
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(late), signing_time=signed_at)
    policy = VerificationPolicy(timestamp_skew=10 * MINUTE)
    clock = FixedClock(signed_at + 30 * MINUTE)
    verdict = rejection(verifier(pki, clock=clock, policy=policy).verify(header, signature))
    assert verdict.reason is Reason.TIMESTAMP_SKEW
    # Within the skew the same gap is accepted.
    lenient = VerificationPolicy(timestamp_skew=25 * MINUTE)
    assert isinstance(
        verifier(pki, clock=clock, policy=lenient).verify(header, signature), Accepted
    )


def test_gen_time_ahead_of_the_bus_clock_is_timestamp_skew(pki: Pki) -> None:
    now = utcnow()
    ahead = authority(pki, clock=FixedClock(now + 30 * MINUTE))
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(ahead), signing_time=now)
    policy = VerificationPolicy(timestamp_skew=60 * MINUTE)
    verdict = rejection(
        verifier(pki, clock=FixedClock(now), policy=policy).verify(header, signature)
    )
    assert verdict.reason is Reason.TIMESTAMP_SKEW
    assert "ahead of the clock" in verdict.detail


def test_signing_time_after_gen_time_is_signing_time_in_future(pki: Pki) -> None:
    now = utcnow()
    tsa = authority(pki, clock=FixedClock(now))
    header = header_bytes()
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa), signing_time=now + 60 * MINUTE)
    clock = FixedClock(now + 2 * 60 * MINUTE)  # the bus clock is past both
    verdict = rejection(verifier(pki, clock=clock).verify(header, signature))
    assert verdict.reason is Reason.SIGNING_TIME_IN_FUTURE
    assert "trusted time" in verdict.detail


def test_signing_time_after_the_bus_clock_without_a_token_is_signing_time_in_future(
    pki: Pki,
) -> None:
    now = utcnow()
    header = header_bytes()
    signature = sign_stamped(pki, header, None, signing_time=now + 60 * MINUTE)
    verdict = rejection(verifier(pki, clock=FixedClock(now)).verify(header, signature))
    assert verdict.reason is Reason.SIGNING_TIME_IN_FUTURE


def test_policy_requiring_a_token_rejects_an_unstamped_seal_as_timestamp_required(
    pki: Pki,
) -> None:
    header = header_bytes()
    policy = VerificationPolicy(require_timestamp=True)
    verdict = rejection(
        verifier(pki, policy=policy).verify(header, sign_stamped(pki, header, None))
    )
    assert verdict.reason is Reason.TIMESTAMP_REQUIRED


def test_policy_requiring_a_token_rejects_an_unstamped_personal_signer(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    header = header_bytes()
    leader = pki.leader()
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa), signers=[pki.seal(), leader])
    half = drop_token(signature, signer_index(signature, leader.certificate))
    policy = VerificationPolicy(require_timestamp=True)
    assert isinstance(verifier(pki, policy=policy).verify(header, signature), Accepted)
    verdict = rejection(verifier(pki, policy=policy).verify(header, half))
    assert verdict.reason is Reason.TIMESTAMP_REQUIRED
    assert "Trần Văn Minh" in verdict.detail
    # Optional tokens: the same envelope is accepted, the leader judged at the clock.
    accepted = verifier(pki).verify(header, half)
    assert isinstance(accepted, Accepted)
    assert accepted.personal[0].timestamp is None


def test_a_verifier_that_requires_tokens_needs_a_timestamp_verifier(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="no timestamp verifier"):
        Verifier(
            pki.trust(), None, FixedClock(utcnow()), VerificationPolicy(require_timestamp=True)
        )


# --- 5-7 at genTime: trusted time ---------------------------------------------------------------


def test_envelope_stamped_while_the_seal_was_valid_verifies_after_it_expires(pki: Pki) -> None:
    signed_at = utcnow()
    seal = _seal_valid(pki, p.Validity(signed_at - 60 * MINUTE, signed_at + 60 * MINUTE))
    header = header_bytes()
    stamper = InProcessTimestamper(authority(pki, clock=FixedClock(signed_at)))
    stamped = sign_stamped(pki, header, stamper, signers=[seal], signing_time=signed_at)
    bare = sign_stamped(pki, header, None, signers=[seal], signing_time=signed_at)
    later = signed_at + 40 * DAY
    # CRL freshness is judged at the bus clock: the session's CRLs are past nextUpdate by then,
    # so the TSA's chain cannot be checked, and without a trusted time the seal has expired.
    stale = rejection(verifier(pki, clock=FixedClock(later)).verify(header, stamped))
    assert stale.reason is Reason.TIMESTAMP_UNTRUSTED
    assert "crl_expired" in stale.detail
    crls = fresh_crls(pki, later)
    verdict = verifier(pki, clock=FixedClock(later), crls=crls).verify(header, stamped)
    assert isinstance(verdict, Accepted), verdict
    assert verdict.trusted_time == stamper.tsa.clock.now()
    assert verdict.time_source == "timestamp"
    expired = rejection(verifier(pki, clock=FixedClock(later), crls=crls).verify(header, bare))
    assert expired.reason is Reason.CERTIFICATE_EXPIRED


def test_seal_revoked_before_gen_time_is_certificate_revoked(pki: Pki) -> None:
    signed_at = utcnow()
    seal = _seal_valid(pki, forge.window(-1, 30))
    header = header_bytes()
    stamper = InProcessTimestamper(authority(pki, clock=FixedClock(signed_at)))
    signature = sign_stamped(pki, header, stamper, signers=[seal], signing_time=signed_at)
    now = signed_at + 2 * 60 * MINUTE
    crls = fresh_crls(
        pki, now, revoked=[(seal.certificate, signed_at - MINUTE, x509.ReasonFlags.key_compromise)]
    )
    verdict = rejection(verifier(pki, clock=FixedClock(now), crls=crls).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED


def test_seal_revoked_after_gen_time_still_verifies_but_not_without_a_token(pki: Pki) -> None:
    signed_at = utcnow()
    seal = _seal_valid(pki, forge.window(-1, 30))
    header = header_bytes()
    stamper = InProcessTimestamper(authority(pki, clock=FixedClock(signed_at)))
    stamped = sign_stamped(pki, header, stamper, signers=[seal], signing_time=signed_at)
    bare = sign_stamped(pki, header, None, signers=[seal], signing_time=signed_at)
    now = signed_at + 2 * 60 * MINUTE
    crls = fresh_crls(
        pki, now, revoked=[(seal.certificate, signed_at + MINUTE, x509.ReasonFlags.key_compromise)]
    )
    judge = verifier(pki, clock=FixedClock(now), crls=crls)
    verdict = judge.verify(header, stamped)
    assert isinstance(verdict, Accepted), verdict
    assert verdict.trusted_time < signed_at + MINUTE
    assert rejection(judge.verify(header, bare)).reason is Reason.CERTIFICATE_REVOKED


# --- the TSA's own certificate: chain at genTime, revocation -----------------------------------


def _stamp_with(pki: Pki, signer: SigningKey, when: dt.datetime) -> tuple[bytes, bytes]:
    header = header_bytes()
    stamper = InProcessTimestamper(authority(pki, signer=signer, clock=FixedClock(when)))
    return header, sign_stamped(pki, header, stamper, signing_time=when)


@pytest.mark.parametrize(
    ("reason", "offset_minutes", "accepted"),
    [
        pytest.param(x509.ReasonFlags.superseded, 1, True, id="superseded-after"),
        pytest.param(x509.ReasonFlags.cessation_of_operation, 1, True, id="ceased-after"),
        pytest.param(x509.ReasonFlags.superseded, -1, False, id="superseded-before"),
        pytest.param(x509.ReasonFlags.key_compromise, 1, False, id="compromised-after"),
        pytest.param(None, 1, False, id="no-reason-after"),
    ],
)
def test_revoked_tsa_certificate_follows_rfc_3161_section_4(
    pki: Pki, reason: x509.ReasonFlags | None, offset_minutes: int, accepted: bool
) -> None:
    when = utcnow()
    signer = tsa_certificate(pki)
    header, signature = _stamp_with(pki, signer, when)
    now = when + 60 * MINUTE
    revoked = [(signer.certificate, when + offset_minutes * MINUTE, reason)]
    verdict = verifier(
        pki, clock=FixedClock(now), crls=fresh_crls(pki, now, revoked=revoked)
    ).verify(header, signature)
    if accepted:
        assert isinstance(verdict, Accepted), verdict
    else:
        assert rejection(verdict).reason is Reason.TIMESTAMP_UNTRUSTED


def test_tsa_certificate_expired_since_gen_time_still_vouches_for_it(pki: Pki) -> None:
    when = utcnow()
    signer = tsa_certificate(pki, validity=p.Validity(when - 60 * MINUTE, when + 60 * MINUTE))
    seal = _seal_valid(pki, forge.window(-1, 365))
    header = header_bytes()
    stamper = InProcessTimestamper(authority(pki, signer=signer, clock=FixedClock(when)))
    signature = sign_stamped(pki, header, stamper, signers=[seal], signing_time=when)
    later = when + 3 * DAY
    verdict = verifier(pki, clock=FixedClock(later), crls=fresh_crls(pki, later)).verify(
        header, signature
    )
    assert isinstance(verdict, Accepted), verdict


def test_tsa_chain_without_crls_is_untrusted_when_revocation_is_required(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    now = utcnow()
    token = token_for(tsa, b"payload")
    required = TimestampVerifier(pki.anchors())  # CRLs of the TSA's chain required, none loaded
    with pytest.raises(Rejected) as caught:
        required.verify_token(token, b"payload", now=now)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED
    assert "crl_missing" in caught.value.detail
    optional = TimestampVerifier(pki.anchors(), revocation=TsaRevocation.IF_AVAILABLE)
    assert optional.verify_token(token, b"payload", now=now).tsa.cert == tsa.certificate
    # Once a CRL of the chain is loaded, the whole chain is checked: the root's alone is not enough.
    root_only = [c for c in pki.crls() if c.issuer == pki.anchors()[0].subject]
    partial = TimestampVerifier(pki.anchors(), root_only, revocation=TsaRevocation.IF_AVAILABLE)
    with pytest.raises(Rejected) as caught:
        partial.verify_token(token, b"payload", now=now)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED


def test_tsa_verifier_follows_crls_added_to_the_bus_trust_store(pki: Pki) -> None:
    when = utcnow()
    signer = tsa_certificate(pki, key=forge.rsa_key(2048, 9))
    token = token_for(authority(pki, signer=signer, clock=FixedClock(when)), b"payload")
    bus_trust = TrustStore(pki.anchors(), pki.crls())
    judge = TimestampVerifier(pki.anchors(), bus_trust)  # TSA anchors of its own, the bus's CRLs
    now = when + MINUTE
    assert judge.verify_token(token, b"payload", now=now).gen_time == when
    assert judge.verify_token(token, b"payload", now=now).gen_time == when  # from the cache
    revoked = [(signer.certificate, when - MINUTE, x509.ReasonFlags.superseded)]
    for crl in fresh_crls(pki, now, revoked=revoked, number=5000):
        bus_trust.add_crl(crl)
    with pytest.raises(Rejected) as caught:
        judge.verify_token(token, b"payload", now=now)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED
    assert "certificate_revoked" in caught.value.detail


def test_token_without_the_tsa_certificate_needs_it_supplied(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    now = utcnow()
    token = token_for(tsa, b"payload", cert_req=False)
    bare = TimestampVerifier(pki.anchors(), pki.crls())
    with pytest.raises(Rejected) as caught:
        bare.verify_token(token, b"payload", now=now)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED
    assert "neither in the token" in caught.value.detail
    supplied = TimestampVerifier(
        pki.anchors(), pki.crls(), certificates=[tsa.certificate, *pki.chain()]
    )
    assert supplied.verify_token(token, b"payload", now=now).tsa.cert == tsa.certificate


def test_verify_token_takes_the_data_or_its_digest(pki: Pki, tsa: TimeStampAuthority) -> None:
    import hashlib

    now = utcnow()
    token = token_for(tsa, b"payload")
    judge = TimestampVerifier(pki.anchors(), pki.crls())
    by_digest = judge.verify_token(token, digest=hashlib.sha256(b"payload").digest(), now=now)
    assert by_digest.info.serial == judge.verify_token(token, b"payload", now=now).info.serial
    with pytest.raises(Rejected) as caught:
        judge.verify_token(token, digest=hashlib.sha256(b"other").digest(), now=now)
    assert caught.value.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH
    with pytest.raises(ValueError, match="either"):
        judge.verify_token(token, now=now)


@pytest.fixture(scope="module")
def sample_token(tsa: TimeStampAuthority) -> bytes:
    return token_for(tsa, b"payload")


# A mangled certificate in the token may carry a serial number <= 0: cryptography loads it with a
# deprecation warning (an exception under this suite's filterwarnings=error); what matters here
# is the verdict, and such a certificate never becomes the TSA's (its signature breaks).
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=3))
def test_a_mangled_token_is_rejected_with_a_timestamp_reason_never_an_exception(
    pki: Pki, sample_token: bytes, edits: list[tuple[int, int]]
) -> None:
    token = bytearray(sample_token)
    for index, value in edits:
        token[index % len(token)] = value
    judge = TimestampVerifier(pki.anchors(), pki.crls())
    outcome: Rejected | VerifiedToken
    try:
        outcome = judge.verify_token(bytes(token), b"payload", now=utcnow())
    except Rejected as rejected:
        outcome = rejected
    if isinstance(outcome, Rejected):
        assert outcome.reason.value.startswith("timestamp_")
    else:
        # Only bytes outside what the TSA signed may change without a rejection (e.g. the
        # unsigned certificate bag's copy of an intermediate that the trust store also holds).
        assert outcome.info == parse_token(sample_token).info


# --- 10. freshness and 11. replay ----------------------------------------------------------------


def test_stale_created_at_is_message_stale(pki: Pki, tsa: TimeStampAuthority) -> None:
    now = utcnow()
    header = header_bytes(created_at=now - 3 * DAY)
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa))
    policy = VerificationPolicy(freshness=Freshness(acceptance_window=2 * DAY))
    verdict = rejection(
        verifier(pki, clock=FixedClock(now), policy=policy).verify(header, signature)
    )
    assert verdict.reason is Reason.MESSAGE_STALE
    fresh = header_bytes(created_at=now - 1 * DAY)
    signature = sign_stamped(pki, fresh, InProcessTimestamper(tsa))
    assert isinstance(
        verifier(pki, clock=FixedClock(now), policy=policy).verify(fresh, signature), Accepted
    )


def test_created_at_ahead_of_the_bus_clock_is_message_from_future(
    pki: Pki, tsa: TimeStampAuthority
) -> None:
    now = utcnow()
    policy = VerificationPolicy(freshness=Freshness(future_skew=5 * MINUTE))
    header = header_bytes(created_at=now + 30 * MINUTE)
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa))
    verdict = rejection(
        verifier(pki, clock=FixedClock(now), policy=policy).verify(header, signature)
    )
    assert verdict.reason is Reason.MESSAGE_FROM_FUTURE
    near = header_bytes(created_at=now + 4 * MINUTE)
    signature = sign_stamped(pki, near, InProcessTimestamper(tsa))
    assert isinstance(
        verifier(pki, clock=FixedClock(now), policy=policy).verify(near, signature), Accepted
    )


class SeenEnvelopes:
    """A ReplayGuard: what the bus accepted, by message id."""

    def __init__(self) -> None:
        self.digests: dict[uuid.UUID, str] = {}

    def envelope_digest(self, message_id: uuid.UUID) -> str | None:
        return self.digests.get(message_id)


def test_same_message_id_with_other_bytes_is_replay(pki: Pki, tsa: TimeStampAuthority) -> None:
    seen = SeenEnvelopes()
    judge = verifier(pki, replay=seen)
    message_id = str(uuid.uuid4())
    header = header_bytes(message_id=message_id)
    signature = sign_stamped(pki, header, InProcessTimestamper(tsa))
    first = judge.verify(header, signature)
    assert isinstance(first, Accepted)
    seen.digests[first.header.message_id] = first.envelope_digest
    # Redelivery of the very same bytes is not a replay (the router deduplicates it).
    assert isinstance(judge.verify(header, signature), Accepted)
    # The same header signed again: other signature bytes (new signingTime and token).
    resigned = sign_stamped(
        pki, header, InProcessTimestamper(tsa), signing_time=utcnow() + dt.timedelta(seconds=1)
    )
    assert envelope_digest(header, resigned) != first.envelope_digest
    assert rejection(judge.verify(header, resigned)).reason is Reason.REPLAY
    # An altered header under the captured message id.
    altered = header_bytes(message_id=message_id, subject="Về việc khác")
    verdict = rejection(
        judge.verify(altered, sign_stamped(pki, altered, InProcessTimestamper(tsa)))
    )
    assert verdict.reason is Reason.REPLAY
    assert message_id in verdict.detail


# --- every reason of groups 9-11 has a test here --------------------------------------------------


def test_every_reason_of_groups_9_to_11_is_produced_by_a_test() -> None:
    group: int | None = None
    owned: set[Reason] = set()
    for line in inspect.getsource(reasons.Reason).splitlines():
        heading = re.match(r"^\s*#\s*(\d+)\.", line)
        if line.strip().startswith("#"):
            group = int(heading.group(1)) if heading else None
        elif (member := re.match(r"^\s*([A-Z][A-Z0-9_]*)\s*=", line)) and group in (9, 10, 11):
            owned.add(Reason[member.group(1)])
    assert Reason.TIMESTAMP_SKEW in owned
    assert Reason.REPLAY in owned
    sources = [
        path.read_text("utf-8") for path in Path(__file__).parent.glob("test_timestamps*.py")
    ]
    tested = {
        Reason[name] for text in sources for name in re.findall(r"Reason\.([A-Z][A-Z0-9_]*)", text)
    }
    assert sorted(owned - tested) == []
