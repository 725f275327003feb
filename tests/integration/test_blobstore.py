"""The blob store on a real file system: content under its digest, and durable renames.

The router commits rows that reference a blob as soon as ``put`` returns, so the blob's
directory entry must be on disk by then, not only its bytes: the rename is followed by a flush
of the directory (and a new shard folder by a flush of the root). The order of the calls is what
a test can observe; which of them reach the disk is the kernel's part.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.blobstore import FileBlobStore, TooLarge

CONTENT = b"%PDF-1.7 quyet dinh so 12/QD-UBND\n" * 1000
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def _put(store: FileBlobStore) -> str:
    return store.put(CONTENT)


def _put_stream(store: FileBlobStore) -> str:
    chunks = [CONTENT[i : i + 4096] for i in range(0, len(CONTENT), 4096)]
    digest, size = store.put_stream(iter(chunks), max_bytes=len(CONTENT))
    assert size == len(CONTENT)
    return digest


def _writer(store: FileBlobStore) -> str:
    with store.writer(max_bytes=len(CONTENT)) as writer:
        writer.write(CONTENT[:1000])
        writer.write(CONTENT[1000:])
        digest, _ = writer.finish()
    return digest


WAYS = {"put": _put, "put_stream": _put_stream, "writer": _writer}


class Calls:
    """os.fsync and os.replace as the store calls them, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, int]] = []  # ("fsync", inode) / ("replace", inode of dir)
        fsync, replace = os.fsync, os.replace

        def recorded_fsync(fd: int) -> None:
            self.events.append(("fsync", os.fstat(fd).st_ino))
            fsync(fd)

        def recorded_replace(src: str, dst: str | Path) -> None:
            replace(src, dst)
            self.events.append(("replace", Path(dst).parent.stat().st_ino))

        monkeypatch.setattr(os, "fsync", recorded_fsync)
        monkeypatch.setattr(os, "replace", recorded_replace)


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_blob_is_renamed_into_place_and_the_rename_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    calls = Calls(monkeypatch)

    digest = WAYS[way](store)

    assert digest == DIGEST
    assert store.path(digest).read_bytes() == CONTENT
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    shard = store.path(digest).parent.stat().st_ino
    root = (tmp_path / "blobs").stat().st_ino
    replaced = calls.events.index(("replace", shard))
    # The content before the rename, the new shard folder's entry before the rename, the
    # rename itself after it.
    assert calls.events[0][0] == "fsync"
    assert calls.events[0][1] not in (shard, root)
    assert ("fsync", root) in calls.events[:replaced]
    assert ("fsync", shard) in calls.events[replaced + 1 :]


def test_a_second_blob_in_an_existing_folder_flushes_only_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    first = store.put(CONTENT)
    # Another content whose digest falls in the same two-letter folder.
    other = next(
        c
        for c in (CONTENT + str(i).encode() for i in range(10_000))
        if hashlib.sha256(c).hexdigest()[:2] == first[:2]
    )
    calls = Calls(monkeypatch)

    second = store.put(other)

    shard = store.path(second).parent.stat().st_ino
    root = (tmp_path / "blobs").stat().st_ino
    assert ("fsync", root) not in calls.events
    assert calls.events[-2:] == [("replace", shard), ("fsync", shard)]


def test_the_same_content_again_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put(CONTENT)
    calls = Calls(monkeypatch)

    assert store.put(CONTENT, DIGEST) == DIGEST
    assert calls.events == []


@pytest.mark.parametrize("way", ["put_stream", "writer"])
def test_too_large_keeps_nothing(tmp_path: Path, way: str) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    act: Callable[[], object]
    if way == "put_stream":
        act = lambda: store.put_stream(iter([CONTENT]), max_bytes=len(CONTENT) - 1)  # noqa: E731
    else:

        def act() -> object:
            with store.writer(max_bytes=10) as writer:
                writer.write(CONTENT)
            return None

    with pytest.raises(TooLarge):
        act()
    assert not store.exists(DIGEST)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
