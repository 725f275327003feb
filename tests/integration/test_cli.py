"""The ``lienthong`` command, run as a user runs it: the installed console script, in a subprocess.

Exit codes: 0 accepted/done, 1 rejected (a reason code on stdout), 2 unusable input or usage (a
plain message on stderr, never a traceback).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.pki.folder import DEMO_AGENCIES
from schemas.header import Header
from tests.helpers import G22, H37, H37_FINANCE

LIENTHONG = Path(sys.executable).with_name("lienthong")
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "200"}

ORG = "Văn phòng Chính phủ"
LEADER = "Trần Văn Minh"
TITLE = "Bộ trưởng, Chủ nhiệm"
SUBJECT = "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027 — hỏa tốc"
FAR_FUTURE = "2099-01-01T00:00:00Z"


@dataclass(frozen=True)
class Run:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.out)


def lienthong(*args: str | Path) -> Run:
    done = subprocess.run(
        [str(LIENTHONG), *map(str, args)], capture_output=True, env=ENV, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr.decode("utf-8"))


def ok(run: Run) -> Run:
    assert run.code == 0, run.err
    return run


def unusable(run: Run, *fragments: str) -> None:
    """Exit 2 with a plain one-line message on stderr, nothing on stdout."""
    assert run.code == 2, (run.code, run.text, run.err)
    assert "Traceback" not in run.err
    assert run.out == b""
    for fragment in fragments:
        assert fragment in run.err, (fragment, run.err)


def rejected(run: Run, reason: str) -> None:
    assert run.code == 1, (run.code, run.text, run.err)
    assert run.text.startswith(f"REJECTED  {reason}: "), run.text
    assert "Traceback" not in run.err


def fingerprint(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


# --- material, made once per module through the command itself ----------------------------


@dataclass(frozen=True)
class CliPki:
    root: Path
    init: Run

    @property
    def anchors(self) -> Path:
        return self.root / "trust-anchors.pem"

    @property
    def chain(self) -> Path:
        return self.root / "chain.pem"

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    def crl_args(self) -> list[str | Path]:
        return [
            "--crl",
            self.root / "crl" / "root-ca.crl.pem",
            "--crl",
            self.root / "crl" / "issuing-ca.crl.pem",
        ]

    def seal(self, code: str = G22) -> tuple[Path, Path]:
        folder = self.root / "agencies" / code
        return folder / "seal.pem", folder / "seal.key"

    def leader(self, code: str = G22) -> tuple[Path, Path]:
        folder = self.root / "agencies" / code
        return folder / "leader.pem", folder / "leader.key"

    def sign(self, header: Path, out: Path, *, code: str = G22, personal: bool = True) -> Path:
        cert, key = self.seal(code)
        args: list[str | Path] = ["sign", "--header", header, "--cert", cert, "--key", key]
        if personal:
            leader_cert, leader_key = self.leader(code)
            args += ["--signer-cert", leader_cert, "--signer-key", leader_key]
        ok(lienthong(*args, "--chain", self.chain, "--out", out))
        return out

    def verify(self, header: Path, signature: Path, *extra: str | Path) -> Run:
        return lienthong(
            "verify", "--header", header, "--signature", signature, "--trust-anchors",
            self.anchors, *self.crl_args(), *extra,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cli_pki(tmp_path_factory: pytest.TempPathFactory) -> CliPki:
    root = tmp_path_factory.mktemp("cli") / "pki"
    return CliPki(root, ok(lienthong("pki", "init", root)))


@dataclass(frozen=True)
class Signed:
    """A header from ``header new`` with an attachment, signed by seal + leader."""

    header: Path
    signature: Path
    attachments: Path  # folder holding the attachment
    attachment: bytes


@pytest.fixture(scope="module")
def signed(cli_pki: CliPki, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    folder = tmp_path_factory.mktemp("signed")
    attachments = folder / "files"
    attachments.mkdir()
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 8
    (attachments / "cong-van-2491.pdf").write_bytes(pdf)
    header = folder / "header.json"
    ok(
        lienthong(
            "header", "new", "--sender", G22, "--recipient", H37, "--recipient", H37_FINANCE,
            "--subject", SUBJECT, "--number", "2491", "--notation", "VPCP-KTTH",
            "--signer-name", LEADER, "--signer-position", TITLE, "--competence", "KT.",
            "--attachment", attachments / "cong-van-2491.pdf", "--out", header,
        )
    )  # fmt: skip
    signature = cli_pki.sign(header, folder / "header.json.p7s")
    return Signed(header, signature, attachments, pdf)


# --- pki -----------------------------------------------------------------------------------


def test_pki_init_writes_the_layout(cli_pki: CliPki) -> None:
    root = cli_pki.root
    expected = [
        "pki.json", "trust-anchors.pem", "chain.pem", "registry.json",
        "ca/root-ca.pem", "ca/root-ca.key", "ca/issuing-ca.pem", "ca/issuing-ca.key",
        "crl/root-ca.crl.pem", "crl/issuing-ca.crl.pem",
        "tsa/tsa.pem", "tsa/tsa.key", "bus/bus.pem", "bus/bus.key",
        "admin/admin.pem", "admin/admin.key",
    ]  # fmt: skip
    for agency in DEMO_AGENCIES:
        for name in ("seal.pem", "seal.key", "leader.pem", "leader.key"):
            expected.append(f"agencies/{agency.code}/{name}")
    missing = [name for name in expected if not (root / name).is_file()]
    assert missing == []
    keys = sorted(root.rglob("*.key"))
    assert len(keys) == 5 + 2 * len(DEMO_AGENCIES)
    modes = {str(k.relative_to(root)): stat.S_IMODE(k.stat().st_mode) for k in keys}
    assert set(modes.values()) == {0o600}, modes
    state = json.loads((root / "pki.json").read_text("utf-8"))
    assert state["algorithm"] == "rsa2048"
    registry = json.loads(cli_pki.registry.read_text("utf-8"))
    assert {entry["code"]: entry["seal_fingerprints"] for entry in registry} == {
        a.code: [fingerprint(cli_pki.seal(a.code)[0])] for a in DEMO_AGENCIES
    }
    init = cli_pki.init.text
    assert f"{G22}  {ORG}  (leader: {LEADER}, {TITLE})" in init
    assert str(cli_pki.anchors) in init
    anchor = x509.load_pem_x509_certificate(cli_pki.anchors.read_bytes())
    issuing = x509.load_pem_x509_certificate(cli_pki.chain.read_bytes())
    assert issuing.issuer == anchor.subject
    seal = x509.load_pem_x509_certificate(cli_pki.seal()[0].read_bytes())
    assert seal.issuer == issuing.subject
    assert isinstance(seal.public_key(), rsa.RSAPublicKey)


def test_a_second_init_without_force_fails_and_changes_nothing(cli_pki: CliPki) -> None:
    before = {p: p.read_bytes() for p in cli_pki.root.rglob("*") if p.is_file()}
    unusable(lienthong("pki", "init", cli_pki.root), "already holds a PKI", "--force")
    after = {p: p.read_bytes() for p in cli_pki.root.rglob("*") if p.is_file()}
    assert after == before


def test_init_with_force_replaces_the_pki(tmp_path: Path) -> None:
    ok(lienthong("pki", "init", "--algorithm", "ed25519", tmp_path))
    old_anchor = (tmp_path / "trust-anchors.pem").read_bytes()
    ok(lienthong("pki", "init", "--force", "--algorithm", "ec-p256", tmp_path))
    assert (tmp_path / "trust-anchors.pem").read_bytes() != old_anchor
    assert json.loads((tmp_path / "pki.json").read_text("utf-8"))["algorithm"] == "ec-p256"
    key = x509.load_pem_x509_certificate((tmp_path / "trust-anchors.pem").read_bytes())
    assert isinstance(key.public_key(), ec.EllipticCurvePublicKey)


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> CliPki:
    root = tmp_path_factory.mktemp("cli-ec") / "pki"
    return CliPki(root, ok(lienthong("pki", "init", "--algorithm", "ec-p256", root)))


@pytest.fixture(scope="module")
def ed_pki(tmp_path_factory: pytest.TempPathFactory) -> CliPki:
    root = tmp_path_factory.mktemp("cli-ed25519") / "pki"
    return CliPki(root, ok(lienthong("pki", "init", "--algorithm", "ed25519", root)))


def test_init_with_other_algorithms(ec_pki: CliPki, ed_pki: CliPki) -> None:
    # An Ed25519 PKI keeps ECDSA P-256 CAs: cryptography's path validator accepts Ed25519 in
    # end-entity certificates only (pyca/cryptography#13391).
    for pki, name, ca_type, leaf_type in (
        (ec_pki, "ec-p256", ec.EllipticCurvePublicKey, ec.EllipticCurvePublicKey),
        (ed_pki, "ed25519", ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey),
    ):
        assert f"development PKI ({name})" in pki.init.text
        keys = list(pki.root.rglob("*.key"))
        assert len(keys) == 5 + 2 * len(DEMO_AGENCIES)
        assert {stat.S_IMODE(k.stat().st_mode) for k in keys} == {0o600}
        for path, key_type in (
            (pki.anchors, ca_type),
            (pki.chain, ca_type),
            (pki.seal()[0], leaf_type),
            (pki.leader()[0], leaf_type),
        ):
            assert isinstance(
                x509.load_pem_x509_certificate(path.read_bytes()).public_key(), key_type
            )


def _sign_and_verify(pki: CliPki, folder: Path) -> Run:
    header = folder / "h.json"
    ok(lienthong("header", "new", "--sender", G22, "--recipient", H37, "--subject", SUBJECT,
                 "--out", header))  # fmt: skip
    signature = pki.sign(header, folder / "h.der")
    return pki.verify(header, signature, "--registry", pki.registry)


def test_ec_p256_signatures_verify(ec_pki: CliPki, tmp_path: Path) -> None:
    run = ok(_sign_and_verify(ec_pki, tmp_path))
    assert run.text.startswith("ACCEPTED")
    assert fingerprint(ec_pki.seal()[0]) in run.text


def test_ed25519_signatures_verify(ed_pki: CliPki, tmp_path: Path) -> None:
    run = ok(_sign_and_verify(ed_pki, tmp_path))
    assert run.text.startswith("ACCEPTED")


H53 = "000.00.11.H53"


def test_pki_issue_adds_an_agency(cli_pki: CliPki, tmp_path: Path) -> None:
    run = ok(
        lienthong("pki", "issue", cli_pki.root, "--code", H53, "--name", "Sở Nội vụ tỉnh H53",
                  "--leader", "Nguyễn Thị Lan", "--title", "Giám đốc", "--province", "Tỉnh H53")
    )  # fmt: skip
    assert H53 in run.text
    seal, seal_key = cli_pki.seal(H53)
    leader, leader_key = cli_pki.leader(H53)
    for path in (seal, seal_key, leader, leader_key):
        assert path.is_file()
    assert stat.S_IMODE(seal_key.stat().st_mode) == stat.S_IMODE(leader_key.stat().st_mode) == 0o600
    registry = {e["code"]: e for e in json.loads(cli_pki.registry.read_text("utf-8"))}
    assert registry[H53]["seal_fingerprints"] == [fingerprint(seal)]
    codes = [
        a["code"] for a in json.loads((cli_pki.root / "pki.json").read_text("utf-8"))["agencies"]
    ]
    assert H53 in codes

    header = tmp_path / "h.json"
    ok(lienthong("header", "new", "--sender", H53, "--recipient", G22, "--subject", "Báo cáo",
                 "--out", header))  # fmt: skip
    signature = cli_pki.sign(header, tmp_path / "h.der", code=H53)
    run = ok(cli_pki.verify(header, signature, "--registry", cli_pki.registry, "--json"))
    verdict = run.json()
    assert verdict["sender"] == H53
    assert verdict["personal_signers"][0]["name"] == "Nguyễn Thị Lan"
    assert verdict["personal_signers"][0]["title"] == "Giám đốc"

    unusable(
        lienthong("pki", "issue", cli_pki.root, "--code", H53, "--name", "x", "--leader", "y",
                  "--title", "z"),
        "already has certificates",
    )  # fmt: skip


def test_pki_issue_refuses_a_non_canonical_code(cli_pki: CliPki) -> None:
    run = lienthong("pki", "issue", cli_pki.root, "--code", "000.00.11.h53", "--name", "x",
                    "--leader", "y", "--title", "z")  # fmt: skip
    assert run.code == 2
    assert "--code" in run.err
    assert "'000.00.11.h53' is not a canonical agency code" in run.err
    assert "Traceback" not in run.err
    assert not (cli_pki.root / "agencies" / "000.00.11.h53").exists()


def test_pki_revoke_makes_verify_reject(cli_pki: CliPki, signed: Signed, tmp_path: Path) -> None:
    code = "000.00.12.H53"
    ok(lienthong("pki", "issue", cli_pki.root, "--code", code, "--name", "Sở Y tế tỉnh H53",
                 "--leader", "Đỗ Văn Hùng", "--title", "Giám đốc"))  # fmt: skip
    header = tmp_path / "h.json"
    ok(lienthong("header", "new", "--sender", code, "--recipient", G22, "--subject", "Tờ trình",
                 "--out", header))  # fmt: skip
    signature = cli_pki.sign(header, tmp_path / "h.der", code=code)
    ok(cli_pki.verify(header, signature, "--registry", cli_pki.registry))

    run = ok(lienthong("pki", "revoke", cli_pki.root, cli_pki.seal(code)[0]))
    assert "CRL number" in run.text
    rejected(cli_pki.verify(header, signature, "--registry", cli_pki.registry),
             "certificate_revoked")  # fmt: skip
    as_json = cli_pki.verify(header, signature, "--json")
    assert as_json.code == 1
    assert as_json.json()["verdict"] == "rejected"
    assert as_json.json()["reason"] == "certificate_revoked"
    # The new CRL revokes that certificate only.
    ok(cli_pki.verify(signed.header, signed.signature, "--attachments", signed.attachments))
    unusable(lienthong("pki", "revoke", cli_pki.root, cli_pki.seal(code)[0]), "already revoked")


# --- header new ----------------------------------------------------------------------------


def test_header_new_prints_a_valid_utf8_header(signed: Signed, tmp_path: Path) -> None:
    run = ok(
        lienthong("header", "new", "--sender", G22, "--recipient", H37, "--recipient",
                  H37_FINANCE, "--subject", SUBJECT, "--attachment",
                  signed.attachments / "cong-van-2491.pdf")
    )  # fmt: skip
    header = Header.model_validate_json(run.out)
    assert header.sender == G22
    assert header.recipients == [H37, H37_FINANCE]
    assert header.document is not None
    assert header.document.subject == SUBJECT
    assert SUBJECT.encode("utf-8") in run.out
    assert b"\\u" not in run.out
    (ref,) = header.attachments
    assert ref.name == "cong-van-2491.pdf"
    assert ref.media_type == "application/pdf"
    assert ref.size == len(signed.attachment)
    assert ref.sha256 == hashlib.sha256(signed.attachment).hexdigest()
    # --out writes a header of the same shape.
    written = Header.model_validate_json(signed.header.read_bytes())
    assert written.document is not None
    assert written.document.signer is not None
    assert written.document.signer.full_name == LEADER
    assert written.attachments == header.attachments


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--sender", "000.00.00.g22", "sender"),
        ("--recipient", "000.00.00 H37", "recipients"),
    ],
)
def test_header_new_names_the_invalid_field(option: str, value: str, field: str) -> None:
    args = {"--sender": G22, "--recipient": H37} | {option: value}
    run = lienthong("header", "new", "--sender", args["--sender"], "--recipient",
                    args["--recipient"], "--subject", SUBJECT)  # fmt: skip
    assert run.code != 0
    assert run.out == b""
    assert "Traceback" not in run.err
    assert run.err.startswith(f"lienthong: {field}"), run.err


# --- sign and verify -----------------------------------------------------------------------


def test_verify_summarises_who_signed(cli_pki: CliPki, signed: Signed) -> None:
    run = ok(
        cli_pki.verify(signed.header, signed.signature, "--registry", cli_pki.registry,
                       "--attachments", signed.attachments)
    )  # fmt: skip
    text = run.text
    assert text.startswith("ACCEPTED  message ")
    assert f"sender      {G22}" in text
    assert f"recipients  {H37}, {H37_FINANCE}" in text
    assert f"{ORG}  [{G22}]  sha256:{fingerprint(cli_pki.seal()[0])}" in text
    assert f"{LEADER}, {TITLE}  [{G22}]  sha256:{fingerprint(cli_pki.leader()[0])}" in text
    assert run.err == ""  # registry given: no warning


def test_verify_json(cli_pki: CliPki, signed: Signed) -> None:
    run = ok(
        cli_pki.verify(signed.header, signed.signature, "--registry", cli_pki.registry,
                       "--attachments", signed.attachments, "--json")
    )  # fmt: skip
    verdict = run.json()
    header = Header.model_validate_json(signed.header.read_bytes())
    assert verdict["verdict"] == "accepted"
    assert verdict["message_id"] == str(header.message_id)
    assert verdict["sender"] == G22
    assert verdict["recipients"] == [H37, H37_FINANCE]
    assert verdict["registry_checked"] is True
    seal = verdict["seal"]
    assert (seal["role"], seal["name"], seal["agency_code"]) == ("organisation", ORG, G22)
    assert seal["fingerprint_sha256"] == fingerprint(cli_pki.seal()[0])
    (leader,) = verdict["personal_signers"]
    assert (leader["role"], leader["name"], leader["title"]) == ("personal", LEADER, TITLE)
    assert leader["fingerprint_sha256"] == fingerprint(cli_pki.leader()[0])
    assert ORG.encode("utf-8") in run.out  # not \\u escapes


def test_verify_at_a_time_beyond_validity_is_expired(cli_pki: CliPki, signed: Signed) -> None:
    run = cli_pki.verify(signed.header, signed.signature, "--at", FAR_FUTURE)
    rejected(run, "certificate_expired")


def test_a_flipped_header_byte_is_a_digest_mismatch(
    cli_pki: CliPki, signed: Signed, tmp_path: Path
) -> None:
    content = signed.header.read_bytes()
    assert content.count(b'"number":"2491"') == 1
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(content.replace(b'"number":"2491"', b'"number":"2492"'))
    rejected(cli_pki.verify(tampered, signed.signature), "digest_mismatch")


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CMS-----\n" + b"\n".join(lines) + b"\n-----END CMS-----\n"


@pytest.mark.parametrize(
    "case",
    [
        "missing header",
        "missing signature",
        "PEM signature",
        "text signature",
        "header not JSON",
        "trust anchors not PEM",
    ],
)
def test_unusable_input_is_exit_2_with_a_plain_message(
    cli_pki: CliPki, signed: Signed, tmp_path: Path, case: str
) -> None:
    header, signature, anchors = signed.header, signed.signature, cli_pki.anchors
    if case == "missing header":
        header, expected = tmp_path / "absent.json", "does not exist"
    elif case == "missing signature":
        signature, expected = tmp_path / "absent.der", "does not exist"
    elif case == "PEM signature":
        signature = tmp_path / "s.pem"
        signature.write_bytes(_pem(signed.signature.read_bytes()))
        expected = "is PEM"
    elif case == "text signature":
        signature = tmp_path / "s.txt"
        signature.write_text("chữ ký số\n", "utf-8")
        expected = "is not a DER signature"
    elif case == "header not JSON":
        header = tmp_path / "h.txt"
        header.write_text("Công văn số 2491\n", "utf-8")
        expected = "is not a JSON header"
    else:
        anchors = tmp_path / "anchors.txt"
        anchors.write_text("not a certificate\n", "utf-8")
        expected = "holds no readable certificate"
    run = lienthong("verify", "--header", header, "--signature", signature,
                    "--trust-anchors", anchors, *cli_pki.crl_args())  # fmt: skip
    unusable(run, expected)
    assert run.err.startswith("lienthong: ")
    assert run.err.count("\n") == 1


def test_a_missing_attachment_is_rejected(cli_pki: CliPki, signed: Signed, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rejected(
        cli_pki.verify(signed.header, signed.signature, "--attachments", empty),
        "attachment_missing",
    )
    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "cong-van-2491.pdf").write_bytes(signed.attachment[::-1])
    rejected(
        cli_pki.verify(signed.header, signed.signature, "--attachments", altered),
        "attachment_digest_mismatch",
    )


def test_a_seal_not_pinned_in_the_registry_is_rejected(
    cli_pki: CliPki, signed: Signed, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.json"
    entries = [
        {"code": G22, "name": ORG, "seal_fingerprints": ["00" * 32]},
        {"code": H37, "name": "Ủy ban nhân dân tỉnh H37"},
        {"code": H37_FINANCE, "name": "Sở Tài chính tỉnh H37"},
    ]
    registry.write_text(json.dumps(entries, ensure_ascii=False), "utf-8")
    rejected(
        cli_pki.verify(signed.header, signed.signature, "--registry", registry,
                       "--attachments", signed.attachments),
        "certificate_not_registered",
    )  # fmt: skip


def test_without_registry_a_warning_goes_to_stderr(cli_pki: CliPki, signed: Signed) -> None:
    run = ok(cli_pki.verify(signed.header, signed.signature, "--attachments", signed.attachments))
    assert run.text.startswith("ACCEPTED")
    assert "warning: no --registry given" in run.err
    assert "warning" not in run.text
    as_json = ok(
        cli_pki.verify(signed.header, signed.signature, "--attachments", signed.attachments,
                       "--json")
    )  # fmt: skip
    assert as_json.json()["registry_checked"] is False
