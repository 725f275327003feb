"""The hostile bus: one bus per database for the whole security suite, with a PKI of its own.

The suite revokes certificates, adds look-alike and expired CRLs, disables agencies and counts
every row of the bus's tables; it does so on a bus (API + router processes) and a development PKI
that no other test uses, so its counts are exact and its damage stays here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.pki.folder import DevPki
from tests.e2e.support import database
from tests.forge import KeyCachingPki
from tests.helpers import G22
from tests.security.hostile import IDLE_TIMEOUT_S, Hostile
from tests.services import BusProcesses, delete_topology


@pytest.fixture(scope="session")
def hostile_pki(tmp_path_factory: pytest.TempPathFactory) -> KeyCachingPki:
    folder: Path = tmp_path_factory.mktemp("hostile-pki")
    dev = DevPki(folder)
    dev.init()
    return KeyCachingPki(dev)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hostile(
    request: pytest.FixtureRequest,
    hostile_pki: KeyCachingPki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hostile]:
    root: Path = tmp_path_factory.mktemp(f"hostile-bus-{request.param}")
    env = {"LIENTHONG_BLOB_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database(request.param, root))
        bus = BusProcesses(root=root, pki_dir=hostile_pki.root, database_url=url, extra_env=env)
        bus.prepare()
        try:
            bus.start_api()
            bus.start_router()
            opened = Hostile(bus, hostile_pki)
            opened.assert_alive()  # the router consumes
            try:
                yield opened
            finally:
                opened.close()
        finally:
            bus.stop()
            delete_topology(bus.prefix)


@pytest.fixture(scope="module")
def http(hostile: Hostile) -> httpx.Client:
    """G22's authenticated HTTP client on the hostile bus."""
    return hostile[G22].http
