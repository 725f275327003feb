"""The router's SQLite connections leave WAL checkpoints to a thread of their own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.db.checkpoint import WalCheckpointer
from adapters.db.engine import create_engine

PAGE = 4096


def write_pages(engine: sa.Engine, pages: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS filler (body BLOB)")
    for _ in range(pages // 100):
        with engine.begin() as conn:  # many commits, as a router's batches are
            conn.exec_driver_sql("INSERT INTO filler VALUES (randomblob(?))", (100 * PAGE,))


def wal_frames(engine: sa.Engine) -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied into the database)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        row = cursor.fetchone()
        assert row is not None
        _busy, frames, copied = row
        return int(frames), int(copied)
    finally:
        raw.close()


def test_commits_no_longer_checkpoint_and_the_thread_does(tmp_path: Path) -> None:
    path = tmp_path / "lienthong.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:  # a connection from before the checkpointer started
        conn.exec_driver_sql("SELECT 1")
    checkpoints = WalCheckpointer(engine, interval=3600).start()
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        write_pages(engine, 3000)
        # SQLite alone would have restarted the WAL after 1,000 pages: it holds all 3,000.
        assert Path(f"{path}-wal").stat().st_size > 2500 * PAGE
    finally:
        checkpoints.stop()  # its last checkpoint copies everything
    frames, copied = wal_frames(engine)
    assert frames == copied
    assert checkpoints.checkpoints == 1
    engine.dispose()


def test_the_thread_checkpoints_every_interval(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'lienthong.db'}")
    checkpoints = WalCheckpointer(engine, interval=0.02).start()
    try:
        write_pages(engine, 300)
        deadline = time.monotonic() + 10
        while checkpoints.checkpoints < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpoints.checkpoints >= 3
    finally:
        checkpoints.stop()
    engine.dispose()


def test_only_sqlite_has_a_wal_to_checkpoint() -> None:
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with pytest.raises(ValueError, match="only a SQLite"):
        WalCheckpointer(engine)
