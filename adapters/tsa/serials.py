"""Token serial numbers that are unique and survive restarts: a state file, or the database.

Both stores reserve serials in blocks: the next unreserved serial is made durable *before* any
serial of the block is handed out, so a crash or a restart can skip the rest of a block but can
never hand out a serial twice. Several processes may share one store (a file is locked with
``flock`` while a block is reserved; the database row is updated atomically).

- ``FileSerials``: ``DATA_DIR/tsa/serials.json`` for ``lienthong tsa serve``.
- ``DbSerials``: the ``tsa_serials`` table, for the TSA of the API (``POST /v1/tsa``).

Serials are keyed by the TSA's name (SHA-256 of its certificate's subject), so a TSA whose
certificate is renewed continues its sequence.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

from adapters.db.tables import tsa_serials
from exchange.errors import ConfigurationError

DEFAULT_BLOCK = 256


def tsa_name(certificate: x509.Certificate) -> str:
    """The key serials are kept under: SHA-256 (hex) of the TSA's subject Name."""
    return hashlib.sha256(certificate.subject.public_bytes()).hexdigest()


class _Blocks:
    """Serials from reserved blocks; ``_reserve`` makes a block durable and returns its start."""

    def __init__(self, block: int) -> None:
        if block < 1:
            raise ValueError("a block holds at least one serial")
        self.block = block
        self._lock = threading.Lock()
        self._next = 0
        self._end = 0

    def next_serial(self) -> int:
        with self._lock:
            if self._next >= self._end:
                start = self._reserve(self.block)
                self._next, self._end = start, start + self.block
            serial = self._next
            self._next += 1
            return serial

    def _reserve(self, count: int) -> int:
        raise NotImplementedError


class FileSerials(_Blocks):
    """Serials kept in a JSON file ``{name: next_unreserved}`` (written atomically, fsynced)."""

    def __init__(self, path: Path, name: str, *, block: int = DEFAULT_BLOCK) -> None:
        super().__init__(block)
        self.path = path
        self.name = name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the TSA state folder {path.parent}: {exc}"
            ) from None
        self._read()  # fail at start, not at the first query, when the file is unreadable

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"the TSA state file {self.path} is unreadable: {exc}"
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and v >= 1 for k, v in data.items()
        ):
            raise ConfigurationError(f"the TSA state file {self.path} is not {{name: serial}}")
        return data

    def _reserve(self, count: int) -> int:
        with self._locked():
            state = self._read()
            start = state.get(self.name, 1)
            state[self.name] = start + count
            temporary = self.path.with_name(self.path.name + ".tmp")
            with open(temporary, "w", encoding="utf-8") as out:
                json.dump(state, out, indent=2, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            return start


class DbSerials(_Blocks):
    """Serials kept in the ``tsa_serials`` table (one row per TSA name)."""

    def __init__(self, engine: sa.Engine, name: str, *, block: int = DEFAULT_BLOCK) -> None:
        super().__init__(block)
        self.engine = engine
        self.name = name

    def _reserve(self, count: int) -> int:
        table = tsa_serials
        for _ in range(3):
            with self.engine.begin() as conn:
                # One UPDATE takes the row (or the SQLite database) for writing; the read that
                # follows in the same transaction sees our own increment and nobody else's.
                bumped = conn.execute(
                    table.update()
                    .where(table.c.name == self.name)
                    .values(next_serial=table.c.next_serial + count)
                )
                if bumped.rowcount == 1:
                    after = conn.execute(
                        sa.select(table.c.next_serial).where(table.c.name == self.name)
                    ).scalar_one()
                    return int(after) - count
            try:
                with self.engine.begin() as conn:
                    conn.execute(table.insert().values(name=self.name, next_serial=1 + count))
                return 1
            except sa.exc.IntegrityError:
                continue  # another process created the row first: bump it instead
        raise ConfigurationError(f"could not reserve TSA serials in {self.engine.url}")
