from __future__ import annotations

from pathlib import Path

import pytest

from adapters.pki.folder import DevPki
from tests.helpers import Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One RSA-2048 development PKI for the whole session (made as ``lienthong pki init`` does)."""
    folder: Path = tmp_path_factory.mktemp("pki")
    dev = DevPki(folder)
    dev.init()
    return Pki(dev)
