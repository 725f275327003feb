"""Many rows into one table at once: what the router writes per batch.

SQLAlchemy's executemany passes every value of every row through its compiled-parameter
machinery; for the router's batches (hundreds of rows of a dozen columns) that costs more than
the driver's insert itself. ``BulkInsert`` compiles the INSERT once per dialect, looks up each
column's bind processor once (the very conversions SQLAlchemy applies: ``UtcDateTime``, JSON,
SQLite's datetime text), and hands the driver the converted rows: on SQLite as ``INSERT ...
VALUES (..), (..), ...`` statements, on PostgreSQL in one executemany. Columns a row does not
give are written as NULL (none of the tables it serves has a Python-side default). Times are
converted once per distinct value in a call: a batch's rows mostly share the time it was
received.

Why statements of many rows on SQLite rather than the driver's executemany: the sqlite3 module
lets go of the GIL around every row it steps, and a thread that lets go of the GIL in a busy
process waits up to a switch interval to get it back (the router's deciding thread and event
loop want it meanwhile). Measured with one other thread running Python and a 1 ms switch
interval, executemany of 10 rows took 1,155 µs, one 10-row INSERT 660-920 µs; alone 10.0 and
4.3 µs. Statements have 2**k rows (up to ``MAX_ROWS``), so each table has a handful of distinct
SQL texts and every one stays in the driver's statement cache (preparing one anew costs another
wait for the GIL).

On PostgreSQL the rows go through psycopg's executemany, which pipelines them: one round trip
for the whole call. Multi-row statements there cost a round trip each and a parse of each new
text; in A/B drains they were no faster (574-705 msg/s against 712).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from adapters.db.tables import UtcDateTime

Processor = Callable[[Any], Any]

# Rows per statement at most (a power of two); fewer when the table is wide, to stay far below
# the drivers' limits on parameters per statement (SQLite 32,766; PostgreSQL 65,535).
MAX_ROWS = 256
MAX_PARAMETERS = 8_000
# The drivers' positional placeholders, by DB-API paramstyle (psycopg takes %s with a tuple).
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(slots=True)
class _Compiled:
    head: str  # INSERT INTO table (columns) VALUES
    group: str  # one row's placeholders
    columns: tuple[tuple[str, Processor | None], ...]  # in the order of the placeholders
    take: Callable[[Mapping[str, Any]], tuple[Any, ...]]  # a row's values in that order
    times: frozenset[str]  # columns of times: their conversions are remembered within a call
    most: int  # rows in one statement at most
    multi_row: bool  # multi-row statements (SQLite), else the driver's executemany
    texts: dict[int, str] = field(default_factory=dict)  # rows -> SQL

    def sql(self, rows: int) -> str:
        text = self.texts.get(rows)
        if text is None:
            text = self.texts[rows] = self.head + ", ".join([self.group] * rows)
        return text


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
        # Each row's values in column order, in one C call when the row gives every column;
        # then the few columns that have a conversion are converted in place.
        conversions = [
            (index, _remembered(process) if name in compiled.times else process)
            for index, (name, process) in enumerate(compiled.columns)
            if process is not None
        ]
        take, names = compiled.take, self.names
        converted: list[list[Any]] = []
        for row in rows:
            try:
                values = list(take(row))
            except KeyError:
                values = [row.get(name) for name in names]
            for index, process in conversions:
                values[index] = process(values[index])
            converted.append(values)
        if not compiled.multi_row:
            conn.exec_driver_sql(compiled.sql(1), [tuple(values) for values in converted])
            return
        done = 0
        for count in _sizes(len(rows), compiled.most):
            flat: list[Any] = []
            for values in converted[done : done + count]:
                flat += values
            conn.exec_driver_sql(compiled.sql(count), tuple(flat))
            done += count

    def _compile(self, dialect: sa.Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is not None:
            return found
        placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
        if placeholder is None:
            raise NotImplementedError(f"BulkInsert: no positional form of {dialect.paramstyle}")
        table = self.table
        quote = dialect.identifier_preparer.quote
        columns = tuple(
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in self.names
        )
        times = frozenset(name for name in self.names if isinstance(table.c[name].type, _TIMES))
        most = MAX_ROWS
        while most > 1 and most * len(columns) > MAX_PARAMETERS:
            most //= 2
        # Names from the table's own metadata, quoted by the dialect: no value is ever spliced in.
        names = ", ".join(quote(name) for name in self.names)
        target = dialect.identifier_preparer.format_table(table)
        made = self._compiled[dialect.name] = _Compiled(
            head=f"INSERT INTO {target} ({names}) VALUES ",  # noqa: S608
            group=f"({', '.join([placeholder] * len(columns))})",
            columns=columns,
            take=_getter(self.names),
            times=times,
            most=most,
            multi_row=dialect.name == "sqlite",
        )
        return made


_TIMES = (sa.DateTime, UtcDateTime)


def _sizes(rows: int, most: int) -> list[int]:
    """``rows`` as statements of ``most`` rows, then one per bit of the rest, largest first."""
    sizes = [most] * (rows // most)
    rest = rows % most
    bit = most
    while rest:
        bit //= 2
        if rest & bit:
            sizes.append(bit)
            rest -= bit
    return sizes


def _getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A row's values for ``names``, in order, as a tuple (KeyError when one is missing)."""
    if len(names) == 1:
        (name,) = names
        return lambda row: (row[name],)
    return operator.itemgetter(*names)


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
