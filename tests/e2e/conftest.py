from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Pki
from tests.services import BusProcesses, delete_topology, postgres_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'lienthong.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(scope="module")
def bus(
    pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BusProcesses]:
    """The bus as processes: API on a loopback port, one router, demo agencies registered."""
    root: Path = tmp_path_factory.mktemp("bus")
    processes = BusProcesses(root=root, pki_dir=pki.root, database_url=database_url)
    processes.prepare()
    try:
        processes.start_api()
        processes.start_router()
        yield processes
    finally:
        processes.stop()
        delete_topology(processes.prefix)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def shared_bus(
    request: pytest.FixtureRequest, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BusProcesses]:
    """Like ``bus``, but one per database for the whole session: starting a bus (migrations,
    registry, API, router) costs seconds, and the modules of the bus's public doors share it.
    Their tests may not assume an empty inbox, an idle router or a fresh trace: each works
    with messages of its own."""
    root: Path = tmp_path_factory.mktemp("shared-bus")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{root / 'lienthong.db'}"
        else:
            url = stack.enter_context(postgres_database())
        processes = BusProcesses(root=root, pki_dir=pki.root, database_url=url)
        processes.prepare()
        try:
            processes.start_api()
            processes.start_router()
            yield processes
        finally:
            processes.stop()
            delete_topology(processes.prefix)
