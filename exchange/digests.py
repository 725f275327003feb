"""Digests of short inputs, computed without letting go of the GIL.

CPython's hashlib releases the GIL while it hashes 2,048 bytes or more at once. For a long input
that lets other threads run; for a header or a signature of a few KiB it backfires in a busy
process: the hashing thread then waits up to a switch interval to get the GIL back, behind
threads running Python. The router decides one batch, commits another and reads AMQP frames at
once: measured with one other thread running Python and a 1 ms switch interval, SHA-256 of
4 KiB took 140-160 µs in one call and 3.5-7.7 µs fed in pieces below the threshold (3.0 µs
alone). Inputs of ``HOLD_UP_TO`` bytes or more are hashed in one call, letting go of the GIL.
"""

from __future__ import annotations

import hashlib
from typing import Any

GIL_RELEASE_MIN = 2048  # hashlib's HASHLIB_GIL_MINSIZE: updates this long run without the GIL
HOLD_UP_TO = 64 * 1024
_PIECE = GIL_RELEASE_MIN - 1


def digest(name: str, *parts: bytes | memoryview) -> Any:
    """A hashlib object (``name`` as ``hashlib.new`` takes it) fed ``parts`` in order."""
    h = hashlib.new(name)
    for part in parts:
        if len(part) >= HOLD_UP_TO:
            h.update(part)
            continue
        view = memoryview(part)
        for start in range(0, len(view), _PIECE):
            h.update(view[start : start + _PIECE])
    return h
