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
    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/", description="The RabbitMQ broker (AMQP 0-9-1 URL)."
    )
    pki_dir: Path | None = Field(
        None, description="A development PKI folder: fills the trust and bus settings below."
    )
    trust_anchors: Path | None = Field(
        None, description="PEM file of the trust anchors (root CA certificates) of signers."
    )
    intermediates: Path | None = Field(
        None, description="Issuing CA certificates that request-signing credentials chain through."
    )
    tsa_trust_anchors: Path | None = Field(
        None, description="PEM file of the TSA trust anchors; default: trust_anchors."
    )
    crl_files: list[Path] = Field(
        default_factory=list, description="CRL files (PEM or DER) read again when they change."
    )
    bus_code: str = Field("000.00.00.LT0", description="The bus's own agency code (notices).")
    bus_cert: Path | None = Field(None, description="The bus's certificate: it seals notices.")
    bus_key: Path | None = Field(None, description="The private key of bus_cert (PEM).")
    admin_certificates: Path | None = Field(
        None, description="PEM file of the certificates whose holders administer the bus."
    )

    # Topology.
    exchange_prefix: str = Field(
        "lienthong", description="Names of the exchanges and queues: PREFIX.submit, .router..."
    )
    delivery_limit: int = Field(
        5,
        ge=1,
        le=100,
        description="Deliveries of one message to routers before it is dead-lettered "
        "(x-delivery-limit of the router queue).",
    )
    prefetch: int = Field(
        256, ge=1, le=10_000, description="Unacknowledged messages a router holds at once."
    )
    batch_max: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Messages routed in one transaction (the router takes at most a quarter "
        "of prefetch: two batches routed, two waiting).",
    )
    batch_wait_ms: int = Field(
        15, ge=0, le=1000, description="How long a router waits to fill a batch."
    )
    publish_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long one publish waits for the broker's confirm."
    )
    publish_retries: int = Field(
        8, ge=0, le=100, description="Publish attempts after the first, with backoff (max 5 s)."
    )

    # API.
    api_host: str = Field("127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(8470, ge=1, le=65535, description="Port the API listens on.")
    max_request_bytes: int = Field(
        8 * MIB, ge=1, description="A request body (a submission with its inline files), bytes."
    )
    max_inline_attachment_bytes: int = Field(
        4 * MIB, ge=0, description="All attachments inside one submission together, bytes."
    )
    max_blob_bytes: int = Field(
        256 * MIB,
        ge=1,
        description="One uploaded blob, bytes; also the largest attachment a manifest may declare.",
    )
    blob_idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body (an upload, a submission) that sends nothing this long is "
        "cut with 408.",
    )
    page_size_max: int = Field(
        200, ge=1, description="Entries one GET /v1/inbox page may ask for (its limit)."
    )
    trace_page_size_max: int = Field(
        500, ge=1, description="Events one GET /v1/trace page may ask for (its limit)."
    )
    auth_skew_s: int = Field(
        300, ge=0, description="How far a request signature's created may drift, seconds."
    )

    # Verification policy.
    max_header_bytes: int = Field(64 * KIB, ge=1, description="An envelope header, bytes.")
    max_signature_bytes: int = Field(
        128 * KIB, ge=1, description="An envelope's DER signature, bytes."
    )
    max_certificates: int = Field(
        8, ge=1, description="Certificates embedded in one signature (and in one RFC 3161 token)."
    )
    max_signers: int = Field(4, ge=1, description="SignerInfos in one signature.")
    max_recipients: int = Field(256, ge=1, description="Recipients one header may list.")
    max_attachments: int = Field(32, ge=0, description="Attachments one manifest may list.")
    max_chain_depth: int = Field(
        5, ge=0, description="Intermediate CAs between a signer (or a TSA) and its trust anchor."
    )
    require_timestamp: bool = Field(
        False, description="Reject signers without an RFC 3161 token (production: true)."
    )
    timestamp_skew_s: int = Field(
        600, ge=0, description="How far a token's genTime may lie from the signingTime, seconds."
    )
    acceptance_window_s: int = Field(
        2 * 24 * 3600, ge=0, description="How old created_at may be when the router judges it."
    )
    future_skew_s: int = Field(
        300,
        ge=0,
        description="How far created_at, and a token's genTime, may be ahead of the bus clock.",
    )
    crl_poll_s: float = Field(
        10.0, gt=0, description="How often CRL files and CRLs loaded into the database are read."
    )

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
