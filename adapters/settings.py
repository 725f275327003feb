"""All configuration of lienthong: one ``Settings`` object, read from ``LIENTHONG_*``.

Nothing else in lienthong reads the environment. Every resource limit is here, with its default.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.tsa.authority import DEFAULT_POLICY as DEFAULT_TSA_POLICY
from exchange.policy import KIB, MIB, Freshness, Limits, VerificationPolicy
from exchange.timestamps import TsaRevocation


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="forbid")

    # Where things are.
    data_dir: Path = Field(Path("var"), description="Database (SQLite), blobs and TSA state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite under data_dir. postgresql+psycopg://..."
    )
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    pki_dir: Path | None = Field(
        None, description="A development PKI folder: fills the trust and bus settings below."
    )
    trust_anchors: Path | None = None
    intermediates: Path | None = Field(
        None, description="Issuing CA certificates that request-signing credentials chain through."
    )
    tsa_trust_anchors: Path | None = None
    crl_files: list[Path] = Field(default_factory=list)
    bus_code: str = "000.00.00.LT0"
    bus_cert: Path | None = None
    bus_key: Path | None = None
    admin_certificates: Path | None = Field(
        None, description="PEM file of the certificates whose holders administer the bus."
    )

    # Topology.
    exchange_prefix: str = "lienthong"
    delivery_limit: int = Field(5, ge=1, le=100)
    prefetch: int = Field(256, ge=1, le=10_000)
    batch_max: int = Field(256, ge=1, le=10_000)
    batch_wait_ms: int = Field(5, ge=0, le=1000)
    publish_timeout_s: float = 10.0
    publish_retries: int = Field(8, ge=0)

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8470
    max_request_bytes: int = Field(
        8 * MIB, description="JSON bodies (submissions with inline files)."
    )
    max_inline_attachment_bytes: int = Field(
        4 * MIB, description="Attachments inside a submission."
    )
    max_blob_bytes: int = Field(256 * MIB, description="One uploaded blob.")
    blob_idle_timeout_s: float = Field(
        30.0, description="An upload that sends nothing this long is cut."
    )
    page_size_max: int = 200
    auth_skew_s: int = Field(300, description="How far a request signature's created may drift.")

    # Verification policy.
    max_header_bytes: int = 64 * KIB
    max_signature_bytes: int = 128 * KIB
    max_certificates: int = 8
    max_signers: int = 4
    max_recipients: int = 256
    max_attachments: int = 32
    max_chain_depth: int = 5
    require_timestamp: bool = False
    timestamp_skew_s: int = 600
    acceptance_window_s: int = 2 * 24 * 3600
    future_skew_s: int = 300
    crl_poll_s: float = 10.0

    # Time-stamping.
    # require_timestamp (above) stays off for development and tests; the production deployment
    # (docker-compose.yml) sets LIENTHONG_REQUIRE_TIMESTAMP=true, so the router there rejects an
    # envelope whose signers are not all time-stamped (timestamp_required).
    # The TSA of the API (POST /v1/tsa); with pki_dir, DIR/tsa/tsa.{pem,key} and DIR/chain.pem.
    tsa_cert: Path | None = Field(None, description="TSA certificate (PEM; more = chain).")
    tsa_key: Path | None = Field(None, description="Private key of the TSA certificate, PEM.")
    tsa_chain: Path | None = Field(
        None, description="Intermediates the TSA embeds in tokens when a query sets certReq."
    )
    tsa_policy: str = Field(
        DEFAULT_TSA_POLICY,
        description="The TSA policy OID stamped in tokens (lienthong's TSA policy v1).",
    )
    tsa_accuracy_ms: int = Field(1000, ge=1, le=60_000, description="Accuracy the TSA claims.")
    # Verifying tokens: TSA trust anchors are tsa_trust_anchors, else trust_anchors.
    tsa_certificates: Path | None = Field(
        None, description="Certificates of TSAs whose tokens do not embed them (PEM)."
    )
    tsa_revocation: TsaRevocation = Field(
        TsaRevocation.REQUIRE,
        description="require: a current CRL for every link of a TSA's chain (as for signers); "
        "if_available: CRLs are checked when any is loaded for the chain.",
    )

    def resolved(self) -> Settings:
        """Fill paths from ``pki_dir`` where they were not given."""
        if self.pki_dir is None:
            return self
        pki = self.pki_dir
        update: dict[str, object] = {}
        if self.trust_anchors is None:
            update["trust_anchors"] = pki / "trust-anchors.pem"
        if self.intermediates is None:
            update["intermediates"] = pki / "chain.pem"
        if not self.crl_files:
            update["crl_files"] = [
                pki / "crl" / "root-ca.crl.pem",
                pki / "crl" / "issuing-ca.crl.pem",
            ]
        if self.bus_cert is None:
            update["bus_cert"] = pki / "bus" / "bus.pem"
            update["bus_key"] = pki / "bus" / "bus.key"
        if self.admin_certificates is None and (pki / "admin" / "admin.pem").exists():
            update["admin_certificates"] = pki / "admin" / "admin.pem"
        return self.model_copy(update=update)

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lienthong.db').resolve()}"

    @property
    def limits(self) -> Limits:
        return Limits(
            max_header_bytes=self.max_header_bytes,
            max_signature_bytes=self.max_signature_bytes,
            max_certificates=self.max_certificates,
            max_signers=self.max_signers,
            max_recipients=self.max_recipients,
            max_attachments=self.max_attachments,
            max_attachment_bytes=self.max_blob_bytes,
            max_chain_depth=self.max_chain_depth,
        )

    def policy(self) -> VerificationPolicy:
        return VerificationPolicy(
            limits=self.limits,
            require_timestamp=self.require_timestamp,
            timestamp_skew=dt.timedelta(seconds=self.timestamp_skew_s),
            freshness=Freshness(
                acceptance_window=dt.timedelta(seconds=self.acceptance_window_s),
                future_skew=dt.timedelta(seconds=self.future_skew_s),
            ),
        )
