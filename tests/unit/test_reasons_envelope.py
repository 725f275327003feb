"""Attacks refused before any signature math: byte budgets, malformed bytes, counts, the header
schema (reason groups 0-3). Every envelope is signed for real by the development PKI, so the
rejection can only come from what the attack changed.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from adapters.files import load_certificates
from exchange.policy import KIB, MIB, Limits, VerificationPolicy
from exchange.reasons import Reason
from exchange.signing import sign_detached
from tests import forge
from tests.forge import rejection
from tests.helpers import G22, H37, H37_FINANCE, Pki, attachment, encode, header_bytes, header_dict


@pytest.fixture(scope="module")
def pki(pki: Pki) -> Pki:
    """The session PKI, its signing keys loaded once (see ``forge.KeyCachingPki``)."""
    return forge.KeyCachingPki(pki.dev)


def _signed(pki: Pki, header: bytes, policy: VerificationPolicy | None = None) -> Reason:
    """The reason a correctly sealed ``header`` is rejected for."""
    return rejection(pki.verifier(policy=policy).verify(header, pki.sign(header))).reason


def _all_certificates(pki: Pki) -> list[x509.Certificate]:
    dev = pki.dev
    paths = [dev.ca_cert("root-ca"), dev.ca_cert("issuing-ca"), dev.tsa[0], dev.bus[0]]
    for code in (G22, H37, H37_FINANCE):
        paths += [dev.seal(code)[0], dev.leader(code)[0]]
    return [cert for path in paths for cert in load_certificates(path)]


# --- 0. byte budgets ---------------------------------------------------------------------------


def test_header_padded_past_64_kib_is_header_too_large(pki: Pki) -> None:
    header = header_bytes()
    padded = header[:-1] + b" " * (64 * KIB) + b"}"  # still valid JSON, and really signed
    verdict = rejection(pki.verifier().verify(padded, pki.sign(padded)))
    assert verdict.reason is Reason.HEADER_TOO_LARGE
    assert f"limit {64 * KIB}" in verdict.detail


def test_oversized_header_is_refused_before_the_signature_is_looked_at(pki: Pki) -> None:
    padded = b'{"version":1' + b" " * (64 * KIB) + b"}"
    verdict = rejection(pki.verifier().verify(padded, b"\x30\x80 not even DER"))
    assert verdict.reason is Reason.HEADER_TOO_LARGE


def test_header_over_a_configured_byte_limit_is_header_too_large(pki: Pki) -> None:
    policy = VerificationPolicy(limits=Limits(max_header_bytes=256))
    header = header_bytes()
    assert len(header) > 256
    assert _signed(pki, header, policy) is Reason.HEADER_TOO_LARGE


def test_signature_over_a_configured_byte_limit_is_signature_too_large(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    policy = VerificationPolicy(limits=Limits(max_signature_bytes=1024))
    verdict = rejection(pki.verifier(policy=policy).verify(header, signature))
    assert verdict.reason is Reason.SIGNATURE_TOO_LARGE
    assert f"signature is {len(signature)} bytes (limit 1024)" == verdict.detail


def test_signature_stuffed_with_garbage_past_128_kib_is_signature_too_large(pki: Pki) -> None:
    header = header_bytes()
    stuffed = pki.sign(header) + b"\x00" * (128 * KIB)
    verdict = rejection(pki.verifier().verify(header, stuffed))
    assert verdict.reason is Reason.SIGNATURE_TOO_LARGE


# --- 1. malformed signature ---------------------------------------------------------------------


def _garbage(size: int) -> bytes:
    out = b""
    block = b"lienthong"
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block
    return out[:size]


def test_garbage_after_a_sequence_tag_is_malformed_signature(pki: Pki) -> None:
    header = header_bytes()
    for length_octets in (b"", b"\x82\x01\x00", b"\x84\xff\xff\xff\xff", b"\x7f"):
        forged = b"\x30" + length_octets + _garbage(256)
        verdict = rejection(pki.verifier().verify(header, forged))
        assert verdict.reason is Reason.MALFORMED_SIGNATURE, length_octets


def test_signature_cut_in_half_is_malformed_signature(pki: Pki) -> None:
    header = header_bytes()
    signature = pki.sign(header)
    verdict = rejection(pki.verifier().verify(header, signature[: len(signature) // 2]))
    assert verdict.reason is Reason.MALFORMED_SIGNATURE


def test_signature_with_trailing_bytes_is_malformed_signature(pki: Pki) -> None:
    header = header_bytes()
    verdict = rejection(pki.verifier().verify(header, pki.sign(header) + b"\x00\x00"))
    assert verdict.reason is Reason.MALFORMED_SIGNATURE
    assert "trailing" in verdict.detail


def test_ber_indefinite_length_is_malformed_signature(pki: Pki) -> None:
    header = header_bytes()
    ber = forge.indefinite_length(pki.sign(header))
    verdict = rejection(pki.verifier().verify(header, ber))
    assert verdict.reason is Reason.MALFORMED_SIGNATURE
    assert "indefinite length" in verdict.detail


@pytest.mark.openssl
def test_ber_streamed_by_openssl_is_malformed_signature(pki: Pki, tmp_path: Path) -> None:
    header = header_bytes()
    cert, key = pki.dev.seal(G22)
    streamed = forge.openssl_sign(tmp_path, header, cert, key, "-stream", certfile=pki.dev.chain)
    verdict = rejection(pki.verifier().verify(header, streamed))
    assert verdict.reason is Reason.MALFORMED_SIGNATURE
    assert "indefinite length" in verdict.detail


@pytest.mark.openssl
def test_attached_content_is_malformed_signature(pki: Pki, tmp_path: Path) -> None:
    header = header_bytes()
    cert, key = pki.dev.seal(G22)
    attached = forge.openssl_sign(tmp_path, header, cert, key, "-nodetach", certfile=pki.dev.chain)
    assert header in attached  # the header travels inside the signature
    verdict = rejection(pki.verifier().verify(header, attached))
    assert verdict.reason is Reason.MALFORMED_SIGNATURE
    assert "not detached" in verdict.detail


def test_pem_armoured_signature_is_malformed_signature(pki: Pki) -> None:
    header = header_bytes()
    pem = b"-----BEGIN CMS-----\n" + base64.encodebytes(pki.sign(header)) + b"-----END CMS-----\n"
    assert rejection(pki.verifier().verify(header, pem)).reason is Reason.MALFORMED_SIGNATURE


def test_empty_signature_is_malformed_signature(pki: Pki) -> None:
    assert rejection(pki.verifier().verify(header_bytes(), b"")).reason is (
        Reason.MALFORMED_SIGNATURE
    )


# --- 1. malformed header ------------------------------------------------------------------------


def test_duplicate_sender_key_is_malformed_header(pki: Pki) -> None:
    # One parser keeps the first "sender", another the last: a parser differential.
    header = b'{"sender":"' + H37.encode() + b'",' + header_bytes()[1:]
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.MALFORMED_HEADER
    assert "'sender'" in verdict.detail


def test_duplicate_key_written_with_an_escape_is_malformed_header(pki: Pki) -> None:
    header = b'{"send\\u0065r":"' + H37.encode() + b'",' + header_bytes()[1:]
    assert _signed(pki, header) is Reason.MALFORMED_HEADER


def test_duplicate_nested_key_is_malformed_header(pki: Pki) -> None:
    header = header_bytes().replace(b'"document":{', '"document":{"subject":"Khác",'.encode(), 1)
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.MALFORMED_HEADER
    assert "subject" in verdict.detail


def test_overlong_utf8_in_the_header_is_malformed_header(pki: Pki) -> None:
    header = header_bytes().replace("Về việc".encode(), b"\xc0\xaf\xc0\xae", 1)
    assert _signed(pki, header) is Reason.MALFORMED_HEADER


def test_latin1_bytes_in_the_header_are_malformed_header(pki: Pki) -> None:
    header = header_bytes().replace("Về việc".encode(), b"B\xe1o c\xe1o", 1)  # "Báo cáo"
    assert _signed(pki, header) is Reason.MALFORMED_HEADER


def test_utf16_encoded_header_is_malformed_header(pki: Pki) -> None:
    assert _signed(pki, header_bytes().decode("utf-8").encode("utf-16")) is Reason.MALFORMED_HEADER


def test_lone_surrogate_escape_is_malformed_header(pki: Pki) -> None:
    header = header_bytes().replace("Về việc".encode(), b"\\udc00", 1)
    assert _signed(pki, header) is Reason.MALFORMED_HEADER


def test_byte_order_mark_before_the_header_is_malformed_header(pki: Pki) -> None:
    assert _signed(pki, b"\xef\xbb\xbf" + header_bytes()) is Reason.MALFORMED_HEADER


def test_header_wrapped_in_an_array_is_malformed_header(pki: Pki) -> None:
    assert _signed(pki, b"[" + header_bytes() + b"]") is Reason.MALFORMED_HEADER


def test_header_with_nan_is_malformed_header(pki: Pki) -> None:
    header = header_bytes().replace(b'"version":1', b'"version":NaN', 1)
    assert _signed(pki, header) is Reason.MALFORMED_HEADER


# --- 2. counts ---------------------------------------------------------------------------------


def test_nine_embedded_certificates_is_too_many_certificates(pki: Pki) -> None:
    header = header_bytes()
    extra = _all_certificates(pki)
    signature = sign_detached(header, [pki.seal()], chain=extra)
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.TOO_MANY_CERTIFICATES
    assert verdict.detail == f"{len(extra)} embedded certificates (limit 8)"


def test_five_signers_is_too_many_signers(pki: Pki) -> None:
    header = header_bytes()
    signers = [
        pki.seal(G22),
        pki.leader(G22),
        pki.seal(H37),
        pki.leader(H37),
        pki.seal(H37_FINANCE),
    ]
    signature = sign_detached(header, signers, chain=pki.chain())
    verdict = rejection(pki.verifier().verify(header, signature))
    assert verdict.reason is Reason.TOO_MANY_SIGNERS
    assert verdict.detail == "5 signers (limit 4)"


def test_257_recipients_is_too_many_recipients(pki: Pki) -> None:
    recipients = [f"000.{i // 100:02d}.{i % 100:02d}.H37" for i in range(257)]
    header = header_bytes(recipients=recipients)
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.TOO_MANY_RECIPIENTS
    assert verdict.detail == "257 recipients (limit 256)"


def test_recipients_beyond_a_configured_limit_is_too_many_recipients(pki: Pki) -> None:
    policy = VerificationPolicy(limits=Limits(max_recipients=1))
    header = header_bytes(recipients=[H37, H37_FINANCE])
    assert _signed(pki, header, policy) is Reason.TOO_MANY_RECIPIENTS


def test_33_attachments_is_too_many_attachments(pki: Pki) -> None:
    files = [attachment(f"phu-luc-{i}.pdf", b"%PDF-1.7 " + bytes([i])) for i in range(33)]
    header = header_bytes(attachments=files)
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.TOO_MANY_ATTACHMENTS
    assert verdict.detail == "33 attachments (limit 32)"


def test_too_many_recipients_is_named_even_when_the_header_is_invalid(pki: Pki) -> None:
    # Counts come before the schema: a huge list is refused for its size, not for its content.
    recipients = [f"000.00.{i:02d}.h37" for i in range(300)]
    assert _signed(pki, header_bytes(recipients=recipients)) is Reason.TOO_MANY_RECIPIENTS


# --- 3. header schema ---------------------------------------------------------------------------


def _with(changes: dict[str, Any], **kwargs: Any) -> bytes:
    header = header_dict(**kwargs)
    header.update(changes)
    return encode(header)


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ((), "bcc"),  # hidden recipients
        (("document",), "classification"),
        (("document", "signer"), "delegated_by"),
    ],
)
def test_smuggled_field_is_header_unknown_field(
    pki: Pki, where: tuple[str, ...], field: str
) -> None:
    header = header_dict()
    target = header
    for key in where:
        target = target[key]
    target[field] = ["000.00.00.A01"]
    data = encode(header)
    verdict = rejection(pki.verifier().verify(data, pki.sign(data)))
    assert verdict.reason is Reason.HEADER_UNKNOWN_FIELD
    assert ".".join((*where, field)) in verdict.detail


def test_unknown_field_in_an_attachment_entry_is_header_unknown_field(pki: Pki) -> None:
    entry = {**attachment("a.pdf", b"%PDF"), "url": "https://evil.example/a.pdf"}
    header = header_bytes(attachments=[entry])
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.HEADER_UNKNOWN_FIELD
    assert "attachments.0.url" in verdict.detail


@pytest.mark.parametrize(
    "code",
    [
        "000.00.00.g22",  # lowercase
        " 000.00.00.G22",  # leading space
        "000.00.00.G22 ",  # trailing space
        "000.00. 00.G22",  # space inside
        "000.00.00.G２２",  # fullwidth digits
        "٠٠٠.00.00.G22",  # Arabic-Indic digits
        "000.00.00.G22\n",  # trailing newline
        "00000000.00000000.00000000.00000.G22",  # 36 characters
        "000..00.G22",  # empty group
        "000.00.00.22",  # level 1 does not start with a letter
    ],
)
def test_non_canonical_sender_code_is_invalid_agency_code(pki: Pki, code: str) -> None:
    header = header_bytes(sender=code)
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.INVALID_AGENCY_CODE
    assert verdict.detail.startswith("sender:")


def test_non_canonical_recipient_code_is_invalid_agency_code(pki: Pki) -> None:
    header = header_bytes(recipients=[H37, "000.00.01.h37"])
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.INVALID_AGENCY_CODE
    assert verdict.detail.startswith("recipients.1:")


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"kind": "status"}, "(header)"),  # a status without its status body
        ({"created_at": "2026-11-27T19:00:00+07:00"}, "created_at"),
        ({"created_at": "2026-11-27T12:00:00"}, "created_at"),  # no offset at all
        ({"version": 2}, "version"),
        ({"version": "1"}, "version"),
        ({"message_id": "6F9619FF-8B86-D011-B42D-00C04FC964FF"}, "message_id"),
        ({"recipients": [H37, H37]}, "(header)"),
        ({"recipients": []}, "recipients"),
        ({"recipients": H37}, "recipients"),
        ({"document": None}, "(header)"),
    ],
)
def test_header_breaking_the_v1_schema_is_header_invalid(
    pki: Pki, changes: dict[str, Any], where: str
) -> None:
    data = _with(changes)
    verdict = rejection(pki.verifier().verify(data, pki.sign(data)))
    assert verdict.reason is Reason.HEADER_INVALID
    assert verdict.detail.startswith(f"{where}:")


def test_attachment_named_as_a_path_is_header_invalid(pki: Pki) -> None:
    entry = attachment("../../etc/passwd", b"root:x:0:0")
    header = header_bytes(attachments=[entry])
    verdict = rejection(pki.verifier().verify(header, pki.sign(header)))
    assert verdict.reason is Reason.HEADER_INVALID
    assert verdict.detail.startswith("attachments.0.name:")


def test_negative_attachment_size_is_header_invalid(pki: Pki) -> None:
    entry = {**attachment("a.pdf", b"%PDF"), "size": -1}
    assert _signed(pki, header_bytes(attachments=[entry])) is Reason.HEADER_INVALID


def test_attachment_size_beyond_limit_is_not_a_schema_error(pki: Pki) -> None:
    # The size limit is policy (step 13), not schema: the header itself is well-formed.
    entry = {**attachment("a.pdf", b"%PDF"), "size": 300 * MIB}
    assert _signed(pki, header_bytes(attachments=[entry])) is Reason.ATTACHMENT_TOO_LARGE
