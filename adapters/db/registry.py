"""The agency registry in the database, and the cached view the verifier reads.

The verifier asks about the sender and every recipient of every envelope; answering each from
the database would cost more than verifying the signature. ``CachedRegistry`` keeps the whole
registry (thousands of agencies at most) in memory and reloads it every ``ttl`` seconds, and at
once (at most every ``miss_interval``) when asked about a code it does not know.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.db.engine import reading
from adapters.db.tables import agencies, agency_certificates
from exchange.errors import InputError, NotFound
from exchange.ports import AgencyRecord


@dataclass(frozen=True, slots=True)
class RegisteredCertificate:
    fingerprint: str
    agency_code: str
    certificate: x509.Certificate
    active: bool


def add_agency(conn: sa.Connection, code: str, name: str, now: dt.datetime) -> bool:
    """Register an agency; False when it exists already (its name is then updated)."""
    exists = conn.execute(sa.select(agencies.c.code).where(agencies.c.code == code)).first()
    if exists:
        conn.execute(
            agencies.update().where(agencies.c.code == code).values(name=name, updated_at=now)
        )
        return False
    conn.execute(
        agencies.insert().values(code=code, name=name, active=True, created_at=now, updated_at=now)
    )
    return True


def set_active(conn: sa.Connection, code: str, active: bool, now: dt.datetime) -> None:
    result = conn.execute(
        agencies.update().where(agencies.c.code == code).values(active=active, updated_at=now)
    )
    if result.rowcount == 0:
        raise NotFound(f"agency {code} is not registered")


def pin_certificate(
    conn: sa.Connection, code: str, certificate: x509.Certificate, now: dt.datetime
) -> str:
    """Pin a certificate to an agency (its seal, or a credential of its systems)."""
    der = certificate.public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest()
    if conn.execute(sa.select(agencies.c.code).where(agencies.c.code == code)).first() is None:
        raise NotFound(f"agency {code} is not registered")
    existing = conn.execute(
        sa.select(agency_certificates.c.agency_code).where(
            agency_certificates.c.fingerprint == fingerprint
        )
    ).first()
    if existing is not None:
        if existing[0] != code:
            raise InputError(f"certificate {fingerprint[:16]}... is pinned to {existing[0]}")
        conn.execute(
            agency_certificates.update()
            .where(agency_certificates.c.fingerprint == fingerprint)
            .values(active=True)
        )
    else:
        conn.execute(
            agency_certificates.insert().values(
                fingerprint=fingerprint,
                agency_code=code,
                der=der,
                subject=certificate.subject.rfc4514_string(),
                not_after=certificate.not_valid_after_utc,
                active=True,
                added_at=now,
            )
        )
    conn.execute(agencies.update().where(agencies.c.code == code).values(updated_at=now))
    return fingerprint


def unpin_certificate(conn: sa.Connection, fingerprint: str, now: dt.datetime) -> None:
    row = conn.execute(
        sa.select(agency_certificates.c.agency_code).where(
            agency_certificates.c.fingerprint == fingerprint
        )
    ).first()
    if row is None:
        raise NotFound(f"no certificate {fingerprint} is pinned")
    conn.execute(
        agency_certificates.update()
        .where(agency_certificates.c.fingerprint == fingerprint)
        .values(active=False)
    )
    conn.execute(agencies.update().where(agencies.c.code == row[0]).values(updated_at=now))


def list_agencies(conn: sa.Connection) -> list[tuple[str, str, bool, list[str]]]:
    pins: dict[str, list[str]] = {}
    for code, fingerprint in conn.execute(
        sa.select(agency_certificates.c.agency_code, agency_certificates.c.fingerprint).where(
            agency_certificates.c.active
        )
    ):
        pins.setdefault(code, []).append(fingerprint)
    rows = conn.execute(
        sa.select(agencies.c.code, agencies.c.name, agencies.c.active).order_by(agencies.c.code)
    )
    return [(code, name, active, sorted(pins.get(code, []))) for code, name, active in rows]


def certificate_by_fingerprint(
    conn: sa.Connection, fingerprint: str
) -> RegisteredCertificate | None:
    row = conn.execute(
        sa.select(
            agency_certificates.c.agency_code,
            agency_certificates.c.der,
            agency_certificates.c.active,
        ).where(agency_certificates.c.fingerprint == fingerprint)
    ).first()
    if row is None:
        return None
    return RegisteredCertificate(
        fingerprint, row.agency_code, x509.load_der_x509_certificate(row.der), row.active
    )


def load_records(conn: sa.Connection) -> dict[str, AgencyRecord]:
    return {
        code: AgencyRecord(code, name, active, frozenset(pins))
        for code, name, active, pins in list_agencies(conn)
    }


class CachedRegistry:
    """The registry in memory, refreshed from the database (see the module docstring)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        ttl: float = 5.0,
        miss_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._records: dict[str, AgencyRecord] = {}
        self._loaded_at = float("-inf")
        self.reload()

    def reload(self) -> None:
        with reading(self._engine) as conn:
            records = load_records(conn)
        with self._lock:
            self._records = records
            self._loaded_at = self._monotonic()

    def agency(self, code: str) -> AgencyRecord | None:
        age = self._monotonic() - self._loaded_at
        if age > self._ttl:
            self.reload()
        record = self._records.get(code)
        if record is None and age > self._miss_interval:
            self.reload()
            record = self._records.get(code)
        return record
