"""Content-addressed files: attachments kept under their SHA-256 in the data folder.

A blob is written to a temporary file beside its final place, flushed to disk, then renamed;
readers never see a partial blob, and writing the same content twice is harmless. The rename is
made durable too (the directory is flushed after it): the router commits rows that reference a
blob once ``put`` returns, and a rename still in the page cache could be lost in a crash while
that commit stands.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


class TooLarge(Exception):
    """The content exceeds the size allowed."""


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, content: bytes | memoryview, sha256: str | None = None) -> str:
        """Store ``content`` (``sha256``: its digest, when the caller computed it already)."""
        digest = sha256 if sha256 is not None else hashlib.sha256(content).hexdigest()
        if not self.exists(digest):
            with self._temporary() as (handle, name):
                handle.write(content)
                self._commit(handle, name, digest)
        return digest

    def put_stream(self, chunks: Iterator[bytes], max_bytes: int) -> tuple[str, int]:
        """Store streamed content; raises TooLarge (and keeps nothing) past ``max_bytes``."""
        digest = hashlib.sha256()
        size = 0
        with self._temporary() as (handle, name):
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                digest.update(chunk)
                handle.write(chunk)
            self._commit(handle, name, digest.hexdigest())
        return digest.hexdigest(), size

    def writer(self, max_bytes: int) -> BlobWriter:
        """A blob written piece by piece (an upload): ``write`` chunks, then ``finish``."""
        return BlobWriter(self, max_bytes)

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")

    def _temporary(self) -> _Temporary:
        return _Temporary(self.root / "tmp")

    def _commit(self, handle: BinaryIO, name: str, digest: str) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        target = self.path(digest)
        if not target.parent.is_dir():
            target.parent.mkdir(exist_ok=True)
            _sync_directory(self.root)  # the new folder's own entry
        os.replace(name, target)
        _sync_directory(target.parent)


def _sync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename, a new file) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Temporary:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handle: BinaryIO | None = None
        self.name = ""

    def __enter__(self) -> tuple[BinaryIO, str]:
        fd, self.name = tempfile.mkstemp(dir=self.folder)
        self.handle = os.fdopen(fd, "wb")
        return self.handle, self.name

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        self.handle.close()
        if os.path.exists(self.name):
            os.unlink(self.name)


class BlobWriter:
    def __init__(self, store: FileBlobStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = hashlib.sha256()
        self._temporary = store._temporary()
        self._handle: BinaryIO | None = None
        self._name = ""

    def __enter__(self) -> BlobWriter:
        self._handle, self._name = self._temporary.__enter__()
        return self

    def write(self, chunk: bytes) -> None:
        assert self._handle is not None
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise TooLarge(f"more than {self.max_bytes} bytes")
        self._digest.update(chunk)
        self._handle.write(chunk)

    def finish(self) -> tuple[str, int]:
        assert self._handle is not None
        digest = self._digest.hexdigest()
        self.store._commit(self._handle, self._name, digest)
        return digest, self.size

    def __exit__(self, *exc: object) -> None:
        self._temporary.__exit__(*exc)
