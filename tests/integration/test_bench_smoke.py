"""``scripts/bench.py --quick`` end to end, so that the benchmark cannot rot.

Nothing here is timed or compared with a target: the benchmark's figures depend on the machine.
The test only checks that a small run goes through every phase (signing, the bare loop, the
drain, an offered load with the inbox poller, the broker alone at that load, HTTP submissions,
the verify baselines) against the real RabbitMQ and SQLite, and reports what ``make bench``
promises: the last line of stdout is one JSON object with the headline keys, and the figures and
the plot are written.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
HEADLINE = ("e2e_msgs_per_s", "baseline_msgs_per_s", "ratio", "p99_ms")


@pytest.mark.slow
def test_a_quick_benchmark_ends_with_its_figures_as_one_json_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            *("--messages", "400", "--duration", "1.5", "--http-messages", "40"),
            *("--out", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parents[1],
    )
    assert done.returncode == 0, done.stderr[-4000:]

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in HEADLINE:
        assert isinstance(summary[key], int | float), key
        assert summary[key] > 0, key
    assert summary["ratio"] == pytest.approx(
        summary["e2e_msgs_per_s"] / summary["baseline_msgs_per_s"], rel=0.01
    )
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["summary"] == summary
    assert [d["routers"] for d in figures["drains"]] == [1]
    transports = {level["transport"] for level in figures["levels"]}
    assert transports == {"amqp", "http", "bare"}
    # The broker alone at the same loads: as many levels as the bus had over AMQP.
    bare = [lv for lv in figures["levels"] if lv["transport"] == "bare"]
    assert len(bare) == sum(lv["transport"] == "amqp" for lv in figures["levels"])
    assert summary["bare_broker_p99_ms"] > 0
    assert all(level["missing"] == 0 and level["errors"] == 0 for level in figures["levels"])
    # Each AMQP level's latency split where the router took the envelope: both halves real.
    for level in (lv for lv in figures["levels"] if lv["transport"] == "amqp"):
        halves = level["split_ms"]
        for half in ("to_router", "in_router"):
            assert 0 < halves[f"{half}_p50_ms"] <= halves[f"{half}_p99_ms"] <= level["max_ms"]
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


def _pids(name: str) -> set[int]:
    """Processes whose command line (arguments joined by spaces) holds ``name``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if name.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.slow
def test_a_benchmark_stopped_with_sigterm_leaves_no_broker_router_or_folder() -> None:
    temp = Path(tempfile.gettempdir())
    nodes, routers = _pids("beam.smp"), _pids("lienthong router")
    routing = _pids("adapters.routing_process")
    folders = set(temp.glob("lt-bench-*"))
    bench = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--quick", "--messages", "400", "--duration", "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=SCRIPT.parents[1],
    )
    try:
        deadline = time.monotonic() + 90
        # Running: a router of the bench's (and, as root, the bench's own broker node).
        while not _pids("lienthong router") - routers:
            assert bench.poll() is None, "the bench ended before it started a router"
            assert time.monotonic() < deadline, "no router started"
            time.sleep(0.2)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=90) == 128 + signal.SIGTERM
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    time.sleep(1)  # the node's VM exits after its stop command returns
    assert not _pids("lienthong router") - routers
    assert not _pids("adapters.routing_process") - routing
    assert not _pids("beam.smp") - nodes
    assert not set(temp.glob("lt-bench-*")) - folders


ROUTE_SCRIPT = SCRIPT.with_name("bench_route.py")


@pytest.mark.slow
@pytest.mark.parametrize("where", [(), ("--process", "--depth", "2", "--rate", "400")])
def test_the_routing_benchmark_ends_with_its_figures_as_one_json_line(
    where: tuple[str, ...],
) -> None:
    """``scripts/bench_route.py`` in this process and through a routing process: every
    envelope stored (it exits otherwise), CPU and bytes written per message reported."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROUTE_SCRIPT),
            *("--messages", "40", "--batch", "1,8", "--rounds", "1", "--agencies", "3"),
            *where,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPT.parents[1],
    )
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["process"] is bool(where)
    assert set(figures["by_batch"]) == {"1", "8"}
    for row in figures["by_batch"].values():
        assert row["cpu_us_per_msg"] > 0
        assert row["kib_written_per_msg"] > 4  # each envelope's header and signature at least
        assert ("batch_p99_ms" in row) is bool(where)
