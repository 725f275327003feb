"""Every reason code of the groups this suite owns is produced by at least one attack test.

Groups are read from the numbered comments of ``exchange.reasons``; a reason added to one of
groups 0-8, 12 or 13 fails this test until a test in ``test_reasons_*.py`` produces it.
Timestamps (9), freshness (10) and replay (11) are tested elsewhere.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from exchange import reasons
from exchange.reasons import Reason

OWNED_GROUPS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13})
_GROUP = re.compile(r"^\s*#\s*(\d+)\.")
_MEMBER = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=")


def _groups() -> dict[Reason, int | None]:
    """Each Reason with the number of the comment heading it (None under an unnumbered one)."""
    group: int | None = None
    out: dict[Reason, int | None] = {}
    for line in inspect.getsource(reasons.Reason).splitlines():
        if line.strip().startswith("#"):
            heading = _GROUP.match(line)
            group = int(heading.group(1)) if heading else None
        elif member := _MEMBER.match(line):
            out[Reason[member.group(1)]] = group
    return out


def test_every_reason_of_groups_0_to_8_12_and_13_has_an_attack_test() -> None:
    groups = _groups()
    assert set(groups) == set(Reason)
    owned = {reason for reason, group in groups.items() if group in OWNED_GROUPS}
    assert Reason.HEADER_TOO_LARGE in owned
    assert Reason.ATTACHMENT_DIGEST_MISMATCH in owned
    assert Reason.REPLAY not in owned
    sources = [
        path.read_text("utf-8")
        for path in Path(__file__).parent.glob("test_reasons_*.py")
        if path.name != Path(__file__).name
    ]
    tested = {
        Reason[name] for text in sources for name in re.findall(r"Reason\.([A-Z][A-Z0-9_]*)", text)
    }
    assert sorted(owned - tested) == []
