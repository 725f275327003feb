"""Reading trust material, keys, registries and attachments from files, with clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from exchange.errors import InputError
from exchange.ports import AgencyRecord, Measured
from schemas.agency import is_agency_code
from schemas.header import AttachmentRef

_CHUNK = 1 << 20


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    data = read_bytes(path, what)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InputError(f"{what} {path} holds no readable certificate: {exc}") from None
    return certs


def load_crls(path: Path) -> list[x509.CertificateRevocationList]:
    data = read_bytes(path, "CRL file")
    try:
        if b"-----BEGIN" not in data:
            return [x509.load_der_x509_crl(data)]
        blocks = data.split(b"-----END X509 CRL-----")
        found = [
            x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n")
            for block in blocks
            if b"-----BEGIN X509 CRL-----" in block
        ]
    except ValueError as exc:
        raise InputError(f"CRL file {path} holds no readable CRL: {exc}") from None
    if not found:
        raise InputError(f"CRL file {path} holds no CRL")
    return found


def load_private_key(path: Path) -> PrivateKeyTypes:
    data = read_bytes(path, "key file")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"key file {path} holds no readable unencrypted key: {exc}") from None


class JsonRegistry:
    """A registry read from JSON: ``[{"code", "name", "seal_fingerprints", "active"?}]``."""

    def __init__(self, records: dict[str, AgencyRecord]) -> None:
        self._records = records

    @classmethod
    def load(cls, path: Path) -> JsonRegistry:
        try:
            entries = json.loads(read_bytes(path, "registry file"))
            records = {}
            for entry in entries:
                code = entry["code"]
                if not isinstance(code, str) or not is_agency_code(code):
                    raise ValueError(f"{code!r} is not an agency code")
                records[code] = AgencyRecord(
                    code=code,
                    name=str(entry.get("name", code)),
                    active=bool(entry.get("active", True)),
                    seal_fingerprints=frozenset(
                        str(f).lower() for f in entry.get("seal_fingerprints", [])
                    ),
                )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"registry file {path} is not a valid registry: {exc}") from None
        return cls(records)

    def agency(self, code: str) -> AgencyRecord | None:
        return self._records.get(code)


def measure_file(path: Path) -> Measured:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Measured(size, digest.hexdigest())


class FolderAttachments:
    """Attachments supplied as files named as in the manifest, inside one folder."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise InputError(f"attachments folder {folder} does not exist")
        self._folder = folder.resolve()

    def measure(self, ref: AttachmentRef) -> Measured | None:
        path = (self._folder / ref.name).resolve()
        if path.parent != self._folder or not path.is_file():
            return None
        return measure_file(path)
