from __future__ import annotations

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
