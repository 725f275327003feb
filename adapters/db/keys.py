"""Keys asked for in ``IN (...)`` lists: a batch's digests, message ids, trace subjects."""

from __future__ import annotations

from collections.abc import Sequence

# Keys per query at most: far below the drivers' limits on parameters per statement (SQLite
# 32,766; PostgreSQL 65,535), and small enough that the planner keeps using the index.
PER_QUERY = 500


def chunks(keys: Sequence[str], size: int = PER_QUERY) -> list[Sequence[str]]:
    """``keys`` in pieces of at most ``size``, in order (none for no keys)."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]
