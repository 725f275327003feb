"""Checkpointing a SQLite database's write-ahead log from a thread of its own.

SQLite copies the WAL's pages back into the database file (a checkpoint) in the connection whose
commit takes the WAL past ``wal_autocheckpoint`` pages (1,000 by default): that commit then
writes and syncs the database file too. Under the router's load about one commit in ten did so,
and those were the slow ones (issue 7's half-load runs: a batch's COMMIT took 2.2 ms at the
median and 12.4 ms at the 90th percentile; with the checkpoints in a thread, 1.9 and 4.0 ms).

A process that writes most of the time (the routing process) runs a ``WalCheckpointer``: every
``interval`` seconds a PASSIVE checkpoint on a connection of its own, which copies what no
reader still needs and never waits for a lock (SQLite's driver lets go of the GIL meanwhile, so
the checkpoint runs beside the Python work too). The engine's own connections then leave the
WAL alone until it reaches ``SAFETY_PAGES``, a bound on its size should the thread fall behind.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import sqlalchemy as sa

log = logging.getLogger(__name__)

# WAL pages (4 KiB each) after which a committing connection checkpoints anyway: 64 MiB.
SAFETY_PAGES = 16_384
# Seconds between two checkpoints: 0.1 s of the router's writes is a few hundred pages.
INTERVAL_S = 0.1
# Seconds between two log lines about failing checkpoints.
COMPLAINT_EVERY_S = 60.0


def is_sqlite_file(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


class WalCheckpointer:
    """Checkpoints ``engine``'s WAL every ``interval`` seconds while in its ``with`` block.

    For an engine made with ``create_engine(..., background_checkpoints=True)``; on anything
    but a SQLite file it does nothing.
    """

    def __init__(self, engine: sa.Engine, *, interval: float = INTERVAL_S) -> None:
        self.engine = engine
        self.interval = interval
        self.runs = 0  # checkpoints done
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> WalCheckpointer:
        if is_sqlite_file(self.engine):
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        complained = -COMPLAINT_EVERY_S
        while not self._stop.wait(self.interval):
            try:
                self.checkpoint()
            except Exception as exc:  # noqa: BLE001 - the next round tries again; writers are unharmed
                self.failures += 1
                if time.monotonic() - complained >= COMPLAINT_EVERY_S:
                    complained = time.monotonic()
                    log.warning("WAL checkpoint failed (%s); trying again", exc)

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint: copies what it can without waiting for anyone."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            cursor.close()
        finally:
            raw.close()
        self.runs += 1
