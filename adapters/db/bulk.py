"""Many rows into one table through the driver's executemany: what the router writes per batch.

SQLAlchemy's executemany passes every value of every row through its compiled-parameter
machinery; for the router's batches (hundreds of rows of a dozen columns) that costs more than
the driver's insert itself. ``BulkInsert`` compiles the INSERT once per dialect, looks up each
column's bind processor once (the very conversions SQLAlchemy applies: ``UtcDateTime``, JSON,
SQLite's datetime text), and hands the driver the converted rows in one executemany. Columns a
row does not give are written as NULL (none of the tables it serves has a Python-side default).
Times are converted once per distinct value in a call: a batch's rows mostly share the time it
was received.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from adapters.db.tables import UtcDateTime

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    columns: tuple[tuple[str, Processor | None], ...]  # in the order the driver expects
    positional: bool
    times: frozenset[str]  # columns of times: their conversions are remembered within a call


class BulkInsert:
    def __init__(self, table: sa.Table) -> None:
        self.table = table
        # Every column but a generated primary key.
        generated = table.autoincrement_column
        self.names = tuple(c.name for c in table.columns if c is not generated)
        self._compiled: dict[str, _Compiled] = {}

    def __call__(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._compile(conn.dialect)
        columns = tuple(
            (name, _remembered(process) if process and name in compiled.times else process)
            for name, process in compiled.columns
        )
        params: list[tuple[Any, ...]] | list[dict[str, Any]]
        if compiled.positional:
            params = [
                tuple(
                    row.get(name) if process is None else process(row.get(name))
                    for name, process in columns
                )
                for row in rows
            ]
        else:
            params = [
                {
                    name: row.get(name) if process is None else process(row.get(name))
                    for name, process in columns
                }
                for row in rows
            ]
        conn.exec_driver_sql(compiled.sql, params)

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is not None:
            return found
        table = self.table
        statement = sa.insert(table).values(
            {name: sa.bindparam(name, type_=table.c[name].type) for name in self.names}
        )
        compiled = statement.compile(dialect=dialect)
        order = compiled.positiontup if compiled.positional else list(compiled.binds)
        if order is None or sorted(order) != sorted(self.names):
            raise AssertionError(f"INSERT INTO {table.name} binds {order}, not {self.names}")
        columns = tuple(
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in order
        )
        times = frozenset(name for name in order if isinstance(table.c[name].type, _TIMES))
        made = self._compiled[dialect.name] = _Compiled(
            compiled.string, columns, compiled.positional, times
        )
        return made


_TIMES = (sa.DateTime, UtcDateTime)


def _remembered(process: Processor) -> Processor:
    """``process``, converting each distinct value once (for one call: values are hashable)."""
    done: dict[Any, Any] = {}

    def run(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            converted = done[value] = process(value)
            return converted

    return run
