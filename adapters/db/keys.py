"""Keys asked for as a list: a batch's digests, message ids, trace subjects.

The router asks "which of these keys are there?" a few times per batch. An expanding ``IN
(...)`` list renders new SQL for every length of list: SQLAlchemy re-renders the statement and
the driver prepares it anew. ``KeyQuery`` instead keeps one SQL text per dialect in which each
list is one parameter, handed to the driver as it is: ``IN (SELECT value FROM json_each(?))``
with a JSON array on SQLite, ``= ANY(%s)`` with an array on PostgreSQL. Both still use the
column's index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

# Keys per query at most: far below the drivers' limits on parameters per statement (SQLite
# 32,766; PostgreSQL 65,535), and small enough that the planner keeps using the index.
PER_QUERY = 500


def chunks(keys: Sequence[str], size: int = PER_QUERY) -> list[Sequence[str]]:
    """``keys`` in pieces of at most ``size``, in order (none for no keys)."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]


# Per dialect: how a column is matched against a list parameter, and how the list is passed.
_MATCH: dict[str, tuple[str, Callable[[Sequence[str]], Any]]] = {
    "sqlite": ("IN (SELECT value FROM json_each(?))", lambda keys: json.dumps(list(keys))),
    "postgresql": ("= ANY(%s)", list),
}


class KeyQuery:
    """A query whose ``{keys}`` marks, each after a column, match that column against a list.

    ``template`` is plain SQL with ``{keys}`` where a list goes; the lists are given in the
    same order when the query runs. Only the dialect's list match is put into the text; the
    keys always travel as parameters.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        self._texts: dict[str, str] = {}

    def rows(self, conn: sa.Connection, *lists: Sequence[str]) -> Iterator[Sequence[Any]]:
        """The query's rows for these lists of keys."""
        dialect = conn.dialect.name
        match, convert = _MATCH[dialect]
        text = self._texts.get(dialect)
        if text is None:
            text = self._texts[dialect] = self.template.format(keys=match)
        return iter(conn.exec_driver_sql(text, tuple(convert(keys) for keys in lists)))
