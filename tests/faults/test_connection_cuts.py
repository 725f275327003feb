"""Scenario 4: the connections between the bus and the broker cut, again and again.

The router, the API and the AMQP publishers reach the (machine's) broker through a TCP proxy of
the test; every couple of seconds it drops every connection at once, both ways, and refuses new
ones for a moment, like a flapping network. Unconfirmed publishes are retried (duplicates the
router absorbs), unacknowledged deliveries are redelivered, and the router's robust connection
restores its consumers each time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.client import BusClient
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
from tests.faults.proxy import TcpProxy
from tests.helpers import G22, Pki
from tests.services import AMQP_URL, delete_topology, postgres_database

CUTS = 7
EVERY_S = 2.0
REFUSE_S = 0.5


@pytest.mark.faults
def test_connections_cut_repeatedly_lose_and_double_nothing(
    pki: Pki, corpus: Corpus, tmp_path: Path
) -> None:
    started = time.monotonic()
    seal_cert, seal_key = pki.dev.seal(G22)
    host, port = "127.0.0.1", int(AMQP_URL.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = TcpProxy(host, port).start()
    try:
        with (
            postgres_database() as url,
            engine_for(url) as engine,
            fault_bus(pki, tmp_path, amqp_url=proxy.url(), database_url=url, api=True) as bus,
        ):
            try:

                def agency() -> BusClient:
                    return bus.processes.client(seal_cert, seal_key)

                history = History()
                bus.start_router()
                load = Load(
                    corpus.load,
                    history,
                    topology=bus.topology,
                    amqp_urls=[proxy.url(), proxy.url()],
                    rate=250,
                    http=agency,
                    http_every=10,
                ).start()
                timeline = Timeline()
                load.wait_sent(LOAD // 10, within=60)
                timeline.fault_start = time.time()
                dropped = []
                for _ in range(CUTS):
                    proxy.pause()
                    dropped.append(proxy.cut())
                    time.sleep(REFUSE_S)
                    proxy.resume()
                    time.sleep(EVERY_S - REFUSE_S)
                timeline.fault_end = time.time()
                back = wait_until(
                    "the router's /readyz after the last cut",
                    lambda: bus.router_ready()[0] == 200,
                    within=20,
                    bus=bus,
                )
                settle(bus, load, history, engine, within=120)
                probe_s = probe(bus, corpus.probes, engine, history, proxy.url(), http=agency)
                timeline.notes.update(
                    {
                        "cuts": CUTS,
                        "connections_dropped": sum(dropped),
                        "router_readyz_back_after_s": round(back - timeline.fault_end, 2),
                        "router_reconnects": bus.router_info()["reconnects"],
                    }
                )
                outcome = conclude(
                    "connections_cut",
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
    finally:
        proxy.close()
    assert_nothing_lost_nothing_doubled(outcome, logs)
    assert outcome.figures["classes"]["dead_lettered"] == 0
    # Every cut dropped live connections, and the router came back after each one.
    assert outcome.figures["connections_dropped"] >= CUTS
    assert outcome.figures["router_reconnects"] >= CUTS // 2
