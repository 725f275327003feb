"""Building a time-stamp authority from files and settings, and serving it on its own."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI

from adapters.files import load_certificates, load_private_key
from adapters.settings import Settings
from adapters.tsa.authority import (
    DEFAULT_ACCURACY,
    DEFAULT_POLICY,
    SerialSource,
    TimeStampAuthority,
)
from adapters.tsa.http import create_router
from adapters.tsa.serials import DbSerials, FileSerials, tsa_name
from exchange.ports import Clock, SystemClock

STATE_FILE = Path("tsa") / "serials.json"


def load_authority(
    cert: Path,
    key: Path,
    *,
    serials: SerialSource | None = None,
    data_dir: Path | None = None,
    chain: Path | None = None,
    clock: Clock | None = None,
    policy: str = DEFAULT_POLICY,
    accuracy: dt.timedelta = DEFAULT_ACCURACY,
) -> TimeStampAuthority:
    """A TSA from PEM files. ``cert`` holds the TSA certificate first, optionally its chain;
    serials come from ``serials``, else from the state file under ``data_dir``."""
    certs = load_certificates(cert, "TSA certificate file")
    intermediates = [*certs[1:], *(load_certificates(chain, "chain file") if chain else [])]
    if serials is None:
        serials = FileSerials((data_dir or Path("var")) / STATE_FILE, tsa_name(certs[0]))
    return TimeStampAuthority(
        certs[0],
        load_private_key(key),
        serials=serials,
        clock=clock or SystemClock(),
        chain=intermediates,
        policy=policy,
        accuracy=accuracy,
    )


def bus_authority(settings: Settings, engine: sa.Engine, clock: Clock) -> TimeStampAuthority | None:
    """The API's TSA, or None when no TSA certificate is configured. Serials: the database."""
    cert, key, chain = settings.tsa_cert, settings.tsa_key, settings.tsa_chain
    if cert is None and settings.pki_dir is not None:
        pki = settings.pki_dir
        if (pki / "tsa" / "tsa.pem").exists():
            cert, key = pki / "tsa" / "tsa.pem", pki / "tsa" / "tsa.key"
            chain = chain or (pki / "chain.pem" if (pki / "chain.pem").exists() else None)
    if cert is None or key is None:
        return None
    name = tsa_name(load_certificates(cert, "TSA certificate file")[0])
    return load_authority(
        cert,
        key,
        serials=DbSerials(engine, name),
        chain=chain,
        clock=clock,
        policy=settings.tsa_policy,
        accuracy=dt.timedelta(milliseconds=settings.tsa_accuracy_ms),
    )


def standalone_app(authority: TimeStampAuthority) -> FastAPI:
    """The TSA alone (``lienthong tsa serve``): POST /v1/tsa and GET /v1/tsa/certificates."""
    app = FastAPI(
        title="lienthong time-stamp authority",
        version="1",
        summary="RFC 3161 time-stamping over HTTP",
    )
    app.include_router(create_router(authority))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "policy": authority.policy_dotted}

    return app
