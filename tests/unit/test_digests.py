"""Digests fed in pieces below hashlib's GIL threshold equal hashlib's own, at every size."""

from __future__ import annotations

import hashlib

import pytest

from exchange import digests
from exchange.digests import GIL_RELEASE_MIN, HOLD_UP_TO

SIZES = [0, 1, GIL_RELEASE_MIN - 2, GIL_RELEASE_MIN - 1, GIL_RELEASE_MIN, 4096, 7001]
SIZES += [HOLD_UP_TO - 1, HOLD_UP_TO, HOLD_UP_TO + 1, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["sha256", "sha384", "sha512"])
def test_the_digest_is_hashlibs(name: str, size: int) -> None:
    data = bytes(i * 7 % 251 for i in range(size))
    assert digests.digest(name, data).digest() == hashlib.new(name, data).digest()
    assert digests.digest(name, memoryview(data)).digest() == hashlib.new(name, data).digest()


def test_parts_are_hashed_in_order_as_one_input() -> None:
    parts = [b"\x00" * 8, bytes(range(256)) * 17, b"", b"tail" * 1000]
    assert (
        digests.digest("sha256", *parts).hexdigest() == hashlib.sha256(b"".join(parts)).hexdigest()
    )


class _Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def update(self, data: bytes | memoryview) -> None:
        self.sizes.append(len(data))


@pytest.mark.parametrize(
    ("size", "calls"),
    [(0, []), (2047, [2047]), (2048, [2047, 1]), (4096, [2047, 2047, 2]), (1 << 20, [1 << 20])],
)
def test_short_inputs_are_fed_below_the_gil_threshold(
    monkeypatch: pytest.MonkeyPatch, size: int, calls: list[int]
) -> None:
    # hashlib lets go of the GIL for an update of 2,048 bytes or more: short inputs never make
    # one; inputs of HOLD_UP_TO bytes or more are handed over whole, to hash without the GIL.
    recorder = _Recorder()
    monkeypatch.setattr(hashlib, "new", lambda name: recorder)
    digests.digest("sha256", b"x" * size)
    assert recorder.sizes == calls
