"""Electronic identifier codes of agencies (QĐ 20/2020/QĐ-TTg, QCVN 102:2016).

A code is dot-separated groups of ``0-9`` and ``A-Z``, at most 35 characters, read from right to
left starting at level 1, e.g. ``000.00.00.G22`` or ``000.00.11.H53``. The level-1 group (the last
one) begins with a letter that names the kind of body (G ministries, H provincial People's
Committees, K People's Councils, A Party bodies...). Only the canonical form is accepted: no
lowercase, no spaces, no empty groups, ASCII only; nothing is normalised on the way in, because the
code is compared byte for byte with the ``organizationIdentifier`` of certificates.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

MAX_AGENCY_CODE_LENGTH = 35

# Kept in the form both Python's ``re`` and pydantic's Rust regex engine read the same way.
AGENCY_CODE_PATTERN = r"^[0-9A-Z]{1,8}(\.[0-9A-Z]{1,8}){0,8}\.[A-Z][0-9A-Z]{0,7}$"
_AGENCY_CODE_RE = re.compile(AGENCY_CODE_PATTERN.replace("$", r"\Z"))

AgencyCode = Annotated[
    str,
    StringConstraints(strict=True, max_length=MAX_AGENCY_CODE_LENGTH, pattern=AGENCY_CODE_PATTERN),
]


def is_agency_code(value: str) -> bool:
    """Whether ``value`` is a canonical agency code."""
    return len(value) <= MAX_AGENCY_CODE_LENGTH and _AGENCY_CODE_RE.match(value) is not None
