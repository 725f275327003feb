"""Bodies of the HTTP API (``/v1``): what agency systems and administrators send and receive.

Errors are RFC 9457 problem details (``application/problem+json``) with a ``code``: a rejection
reason (see ``exchange.reasons``) or one of the API's own codes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# Standard base64 with its padding (RFC 4648 section 4): whole quanta of four characters. The
# model admits any string of the alphabet, and the API answers one that does not decode with 400
# bad_base64; the schema documents exactly the strings that do.
Base64 = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        }
    ),
]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Model):
    type: str = Field(examples=["urn:lienthong:problem:not_found"])
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


class InlineAttachment(_Model):
    name: str = Field(min_length=1, max_length=255)
    content: Base64


class SubmitRequest(_Model):
    """An envelope: the header's exact bytes and the DER signature, both base64."""

    header: Base64
    signature: Base64
    attachments: list[InlineAttachment] = Field(default_factory=list, max_length=32)


class SubmitAccepted(_Model):
    """Queued for the router; the verdict is at ``location`` (GET /v1/messages/{id})."""

    message_id: str | None
    status: Literal["queued"] = "queued"
    location: str | None


class BlobStored(_Model):
    sha256: Sha256Hex
    size: int


class Signer(_Model):
    role: str
    name: str
    title: str | None
    organization: str | None
    agency_code: str | None
    fingerprint_sha256: str
    serial: str
    issuer: str
    signing_time: str
    timestamp: str | None
    tsa: str | None


class AttachmentLink(_Model):
    name: str
    media_type: str
    size: int
    sha256: Sha256Hex
    href: str


class InboxEntry(_Model):
    message_id: str
    kind: str
    sender: str
    subject: str | None
    status_code: str | None
    for_message_id: str | None
    delivered_at: dt.datetime
    fetched_at: dt.datetime | None
    acknowledged_at: dt.datetime | None


class InboxPage(_Model):
    items: list[InboxEntry]
    next_cursor: str | None


class InboxMessage(InboxEntry):
    header: Base64
    header_json: dict[str, Any]
    signature: Base64
    signers: list[Signer]
    trusted_time: dt.datetime
    time_source: str
    attachments: list[AttachmentLink]


class Acknowledged(_Model):
    message_id: str
    acknowledged_at: dt.datetime


class RecipientState(_Model):
    recipient: str
    state: Literal["delivered", "fetched", "acknowledged"]
    delivered_at: dt.datetime
    fetched_at: dt.datetime | None
    acknowledged_at: dt.datetime | None


class StatusUpdate(_Model):
    message_id: str
    sender: str
    code: str
    received_at: dt.datetime


class MessageState(_Model):
    message_id: str
    state: Literal["stored", "rejected"]
    kind: str | None = None
    received_at: dt.datetime | None = None
    reason: str | None = None
    detail: str | None = None
    recipients: list[RecipientState] = Field(default_factory=list)
    statuses: list[StatusUpdate] = Field(default_factory=list)


class Agency(_Model):
    code: str
    name: str
    active: bool
    seal_fingerprints: list[str]


class TraceEntry(_Model):
    subject: str
    seq: int
    event: str
    at: dt.datetime
    sender: str | None
    recipient: str | None
    actor: str | None
    reason: str | None
    detail: str | None
    hash: str


class Timeline(_Model):
    subject: str
    chain_intact: bool
    events: list[TraceEntry]


class TracePage(_Model):
    items: list[TraceEntry]
    next_cursor: str | None


class Health(_Model):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
