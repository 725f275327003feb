"""The development PKI kept in a folder: ``lienthong pki init|issue|revoke|crl``.

Layout (all PEM; private keys 0600, unencrypted: this is a development PKI)::

    DIR/pki.json                      state: algorithm, CRL numbers, revocations, agencies
    DIR/trust-anchors.pem             the root CA certificate
    DIR/chain.pem                     the issuing CA certificate (intermediate)
    DIR/ca/root-ca.{pem,key}  DIR/ca/issuing-ca.{pem,key}
    DIR/crl/root-ca.crl.pem   DIR/crl/issuing-ca.crl.pem
    DIR/agencies/<code>/seal.{pem,key}    organisation certificate of the agency
    DIR/agencies/<code>/leader.{pem,key}  personal certificate of its leader
    DIR/tsa/tsa.{pem,key}             time-stamping certificate (critical timeStamping EKU)
    DIR/bus/bus.{pem,key}             the bus's own certificate (signs rejection notices)
    DIR/admin/admin.{pem,key}         an administrator's credential for the API
    DIR/registry.json                 agencies and their seal fingerprints, for ``verify``
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from adapters.pki import profiles as p
from exchange.errors import InputError

CRL_VALIDITY = dt.timedelta(days=30)
BUS_CODE = "000.00.00.LT0"


@dataclass(frozen=True)
class DemoAgency:
    code: str
    name: str
    leader: str
    title: str
    province: str | None = None


# Fictional office holders; the codes follow QĐ 20/2020 (the Government Office is G22).
DEMO_AGENCIES = (
    DemoAgency("000.00.00.G22", "Văn phòng Chính phủ", "Trần Văn Minh", "Bộ trưởng, Chủ nhiệm"),
    DemoAgency("000.00.00.H37", "Ủy ban nhân dân tỉnh H37", "Lê Thị Hoa", "Chủ tịch", "Tỉnh H37"),
    DemoAgency("000.00.01.H37", "Sở Tài chính tỉnh H37", "Phạm Quốc Bảo", "Giám đốc", "Tỉnh H37"),
)


def write_private_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pem(path: Path, *items: x509.Certificate | x509.CertificateRevocationList) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(i.public_bytes(serialization.Encoding.PEM) for i in items))


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return key  # type: ignore[return-value]


class DevPki:
    """A development PKI folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # paths
    @property
    def state_path(self) -> Path:
        return self.root / "pki.json"

    @property
    def trust_anchors(self) -> Path:
        return self.root / "trust-anchors.pem"

    @property
    def chain(self) -> Path:
        return self.root / "chain.pem"

    def ca_cert(self, name: str) -> Path:
        return self.root / "ca" / f"{name}.pem"

    def ca_key(self, name: str) -> Path:
        return self.root / "ca" / f"{name}.key"

    def crl(self, name: str) -> Path:
        return self.root / "crl" / f"{name}.crl.pem"

    @property
    def crls(self) -> list[Path]:
        return [self.crl("root-ca"), self.crl("issuing-ca")]

    def agency_dir(self, code: str) -> Path:
        return self.root / "agencies" / code

    def seal(self, code: str) -> tuple[Path, Path]:
        return self.agency_dir(code) / "seal.pem", self.agency_dir(code) / "seal.key"

    def leader(self, code: str) -> tuple[Path, Path]:
        return self.agency_dir(code) / "leader.pem", self.agency_dir(code) / "leader.key"

    @property
    def tsa(self) -> tuple[Path, Path]:
        return self.root / "tsa" / "tsa.pem", self.root / "tsa" / "tsa.key"

    @property
    def bus(self) -> tuple[Path, Path]:
        return self.root / "bus" / "bus.pem", self.root / "bus" / "bus.key"

    @property
    def admin(self) -> tuple[Path, Path]:
        return self.root / "admin" / "admin.pem", self.root / "admin" / "admin.key"

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    # state
    def exists(self) -> bool:
        return self.state_path.exists()

    def state(self) -> dict[str, Any]:
        if not self.exists():
            raise InputError(f"{self.root} is not a development PKI (no pki.json); run pki init")
        data: dict[str, Any] = json.loads(self.state_path.read_text("utf-8"))
        return data

    def _save(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state, ensure_ascii=False, indent=2), "utf-8")

    def agencies(self) -> list[DemoAgency]:
        return [DemoAgency(**a) for a in self.state()["agencies"]]

    # operations
    def init(
        self,
        algorithm: p.KeyAlgorithm = p.KeyAlgorithm.RSA2048,
        *,
        agencies: tuple[DemoAgency, ...] = DEMO_AGENCIES,
        now: dt.datetime | None = None,
        force: bool = False,
    ) -> None:
        if self.exists() and not force:
            raise InputError(f"{self.root} already holds a PKI (pass --force to replace it)")
        now = now or dt.datetime.now(dt.UTC)
        self.root.mkdir(parents=True, exist_ok=True)
        # cryptography's path validator accepts Ed25519 keys in end-entity certificates only, so
        # an Ed25519 PKI keeps ECDSA P-256 for its CAs (pyca/cryptography#13391).
        ca_algorithm = (
            p.KeyAlgorithm.EC_P256
            if p.KeyAlgorithm(algorithm) is p.KeyAlgorithm.ED25519
            else algorithm
        )
        root_key = p.generate_key(ca_algorithm)
        root_profile = p.root_profile()
        root = p.build_certificate(
            root_profile,
            root_key.public_key(),
            root_profile.subject,
            root_key,
            p.Validity.starting(now, 20 * 365),
            x509.random_serial_number(),
        )
        issuing_key = p.generate_key(ca_algorithm)
        issuing = p.build_certificate(
            p.issuing_profile(),
            issuing_key.public_key(),
            root.subject,
            root_key,
            p.Validity.starting(now, 10 * 365),
            x509.random_serial_number(),
        )
        for name, cert, key in (("root-ca", root, root_key), ("issuing-ca", issuing, issuing_key)):
            write_pem(self.ca_cert(name), cert)
            write_private_key(self.ca_key(name), key)
        write_pem(self.trust_anchors, root)
        write_pem(self.chain, issuing)
        state: dict[str, Any] = {
            "version": 1,
            "algorithm": str(algorithm),
            "created_at": now.isoformat(),
            "cas": {
                "root-ca": {"crl_number": 0, "revoked": []},
                "issuing-ca": {"crl_number": 0, "revoked": []},
            },
            "agencies": [],
        }
        self._save(state)
        self._issue_leaf(p.tsa_profile(), *self.tsa, now)
        self._issue_leaf(p.bus_profile(BUS_CODE), *self.bus, now)
        self._issue_leaf(
            p.personal_profile(BUS_CODE, "lienthong", "Quản trị viên trục", "Quản trị hệ thống"),
            *self.admin,
            now,
        )
        for agency in agencies:
            self.issue_agency(agency, now=now)
        self.refresh_crls(now=now)

    def _issuer(
        self, name: str = "issuing-ca"
    ) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
        cert = x509.load_pem_x509_certificate(self.ca_cert(name).read_bytes())
        return cert, load_key(self.ca_key(name))

    def _issue_leaf(
        self, profile: p.Profile, cert_path: Path, key_path: Path, now: dt.datetime
    ) -> x509.Certificate:
        issuer, issuer_key = self._issuer()
        key = p.generate_key(self.state()["algorithm"])
        cert = p.build_certificate(
            profile,
            key.public_key(),
            issuer.subject,
            issuer_key,
            p.Validity.starting(now, 2 * 365),
            x509.random_serial_number(),
        )
        write_pem(cert_path, cert)
        write_private_key(key_path, key)
        return cert

    def issue_agency(self, agency: DemoAgency, *, now: dt.datetime | None = None) -> None:
        """Issue a seal and a leader's personal certificate for an agency."""
        now = now or dt.datetime.now(dt.UTC)
        state = self.state()
        if any(a["code"] == agency.code for a in state["agencies"]):
            raise InputError(f"agency {agency.code} already has certificates in {self.root}")
        self._issue_leaf(
            p.seal_profile(agency.code, agency.name, agency.province), *self.seal(agency.code), now
        )
        self._issue_leaf(
            p.personal_profile(agency.code, agency.name, agency.leader, agency.title),
            *self.leader(agency.code),
            now,
        )
        state["agencies"].append(agency.__dict__)
        self._save(state)
        self._write_registry()

    def _write_registry(self) -> None:
        entries = []
        for agency in self.agencies():
            cert = x509.load_pem_x509_certificate(self.seal(agency.code)[0].read_bytes())
            entries.append(
                {"code": agency.code, "name": agency.name, "seal_fingerprints": [fingerprint(cert)]}
            )
        self.registry.write_text(json.dumps(entries, ensure_ascii=False, indent=2), "utf-8")

    def revoke(
        self,
        cert_path: Path,
        *,
        reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
        at: dt.datetime | None = None,
    ) -> int:
        """Revoke a certificate issued by this PKI and reissue its CA's CRL; returns the number."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read certificate {cert_path}: {exc}") from None
        state = self.state()
        for name in state["cas"]:
            issuer, _ = self._issuer(name)
            if cert.issuer == issuer.subject:
                try:
                    cert.verify_directly_issued_by(issuer)
                except (InvalidSignature, ValueError, TypeError):
                    continue  # a same-named CA of another PKI
                revoked = state["cas"][name]["revoked"]
                if any(int(r["serial"], 16) == cert.serial_number for r in revoked):
                    raise InputError(f"{cert_path} is already revoked")
                when = at or dt.datetime.now(dt.UTC)
                revoked.append(
                    {
                        "serial": f"{cert.serial_number:x}",
                        "at": when.replace(microsecond=0).isoformat(),
                        "reason": reason.value if reason is not None else None,
                    }
                )
                self._save(state)
                return self.refresh_crls(only=name)[name]
        raise InputError(f"{cert_path} was not issued by this development PKI")

    def refresh_crls(
        self,
        *,
        now: dt.datetime | None = None,
        only: str | None = None,
        validity: dt.timedelta = CRL_VALIDITY,
    ) -> dict[str, int]:
        """Issue fresh CRLs (a new CRL number each time); returns the numbers issued."""
        now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        state = self.state()
        numbers = {}
        for name, ca in state["cas"].items():
            if only is not None and name != only:
                continue
            issuer, key = self._issuer(name)
            ca["crl_number"] += 1
            revoked = [
                (
                    int(r["serial"], 16),
                    dt.datetime.fromisoformat(r["at"]),
                    x509.ReasonFlags(r["reason"]) if r["reason"] else None,
                )
                for r in ca["revoked"]
            ]
            crl = p.build_crl(
                issuer,
                key,
                ca["crl_number"],
                revoked,
                now - dt.timedelta(minutes=5),
                now + validity,
            )
            write_pem(self.crl(name), crl)
            numbers[name] = ca["crl_number"]
        self._save(state)
        return numbers
