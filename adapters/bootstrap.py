"""The one place where adapters are wired into the core."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from cryptography import x509

from adapters.blobstore import FileBlobStore
from adapters.db import migrate
from adapters.db.engine import create_engine
from adapters.db.registry import CachedRegistry
from adapters.db.routing import SqlRoutingStore
from adapters.files import load_certificates, load_private_key
from adapters.settings import Settings
from adapters.trustsync import CrlSync
from exchange.errors import ConfigurationError
from exchange.notices import BusNotary
from exchange.ports import Clock, SystemClock
from exchange.routing import Router
from exchange.signing import SigningKey
from exchange.timestamps import TimestampVerifier
from exchange.trust import TrustStore
from exchange.verification import Verifier

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass
class Bus:
    settings: Settings
    engine: sa.Engine
    trust: TrustStore
    crl_sync: CrlSync
    registry: CachedRegistry
    store: SqlRoutingStore
    blobs: FileBlobStore
    verifier: Verifier
    router: Router
    clock: Clock
    timestamps: TimestampVerifier | None = None

    def tsa_router(self) -> APIRouter:
        """The routes of the bus's time-stamp authority (POST /v1/tsa), for the API."""
        from adapters.tsa.http import create_router
        from adapters.tsa.service import bus_authority

        return create_router(bus_authority(self.settings, self.engine, self.clock))


def database(
    settings: Settings, *, upgrade: bool = False, background_checkpoints: bool = False
) -> sa.Engine:
    engine = create_engine(settings.database, background_checkpoints=background_checkpoints)
    if upgrade:
        migrate.upgrade(engine)
    elif not migrate.is_current(engine):
        raise ConfigurationError(
            f"the database at {engine.url.render_as_string(hide_password=True)} is not at the "
            "current schema: run `lienthong db upgrade`"
        )
    return engine


def trust_store(settings: Settings) -> TrustStore:
    if settings.trust_anchors is None:
        raise ConfigurationError(
            "no trust anchors: set LIENTHONG_TRUST_ANCHORS (or LIENTHONG_PKI_DIR)"
        )
    anchors = load_certificates(settings.trust_anchors, "trust anchor file")
    return TrustStore(anchors, max_chain_depth=settings.max_chain_depth)


def timestamp_verifier(settings: Settings, trust: TrustStore) -> TimestampVerifier:
    """Judges RFC 3161 tokens: TSA trust anchors are ``tsa_trust_anchors``, else the trust
    anchors themselves (the same store); either way the TSA chains see the CRLs ``trust`` gets."""
    anchors: TrustStore | list[x509.Certificate] = trust
    if settings.tsa_trust_anchors is not None:
        anchors = load_certificates(settings.tsa_trust_anchors, "TSA trust anchor file")
    supplied = (
        load_certificates(settings.tsa_certificates, "TSA certificate file")
        if settings.tsa_certificates is not None
        else []
    )
    return TimestampVerifier(
        anchors,
        trust,
        revocation=settings.tsa_revocation,
        certificates=supplied,
        future_skew=dt.timedelta(seconds=settings.future_skew_s),
        max_certificates=settings.max_certificates,
    )


def build(
    settings: Settings,
    *,
    upgrade: bool = False,
    clock: Clock | None = None,
    background_checkpoints: bool = False,
) -> Bus:
    """The wired bus. ``background_checkpoints``: the caller runs a ``WalCheckpointer`` on
    ``engine`` (see ``adapters.db.checkpoint``)."""
    settings = settings.resolved()
    clock = clock or SystemClock()
    engine = database(settings, upgrade=upgrade, background_checkpoints=background_checkpoints)
    trust = trust_store(settings)
    crl_sync = CrlSync(trust, engine, list(settings.crl_files), interval=settings.crl_poll_s)
    registry = CachedRegistry(engine)
    store = SqlRoutingStore(engine, bus_code=settings.bus_code)
    blobs = FileBlobStore(settings.data_dir / "blobs")
    timestamps = timestamp_verifier(settings, trust)
    verifier = Verifier(
        trust, registry, clock, settings.policy(), timestamps=timestamps, replay=store
    )
    notary = None
    if settings.bus_cert is not None and settings.bus_key is not None:
        certs = load_certificates(settings.bus_cert, "bus certificate")
        # Notices embed the issuing CAs, so an agency holding only the trust anchors verifies them.
        intermediates = (
            load_certificates(settings.intermediates, "intermediate certificates")
            if settings.intermediates is not None
            else []
        )
        notary = BusNotary(
            settings.bus_code,
            SigningKey(certs[0], load_private_key(settings.bus_key)),
            clock,
            chain=[*certs[1:], *intermediates],
        )
    router = Router(
        verifier,
        store,
        blobs,
        clock,
        max_inline_bytes=settings.max_inline_attachment_bytes,
        notices=notary,
    )
    return Bus(
        settings,
        engine,
        trust,
        crl_sync,
        registry,
        store,
        blobs,
        verifier,
        router,
        clock,
        timestamps,
    )
