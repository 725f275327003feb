"""Attacks on trust: the chain to an anchor, validity at the trusted time, key usage and
revocation (reason groups 5-7), and the verifier's chain cache across envelopes, clocks and CRLs.

Certificates and CRLs are issued with the development PKI's CA keys on disk; CRLs that revoke
are made with ``profiles.build_crl`` or on a separate PKI folder, never in the session ``pki``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.files import load_certificates, load_crls, load_private_key
from adapters.pki import profiles as p
from adapters.pki.folder import DEMO_AGENCIES, DevPki
from exchange.reasons import Reason
from exchange.signing import SigningKey, sign_detached
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verdict, Verifier
from tests import forge
from tests.forge import Authority, MovableClock, rejection
from tests.helpers import G22, Pki, at, header_bytes

VPCP = "Văn phòng Chính phủ"


@pytest.fixture(scope="module")
def pki(pki: Pki) -> Pki:
    """The session PKI, its signing keys loaded once (see ``forge.KeyCachingPki``)."""
    return forge.KeyCachingPki(pki.dev)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, separate RSA PKI whose CAs have exactly the names of the session PKI's."""
    dev = DevPki(tmp_path_factory.mktemp("other-pki"))
    dev.init(agencies=DEMO_AGENCIES[:1])
    return forge.KeyCachingPki(dev)


@pytest.fixture
def revocable(tmp_path: Path) -> Pki:
    """A fresh PKI (EC P-256: quick to make) that a test may revoke in."""
    dev = DevPki(tmp_path / "pki")
    dev.init(p.KeyAlgorithm.EC_P256, agencies=DEMO_AGENCIES[:2])
    return forge.KeyCachingPki(dev)


def _verdict(pki: Pki, signer: SigningKey, chain: list[x509.Certificate] | None = None) -> Verdict:
    header = header_bytes()
    signature = sign_detached(header, [signer], chain=pki.chain() if chain is None else chain)
    return pki.verifier().verify(header, signature)


def _seal_profile() -> p.Profile:
    return p.seal_profile(G22, VPCP)


def _issuing(pki: Pki) -> Authority:
    return Authority.of(pki.dev, forge.ISSUING_CA)


def _root(pki: Pki) -> Authority:
    return Authority.of(pki.dev, forge.ROOT_CA)


# --- 5. chain to a trust anchor -----------------------------------------------------------------


def test_seal_from_a_look_alike_root_is_untrusted_chain(pki: Pki, other: Pki) -> None:
    # Same CA names, other keys: an attacker's copy of the government hierarchy.
    assert other.anchors()[0].subject == pki.anchors()[0].subject
    header = header_bytes()
    verdict = rejection(pki.verifier().verify(header, other.sign(header)))
    assert verdict.reason is Reason.UNTRUSTED_CHAIN
    assert VPCP in verdict.detail


def test_embedding_the_look_alike_root_does_not_make_it_trusted(pki: Pki, other: Pki) -> None:
    chain = other.chain() + other.anchors()
    verdict = rejection(_verdict(pki, other.seal(), chain))
    assert verdict.reason is Reason.UNTRUSTED_CHAIN


def test_self_signed_seal_is_untrusted_chain(pki: Pki) -> None:
    key = forge.rsa_key()
    profile = _seal_profile()
    cert = p.build_certificate(
        profile, key.public_key(), profile.subject, key, forge.window(-1, 365), 1
    )
    verdict = rejection(_verdict(pki, SigningKey(cert, key), []))
    assert verdict.reason is Reason.UNTRUSTED_CHAIN


def test_seal_sent_without_its_issuing_ca_is_untrusted_chain(pki: Pki) -> None:
    assert rejection(_verdict(pki, pki.seal(), [])).reason is Reason.UNTRUSTED_CHAIN


def test_seal_issued_by_a_trusted_ca_under_another_name_is_untrusted_chain(pki: Pki) -> None:
    # The issuing CA's key, but a certificate claiming another issuer Name.
    ca = _issuing(pki)
    cert = p.build_certificate(
        _seal_profile(),
        forge.rsa_key().public_key(),
        p.ca_name("lienthong Development Issuing CA 2"),
        ca.key,
        forge.window(-1, 365),
        x509.random_serial_number(),
    )
    verdict = rejection(_verdict(pki, SigningKey(cert, forge.rsa_key())))
    assert verdict.reason is Reason.UNTRUSTED_CHAIN


# --- 5. validity at the trusted time ------------------------------------------------------------


def test_seal_issued_already_expired_is_certificate_expired(pki: Pki) -> None:
    seal = _issuing(pki).signer(_seal_profile(), validity=forge.window(-400, -35))
    verdict = rejection(_verdict(pki, seal))
    assert verdict.reason is Reason.CERTIFICATE_EXPIRED
    assert VPCP in verdict.detail


def test_seal_past_its_validity_at_the_clock_is_certificate_expired(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    after = pki.seal().certificate.not_valid_after_utc + dt.timedelta(days=1)
    verdict = rejection(pki.verifier(clock=at(after.isoformat())).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_EXPIRED
    assert VPCP in verdict.detail


def test_seal_issued_for_the_future_is_certificate_not_yet_valid(pki: Pki) -> None:
    seal = _issuing(pki).signer(_seal_profile(), validity=forge.window(30, 400))
    verdict = rejection(_verdict(pki, seal))
    assert verdict.reason is Reason.CERTIFICATE_NOT_YET_VALID
    assert VPCP in verdict.detail


def test_seal_before_its_validity_at_the_clock_is_certificate_not_yet_valid(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    before = pki.seal().certificate.not_valid_before_utc - dt.timedelta(days=1)
    verdict = rejection(pki.verifier(clock=at(before.isoformat())).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_NOT_YET_VALID
    assert VPCP in verdict.detail


def test_intermediate_issued_already_expired_is_certificate_expired(pki: Pki) -> None:
    expired_ca = _root(pki).sub_ca(
        "lienthong Expired Issuing CA", forge.rsa_key(2048, 1), validity=forge.window(-400, -30)
    )
    seal = expired_ca.signer(_seal_profile())
    verdict = rejection(_verdict(pki, seal, [expired_ca.cert]))
    assert verdict.reason is Reason.CERTIFICATE_EXPIRED
    assert "Expired Issuing CA" in verdict.detail


def test_intermediate_past_its_validity_at_the_clock_is_certificate_expired(pki: Pki) -> None:
    # The seal outlives the issuing CA; at a time between the two ends only the CA has expired.
    seal = _issuing(pki).signer(_seal_profile(), validity=forge.window(-2, 12 * 365))
    issuing_end = pki.chain()[0].not_valid_after_utc
    assert seal.certificate.not_valid_after_utc > issuing_end + dt.timedelta(days=30)
    header = header_bytes()
    signature = sign_detached(header, [seal], chain=pki.chain())
    clock = at((issuing_end + dt.timedelta(days=30)).isoformat())
    verdict = rejection(pki.verifier(clock=clock).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_EXPIRED
    assert "Development Issuing CA" in verdict.detail


def test_intermediate_issued_for_the_future_is_certificate_not_yet_valid(pki: Pki) -> None:
    future_ca = _root(pki).sub_ca(
        "lienthong Future Issuing CA", forge.rsa_key(2048, 1), validity=forge.window(30, 400)
    )
    seal = future_ca.signer(_seal_profile())
    verdict = rejection(_verdict(pki, seal, [future_ca.cert]))
    assert verdict.reason is Reason.CERTIFICATE_NOT_YET_VALID
    assert "Future Issuing CA" in verdict.detail


def test_intermediate_before_its_validity_at_the_clock_is_certificate_not_yet_valid(
    pki: Pki,
) -> None:
    # The seal is back-dated before its issuing CA existed; at a time in between only the CA
    # is not yet valid.
    seal = _issuing(pki).signer(_seal_profile(), validity=forge.window(-3, 365))
    issuing_start = pki.chain()[0].not_valid_before_utc
    header = header_bytes()
    signature = sign_detached(header, [seal], chain=pki.chain())
    clock = at((issuing_start - dt.timedelta(minutes=30)).isoformat())
    verdict = rejection(pki.verifier(clock=clock).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_NOT_YET_VALID
    assert "Development Issuing CA" in verdict.detail


# --- 6. key usage -------------------------------------------------------------------------------


def test_seal_for_key_encipherment_only_is_key_usage_invalid(pki: Pki) -> None:
    profile = replace(_seal_profile(), key_usage=p.key_usage(key_encipherment=True))
    verdict = rejection(_verdict(pki, _issuing(pki).signer(profile)))
    assert verdict.reason is Reason.KEY_USAGE_INVALID
    assert "digitalSignature" in verdict.detail


def test_tls_server_certificate_is_key_usage_invalid(pki: Pki) -> None:
    profile = replace(_seal_profile(), extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    verdict = rejection(_verdict(pki, _issuing(pki).signer(profile)))
    assert verdict.reason is Reason.KEY_USAGE_INVALID
    assert ExtendedKeyUsageOID.SERVER_AUTH.dotted_string in verdict.detail


def test_issuing_ca_signing_a_document_is_key_usage_invalid(pki: Pki) -> None:
    ca = _issuing(pki)
    verdict = rejection(_verdict(pki, SigningKey(ca.cert, ca.key)))
    assert verdict.reason is Reason.KEY_USAGE_INVALID
    assert "CA certificate" in verdict.detail


def test_tsa_certificate_signing_a_document_is_key_usage_invalid(pki: Pki) -> None:
    cert, key = pki.dev.tsa
    tsa = SigningKey(load_certificates(cert)[0], load_private_key(key))
    verdict = rejection(_verdict(pki, tsa))
    assert verdict.reason is Reason.KEY_USAGE_INVALID
    assert ExtendedKeyUsageOID.TIME_STAMPING.dotted_string in verdict.detail


# --- 7. revocation: CRLs missing, stale or not genuine ------------------------------------------


def test_trust_store_without_crls_is_crl_missing(pki: Pki) -> None:
    header = header_bytes()
    verifier = pki.verifier(trust=TrustStore(pki.anchors()))
    verdict = rejection(verifier.verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CRL_MISSING
    assert VPCP in verdict.detail


def test_missing_root_crl_is_crl_missing_for_the_intermediate(pki: Pki) -> None:
    issuing_crls = load_crls(pki.dev.crl("issuing-ca"))
    header = header_bytes()
    verifier = pki.verifier(trust=TrustStore(pki.anchors(), issuing_crls))
    verdict = rejection(verifier.verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CRL_MISSING
    assert "Development Issuing CA" in verdict.detail


def test_crl_past_its_next_update_is_crl_expired(pki: Pki) -> None:
    now = forge.utcnow()
    stale = _issuing(pki).crl(
        2, this_update=now - dt.timedelta(days=10), next_update=now - dt.timedelta(days=1)
    )
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), stale])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CRL_EXPIRED
    assert "number 2" in verdict.detail


def test_crl_not_renewed_for_a_month_is_crl_expired(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    next_update = min(c.next_update_utc for c in pki.crls() if c.next_update_utc is not None)
    clock = at((next_update + dt.timedelta(hours=1)).isoformat())
    verdict = rejection(pki.verifier(clock=clock).verify(header, signature))
    assert verdict.reason is Reason.CRL_EXPIRED


def test_crl_of_a_look_alike_ca_is_crl_invalid(pki: Pki, other: Pki) -> None:
    # The other PKI's issuing CA has our issuing CA's exact Name; its CRL is not ours.
    foreign = load_crls(other.dev.crl("issuing-ca"))
    assert foreign[0].issuer == pki.chain()[0].subject
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), *foreign])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CRL_INVALID
    assert "signed by that issuer's key" in verdict.detail


def test_crl_with_our_issuer_name_signed_by_another_key_is_crl_invalid(pki: Pki) -> None:
    impostor = Authority(pki.chain()[0], forge.rsa_key(2048, 2))
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), impostor.crl(7)])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CRL_INVALID


def test_forged_crl_with_a_higher_number_does_not_shadow_the_genuine_one(pki: Pki) -> None:
    # A CRL under our issuer's Name, another key, number 1000, "revoking" the seal: ignored.
    impostor = Authority(pki.chain()[0], forge.rsa_key(2048, 2))
    forged = impostor.crl(1000, [pki.seal().certificate])
    trust = TrustStore(pki.anchors(), [*pki.crls(), forged])
    header = header_bytes()
    verdict = pki.verifier(trust=trust).verify(header, pki.sign(header))
    assert isinstance(verdict, Accepted), verdict


def test_crl_signed_by_a_ca_without_crl_sign_is_crl_invalid(pki: Pki) -> None:
    no_crl_sign = _root(pki).sub_ca(
        "lienthong No-CRL Issuing CA",
        forge.rsa_key(2048, 1),
        usage=p.key_usage(key_cert_sign=True),
    )
    seal = no_crl_sign.signer(_seal_profile())
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), no_crl_sign.crl(1)])
    header = header_bytes()
    signature = sign_detached(header, [seal], chain=[no_crl_sign.cert])
    verdict = rejection(pki.verifier(trust=trust).verify(header, signature))
    assert verdict.reason is Reason.CRL_INVALID
    assert "cRLSign" in verdict.detail


def test_crl_dated_after_the_bus_clock_is_crl_invalid(pki: Pki) -> None:
    # The bus clock lags: the certificates are valid, the CRL claims to be from the future.
    header = header_bytes()
    signature = pki.sign(header)
    this_update = max(c.last_update_utc for c in pki.crls())
    clock = at((this_update - dt.timedelta(minutes=2)).isoformat())
    assert pki.seal().certificate.not_valid_before_utc < this_update - dt.timedelta(minutes=2)
    verdict = rejection(pki.verifier(clock=clock).verify(header, signature))
    assert verdict.reason is Reason.CRL_INVALID
    assert "future" in verdict.detail


# --- 7. revocation: revoked certificates --------------------------------------------------------


def test_seal_revoked_with_pki_revoke_is_certificate_revoked(revocable: Pki) -> None:
    header = header_bytes()
    signature = revocable.sign(header)
    assert isinstance(revocable.verifier().verify(header, signature), Accepted)
    revocable.dev.revoke(revocable.dev.seal(G22)[0])
    verdict = rejection(revocable.verifier().verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED
    assert "keyCompromise" in verdict.detail


def test_older_crl_loaded_after_a_newer_one_does_not_resurrect_the_seal(revocable: Pki) -> None:
    older = load_crls(revocable.dev.crl("issuing-ca"))
    revocable.dev.revoke(revocable.dev.seal(G22)[0])
    newer = load_crls(revocable.dev.crl("issuing-ca"))
    root_crls = load_crls(revocable.dev.crl("root-ca"))
    header = header_bytes()
    signature = revocable.sign(header)
    # Loaded in order of arrival: the newer CRL, then a replayed older one.
    trust = TrustStore(revocable.anchors(), [*root_crls, *newer])
    trust.add_crl(older[0])
    verdict = rejection(revocable.verifier(trust=trust).verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED
    # The other order gives the same answer, and the older CRL alone would have accepted.
    trust = TrustStore(revocable.anchors(), [*root_crls, *older, *newer])
    assert rejection(revocable.verifier(trust=trust).verify(header, signature)).reason is (
        Reason.CERTIFICATE_REVOKED
    )
    trust = TrustStore(revocable.anchors(), [*root_crls, *older])
    assert isinstance(revocable.verifier(trust=trust).verify(header, signature), Accepted)


def test_seal_on_a_crl_built_with_profiles_is_certificate_revoked(pki: Pki) -> None:
    revoking = _issuing(pki).crl(2, [pki.seal().certificate])
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), revoking])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED
    assert VPCP in verdict.detail


def test_issuing_ca_revoked_by_the_root_is_certificate_revoked(pki: Pki) -> None:
    revoking = _root(pki).crl(2, [pki.chain()[0]])
    trust = TrustStore(pki.anchors(), [revoking, *load_crls(pki.dev.crl("issuing-ca"))])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header)))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED
    assert "Development Issuing CA" in verdict.detail


def test_leader_revoked_while_the_seal_is_not_is_certificate_revoked(pki: Pki) -> None:
    revoking = _issuing(pki).crl(2, [pki.leader().certificate])
    trust = TrustStore(pki.anchors(), [*load_crls(pki.dev.crl("root-ca")), revoking])
    header = header_bytes()
    verdict = rejection(pki.verifier(trust=trust).verify(header, pki.sign(header, personal=True)))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED
    assert "Trần Văn Minh" in verdict.detail


# --- the chain cache ----------------------------------------------------------------------------


def _answers(verifier: Verifier, envelopes: list[tuple[bytes, bytes]]) -> list[str]:
    out = []
    for header, signature in envelopes:
        verdict = verifier.verify(header, signature)
        out.append("accepted" if isinstance(verdict, Accepted) else verdict.reason.value)
    return out


def test_reused_verifier_gives_the_same_answers_as_fresh_ones(pki: Pki, other: Pki) -> None:
    ca = _issuing(pki)
    header = header_bytes()
    good = pki.sign(header)
    envelopes = [
        (header, good),
        (header, sign_detached(header, [pki.seal()], chain=pki.chain())),
        (forge.flip(header, header.index(b'"number":"2491"') + 10, 0x01), good),
        (header, other.sign(header)),
        (
            header,
            sign_detached(
                header,
                [ca.signer(_seal_profile(), validity=forge.window(-400, -35))],
                chain=pki.chain(),
            ),
        ),
        (
            header,
            sign_detached(
                header,
                [ca.signer(replace(_seal_profile(), key_usage=p.key_usage(key_encipherment=True)))],
                chain=pki.chain(),
            ),
        ),
        (header, pki.sign(header, personal=True)),
        (header, good),
    ]
    expected = [_answers(pki.verifier(), [envelope])[0] for envelope in envelopes]
    assert expected == [
        "accepted",
        "accepted",
        "digest_mismatch",
        "untrusted_chain",
        "certificate_expired",
        "key_usage_invalid",
        "accepted",
        "accepted",
    ]
    reused = pki.verifier()
    assert _answers(reused, envelopes) == expected
    assert _answers(reused, envelopes[::-1]) == expected[::-1]
    assert _answers(reused, envelopes) == expected


def test_chain_cache_is_not_used_across_a_crl_change(pki: Pki) -> None:
    trust = pki.trust()
    verifier = pki.verifier(trust=trust)
    header = header_bytes()
    signature = pki.sign(header)
    assert isinstance(verifier.verify(header, signature), Accepted)
    assert isinstance(verifier.verify(header, signature), Accepted)  # now from the cache
    assert trust.add_crl(_issuing(pki).crl(2, [pki.seal().certificate]))
    verdict = rejection(verifier.verify(header, signature))
    assert verdict.reason is Reason.CERTIFICATE_REVOKED


def test_chain_cache_does_not_outlive_the_seal(pki: Pki) -> None:
    clock = MovableClock(forge.utcnow())
    verifier = pki.verifier(clock=clock)
    header = header_bytes()
    signature = pki.sign(header)
    assert isinstance(verifier.verify(header, signature), Accepted)
    start = clock.instant
    clock.instant = pki.seal().certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    assert rejection(verifier.verify(header, signature)).reason is Reason.CERTIFICATE_EXPIRED
    clock.instant = start
    assert isinstance(verifier.verify(header, signature), Accepted)


def test_chain_cache_does_not_outlive_the_crl(pki: Pki) -> None:
    clock = MovableClock(forge.utcnow())
    verifier = pki.verifier(clock=clock)
    header = header_bytes()
    signature = pki.sign(header)
    assert isinstance(verifier.verify(header, signature), Accepted)
    next_update = min(c.next_update_utc for c in pki.crls() if c.next_update_utc is not None)
    clock.instant = next_update + dt.timedelta(seconds=1)
    assert rejection(verifier.verify(header, signature)).reason is Reason.CRL_EXPIRED
