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
import subprocess
import sys
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
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
