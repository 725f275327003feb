"""The envelope header, version 1: the JSON object an agency signs.

The header's exact bytes are what is signed and verified; these models say which bytes are a
valid header. Every object is closed (unknown fields are rejected), types are strict (no string
to number coercion), and every string and list has an upper bound so that a header cannot grow
beyond what the bus is prepared to carry. Document metadata follows edXML (QCVN 102:2016).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from schemas.agency import AgencyCode

HEADER_VERSION = 1

# Characters that never belong in a metadata field: C0 controls except tab, LF and CR, and DEL.
_NO_CONTROL = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$"
_ONE_LINE = r"^[^\x00-\x1F\x7F]*$"


def _text(max_length: int, *, min_length: int = 1, multiline: bool = False) -> object:
    return StringConstraints(
        strict=True,
        min_length=min_length,
        max_length=max_length,
        pattern=_NO_CONTROL if multiline else _ONE_LINE,
    )


Line = Annotated[str, _text(200)]
ShortLine = Annotated[str, _text(64)]
Paragraph = Annotated[str, _text(2000, multiline=True)]
Sha256Hex = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$")]
MediaType = Annotated[
    str,
    StringConstraints(
        strict=True,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$",
    ),
]
# A file name, never a path: no separators, no "." or "..", no control characters.
FileName = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=255, pattern=r"^[^\x00-\x1F\x7F/\\]+$"),
]


def _utc(value: dt.datetime) -> dt.datetime:
    if value.utcoffset() != dt.timedelta(0):
        raise ValueError("created_at must be an RFC 3339 time in UTC (Z or +00:00)")
    return value


UtcDateTime = Annotated[dt.datetime, AfterValidator(_utc)]

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_uuid(value: object) -> object:
    # uuid.UUID also takes braces, "urn:uuid:" and uppercase; an id has one spelling here.
    if isinstance(value, str) and not _UUID_RE.fullmatch(value):
        raise ValueError("must be a UUID in lowercase 8-4-4-4-12 form")
    return value


MessageId = Annotated[uuid.UUID, BeforeValidator(_canonical_uuid)]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Priority(StrEnum):
    """Độ khẩn (edXML Priority 0-4)."""

    NORMAL = "normal"  # thường
    URGENT = "urgent"  # khẩn
    VERY_URGENT = "very_urgent"  # thượng khẩn
    FLASH = "flash"  # hỏa tốc
    FLASH_SCHEDULED = "flash_scheduled"  # hỏa tốc hẹn giờ


class SteeringType(StrEnum):
    """How the document steers its recipients (edXML SteeringType)."""

    NORMAL = "normal"  # văn bản thông thường
    DIRECTIVE = "directive"  # văn bản chỉ đạo
    REPORT = "report"  # văn bản báo cáo


class StatusCode(StrEnum):
    """edXML status codes a receiving unit answers with."""

    ARRIVED = "01"
    REJECTED = "02"
    RECEIVED = "03"
    ASSIGNED = "04"
    PROCESSING = "05"
    COMPLETED = "06"
    RECALL_REQUESTED = "13"
    RECALL_ACCEPTED = "15"
    RECALL_REJECTED = "16"


class DocumentSigner(_Closed):
    """Who signed the document on paper terms: name, position and signing competence."""

    full_name: Line
    position: Line
    # TM. (on behalf of), KT. (acting for), Q. (acting), TL., TUQ. ... or absent.
    competence: ShortLine | None = None


class DocumentMeta(_Closed):
    """Metadata of an official document (edXML)."""

    number: ShortLine  # số, e.g. "2491"
    notation: ShortLine  # ký hiệu, e.g. "STC-BCTC"
    type: Line  # loại văn bản: Công văn, Quyết định...
    subject: Paragraph  # trích yếu
    promulgation_place: Line
    promulgation_date: dt.date
    signer: DocumentSigner | None = None  # absent when only the seal signs
    priority: Priority = Priority.NORMAL
    steering_type: SteeringType = SteeringType.NORMAL
    due_date: dt.date | None = None


class StatusBody(_Closed):
    """A receiving unit's answer about a document it was sent."""

    for_message_id: MessageId
    code: StatusCode
    description: Annotated[str, _text(2000, min_length=0, multiline=True)] = ""


class AttachmentRef(_Closed):
    """One entry of the attachment manifest; the content travels beside the header."""

    name: FileName
    media_type: MediaType
    size: int = Field(ge=0)
    sha256: Sha256Hex


class Header(_Closed):
    """Envelope header v1. Limits on list lengths are policy, enforced by the verifier."""

    version: Annotated[int, Strict(), Field(ge=HEADER_VERSION, le=HEADER_VERSION)]
    message_id: MessageId
    kind: Literal["document", "status"]
    sender: AgencyCode
    recipients: list[AgencyCode] = Field(min_length=1)
    created_at: UtcDateTime
    document: DocumentMeta | None = None
    status: StatusBody | None = None
    attachments: list[AttachmentRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Header:
        if self.kind == "document" and (self.document is None or self.status is not None):
            raise ValueError("a document header carries 'document' and no 'status'")
        if self.kind == "status" and (self.status is None or self.document is not None):
            raise ValueError("a status header carries 'status' and no 'document'")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients are listed more than once")
        names = [a.name for a in self.attachments]
        if len(set(names)) != len(names):
            raise ValueError("attachment names are listed more than once")
        return self

    def to_json_bytes(self) -> bytes:
        """The canonical way lienthong writes a header: UTF-8, no escaping, no nulls."""
        return self.model_dump_json(exclude_none=True).encode("utf-8")
