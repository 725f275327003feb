"""Keeping the trust store's CRLs current: CRL files on disk and CRLs loaded into the database.

Administrators load CRLs with ``lienthong crl load``; every router and API process picks them up
within ``crl_poll_s``. A CRL with a lower number than one already held for its issuer changes
nothing (the trust store keeps the newest), so a stale file can never resurrect a revocation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.db.engine import reading
from adapters.db.tables import crls
from adapters.files import load_crls
from exchange.errors import InputError
from exchange.trust import TrustStore

log = logging.getLogger(__name__)


def store_crl(conn: sa.Connection, crl: x509.CertificateRevocationList, now: dt.datetime) -> bool:
    """Load a CRL into the database; False when it is there already."""
    der = crl.public_bytes(Encoding.DER)
    fingerprint = hashlib.sha256(der).hexdigest()
    if conn.execute(sa.select(crls.c.id).where(crls.c.fingerprint == fingerprint)).first():
        return False
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    conn.execute(
        crls.insert().values(
            fingerprint=fingerprint,
            issuer=crl.issuer.rfc4514_string(),
            number=number,
            der=der,
            loaded_at=now,
        )
    )
    return True


class CrlSync:
    """Feeds new CRLs into a TrustStore; call ``maybe_refresh`` from the thread that verifies."""

    def __init__(
        self,
        trust: TrustStore,
        engine: sa.Engine | None,
        files: list[Path],
        *,
        interval: float = 10.0,
    ) -> None:
        self.trust = trust
        self.engine = engine
        self.files = files
        self.interval = interval
        self._mtimes: dict[Path, float] = {}
        self._last_id = 0
        self._checked = float("-inf")
        self.refresh()

    def maybe_refresh(self) -> None:
        if time.monotonic() - self._checked >= self.interval:
            self.refresh()

    def refresh(self) -> None:
        self._checked = time.monotonic()
        for path in self.files:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                log.warning("CRL file %s is missing", path)
                continue
            if self._mtimes.get(path) == mtime:
                continue
            try:
                for crl in load_crls(path):
                    self.trust.add_crl(crl)
                self._mtimes[path] = mtime
            except InputError as exc:
                log.warning("CRL file skipped: %s", exc)
        if self.engine is None:
            return
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(crls.c.id, crls.c.der)
                .where(crls.c.id > self._last_id)
                .order_by(crls.c.id)
            ).all()
        for row_id, der in rows:
            try:
                self.trust.add_crl(x509.load_der_x509_crl(der))
            except ValueError as exc:
                log.warning("CRL %d in the database is unreadable: %s", row_id, exc)
            self._last_id = row_id
