"""A submitted envelope as one byte string: header, signature and inline attachments.

This is the body of a message on the submit exchange, whichever door it came through (the
``lienthong send`` command, the HTTP API, an agency's own AMQP client). The framing is
length-prefixed binary so that the header's signed bytes travel untouched and nothing is
base64-inflated::

    b"LTS1"  u32 header_len  header  u32 signature_len  signature  u16 count
             count x ( u16 name_len  name(UTF-8)  u64 size  content )

All integers are big-endian. ``decode`` enforces the limits before it allocates anything, and
hands out each inline attachment as a read-only view into the body rather than a copy (a MiB
copied, and its pages first touched, for every large attachment the router takes in).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

MAGIC = b"LTS1"
CONTENT_TYPE = "application/vnd.lienthong.submission"


class SubmissionError(ValueError):
    """The bytes are not a lienthong submission (or break its limits)."""


@dataclass(frozen=True, slots=True)
class Submission:
    header: bytes
    signature: bytes
    attachments: Mapping[str, bytes | memoryview] = field(default_factory=dict)

    def encode(self) -> bytes:
        parts: list[bytes | memoryview] = [
            MAGIC,
            struct.pack(">I", len(self.header)),
            self.header,
            struct.pack(">I", len(self.signature)),
            self.signature,
            struct.pack(">H", len(self.attachments)),
        ]
        for name, content in self.attachments.items():
            encoded = name.encode("utf-8")
            parts += [struct.pack(">H", len(encoded)), encoded, struct.pack(">Q", len(content))]
            parts.append(content)
        return b"".join(parts)


def decode(
    data: bytes,
    *,
    max_header: int,
    max_signature: int,
    max_attachments: int,
    max_inline_bytes: int,
) -> Submission:
    view = memoryview(data)
    pos = 0

    def take(size: int) -> memoryview:
        nonlocal pos
        if pos + size > len(view):
            raise SubmissionError("truncated submission")
        chunk = view[pos : pos + size]
        pos += size
        return chunk

    if bytes(take(4)) != MAGIC:
        raise SubmissionError("not a lienthong submission (bad magic)")
    (header_len,) = struct.unpack(">I", take(4))
    if header_len > max_header:
        raise SubmissionError(f"header of {header_len} bytes exceeds {max_header}")
    header = bytes(take(header_len))
    (signature_len,) = struct.unpack(">I", take(4))
    if signature_len > max_signature:
        raise SubmissionError(f"signature of {signature_len} bytes exceeds {max_signature}")
    signature = bytes(take(signature_len))
    (count,) = struct.unpack(">H", take(2))
    if count > max_attachments:
        raise SubmissionError(f"{count} inline attachments exceed {max_attachments}")
    attachments: dict[str, bytes | memoryview] = {}
    total = 0
    for _ in range(count):
        (name_len,) = struct.unpack(">H", take(2))
        try:
            name = bytes(take(name_len)).decode("utf-8")
        except UnicodeDecodeError:
            raise SubmissionError("attachment name is not UTF-8") from None
        (size,) = struct.unpack(">Q", take(8))
        total += size
        if total > max_inline_bytes:
            raise SubmissionError(f"inline attachments exceed {max_inline_bytes} bytes")
        if name in attachments:
            raise SubmissionError(f"attachment {name!r} appears twice")
        attachments[name] = take(size)
    if pos != len(view):
        raise SubmissionError(f"{len(view) - pos} trailing bytes after the submission")
    return Submission(header, signature, attachments)
