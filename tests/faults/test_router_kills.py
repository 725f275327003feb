"""Scenario 2: the router SIGKILLed mid-batch, twice, and restarted, under a steady load.

What a killed router held (delivered, maybe stored, not acknowledged) the broker delivers again
to its successor, which recognises what was stored by its digest: nothing lost, nothing doubled.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.checker import History
from tests.faults.harness import (
    LOAD,
    Corpus,
    Load,
    Timeline,
    assert_nothing_lost_nothing_doubled,
    conclude,
    engine_for,
    fault_bus,
    probe,
    settle,
    wait_until,
)
from tests.helpers import Pki
from tests.services import AMQP_URL, delete_topology, postgres_database

RESTART_AFTER_S = 2.0
BACKLOG_BATCH = 32


@pytest.mark.faults
def test_a_router_killed_mid_batch_twice_loses_and_doubles_nothing(
    pki: Pki, corpus: Corpus, tmp_path: Path
) -> None:
    started = time.monotonic()
    with (
        postgres_database() as url,
        engine_for(url) as engine,
        fault_bus(pki, tmp_path, amqp_url=AMQP_URL, database_url=url) as bus,
    ):
        try:
            history = History()
            bus.start_router()
            load = Load(
                corpus.load, history, topology=bus.topology, amqp_urls=[AMQP_URL], rate=250
            ).start()
            timeline = Timeline()
            held = []
            for kill, holding in ((1, 1), (2, BACKLOG_BATCH)):
                # Mid-batch: the router holds deliveries it has not settled yet. The first kill
                # hits it under the steady load, a third of the way in; the second hits its
                # successor at once, while it works through the backlog the outage left (large
                # batches: some stored, not yet acknowledged). A router that keeps up with the
                # steady load holds only small batches, so waiting for one of 32 later would
                # depend on how fast the machine is.
                if kill == 1:
                    load.wait_sent(LOAD // 3, within=60)
                seen: list[int] = []

                def holds(at_least: int = holding, seen: list[int] = seen) -> bool:
                    seen.append(int(bus.router_info()["holding"]))
                    return seen[-1] >= at_least

                wait_until(
                    f"the router to hold a batch of {holding}+",
                    holds,
                    within=15,
                    bus=bus,
                    poll=0.005,
                )
                bus.kill_router()
                held.append(seen[-1])
                if kill == 1:
                    timeline.fault_start = time.time()
                time.sleep(RESTART_AFTER_S)
                bus.start_router()
            timeline.fault_end = time.time()
            settle(bus, load, history, engine, within=90)
            probe_s = probe(bus, corpus.probes, engine, history, AMQP_URL)
            timeline.notes["router_kills"] = len(held)
            timeline.notes["holding_at_kills"] = held
            outcome = conclude(
                "router_killed_twice",
                bus,
                load,
                history,
                engine,
                timeline,
                probe_s=probe_s,
                started=started,
            )
            logs = bus.logs()
        finally:
            delete_topology(bus.topology.prefix)
    assert_nothing_lost_nothing_doubled(outcome, logs)
