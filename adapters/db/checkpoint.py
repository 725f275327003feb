"""Checkpointing a SQLite database's write-ahead log from a thread of its own.

Left to itself, SQLite checkpoints in the connection whose commit grows the WAL past 1,000
pages: that commit then waits while pages are copied into the database file and the file is
fsynced - tens of milliseconds added to the router batch that happened to cross the line, about
once a second under load. The router's connections leave checkpoints to a ``WalCheckpointer``
instead: every ``interval`` seconds it runs a PASSIVE checkpoint, which never waits for a writer
or a reader and during which sqlite3 releases the GIL. Other processes (the API, the command
line) keep SQLite's own checkpoints, so the WAL stays bounded when no router runs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.25


class WalCheckpointer:
    def __init__(self, engine: sa.Engine, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        if engine.dialect.name != "sqlite":
            raise ValueError("only a SQLite database has a write-ahead log to checkpoint")
        self.engine = engine
        self.interval = interval
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> WalCheckpointer:
        sa.event.listen(self.engine, "connect", _no_automatic_checkpoints)
        # Connections opened before (start-up checks) would still checkpoint on their own.
        self.engine.dispose()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        sa.event.remove(self.engine, "connect", _no_automatic_checkpoints)

    def _run(self) -> None:
        connection = self.engine.raw_connection()
        try:
            while not self._stop.wait(self.interval):
                self.checkpoint(connection)
            self.checkpoint(connection)  # what the last batches wrote
        finally:
            connection.close()

    def checkpoint(self, connection: Any) -> None:
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
            finally:
                cursor.close()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed (%s); SQLite retries at the next one", exc)


def _no_automatic_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
