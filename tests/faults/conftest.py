"""Fixtures of the fault suite: the signed corpus, a hard time limit, and the summary table."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from types import FrameType

import pytest

from adapters.amqp.topology import Topology
from tests.faults.harness import RUNNING_LOADS, WRITTEN, Corpus, sign_corpus
from tests.faults.proxy import TcpProxy
from tests.helpers import Pki
from tests.services import AMQP_URL, delete_topology

SCENARIO_TIMEOUT_S = 240  # hard: a hung scenario fails (and cleans up) rather than hanging CI


class ScenarioTimeout(Exception):
    """The scenario overran its hard time limit."""


@pytest.fixture(scope="session")
def corpus(pki: Pki) -> Corpus:
    return sign_corpus(pki)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A TCP proxy in front of the machine's broker, for cutting connections at will."""
    port = int(AMQP_URL.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy("127.0.0.1", port).start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def topology() -> Iterator[Topology]:
    """Exchanges and queues of their own on the machine's broker, deleted afterwards."""
    topology = Topology(prefix=f"lt-fault-{uuid.uuid4().hex[:10]}")
    try:
        yield topology
    finally:
        delete_topology(topology.prefix)


@pytest.fixture(autouse=True)
def stop_loads() -> Iterator[None]:
    """Whatever a scenario did, no load of it goes on publishing into the next."""
    yield
    while RUNNING_LOADS:
        RUNNING_LOADS.pop().stop()


@pytest.fixture(autouse=True)
def hard_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """SIGALRM after SCENARIO_TIMEOUT_S: the test fails there and its fixtures clean up."""
    if request.node.get_closest_marker("faults") is None:
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise ScenarioTimeout(f"{request.node.name} ran over {SCENARIO_TIMEOUT_S}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, SCENARIO_TIMEOUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


COLUMNS = (
    ("scenario", "scenario"),
    ("sent", "sent"),
    ("confirmed", "confirmed"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("dup", "duplicated"),
    ("absorbed", "duplicates_absorbed"),
    ("fault s", "fault_s"),
    ("1st after s", "first_delivery_after_fault_s"),
    ("drained s", "backlog_drained_after_fault_s"),
    ("fresh s", "fresh_message_delivered_in_s"),
    ("total s", "total_s"),
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = []
    for figures in WRITTEN:
        classes = figures.get("classes", {})
        merged = {**figures, "lost": classes.get("lost"), "duplicated": classes.get("duplicated")}
        rows.append([str(merged.get(key, "")) for _, key in COLUMNS])
    if not rows:
        return
    headers = [title for title, _ in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    terminalreporter.section("fault scenarios (fault-results/*.json)")
    terminalreporter.write_line("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
