"""Envelope v1 interoperates with OpenSSL, the independent implementation of CMS and X.509.

Both directions, as DESIGN.md's interoperability rule says: signatures made by ``openssl cms
-sign -binary -outform DER`` over header bytes verify with lienthong's ``Verifier``, and
lienthong's signatures (library and ``lienthong sign``) pass ``openssl cms -verify``. The
certificates come from a CA hierarchy made by openssl alone (``tests.opensslca``), from the
development PKI, and from ECDSA P-256 and Ed25519 development PKIs.

OpenSSL 3.0 facts these tests are written around (checked by hand, not asserted here):
- ``cms -verify -certfile`` only finds *signer* certificates; it does not offer the file's
  certificates as intermediates for chain building. A signature without its intermediate is
  verified with root + intermediate in ``-CAfile``.
- ``cms -sign`` cannot sign with Ed25519 keys when signed attributes are present ("eddsa
  digest signverify init: invalid digest"; openssl/openssl#11915, #32248). For Ed25519 the
  openssl side is therefore ``pkeyutl -rawin`` over the signed attributes (RFC 8419 PureEdDSA),
  ``dgst -sha512`` for the messageDigest and ``verify`` for the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import algos as a_algos
from asn1crypto import cms as a_cms
from asn1crypto import pem as a_pem
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.files import load_certificates, load_crls, load_private_key
from adapters.pki.folder import DevPki
from exchange.certificates import CertKind
from exchange.ports import AgencyRecord, SystemClock
from exchange.reasons import Reason
from exchange.signing import SigningKey, sign_detached
from exchange.trust import TrustStore
from exchange.verification import Accepted, Rejection, Verdict, Verifier
from tests.helpers import G22, H37, H37_FINANCE, MemoryRegistry, Pki, header_bytes
from tests.opensslca import Issued, OpensslCa, openssl, openssl_status

pytestmark = pytest.mark.openssl

LIENTHONG = Path(sys.executable).with_name("lienthong")

OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
LIENTHONG_SIGNED_ATTRIBUTES = [
    OID_CONTENT_TYPE,
    OID_SIGNING_TIME,
    OID_MESSAGE_DIGEST,
    OID_SIGNING_CERTIFICATE_V2,
]

ORG = "Văn phòng Chính phủ"
LEADER = "Trần Văn Minh"
TITLE = "Bộ trưởng, Chủ nhiệm"


# --- material ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpensslWorld:
    """An openssl-made root → intermediate, its leaves and its CRLs."""

    ca: OpensslCa
    seal: Issued  # organisation certificate of G22
    leader: Issued  # personal certificate of G22's leader
    doomed: Issued  # organisation certificate of H37, revoked in ``revoked_crls``
    crls: list[Path]  # CRL number 1 of each CA: nothing revoked
    revoked_crls: list[Path]  # CRL number 2: ``doomed`` revoked by ``openssl ca -revoke``
    bundle: Path  # root + intermediate, for ``-CAfile`` when the chain is not embedded

    @property
    def root(self) -> Path:
        return self.ca.root.issued.cert

    @property
    def intermediate(self) -> Path:
        return self.ca.intermediate.issued.cert


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> OpensslWorld:
    ca = OpensslCa.create(tmp_path_factory.mktemp("openssl-ca"))
    seal = ca.issue(
        "seal",
        f"/C=VN/O={ORG}/organizationIdentifier={G22}/CN={ORG}",
        "seal",
    )
    leader = ca.issue(
        "leader",
        f"/C=VN/O={ORG}/organizationIdentifier={G22}/title={TITLE}/CN={LEADER}",
        "personal",
    )
    doomed = ca.issue(
        "doomed",
        f"/C=VN/ST=Tỉnh H37/O=Ủy ban nhân dân tỉnh H37/organizationIdentifier={H37}"
        "/CN=Ủy ban nhân dân tỉnh H37",
        "seal",
    )
    crls = ca.crls()
    ca.intermediate.revoke(doomed.cert)
    revoked_crls = ca.crls("-revoked")
    bundle = ca.folder / "bundle.pem"
    bundle.write_bytes(ca.root.issued.cert.read_bytes() + ca.intermediate.issued.cert.read_bytes())
    return OpensslWorld(ca, seal, leader, doomed, crls, revoked_crls, bundle)


def lienthong(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(LIENTHONG), *map(str, args)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _cli_pki(tmp_path_factory.mktemp("pki-ec"), "ec-p256")


@pytest.fixture(scope="module")
def ed_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _cli_pki(tmp_path_factory.mktemp("pki-ed25519"), "ed25519")


def _cli_pki(folder: Path, algorithm: str) -> Pki:
    done = lienthong("pki", "init", "--algorithm", algorithm, folder)
    assert done.returncode == 0, done.stderr.decode()
    return Pki(DevPki(folder))


def fingerprint(cert: Path) -> str:
    return hashlib.sha256(load_certificates(cert)[0].public_bytes(Encoding.DER)).hexdigest()


def verifier(anchors: Path, crls: Sequence[Path], seal: Path, sender: str = G22) -> Verifier:
    """lienthong's verifier: these anchors and CRLs, with ``seal`` pinned for ``sender``."""
    records = {
        code: AgencyRecord(code, code, seal_fingerprints=frozenset())
        for code in (G22, H37, H37_FINANCE)
    }
    records[sender] = AgencyRecord(sender, sender, seal_fingerprints=frozenset({fingerprint(seal)}))
    trust = TrustStore(load_certificates(anchors), [c for p in crls for c in load_crls(p)])
    return Verifier(trust, MemoryRegistry(records), SystemClock())


def write_header(folder: Path, content: bytes, name: str = "header.json") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def openssl_sign(header: Path, out: Path, signers: Sequence[Issued], *options: str | Path) -> bytes:
    args: list[str | Path] = ["cms", "-sign", "-binary", "-md", "sha256", "-outform", "DER"]
    for signer in signers:
        args += signer.signer_args()
    openssl(*args, "-in", header, "-out", out, *options)
    return out.read_bytes()


def openssl_verify(
    signature: Path, header: Path, ca_file: Path, *options: str | Path
) -> subprocess.CompletedProcess[bytes]:
    return openssl_status(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", signature, "-content", header,
        "-CAfile", ca_file, "-purpose", "any", "-out", signature.with_suffix(".content"),
        *options,
    )  # fmt: skip


def assert_openssl_accepts(done: subprocess.CompletedProcess[bytes]) -> None:
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Verification successful" in done.stderr


def accepted(verdict: Verdict) -> Accepted:
    assert isinstance(verdict, Accepted), verdict
    return verdict


def rejected(verdict: Verdict, reason: Reason) -> Rejection:
    assert isinstance(verdict, Rejection), verdict
    assert verdict.reason is reason, verdict
    return verdict


def signed_attribute_oids(signature: Path) -> list[list[str]]:
    """The signed attribute types of each SignerInfo, as ``openssl cms -cmsout -print`` shows."""
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", signature).decode()
    blocks = re.split(r"^ *signedAttrs:", printed, flags=re.MULTILINE)[1:]
    return [
        re.findall(r"object: .*? \(([\d.]+)\)", block.split("signatureAlgorithm:")[0])
        for block in blocks
    ]


def flip(content: bytes) -> bytes:
    """One byte changed inside the document number: still JSON, still a valid header."""
    assert content.count(b'"number":"2491"') == 1
    return content.replace(b'"number":"2491"', b'"number":"2492"')


# --- openssl signs, lienthong verifies -----------------------------------------------------


@pytest.mark.parametrize("smimecap", [True, False], ids=["smimecap", "nosmimecap"])
@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_openssl_signature_with_openssl_certificates_is_accepted(
    world: OpensslWorld, tmp_path: Path, smimecap: bool, personal: bool
) -> None:
    header = write_header(tmp_path, header_bytes())
    signers = [world.seal, world.leader] if personal else [world.seal]
    options: list[str | Path] = ["-certfile", world.intermediate]
    if not smimecap:
        options.append("-nosmimecap")
    signature = openssl_sign(header, tmp_path / "s.der", signers, *options)
    for attributes in signed_attribute_oids(tmp_path / "s.der"):
        assert (OID_SMIME_CAPABILITIES in attributes) is smimecap

    verdict = accepted(
        verifier(world.root, world.crls, world.seal.cert).verify(header.read_bytes(), signature)
    )
    assert verdict.sender == G22
    assert verdict.registry_checked
    assert verdict.seal.role is CertKind.ORGANISATION
    assert verdict.seal.name == ORG
    assert verdict.seal.agency_code == G22
    assert verdict.seal.fingerprint == fingerprint(world.seal.cert)
    if personal:
        (leader,) = verdict.personal
        assert leader.role is CertKind.PERSONAL
        assert (leader.name, leader.title, leader.agency_code) == (LEADER, TITLE, G22)
        assert leader.fingerprint == fingerprint(world.leader.cert)
    else:
        assert verdict.personal == ()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["-cades"], id="cades-signingCertificateV2"),
        pytest.param(["-keyid"], id="subjectKeyIdentifier-sid"),
        pytest.param(["-md", "sha384"], id="sha384"),
        pytest.param(["-md", "sha512", "-nosmimecap"], id="sha512"),
        pytest.param(["-keyopt", "rsa_padding_mode:pss"], id="rsassa-pss"),
    ],
)
def test_openssl_signing_options_are_accepted(
    world: OpensslWorld, tmp_path: Path, options: list[str]
) -> None:
    header = write_header(tmp_path, header_bytes())
    signature = openssl_sign(
        header, tmp_path / "s.der", [world.seal, world.leader], "-certfile", world.intermediate,
        *options,
    )  # fmt: skip
    verdict = accepted(
        verifier(world.root, world.crls, world.seal.cert).verify(header.read_bytes(), signature)
    )
    assert [s.name for s in verdict.personal] == [LEADER]


def test_openssl_signature_without_the_intermediate_does_not_chain(
    world: OpensslWorld, tmp_path: Path
) -> None:
    header = write_header(tmp_path, header_bytes())
    signature = openssl_sign(header, tmp_path / "s.der", [world.seal])
    verdict = verifier(world.root, world.crls, world.seal.cert).verify(
        header.read_bytes(), signature
    )
    rejected(verdict, Reason.UNTRUSTED_CHAIN)


def test_a_certificate_revoked_by_openssl_ca_is_rejected(
    world: OpensslWorld, tmp_path: Path
) -> None:
    header = write_header(tmp_path, header_bytes(sender=H37, recipients=[G22]))
    signature = openssl_sign(
        header, tmp_path / "s.der", [world.doomed], "-certfile", world.intermediate
    )
    before = verifier(world.root, world.crls, world.doomed.cert, sender=H37)
    accepted(before.verify(header.read_bytes(), signature))
    after = verifier(world.root, world.revoked_crls, world.doomed.cert, sender=H37)
    verdict = rejected(after.verify(header.read_bytes(), signature), Reason.CERTIFICATE_REVOKED)
    assert "keyCompromise" in verdict.detail
    # The revoked CRL does not touch the other seal.
    other = write_header(tmp_path, header_bytes(), "other.json")
    signature = openssl_sign(
        other, tmp_path / "o.der", [world.seal], "-certfile", world.intermediate
    )
    kept = verifier(world.root, world.revoked_crls, world.seal.cert)
    accepted(kept.verify(other.read_bytes(), signature))


@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_openssl_signature_with_development_pki_files_is_accepted(
    pki: Pki, tmp_path: Path, personal: bool
) -> None:
    seal = Issued(*pki.dev.seal(G22))
    leader = Issued(*pki.dev.leader(G22))
    header = write_header(tmp_path, header_bytes())
    signature = openssl_sign(
        header,
        tmp_path / "s.der",
        [seal, leader] if personal else [seal],
        "-certfile",
        pki.dev.chain,
        "-nosmimecap",
    )
    verdict = accepted(pki.verifier().verify(header.read_bytes(), signature))
    assert verdict.seal.fingerprint == fingerprint(seal.cert)
    assert [(s.name, s.title) for s in verdict.personal] == ([(LEADER, TITLE)] if personal else [])


def test_openssl_ber_output_is_not_an_envelope(world: OpensslWorld, tmp_path: Path) -> None:
    """``-stream`` writes indefinite lengths (BER); envelope v1 signatures are DER."""
    header = write_header(tmp_path, header_bytes())
    signature = openssl_sign(
        header, tmp_path / "s.der", [world.seal], "-certfile", world.intermediate, "-stream"
    )
    assert signature[:2] == b"\x30\x80"
    verdict = verifier(world.root, world.crls, world.seal.cert).verify(
        header.read_bytes(), signature
    )
    rejected(verdict, Reason.MALFORMED_SIGNATURE)


# --- lienthong signs, openssl verifies -----------------------------------------------------


def _keys(issued: Issued) -> SigningKey:
    return SigningKey(load_certificates(issued.cert)[0], load_private_key(issued.key))


@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_library_signature_over_openssl_certificates_passes_openssl(
    world: OpensslWorld, tmp_path: Path, personal: bool
) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    signers = [_keys(world.seal)] + ([_keys(world.leader)] if personal else [])
    signature = tmp_path / "s.der"
    signature.write_bytes(
        sign_detached(content, signers, chain=load_certificates(world.intermediate))
    )
    assert_openssl_accepts(openssl_verify(signature, header, world.root))
    assert_openssl_accepts(openssl_verify(signature, header, world.root, "-cades"))
    assert (tmp_path / "s.content").read_bytes() == content
    # lienthong reads back what it wrote, with openssl's certificates and CRLs.
    verdict = accepted(
        verifier(world.root, world.crls, world.seal.cert).verify(content, signature.read_bytes())
    )
    assert len(verdict.personal) == int(personal)


@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_library_signature_with_development_pki_passes_openssl(
    pki: Pki, tmp_path: Path, personal: bool
) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    signature = tmp_path / "s.der"
    signature.write_bytes(pki.sign(content, personal=personal))
    assert_openssl_accepts(openssl_verify(signature, header, pki.dev.trust_anchors, "-cades"))
    assert signed_attribute_oids(signature) == [LIENTHONG_SIGNED_ATTRIBUTES] * (1 + personal)


def _cli_sign(
    pki: Pki, header: Path, out: Path, *, personal: bool, chain: bool
) -> subprocess.CompletedProcess[bytes]:
    seal_cert, seal_key = pki.dev.seal(G22)
    args: list[str | Path] = ["sign", "--header", header, "--cert", seal_cert, "--key", seal_key]
    if personal:
        leader_cert, leader_key = pki.dev.leader(G22)
        args += ["--signer-cert", leader_cert, "--signer-key", leader_key]
    if chain:
        args += ["--chain", pki.dev.chain]
    done = lienthong(*args, "--out", out)
    assert done.returncode == 0, done.stderr.decode()
    return done


@pytest.fixture
def bundle(pki: Pki, tmp_path: Path) -> Path:
    path = tmp_path / "root-and-issuing.pem"
    path.write_bytes(pki.dev.trust_anchors.read_bytes() + pki.dev.chain.read_bytes())
    return path


@pytest.mark.parametrize("chain", [True, False], ids=["chain-embedded", "chain-not-embedded"])
@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_cli_signature_passes_openssl(
    pki: Pki, tmp_path: Path, bundle: Path, personal: bool, chain: bool
) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    signature = tmp_path / "s.der"
    _cli_sign(pki, header, signature, personal=personal, chain=chain)
    # openssl 3.0 builds chains only from the signature and -CAfile (-certfile finds signers).
    ca_file = pki.dev.trust_anchors if chain else bundle
    assert_openssl_accepts(openssl_verify(signature, header, ca_file, "-cades"))
    assert (tmp_path / "s.content").read_bytes() == content
    assert signed_attribute_oids(signature) == [LIENTHONG_SIGNED_ATTRIBUTES] * (1 + personal)
    if not chain:
        # Only the root: the issuing CA is neither embedded nor given.
        assert openssl_verify(signature, header, pki.dev.trust_anchors).returncode != 0


def test_signed_attributes_as_openssl_prints_them(pki: Pki, tmp_path: Path) -> None:
    content = header_bytes()
    signature = tmp_path / "s.der"
    when = dt.datetime(2026, 11, 27, 8, 30, 15, tzinfo=dt.UTC)
    signature.write_bytes(pki.sign(content, personal=True, signing_time=when))
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", signature).decode()
    for name in ("contentType", "signingTime", "messageDigest", "signingCertificateV2"):
        assert len(re.findall(rf"object: [\w-]*{name} \(", printed)) == 2, name
    assert printed.count("UTCTIME:Nov 27 08:30:15 2026 GMT") == 2
    assert printed.count("OBJECT:pkcs7-data (1.2.840.113549.1.7.1)") == 2
    assert "eContent: <ABSENT>" in printed  # detached
    assert printed.count("unsignedAttrs:\n          <ABSENT>") == 2


# --- a tampered header fails on both sides -------------------------------------------------


def test_tampered_header_fails_in_openssl_and_in_lienthong(pki: Pki, tmp_path: Path) -> None:
    content = header_bytes()
    tampered = write_header(tmp_path, flip(content), "tampered.json")
    # Signed by lienthong.
    mine = tmp_path / "lienthong.der"
    mine.write_bytes(pki.sign(content, personal=True))
    assert_openssl_accepts(
        openssl_verify(mine, write_header(tmp_path, content), pki.dev.trust_anchors)
    )
    done = openssl_verify(mine, tampered, pki.dev.trust_anchors)
    assert done.returncode != 0
    assert b"Verification failure" in done.stderr
    rejected(
        pki.verifier().verify(tampered.read_bytes(), mine.read_bytes()), Reason.DIGEST_MISMATCH
    )
    # Signed by openssl.
    theirs = openssl_sign(
        write_header(tmp_path, content, "original.json"),
        tmp_path / "openssl.der",
        [Issued(*pki.dev.seal(G22))],
        "-certfile",
        pki.dev.chain,
    )
    assert openssl_verify(tmp_path / "openssl.der", tampered, pki.dev.trust_anchors).returncode
    rejected(pki.verifier().verify(tampered.read_bytes(), theirs), Reason.DIGEST_MISMATCH)


# --- ECDSA P-256 ---------------------------------------------------------------------------


def test_ec_p256_pki_is_what_it_says(ec_pki: Pki) -> None:
    key = ec_pki.seal().certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)


@pytest.mark.parametrize("personal", [False, True], ids=["seal", "seal+leader"])
def test_ec_p256_lienthong_signs_openssl_verifies(
    ec_pki: Pki, tmp_path: Path, personal: bool
) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    library = tmp_path / "library.der"
    library.write_bytes(ec_pki.sign(content, personal=personal))
    assert_openssl_accepts(openssl_verify(library, header, ec_pki.dev.trust_anchors, "-cades"))
    command = tmp_path / "command.der"
    _cli_sign(ec_pki, header, command, personal=personal, chain=True)
    assert_openssl_accepts(openssl_verify(command, header, ec_pki.dev.trust_anchors, "-cades"))
    done = openssl_verify(
        command, write_header(tmp_path, flip(content), "t.json"), ec_pki.dev.trust_anchors
    )
    assert done.returncode != 0


@pytest.mark.parametrize("digest", ["sha256", "sha384"])
def test_ec_p256_openssl_signs_lienthong_verifies(ec_pki: Pki, tmp_path: Path, digest: str) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    signature = openssl_sign(
        header,
        tmp_path / "s.der",
        [Issued(*ec_pki.dev.seal(G22)), Issued(*ec_pki.dev.leader(G22))],
        "-certfile",
        ec_pki.dev.chain,
        "-md",
        digest,
    )
    verdict = accepted(ec_pki.verifier().verify(content, signature))
    assert [s.name for s in verdict.personal] == [LEADER]
    rejected(ec_pki.verifier().verify(flip(content), signature), Reason.DIGEST_MISMATCH)


# --- Ed25519 -------------------------------------------------------------------------------


def _pem_certificate(path: Path) -> a_x509.Certificate:
    _, _, der = a_pem.unarmor(path.read_bytes())
    return a_x509.Certificate.load(der)


def _signer_infos(signature: bytes) -> Iterator[a_cms.SignerInfo]:
    content = a_cms.ContentInfo.load(signature)
    assert content["content_type"].native == "signed_data"
    yield from content["content"]["signer_infos"]


def test_ed25519_pki_is_what_it_says(ed_pki: Pki) -> None:
    assert isinstance(ed_pki.seal().certificate.public_key(), ed25519.Ed25519PublicKey)
    assert isinstance(ed_pki.leader().certificate.public_key(), ed25519.Ed25519PublicKey)


@pytest.mark.parametrize("maker", ["library", "command"])
def test_ed25519_lienthong_signs_openssl_verifies(ed_pki: Pki, tmp_path: Path, maker: str) -> None:
    content = header_bytes()
    header = write_header(tmp_path, content)
    signature = tmp_path / "s.der"
    if maker == "library":
        signature.write_bytes(ed_pki.sign(content, personal=True))
    else:
        _cli_sign(ed_pki, header, signature, personal=True, chain=True)
    certs = {
        _pem_certificate(path).serial_number: path
        for path in (ed_pki.dev.seal(G22)[0], ed_pki.dev.leader(G22)[0])
    }
    sha512 = openssl("dgst", "-sha512", "-binary", header)
    infos = list(_signer_infos(signature.read_bytes()))
    assert len(infos) == 2
    for index, info in enumerate(infos):
        assert info["digest_algorithm"]["algorithm"].native == "sha512"  # RFC 8419
        assert info["signature_algorithm"]["algorithm"].native == "ed25519"
        assert info["signature_algorithm"]["parameters"].native is None
        attrs = {a["type"].dotted: a["values"] for a in info["signed_attrs"]}
        assert sorted(attrs) == sorted(LIENTHONG_SIGNED_ATTRIBUTES)
        assert attrs[OID_MESSAGE_DIGEST][0].native == sha512
        cert = certs.pop(info["sid"].chosen["serial_number"].native)
        # The signature covers the signed attributes re-tagged as SET OF (RFC 5652 5.4).
        signed = tmp_path / f"signed-attrs-{index}.der"
        signed.write_bytes(b"\x31" + info["signed_attrs"].dump()[1:])
        value = tmp_path / f"signature-{index}.bin"
        value.write_bytes(info["signature"].native)
        done = openssl_status(
            "pkeyutl", "-verify", "-rawin", "-certin", "-inkey", cert, "-in", signed,
            "-sigfile", value,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert b"Signature Verified Successfully" in done.stdout
        chain = openssl(
            "verify", "-CAfile", ed_pki.dev.trust_anchors, "-untrusted", ed_pki.dev.chain, cert
        )
        assert chain.strip().endswith(b": OK")
        # A signature over other attributes does not verify.
        signed.write_bytes(signed.read_bytes().replace(sha512, hashlib.sha512(b"x").digest()))
        assert openssl_status(
            "pkeyutl", "-verify", "-rawin", "-certin", "-inkey", cert, "-in", signed,
            "-sigfile", value,
        ).returncode != 0  # fmt: skip
    assert certs == {}


def _openssl_ed25519_signature(
    header: Path, seal: Issued, chain: Path, work: Path, when: dt.datetime
) -> bytes:
    """SignedData whose Ed25519 signature and messageDigest are openssl's (pkeyutl, dgst),
    assembled by asn1crypto: not by lienthong's DER writer."""
    cert = _pem_certificate(seal.cert)
    attrs = a_cms.CMSAttributes(
        [
            a_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            a_cms.CMSAttribute(
                {"type": "signing_time", "values": [a_cms.Time({"utc_time": when})]}
            ),
            a_cms.CMSAttribute(
                {
                    "type": "message_digest",
                    "values": [openssl("dgst", "-sha512", "-binary", header)],
                }
            ),
        ]
    )
    to_sign = work / "to-sign.der"
    to_sign.write_bytes(attrs.dump())
    value = openssl("pkeyutl", "-sign", "-rawin", "-inkey", seal.key, "-in", to_sign)
    info = a_cms.SignerInfo(
        {
            "version": "v1",
            "sid": a_cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": a_cms.IssuerAndSerialNumber(
                        {"issuer": cert.issuer, "serial_number": cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": a_algos.DigestAlgorithm({"algorithm": "sha512"}),
            "signed_attrs": attrs,
            "signature_algorithm": a_algos.SignedDigestAlgorithm({"algorithm": "ed25519"}),
            "signature": value,
        }
    )
    signed_data = a_cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [a_algos.DigestAlgorithm({"algorithm": "sha512"})],
            "encap_content_info": {"content_type": "data"},
            "certificates": [cert, _pem_certificate(chain)],
            "signer_infos": [info],
        }
    )
    encoded: bytes = a_cms.ContentInfo(
        {"content_type": "signed_data", "content": signed_data}
    ).dump()
    return encoded


@dataclass(frozen=True)
class Ed25519Envelope:
    content: bytes
    signature: bytes  # made by openssl: the seal's key
    foreign: bytes  # the same container, signed by another key (the leader's)
    seal: Issued
    signing_time: dt.datetime


@pytest.fixture
def ed_envelope(ed_pki: Pki, tmp_path: Path) -> Ed25519Envelope:
    content = header_bytes()
    header = write_header(tmp_path, content)
    seal = Issued(*ed_pki.dev.seal(G22))
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signature = _openssl_ed25519_signature(header, seal, ed_pki.dev.chain, tmp_path, when)
    impostor = Issued(seal.cert, ed_pki.dev.leader(G22)[1])
    foreign = _openssl_ed25519_signature(header, impostor, ed_pki.dev.chain, tmp_path, when)
    return Ed25519Envelope(content, signature, foreign, seal, when)


def test_ed25519_openssl_signature_math_is_checked(
    ed_pki: Pki, ed_envelope: Ed25519Envelope
) -> None:
    verifier = ed_pki.verifier()
    rejected(
        verifier.verify(flip(ed_envelope.content), ed_envelope.signature), Reason.DIGEST_MISMATCH
    )
    rejected(verifier.verify(ed_envelope.content, ed_envelope.foreign), Reason.BAD_SIGNATURE)


def test_ed25519_openssl_signs_lienthong_verifies(
    ed_pki: Pki, ed_envelope: Ed25519Envelope
) -> None:
    verdict = accepted(ed_pki.verifier().verify(ed_envelope.content, ed_envelope.signature))
    assert verdict.seal.fingerprint == fingerprint(ed_envelope.seal.cert)
    assert verdict.seal.signing_time == ed_envelope.signing_time


def test_x509_names_from_openssl_decode_as_utf8(world: OpensslWorld) -> None:
    leader = load_certificates(world.leader.cert)[0]
    values = {a.oid.dotted_string: a.value for a in leader.subject}
    assert values["2.5.4.97"] == G22
    assert values["2.5.4.12"] == TITLE
    assert values["2.5.4.3"] == LEADER
    usage = leader.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
