"""The verifier accepts what the development PKI signs, and says who signed."""

from __future__ import annotations

from exchange.certificates import CertKind
from exchange.envelope import envelope_digest
from exchange.reasons import Reason
from exchange.verification import Accepted, Rejection
from schemas.header import Header
from tests.helpers import G22, H37, H37_FINANCE, InlineAttachments, Pki, attachment, header_bytes


def test_seal_alone_is_accepted(pki: Pki) -> None:
    header = header_bytes()
    verdict = pki.verifier().verify(header, pki.sign(header))
    assert isinstance(verdict, Accepted), verdict
    assert verdict.sender == G22
    assert verdict.seal.role is CertKind.ORGANISATION
    assert verdict.seal.agency_code == G22
    assert verdict.personal == ()


def test_seal_and_leader_are_both_reported(pki: Pki) -> None:
    header = header_bytes(recipients=[H37, H37_FINANCE])
    verdict = pki.verifier().verify(header, pki.sign(header, personal=True))
    assert isinstance(verdict, Accepted), verdict
    assert [s.name for s in verdict.personal] == ["Trần Văn Minh"]
    assert verdict.personal[0].title == "Bộ trưởng, Chủ nhiệm"
    assert verdict.personal[0].role is CertKind.PERSONAL


def test_vietnamese_text_round_trips_exactly(pki: Pki) -> None:
    subject = "Về việc tổ chức Hội nghị tổng kết công tác năm 2026 — khẩn, hỏa tốc"
    header = header_bytes(subject=subject)
    verdict = pki.verifier().verify(header, pki.sign(header))
    assert isinstance(verdict, Accepted)
    assert verdict.header.document is not None
    assert verdict.header.document.subject == subject
    assert subject.encode("utf-8") in header  # written as UTF-8, not as \u escapes
    again = Header.model_validate_json(verdict.header.to_json_bytes())
    assert again == verdict.header


def test_one_flipped_byte_in_the_header_is_a_digest_mismatch(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    tampered = header.replace(b"2491", b"2492")
    verdict = pki.verifier().verify(tampered, signature)
    assert verdict == Rejection(Reason.DIGEST_MISMATCH, verdict.detail)  # type: ignore[union-attr]


def test_attachments_are_checked_against_the_manifest(pki: Pki) -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 16
    header = header_bytes(attachments=[attachment("quyet-dinh.pdf", pdf)])
    signature = pki.sign(header)
    verifier = pki.verifier()
    ok = verifier.verify(header, signature, InlineAttachments({"quyet-dinh.pdf": pdf}))
    assert isinstance(ok, Accepted)
    wrong = verifier.verify(header, signature, InlineAttachments({"quyet-dinh.pdf": pdf[::-1]}))
    assert isinstance(wrong, Rejection)
    assert wrong.reason is Reason.ATTACHMENT_DIGEST_MISMATCH


def test_a_digest_the_caller_computed_is_the_verdicts(pki: Pki) -> None:
    # The router hashes each envelope once, to find copies, and hands the verifier that digest.
    header = header_bytes()
    signature = pki.sign(header)
    verifier = pki.verifier()
    hashed = verifier.verify(header, signature)
    assert isinstance(hashed, Accepted)
    assert hashed.envelope_digest == envelope_digest(header, signature)
    given = verifier.verify(header, signature, digest=hashed.envelope_digest)
    assert isinstance(given, Accepted)
    assert (given.envelope_digest, given.header) == (hashed.envelope_digest, hashed.header)
    # Taken as given, not hashed again: it is what the replay check and the verdict carry.
    marked = verifier.verify(header, signature, digest="f" * 64)
    assert isinstance(marked, Accepted)
    assert marked.envelope_digest == "f" * 64
