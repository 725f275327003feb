"""Hostile signing material, made with the hostile PKI's own CA keys (see tests/forge.py).

Every certificate here is real: issued by the development root or issuing CA on disk, or by a
CA an attacker made (a look-alike of a real one, a ring of cross-signed CAs). Names carry a
random tag so that the two buses of a run (SQLite, PostgreSQL) never share a CA name or a CRL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.pki import profiles as p
from adapters.pki.folder import write_pem
from exchange.signing import SigningKey, sign_detached
from tests.forge import ISSUING_CA, ROOT_CA, Authority, rsa_key, window
from tests.helpers import G22, Pki

SEAL_NAME = "Văn phòng Chính phủ"


def tag() -> str:
    return uuid.uuid4().hex[:8]


def seal_profile(code: str = G22, name: str = SEAL_NAME) -> p.Profile:
    return p.seal_profile(code, name)


def ca_profile(common_name: str) -> p.Profile:
    """An intermediate CA profile without a pathLenConstraint (it may issue CAs)."""
    return replace(p.issuing_profile(common_name), path_length=None)


def root(pki: Pki) -> Authority:
    return Authority.of(pki.dev, ROOT_CA)


def issuing(pki: Pki) -> Authority:
    return Authority.of(pki.dev, ISSUING_CA)


def sub_ca(parent: Authority, common_name: str, slot: int) -> Authority:
    key = rsa_key(2048, slot)
    return Authority(parent.issue(ca_profile(common_name), key.public_key()), key)


def look_alike(real: Authority, slot: int = 90) -> Authority:
    """A self-signed CA with the real CA's name and another key (an attacker's)."""
    key = rsa_key(2048, slot)
    profile = replace(p.root_profile(), subject=real.cert.subject)
    cert = p.build_certificate(
        profile,
        key.public_key(),
        real.cert.subject,
        key,
        window(-1, 365),
        x509.random_serial_number(),
    )
    return Authority(cert, key)


def sign_with(
    header: bytes,
    signer: SigningKey,
    chain: Sequence[x509.Certificate],
    *,
    signing_time: dt.datetime | None = None,
) -> bytes:
    return sign_detached(header, [signer], chain=chain, signing_time=signing_time)


def seal_from(
    ca: Authority,
    *,
    code: str = G22,
    key: rsa.RSAPrivateKey | None = None,
    validity: p.Validity | None = None,
    serial: int | None = None,
) -> SigningKey:
    key = key or rsa_key(2048, 3)
    cert = ca.issue(seal_profile(code), key.public_key(), validity=validity, serial=serial)
    return SigningKey(cert, key)


def write_certificate(pki: Pki, cert: x509.Certificate) -> Path:
    path = pki.root / "extra" / f"{cert.serial_number:x}.pem"
    write_pem(path, cert)
    return path
