"""Creating the database engine: SQLite (WAL, immediate write transactions) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from adapters.db.checkpoint import SAFETY_PAGES


def create_engine(
    url: str, *, pool_size: int = 5, background_checkpoints: bool = False
) -> sa.Engine:
    """``background_checkpoints``: on SQLite, the connections leave the WAL to a
    ``checkpoint.WalCheckpointer`` (the process runs one) up to its safety bound."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        autocheckpoint = SAFETY_PAGES if background_checkpoints else None

        def connected(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_connect(dbapi_connection, autocheckpoint)

        sa.event.listen(engine, "connect", connected)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A connection attempt to an unreachable server gives up (and the router retries, /readyz
    # answers "unavailable") rather than hanging on the operating system's TCP timeout.
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


CONNECT_TIMEOUT_S = 5


def _sqlite_connect(dbapi_connection: Any, autocheckpoint: int | None) -> None:
    # Let SQLAlchemy, not the driver, decide where transactions begin (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    if autocheckpoint is not None:
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint)}")
    cursor.close()


READ_ONLY = "lienthong_read_only"


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for queries only: on SQLite its transaction takes no write lock, so the
    router deciding a batch, and the API answering reads, never wait for a commit."""
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True})


def _sqlite_begin(connection: sa.Connection) -> None:
    if connection.get_execution_options().get(READ_ONLY, False):
        # A snapshot of the last commit (WAL): readers and the writer do not block each other.
        connection.exec_driver_sql("BEGIN")
        return
    # Take the write lock up front: a transaction that reads, then writes, never meets a
    # writer that committed in between (SQLite would fail it with SQLITE_BUSY_SNAPSHOT).
    connection.exec_driver_sql("BEGIN IMMEDIATE")
