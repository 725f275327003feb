"""The README's first command: `make demo` runs a signed exchange and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import delete_topology

ROOT = Path(__file__).resolve().parents[2]


def demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.update(extra)
    return env


def lienthong_processes() -> list[str]:
    done = subprocess.run(
        ["pgrep", "-af", "lienthong (api|router)"], capture_output=True, text=True
    )
    return [line for line in done.stdout.splitlines() if ".demo" in line or "lienthong-dev" in line]


@pytest.mark.slow
def test_the_demo_exchanges_documents_rejects_forgeries_and_stops() -> None:
    prefix = "lienthong-demo-test"
    try:
        done = demo(clean_env(LIENTHONG_EXCHANGE_PREFIX=prefix))
    finally:
        delete_topology(prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "stored; delivered to 000.00.00.H37, 000.00.01.H37" in out
    assert out.count("acknowledged") >= 2
    assert "000.00.00.H37 → 05" in out
    assert "rejected — digest_mismatch" in out
    assert "[replay]" in out
    assert "chain: intact" in out
    assert lienthong_processes() == []


def test_the_demo_names_the_broker_it_could_not_reach_and_how_to_start_one() -> None:
    done = demo(clean_env(LIENTHONG_AMQP_URL="amqp://guest:secret@127.0.0.1:1/"))
    assert done.returncode == 3
    assert "amqp://guest:***@127.0.0.1:1/" in done.stdout
    assert "rabbitmq-server -detached" in done.stdout
    assert "secret" not in done.stdout
