"""Verification policy: limits and switches, with conservative defaults.

Every number here is a documented setting (``LIENTHONG_*`` through ``adapters.settings``) and has a
test at its edge. ``Freshness`` and the timestamp requirement are what the router turns on; the
command-line verifier judges a document of any age.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 64 * KIB
    max_signature_bytes: int = 128 * KIB
    max_certificates: int = 8  # embedded in one signature
    max_signers: int = 4  # SignerInfos in one signature
    max_recipients: int = 256
    max_attachments: int = 32
    max_attachment_bytes: int = 256 * MIB
    max_chain_depth: int = 5  # intermediates between a signer and its anchor


@dataclass(frozen=True, slots=True)
class Freshness:
    """How old and how far in the future ``created_at`` may be when the bus receives it."""

    acceptance_window: dt.timedelta = dt.timedelta(days=2)
    future_skew: dt.timedelta = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    limits: Limits = field(default_factory=Limits)
    require_timestamp: bool = False
    # How far a timestamp's genTime may lie from the signer's claimed signingTime.
    timestamp_skew: dt.timedelta = dt.timedelta(minutes=10)
    freshness: Freshness | None = None
