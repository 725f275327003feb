"""The exceptions of lienthong, rooted in one class.

    LienthongError
    ├── Rejected              an envelope failed verification; carries one Reason
    ├── InputError            input that cannot be used at all (not a file, not PEM...)
    ├── ConfigurationError    settings or trust material that make the bus unable to work
    └── NotFound              a named object does not exist (or is not visible to the caller)

The core raises these; adapters translate them (problem details, CLI exit codes) and never show
a library's own exception to a caller.
"""

from __future__ import annotations

from exchange.reasons import Reason


class LienthongError(Exception):
    """Root of every error lienthong raises on purpose."""


class Rejected(LienthongError):
    """Verification failed for exactly one reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class InputError(LienthongError):
    """Input is unusable: a missing file, a file that is not what it should be."""


class ConfigurationError(LienthongError):
    """The configuration or trust material is inconsistent."""


class NotFound(LienthongError):
    """The object does not exist, or the caller may not know that it does."""
