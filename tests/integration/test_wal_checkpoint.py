"""Checkpoints of a SQLite WAL from a thread of its own, on real database files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.db.checkpoint import SAFETY_PAGES, WalCheckpointer
from adapters.db.engine import create_engine
from tests.services import POSTGRES_URL

ROWS = 3_000  # of 4 KiB: about 3,000 pages, past SQLite's default of 1,000 in the WAL


def _write(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    for start in range(0, ROWS, 100):  # commits of 100 rows, as batches are
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO t (v) VALUES (?)", [(bytes(4096),) for _ in range(start, start + 100)]
            )


def _autocheckpoint(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_connections_leave_the_wal_to_the_checkpointer_up_to_the_safety_bound(
    tmp_path: Path,
) -> None:
    plain = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    background = create_engine(
        f"sqlite:///{tmp_path / 'background.db'}", background_checkpoints=True
    )
    try:
        assert _autocheckpoint(plain) == 1000  # SQLite's default
        assert _autocheckpoint(background) == SAFETY_PAGES
    finally:
        plain.dispose()
        background.dispose()


def test_the_checkpointer_copies_the_wal_into_the_database_file_and_stops(
    tmp_path: Path,
) -> None:
    data = ROWS * 4096
    plain_file, background_file = tmp_path / "plain.db", tmp_path / "background.db"
    plain = create_engine(f"sqlite:///{plain_file}")
    background = create_engine(f"sqlite:///{background_file}", background_checkpoints=True)
    try:
        # Without a checkpointer, commits checkpoint themselves: the file has most of the rows.
        _write(plain)
        assert plain_file.stat().st_size > data // 2
        # Leaving it to the thread, commits did not: the rows are in the WAL only...
        _write(background)
        assert background_file.stat().st_size < data // 10
        assert Path(f"{background_file}-wal").stat().st_size > data
        # ...until the checkpointer runs.
        with WalCheckpointer(background, interval=0.05) as checkpointer:
            # The file grows while the checkpoint is still copying; it is counted once done.
            assert _wait_for(lambda: checkpointer.runs > 0)
            assert background_file.stat().st_size > data
            assert checkpointer.failures == 0
            assert checkpointer.running
        with background.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == ROWS
        assert not checkpointer.running  # stopped with its block
    finally:
        plain.dispose()
        background.dispose()


def test_a_failing_checkpoint_is_counted_and_tried_again(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a SQLite database" * 200)
    engine = create_engine(f"sqlite:///{broken}", background_checkpoints=True)
    try:
        with WalCheckpointer(engine, interval=0.02) as checkpointer:
            assert _wait_for(lambda: checkpointer.failures >= 3)
            assert checkpointer.running
            assert checkpointer.runs == 0
        assert not checkpointer.running
    finally:
        engine.dispose()


@pytest.mark.parametrize("url", [POSTGRES_URL, "sqlite://"])
def test_nothing_to_checkpoint_starts_no_thread(url: str) -> None:
    engine = create_engine(url)
    try:
        with WalCheckpointer(engine) as checkpointer:
            assert not checkpointer.running
    finally:
        engine.dispose()
