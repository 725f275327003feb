"""Attacks on who sends and to whom: the sender binding of seals and personal signers, the
registry, recipients and attachments (reason groups 8, 12 and 13).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography import x509

from adapters.pki import profiles as p
from exchange.policy import KIB, MIB, Limits, VerificationPolicy
from exchange.ports import AgencyRecord
from exchange.reasons import Reason
from exchange.signing import SigningKey, sign_detached
from exchange.verification import Accepted, Verdict
from tests import forge
from tests.forge import Authority, rejection
from tests.helpers import (
    G22,
    H37,
    H37_FINANCE,
    InlineAttachments,
    MemoryRegistry,
    Pki,
    attachment,
    header_bytes,
)

VPCP = "Văn phòng Chính phủ"


@pytest.fixture(scope="module")
def pki(pki: Pki) -> Pki:
    """The session PKI, its signing keys loaded once (see ``forge.KeyCachingPki``)."""
    return forge.KeyCachingPki(pki.dev)


def _record(code: str, *seals: x509.Certificate, active: bool = True) -> AgencyRecord:
    return AgencyRecord(code, code, active, frozenset(forge.fingerprint(seal) for seal in seals))


def _registry(pki: Pki, **overrides: AgencyRecord | None) -> MemoryRegistry:
    """The three agencies of the PKI, their seals pinned, with ``overrides`` by code name."""
    records = {code: _record(code, pki.seal(code).certificate) for code in (G22, H37, H37_FINANCE)}
    for name, record in overrides.items():
        code = {"G22": G22, "H37": H37, "H37_FINANCE": H37_FINANCE}[name]
        if record is None:
            del records[code]
        else:
            records[code] = record
    return MemoryRegistry(records)


def _verify(
    pki: Pki,
    signers: list[SigningKey],
    *,
    header: bytes | None = None,
    registry: MemoryRegistry | None = None,
) -> Verdict:
    data = header if header is not None else header_bytes()
    signature = sign_detached(data, signers, chain=pki.chain())
    return pki.verifier(registry=registry or _registry(pki)).verify(data, signature)


@pytest.fixture(scope="module")
def second_g22_seal(pki: Pki) -> SigningKey:
    """Another seal for G22, genuinely issued by the issuing CA (not registered anywhere)."""
    return Authority.of(pki.dev).signer(p.seal_profile(G22, VPCP))


# --- 8. sender binding --------------------------------------------------------------------------


def test_leader_signing_without_the_seal_is_seal_missing(pki: Pki) -> None:
    verdict = rejection(_verify(pki, [pki.leader(G22)]))
    assert verdict.reason is Reason.SEAL_MISSING


def test_second_seal_of_the_same_agency_is_multiple_seals(
    pki: Pki, second_g22_seal: SigningKey
) -> None:
    verdict = rejection(_verify(pki, [pki.seal(G22), second_g22_seal]))
    assert verdict.reason is Reason.MULTIPLE_SEALS
    assert verdict.detail.startswith("2 organisation certificates")


def test_seals_of_two_agencies_is_multiple_seals(pki: Pki) -> None:
    verdict = rejection(_verify(pki, [pki.seal(G22), pki.seal(H37)]))
    assert verdict.reason is Reason.MULTIPLE_SEALS


def test_seal_of_another_agency_is_sender_mismatch(pki: Pki) -> None:
    # H37's province system seals a header claiming to come from the Government Office.
    verdict = rejection(_verify(pki, [pki.seal(H37)], header=header_bytes(sender=G22)))
    assert verdict.reason is Reason.SENDER_MISMATCH
    assert H37 in verdict.detail
    assert G22 in verdict.detail


def test_seal_of_a_subordinate_department_is_sender_mismatch(pki: Pki) -> None:
    # 000.00.01.H37 (a department) is not 000.00.00.H37 (its People's Committee).
    header = header_bytes(sender=H37, recipients=[G22])
    verdict = rejection(_verify(pki, [pki.seal(H37_FINANCE)], header=header))
    assert verdict.reason is Reason.SENDER_MISMATCH


def test_seal_without_organization_identifier_is_sender_mismatch(pki: Pki) -> None:
    profile = p.seal_profile(G22, VPCP)
    subject = x509.Name([a for a in profile.subject if a.oid != p.ORG_ID])
    seal = Authority.of(pki.dev).signer(replace(profile, subject=subject))
    verdict = rejection(_verify(pki, [seal]))
    assert verdict.reason is Reason.SENDER_MISMATCH
    assert "None" in verdict.detail


def test_personal_certificate_of_another_agency_is_signer_agency_mismatch(pki: Pki) -> None:
    # G22's seal, and the signature of H37's chairwoman as if she led the Government Office.
    verdict = rejection(_verify(pki, [pki.seal(G22), pki.leader(H37)]))
    assert verdict.reason is Reason.SIGNER_AGENCY_MISMATCH
    assert "Lê Thị Hoa" in verdict.detail


def test_unregistered_sender_is_sender_unknown(pki: Pki) -> None:
    verdict = rejection(_verify(pki, [pki.seal(G22)], registry=_registry(pki, G22=None)))
    assert verdict.reason is Reason.SENDER_UNKNOWN
    assert G22 in verdict.detail


def test_disabled_sender_is_sender_disabled(pki: Pki) -> None:
    disabled = _record(G22, pki.seal(G22).certificate, active=False)
    verdict = rejection(_verify(pki, [pki.seal(G22)], registry=_registry(pki, G22=disabled)))
    assert verdict.reason is Reason.SENDER_DISABLED


def test_genuine_but_unpinned_seal_is_certificate_not_registered(
    pki: Pki, second_g22_seal: SigningKey
) -> None:
    # A real seal certificate for G22 from the real CA (an insider's request), never registered.
    verdict = rejection(_verify(pki, [second_g22_seal]))
    assert verdict.reason is Reason.CERTIFICATE_NOT_REGISTERED
    assert forge.fingerprint(second_g22_seal.certificate)[:16] in verdict.detail


def test_sender_registered_without_any_seal_is_certificate_not_registered(pki: Pki) -> None:
    verdict = rejection(_verify(pki, [pki.seal(G22)], registry=_registry(pki, G22=_record(G22))))
    assert verdict.reason is Reason.CERTIFICATE_NOT_REGISTERED


def test_pinning_a_second_seal_accepts_it(pki: Pki, second_g22_seal: SigningKey) -> None:
    # The control: the same seal, once registered, is accepted.
    both = _record(G22, pki.seal(G22).certificate, second_g22_seal.certificate)
    verdict = _verify(pki, [second_g22_seal], registry=_registry(pki, G22=both))
    assert isinstance(verdict, Accepted), verdict


# --- 12. recipients -----------------------------------------------------------------------------


def test_unregistered_recipient_is_recipient_unknown(pki: Pki) -> None:
    header = header_bytes(recipients=[H37, "000.00.00.H99"])
    verdict = rejection(_verify(pki, [pki.seal(G22)], header=header))
    assert verdict.reason is Reason.RECIPIENT_UNKNOWN
    assert "000.00.00.H99" in verdict.detail


def test_disabled_recipient_is_recipient_disabled(pki: Pki) -> None:
    disabled = _record(H37, pki.seal(H37).certificate, active=False)
    header = header_bytes(recipients=[H37_FINANCE, H37])
    verdict = rejection(
        _verify(pki, [pki.seal(G22)], header=header, registry=_registry(pki, H37=disabled))
    )
    assert verdict.reason is Reason.RECIPIENT_DISABLED
    assert H37 in verdict.detail


# --- 13. attachments ----------------------------------------------------------------------------

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8


def _with_attachment(pki: Pki, supplied: dict[str, bytes] | None, **limits: int) -> Verdict:
    header = header_bytes(attachments=[attachment("quyet-dinh.pdf", PDF)])
    policy = VerificationPolicy(limits=Limits(**limits)) if limits else None
    source = InlineAttachments(supplied) if supplied is not None else None
    return pki.verifier(policy=policy).verify(header, pki.sign(header), source)


def test_attachment_swapped_for_another_of_the_same_size_is_attachment_digest_mismatch(
    pki: Pki,
) -> None:
    swapped = PDF[:-4] + b"EVIL"
    verdict = rejection(_with_attachment(pki, {"quyet-dinh.pdf": swapped}))
    assert verdict.reason is Reason.ATTACHMENT_DIGEST_MISMATCH
    assert "quyet-dinh.pdf" in verdict.detail


def test_truncated_attachment_is_attachment_size_mismatch(pki: Pki) -> None:
    verdict = rejection(_with_attachment(pki, {"quyet-dinh.pdf": PDF[:-1]}))
    assert verdict.reason is Reason.ATTACHMENT_SIZE_MISMATCH
    assert f"the manifest says {len(PDF)}" in verdict.detail


def test_attachment_with_bytes_appended_is_attachment_size_mismatch(pki: Pki) -> None:
    verdict = rejection(_with_attachment(pki, {"quyet-dinh.pdf": PDF + b"<script>"}))
    assert verdict.reason is Reason.ATTACHMENT_SIZE_MISMATCH


def test_attachment_not_supplied_is_attachment_missing(pki: Pki) -> None:
    verdict = rejection(_with_attachment(pki, {"other.pdf": PDF}))
    assert verdict.reason is Reason.ATTACHMENT_MISSING


def test_attachments_without_a_source_is_attachment_missing(pki: Pki) -> None:
    assert rejection(_with_attachment(pki, None)).reason is Reason.ATTACHMENT_MISSING


def test_attachment_larger_than_the_limit_is_attachment_too_large(pki: Pki) -> None:
    verdict = rejection(_with_attachment(pki, {"quyet-dinh.pdf": PDF}, max_attachment_bytes=KIB))
    assert verdict.reason is Reason.ATTACHMENT_TOO_LARGE
    assert "limit 1024" in verdict.detail


def test_declared_300_mib_attachment_is_attachment_too_large_before_it_is_fetched(
    pki: Pki,
) -> None:
    # The manifest announces a huge upload; nothing is measured before the size is refused.
    entry = {**attachment("video.mp4", b""), "size": 300 * MIB}
    header = header_bytes(attachments=[entry])
    verdict = rejection(pki.verifier().verify(header, pki.sign(header), InlineAttachments({})))
    assert verdict.reason is Reason.ATTACHMENT_TOO_LARGE


def test_matching_attachment_is_accepted(pki: Pki) -> None:
    verdict = _with_attachment(pki, {"quyet-dinh.pdf": PDF})
    assert isinstance(verdict, Accepted), verdict
