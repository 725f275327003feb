"""Deliberately bad signing material, for the tests that every rejection reason can be produced.

Everything made here is real cryptography: real keys, certificates issued by the development
PKI's CA keys on disk, real CMS signatures (by ``exchange.signing``, by hand below, or by the
``openssl`` command-line tool). What is wrong is what an attacker or a broken sender gets wrong:
a validity period, a key usage, a key size, a CRL signed by a look-alike CA, a flipped byte.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.files import load_certificates, load_private_key
from adapters.pki import profiles as p
from adapters.pki.folder import DevPki, load_key
from exchange import cms, der, oids
from exchange import derwrite as w
from exchange.certificates import facts_from_certificate
from exchange.signing import SigningKey
from exchange.verification import Rejection, Verdict
from tests.helpers import G22, Pki

ISSUING_CA = "issuing-ca"
ROOT_CA = "root-ca"

# --- keys ------------------------------------------------------------------------------------


@functools.cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    """A throwaway RSA key, generated once per (bits, slot) for the whole test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp256k1": ec.SECP256K1,
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
}


@functools.cache
def ec_key(curve: str) -> ec.EllipticCurvePrivateKey:
    """A throwaway EC key on a named curve, generated once per curve."""
    return ec.generate_private_key(_CURVES[curve]())


@functools.cache
def _signing_key(cert: Path, key: Path) -> SigningKey:
    return SigningKey(load_certificates(cert)[0], load_private_key(key))


class KeyCachingPki(Pki):
    """A development PKI whose signing keys are read from disk once per test session.

    Loading an RSA private key checks it (about 30 ms); attack tests sign hundreds of times.
    """

    def seal(self, code: str = G22) -> SigningKey:
        return _signing_key(*self.dev.seal(code))

    def leader(self, code: str = G22) -> SigningKey:
        return _signing_key(*self.dev.leader(code))


# --- time ------------------------------------------------------------------------------------


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def window(from_days: float, to_days: float, *, now: dt.datetime | None = None) -> p.Validity:
    """A validity period relative to now, e.g. ``window(-400, -35)`` ended five weeks ago."""
    base = now or utcnow()
    return p.Validity(base + dt.timedelta(days=from_days), base + dt.timedelta(days=to_days))


@dataclass(slots=True)
class MovableClock:
    """A clock the test moves (a Clock): the same verifier judged at several instants."""

    instant: dt.datetime

    def now(self) -> dt.datetime:
        return self.instant


# --- certificates and CRLs -------------------------------------------------------------------


@dataclass(frozen=True)
class Authority:
    """A CA certificate and its private key, able to issue certificates and CRLs."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @classmethod
    def of(cls, dev: DevPki, name: str = ISSUING_CA) -> Authority:
        """A CA of a development PKI folder, read from its files on disk."""
        cert = x509.load_pem_x509_certificate(dev.ca_cert(name).read_bytes())
        return cls(cert, load_key(dev.ca_key(name)))

    def issue(
        self,
        profile: p.Profile,
        public_key: CertificatePublicKeyTypes,
        *,
        validity: p.Validity | None = None,
        serial: int | None = None,
    ) -> x509.Certificate:
        return p.build_certificate(
            profile,
            public_key,
            self.cert.subject,
            self.key,
            validity or window(-1, 365),
            serial if serial is not None else x509.random_serial_number(),
        )

    def signer(
        self,
        profile: p.Profile,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
        *,
        validity: p.Validity | None = None,
    ) -> SigningKey:
        """A certificate for ``key`` (by default a shared throwaway RSA key), to sign with."""
        key = key or rsa_key()
        return SigningKey(self.issue(profile, key.public_key(), validity=validity), key)

    def sub_ca(
        self,
        common_name: str,
        key: CertificateIssuerPrivateKeyTypes,
        *,
        validity: p.Validity | None = None,
        usage: dict[str, bool] | None = None,
    ) -> Authority:
        """An intermediate CA under this one (validity and keyUsage as given)."""
        profile = p.issuing_profile(common_name)
        if usage is not None:
            profile = replace(profile, key_usage=usage)
        return Authority(self.issue(profile, key.public_key(), validity=validity), key)

    def crl(
        self,
        number: int,
        revoked: Sequence[x509.Certificate] = (),
        *,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        revoked_at: dt.datetime | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL of this CA listing ``revoked`` (key compromise, an hour ago by default)."""
        now = utcnow()
        when = revoked_at or now - dt.timedelta(hours=1)
        return p.build_crl(
            self.cert,
            self.key,
            number,
            [(c.serial_number, when, x509.ReasonFlags.key_compromise) for c in revoked],
            this_update or now - dt.timedelta(minutes=10),
            next_update or now + dt.timedelta(days=7),
        )


def resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed again by ``issuer_key`` with sha1WithRSAEncryption.

    cryptography refuses to sign certificates with SHA-1, so the TBSCertificate's signature
    algorithm is swapped (sha256WithRSA and sha1WithRSA OIDs have the same length) and signed
    with the raw key.
    """
    sha256_rsa, sha1_rsa = w.oid(oids.SHA256_WITH_RSA), w.oid(oids.SHA1_WITH_RSA)
    tbs = cert.tbs_certificate_bytes
    if tbs.count(sha256_rsa) != 1:
        raise ValueError("the certificate is not signed with sha256WithRSAEncryption")
    tbs = tbs.replace(sha256_rsa, sha1_rsa)
    value = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - the point
    data = w.sequence(
        tbs, w.algorithm(oids.SHA1_WITH_RSA, w.null()), w.tlv(der.BIT_STRING, b"\x00" + value)
    )
    return x509.load_der_x509_certificate(data)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


# --- hand-made CMS ---------------------------------------------------------------------------


def attribute(type_oid: bytes, *values: bytes) -> bytes:
    """A DER Attribute: SEQUENCE { type, SET OF values }."""
    return w.sequence(w.oid(type_oid), w.set_of(*values))


def content_type(oid: bytes = oids.DATA) -> bytes:
    return attribute(oids.ATTR_CONTENT_TYPE, w.oid(oid))


def message_digest(content: bytes) -> bytes:
    return attribute(oids.ATTR_MESSAGE_DIGEST, w.octets(hashlib.sha256(content).digest()))


def signing_time(when: dt.datetime | None = None) -> bytes:
    return attribute(oids.ATTR_SIGNING_TIME, w.time(when or utcnow()))


def signing_certificate_v2(cert: x509.Certificate) -> bytes:
    """ESS signingCertificateV2 naming ``cert`` (by its SHA-256 and issuerSerial)."""
    facts = facts_from_certificate(cert)
    ess_id = w.sequence(
        w.octets(hashlib.sha256(facts.der).digest()),
        w.sequence(w.sequence(w.explicit(4, facts.issuer_der)), w.integer(facts.serial)),
    )
    return attribute(oids.ATTR_SIGNING_CERTIFICATE_V2, w.sequence(w.sequence(ess_id)))


def sign_with_attributes(
    signer: SigningKey,
    attributes: Sequence[bytes] | None,
    *,
    content: bytes = b"",
    chain: Sequence[x509.Certificate] = (),
    embed: Sequence[x509.Certificate] | None = None,
) -> bytes:
    """A detached SignedData whose one RSA/SHA-256 SignerInfo signs exactly ``attributes``.

    ``attributes`` are written in the SET in DER order and really signed; with None the
    SignerInfo has no signed attributes and the signature is over ``content`` itself. The
    signer's certificate and ``chain`` are embedded, or exactly ``embed`` when it is given.
    """
    key = signer.private_key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("sign_with_attributes signs with RSA keys")
    facts = facts_from_certificate(signer.certificate)
    digest_alg = w.algorithm(oids.SHA256)
    fields = [w.integer(1), w.sequence(facts.issuer_der, w.integer(facts.serial)), digest_alg]
    if attributes is None:
        signed = content
    else:
        signed = w.set_of(*attributes)
        fields.append(w.implicit(0, signed))
    value = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    fields += [w.algorithm(oids.RSA_ENCRYPTION, w.null()), w.octets(value)]
    embedded = [signer.certificate, *chain] if embed is None else embed
    certificates = [c.public_bytes(Encoding.DER) for c in embedded]
    signed_data = w.sequence(
        w.integer(1),
        w.set_of(digest_alg),
        w.sequence(w.oid(oids.DATA)),
        w.tlv(0xA0, b"".join(sorted(certificates))),
        w.set_of(w.sequence(*fields)),
    )
    return w.sequence(w.oid(oids.SIGNED_DATA), w.explicit(0, signed_data))


# --- byte surgery ----------------------------------------------------------------------------


def flip(data: bytes, index: int, mask: int = 0xFF) -> bytes:
    """``data`` with the bits in ``mask`` of the byte at ``index`` inverted."""
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def flip_inside(data: bytes, needle: bytes) -> bytes:
    """Flip the middle byte of ``needle``, which must occur exactly once in ``data``."""
    at = data.find(needle)
    if at < 0 or data.find(needle, at + 1) >= 0:
        raise ValueError("the bytes to flip do not occur exactly once")
    return flip(data, at + len(needle) // 2)


def swap(data: bytes, first: bytes, second: bytes) -> bytes:
    """Exchange two equally long byte strings that each occur once in ``data``."""
    if len(first) != len(second):
        raise ValueError("only equally long values can be swapped in place")
    a, b = data.index(first), data.index(second)
    out = bytearray(data)
    out[a : a + len(first)], out[b : b + len(second)] = second, first
    return bytes(out)


def indefinite_length(signature: bytes) -> bytes:
    """The outer SEQUENCE re-encoded with a BER indefinite length (``30 80 ... 00 00``)."""
    start, stop = der.whole(signature, der.SEQUENCE)
    return b"\x30\x80" + signature[start:stop] + b"\x00\x00"


def signature_values(signature: bytes) -> list[bytes]:
    """The signature values (the SignerInfos' OCTET STRINGs) of a CMS SignedData."""
    return [info.signature for info in cms.parse_signed_data(signature).signer_infos]


# --- verdicts -------------------------------------------------------------------------------


def rejection(verdict: Verdict) -> Rejection:
    """The verdict, which must be a rejection (the assertion shows what was accepted)."""
    assert isinstance(verdict, Rejection), f"expected a rejection, got {verdict!r}"
    return verdict


# --- openssl ---------------------------------------------------------------------------------


def openssl_sign(
    workdir: Path,
    content: bytes,
    cert: Path,
    key: Path,
    *options: str,
    certfile: Path | None = None,
) -> bytes:
    """``openssl cms -sign -binary -outform DER`` over ``content`` with extra ``options``."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "header.json"
    target = workdir / "signature.der"
    source.write_bytes(content)
    command = ["openssl", "cms", "-sign", "-binary", "-outform", "DER"]
    command += ["-in", str(source), "-signer", str(cert), "-inkey", str(key), "-out", str(target)]
    if certfile is not None:
        command += ["-certfile", str(certfile)]
    command += options
    completed = subprocess.run(command, capture_output=True, check=False, timeout=30)
    if completed.returncode != 0:
        raise RuntimeError(f"openssl failed: {completed.stderr.decode(errors='replace')}")
    return target.read_bytes()
