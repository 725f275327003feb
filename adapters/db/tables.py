"""The tables of the system of record: registry, messages, inboxes, blobs, trace, CRLs.

Identifiers are strings (UUIDs in canonical form, agency codes, hex digests) so that SQLite and
PostgreSQL hold exactly the same values. Times are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, also on SQLite (which keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Time = UtcDateTime()

agencies = sa.Table(
    "agencies",
    metadata,
    sa.Column("code", sa.String(35), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Certificates pinned to an agency: its seal(s), and credentials its systems sign requests with.
agency_certificates = sa.Table(
    "agency_certificates",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("agency_code", sa.ForeignKey("agencies.code"), nullable=False, index=True),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("subject", sa.String(1024), nullable=False),
    sa.Column("not_after", Time, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("added_at", Time, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("message_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sender", sa.String(35), nullable=False, index=True),
    sa.Column("envelope_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("header", sa.LargeBinary, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("signers", sa.JSON, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("for_message_id", sa.String(36), nullable=True, index=True),
    sa.Column("status_code", sa.String(2), nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("trusted_time", Time, nullable=False),
    sa.Column("time_source", sa.String(16), nullable=False),
    sa.Column("received_at", Time, nullable=False, index=True),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("message_id", sa.ForeignKey("messages.message_id"), nullable=False),
    sa.Column("recipient", sa.String(35), nullable=False),
    sa.Column("delivered_at", Time, nullable=False),
    sa.Column("fetched_at", Time, nullable=True),
    sa.Column("acknowledged_at", Time, nullable=True),
    sa.UniqueConstraint("message_id", "recipient", name="uq_inbox_message_recipient"),
    sa.Index("ix_inbox_recipient_ack_id", "recipient", "acknowledged_at", "id"),
)

message_attachments = sa.Table(
    "message_attachments",
    metadata,
    sa.Column("message_id", sa.ForeignKey("messages.message_id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
)

# Content-addressed blobs; the bytes live in the blob folder, named by their SHA-256.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("stored_at", Time, nullable=False),
)

# Who uploaded a blob: only its uploader may reference it from an envelope.
blob_uploads = sa.Table(
    "blob_uploads",
    metadata,
    sa.Column("sha256", sa.ForeignKey("blobs.sha256"), primary_key=True),
    sa.Column("agency_code", sa.String(35), primary_key=True),
    sa.Column("uploaded_at", Time, nullable=False),
)

# Submissions that were rejected, by the digest of their bytes (a redelivery is recognised).
rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("envelope_digest", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(36), nullable=True, index=True),
    sa.Column("sender", sa.String(35), nullable=True, index=True),
    sa.Column("reason", sa.String(64), nullable=False, index=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("rejected_at", Time, nullable=False, index=True),
)

# The trace: per subject (a message id, or "digest:<hex>" when there is none) a hash chain.
trace_events = sa.Table(
    "trace_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("subject", sa.String(80), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", Time, nullable=False, index=True),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("sender", sa.String(35), nullable=True, index=True),
    sa.Column("recipient", sa.String(35), nullable=True, index=True),
    sa.Column("actor", sa.String(80), nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("subject", "seq", name="uq_trace_subject_seq"),
)

crls = sa.Table(
    "crls",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("issuer", sa.String(1024), nullable=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("loaded_at", Time, nullable=False),
)

# Request-signature nonces already used (replay protection of agency credentials).
auth_nonces = sa.Table(
    "auth_nonces",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", Time, nullable=False, index=True),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("envelope_digest", sa.String(64), nullable=True, index=True),
    sa.Column("transport_id", sa.String(128), nullable=True),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("dead_at", Time, nullable=False),
)

tsa_serials = sa.Table(
    "tsa_serials",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("next_serial", sa.BigInteger, nullable=False),
)
