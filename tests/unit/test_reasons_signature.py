"""Attacks on the signature itself: algorithms, signed attributes, the signer's certificate, the
messageDigest and the signature value (reason group 4). Signatures are real: made by
``exchange.signing``, by the hand-made SignerInfos of ``tests.forge``, or by ``openssl cms``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.pki import profiles as p
from exchange import derwrite as w
from exchange import oids
from exchange.reasons import Reason
from exchange.signing import SigningKey, sign_detached
from exchange.verification import Accepted
from tests import forge
from tests.forge import Authority, rejection
from tests.helpers import G22, H37, Pki, header_bytes

VPCP = "Văn phòng Chính phủ"


@pytest.fixture(scope="module")
def pki(pki: Pki) -> Pki:
    """The session PKI, its signing keys loaded once (see ``forge.KeyCachingPki``)."""
    return forge.KeyCachingPki(pki.dev)


def _openssl(pki: Pki, workdir: Path, header: bytes, *options: str) -> bytes:
    cert, key = pki.dev.seal(G22)
    return forge.openssl_sign(workdir, header, cert, key, *options, certfile=pki.dev.chain)


def _attributes_signed_by_seal(pki: Pki, attributes: list[bytes] | None, header: bytes) -> bytes:
    return forge.sign_with_attributes(pki.seal(), attributes, content=header, chain=pki.chain())


# --- unsupported and weak algorithms ------------------------------------------------------------


@pytest.mark.parametrize("curve", ["secp256k1", "brainpoolP256r1"])
def test_seal_on_a_curve_outside_the_policy_is_unsupported_algorithm(pki: Pki, curve: str) -> None:
    # A certificate genuinely issued by the government CA, for a key on an unapproved curve.
    seal = Authority.of(pki.dev).signer(p.seal_profile(G22, VPCP), forge.ec_key(curve))
    header = header_bytes()
    signature = sign_detached(header, [seal], chain=pki.chain())
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.UNSUPPORTED_ALGORITHM
    assert curve in verdict.detail


@pytest.mark.openssl
@pytest.mark.parametrize("digest", ["ripemd160", "sha3-224", "sha512-224"])
def test_digest_outside_the_policy_is_unsupported_algorithm(
    pki: Pki, tmp_path: Path, digest: str
) -> None:
    header = header_bytes()
    signature = _openssl(pki, tmp_path, header, "-md", digest)
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.UNSUPPORTED_ALGORITHM
    assert verdict.detail.startswith("digest ")
    assert verdict.detail.endswith("is not supported")


def test_rsa_1024_signer_key_is_weak_algorithm(pki: Pki) -> None:
    seal = Authority.of(pki.dev).signer(p.seal_profile(G22, VPCP), forge.rsa_key(1024))
    header = header_bytes()
    verdict = rejection(
        pki.verifier().verify(header, sign_detached(header, [seal], chain=pki.chain()))
    )
    assert verdict.reason is Reason.WEAK_ALGORITHM
    assert "RSA key of 1024 bits" in verdict.detail


@pytest.mark.openssl
@pytest.mark.parametrize(
    ("digest", "name"), [("sha1", "SHA-1"), ("md5", "MD5"), ("sha224", "SHA-224")]
)
def test_weak_digest_in_the_signer_info_is_weak_algorithm(
    pki: Pki, tmp_path: Path, digest: str, name: str
) -> None:
    header = header_bytes()
    signature = _openssl(pki, tmp_path, header, "-md", digest)
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.WEAK_ALGORITHM
    assert verdict.detail == f"digest {name} is too weak"


def test_seal_certificate_signed_with_sha1_is_weak_algorithm(pki: Pki) -> None:
    ca = Authority.of(pki.dev)
    assert isinstance(ca.key, rsa.RSAPrivateKey)
    seal = ca.signer(p.seal_profile(G22, VPCP))
    sha1_seal = SigningKey(forge.resign_sha1(seal.certificate, ca.key), seal.private_key)
    header = header_bytes()
    verdict = rejection(
        pki.verifier().verify(header, sign_detached(header, [sha1_seal], chain=pki.chain()))
    )
    assert verdict.reason is Reason.WEAK_ALGORITHM
    assert "signed with sha1" in verdict.detail


def test_intermediate_with_an_rsa_1024_key_is_weak_algorithm(pki: Pki) -> None:
    root = Authority.of(pki.dev, forge.ROOT_CA)
    weak_ca = root.sub_ca("lienthong Legacy Issuing CA", forge.rsa_key(1024))
    seal = weak_ca.signer(p.seal_profile(G22, VPCP))
    header = header_bytes()
    verdict = rejection(
        pki.verifier().verify(header, sign_detached(header, [seal], chain=[weak_ca.cert]))
    )
    assert verdict.reason is Reason.WEAK_ALGORITHM
    assert "Legacy Issuing CA" in verdict.detail


# --- signed attributes -------------------------------------------------------------------------


@pytest.mark.openssl
def test_signature_without_signed_attributes_is_signed_attributes_invalid(
    pki: Pki, tmp_path: Path
) -> None:
    header = header_bytes()
    verdict = rejection(pki.verifier().verify(header, _openssl(pki, tmp_path, header, "-noattr")))
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID
    assert "no signed attributes" in verdict.detail


def test_signature_over_the_raw_header_without_attributes_is_signed_attributes_invalid(
    pki: Pki,
) -> None:
    header = header_bytes()
    signature = _attributes_signed_by_seal(pki, None, header)
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID


def test_signature_without_signing_time_is_signed_attributes_invalid(pki: Pki) -> None:
    header = header_bytes()
    attributes = [forge.content_type(), forge.message_digest(header)]
    verdict = rejection(
        pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    )
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID
    assert "signingTime" in verdict.detail


def test_signature_without_content_type_is_signed_attributes_invalid(pki: Pki) -> None:
    header = header_bytes()
    attributes = [forge.message_digest(header), forge.signing_time()]
    verdict = rejection(
        pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    )
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID


def test_two_signing_times_in_one_attribute_is_signed_attributes_invalid(pki: Pki) -> None:
    # The signer claims two times at once, to be read as whichever suits.
    header = header_bytes()
    now = forge.utcnow()
    times = forge.attribute(
        oids.ATTR_SIGNING_TIME,
        w.time(now),
        w.time(now - dt.timedelta(days=400)),
    )
    attributes = [forge.content_type(), forge.message_digest(header), times]
    verdict = rejection(
        pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    )
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID
    assert "must have one value" in verdict.detail


def test_content_type_other_than_data_is_signed_attributes_invalid(pki: Pki) -> None:
    # A signature made for another kind of content (here: a timestamp token's TSTInfo).
    header = header_bytes()
    attributes = [
        forge.content_type(oids.TST_INFO),
        forge.message_digest(header),
        forge.signing_time(),
    ]
    verdict = rejection(
        pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    )
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID
    assert "id-data" in verdict.detail


def test_signing_certificate_naming_another_certificate_is_signed_attributes_invalid(
    pki: Pki,
) -> None:
    # The G22 seal's key signs, but the signed attributes bind H37's seal certificate.
    header = header_bytes()
    attributes = [
        forge.content_type(),
        forge.message_digest(header),
        forge.signing_time(),
        forge.signing_certificate_v2(pki.seal(H37).certificate),
    ]
    verdict = rejection(
        pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    )
    assert verdict.reason is Reason.SIGNED_ATTRIBUTES_INVALID
    assert "signingCertificate" in verdict.detail


def test_hand_made_signer_info_is_accepted_when_nothing_is_wrong(pki: Pki) -> None:
    # The control for the hand-made signatures above: only the attack makes them fail.
    header = header_bytes()
    attributes = [
        forge.content_type(),
        forge.message_digest(header),
        forge.signing_time(),
        forge.signing_certificate_v2(pki.seal().certificate),
    ]
    verdict = pki.verifier().verify(header, _attributes_signed_by_seal(pki, attributes, header))
    assert isinstance(verdict, Accepted), verdict


# --- signer certificate -------------------------------------------------------------------------


@pytest.mark.openssl
def test_signature_without_certificates_is_signer_certificate_missing(
    pki: Pki, tmp_path: Path
) -> None:
    header = header_bytes()
    signature = forge.openssl_sign(tmp_path, header, *pki.dev.seal(G22), "-nocerts")
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.SIGNER_CERTIFICATE_MISSING
    assert "not embedded" in verdict.detail


def test_signer_certificate_swapped_for_another_agencys_is_signer_certificate_missing(
    pki: Pki,
) -> None:
    header = header_bytes()
    attributes = [forge.content_type(), forge.message_digest(header), forge.signing_time()]
    signature = forge.sign_with_attributes(
        pki.seal(G22),
        attributes,
        content=header,
        embed=[pki.seal(H37).certificate, *pki.chain()],
    )
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.SIGNER_CERTIFICATE_MISSING


def test_two_embedded_certificates_for_the_signer_identifier_is_signer_certificate_missing(
    pki: Pki,
) -> None:
    # A second certificate with the seal's issuer and serial (a forgery, or a CA's mistake):
    # which one signed is ambiguous, so neither is believed.
    seal = pki.seal()
    twin = Authority.of(pki.dev).issue(
        p.seal_profile(G22, "Văn phòng Chính phủ (giả)"),
        forge.rsa_key().public_key(),
        serial=seal.certificate.serial_number,
    )
    header = header_bytes()
    attributes = [forge.content_type(), forge.message_digest(header), forge.signing_time()]
    signature = forge.sign_with_attributes(
        seal, attributes, content=header, embed=[seal.certificate, twin, *pki.chain()]
    )
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.SIGNER_CERTIFICATE_MISSING
    assert "ambiguous" in verdict.detail


# --- digest and signature value -----------------------------------------------------------------


def test_flipped_byte_in_header_is_digest_mismatch(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    flipped = forge.flip(header, header.index(b'"number":"2491"') + 10, 0x01)  # "2491" -> "3491"
    assert b'"number":"3491"' in flipped
    verdict = rejection(pki.verifier().verify(flipped, signature))
    assert verdict.reason is Reason.DIGEST_MISMATCH
    assert VPCP in verdict.detail


def test_changed_recipient_is_digest_mismatch(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    redirected = header.replace(H37.encode(), b"000.00.01.H37")
    assert rejection(pki.verifier().verify(redirected, signature)).reason is (
        Reason.DIGEST_MISMATCH
    )


def test_signature_of_another_header_is_digest_mismatch(pki: Pki) -> None:
    old = header_bytes(subject="Thông báo lịch họp")
    new = header_bytes(subject="Quyết định bổ nhiệm")
    verdict = rejection(pki.verifier().verify(new, pki.sign(old)))
    assert verdict.reason is Reason.DIGEST_MISMATCH


def test_trailing_newline_added_to_the_header_is_digest_mismatch(pki: Pki) -> None:
    header = header_bytes()
    verdict = rejection(pki.verifier().verify(header + b"\n", pki.sign(header)))
    assert verdict.reason is Reason.DIGEST_MISMATCH


def test_flipped_byte_in_the_signature_value_is_bad_signature(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    (value,) = forge.signature_values(signature)
    tampered = forge.flip_inside(signature, value)
    verdict = rejection(pki.verifier().verify(header, tampered))
    assert verdict.reason is Reason.BAD_SIGNATURE
    assert VPCP in verdict.detail


def test_signature_values_swapped_between_seal_and_leader_is_bad_signature(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header, personal=True)
    first, second = forge.signature_values(signature)
    verdict = rejection(pki.verifier().verify(header, forge.swap(signature, first, second)))
    assert verdict.reason is Reason.BAD_SIGNATURE


def test_signed_attributes_edited_after_signing_is_bad_signature(pki: Pki) -> None:
    # Back-date the signingTime inside the signed attributes: the digest still matches, the
    # signature over the attributes no longer does.
    header = header_bytes()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    signature = sign_detached(header, [pki.seal()], chain=pki.chain(), signing_time=when)
    backdated = signature.replace(b"260102030405Z", b"250102030405Z")
    assert backdated != signature
    verdict = rejection(pki.verifier().verify(header, backdated))
    assert verdict.reason is Reason.BAD_SIGNATURE
