"""Scenario 1: the broker SIGKILLed mid-load, down for longer than aio-pika's first reconnect
attempts, and restarted.

The broker is a RabbitMQ node the test starts itself (its own name, ports and data folder),
never the machine's shared broker; the router, the API and every publisher point at it. While it
is down, publishers (the AMQP library, agency systems over HTTP, and ``lienthong send``) keep
retrying with backoff, the API's and the router's ``/readyz`` say the broker is unavailable, and
when it is back the router consumes again without help.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
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
    rabbit_root,
    send_cli,
    settle,
    wait_until,
)
from tests.faults.rabbitnode import single
from tests.helpers import G22, Pki
from tests.services import postgres_database

DOWN_S = 15.0  # the router's connection retries every second: many attempts fail meanwhile
CLI_SENDS = 4


@pytest.mark.faults
def test_the_broker_killed_and_restarted_loses_and_doubles_nothing(
    pki: Pki, corpus: Corpus, tmp_path: Path
) -> None:
    started = time.monotonic()
    seal_cert, seal_key = pki.dev.seal(G22)
    with rabbit_root() as root, postgres_database() as url, engine_for(url) as engine:
        node = single(root)
        node.start()
        with fault_bus(
            pki,
            tmp_path,
            amqp_url=node.url,
            database_url=url,
            api=True,
            # `lienthong send` outlasts the outage within its configured retry budget.
            extra_env={"LIENTHONG_PUBLISH_RETRIES": "30", "LIENTHONG_PUBLISH_TIMEOUT_S": "5"},
        ) as bus:

            def agency() -> BusClient:
                return bus.processes.client(seal_cert, seal_key)

            history = History()
            bus.start_router()
            load = Load(
                corpus.load,
                history,
                topology=bus.topology,
                amqp_urls=[node.url, node.url],
                rate=250,
                http=agency,
                http_every=10,
            ).start()
            timeline = Timeline()
            load.wait_sent(LOAD // 3, within=60)

            node.kill()
            timeline.fault_start = time.time()
            api_down = wait_until(
                "the API's /readyz to report the broker down",
                lambda: (
                    bus.api_ready()[0] == 503 and bus.api_ready()[1]["checks"]["broker"] != "ok"
                ),
                within=10,
                bus=bus,
            )
            router_down = wait_until(
                "the router's /readyz to report the broker down",
                lambda: (
                    bus.router_ready()[0] == 503
                    and bus.router_ready()[1]["checks"]["broker"] != "ok"
                ),
                within=10,
                bus=bus,
            )
            sends = []
            for envelope in corpus.spare[:CLI_SENDS]:
                history.sent(envelope.message_id, envelope.recipients)
                sends.append((envelope, send_cli(bus, envelope, tmp_path / "cli")))
            time.sleep(max(0.0, timeline.fault_start + DOWN_S - time.time()))
            assert bus.router_ready()[0] == 503, "the router said ready without a broker"

            node.start()
            timeline.fault_end = time.time()
            router_back = wait_until(
                "the router's /readyz to report the broker back",
                lambda: bus.router_ready()[0] == 200,
                within=30,
                bus=bus,
            )
            # Its routing process went on through the outage: up, and never started again.
            assert bus.router_ready()[1]["checks"]["routing"] == "ok"
            info = httpx.get(f"http://127.0.0.1:{bus.health_ports[0]}/healthz", timeout=5).json()
            assert info["info"]["routing_process"]["starts"] == 1
            api_back = wait_until(
                "the API's /readyz to report the broker back",
                lambda: bus.api_ready()[0] == 200,
                within=30,
                bus=bus,
            )
            for envelope, process in sends:
                assert process.wait(timeout=90) == 0, bus.logs()
                history.confirm(envelope.message_id)
            settle(bus, load, history, engine, within=120, node=node.node)
            probe_s = probe(bus, corpus.probes, engine, history, node.url, http=agency)
            timeline.notes.update(
                {
                    "api_readyz_down_after_s": round(api_down - timeline.fault_start, 2),
                    "router_readyz_down_after_s": round(router_down - timeline.fault_start, 2),
                    "router_readyz_back_after_s": round(router_back - timeline.fault_end, 2),
                    "api_readyz_back_after_s": round(api_back - timeline.fault_end, 2),
                    "cli_sends_during_outage": len(sends),
                    "router_reconnects": bus.router_info()["reconnects"],
                }
            )
            outcome = conclude(
                "broker_killed_restarted",
                bus,
                load,
                history,
                engine,
                timeline,
                probe_s=probe_s,
                started=started,
            )
            logs = bus.logs()
        node.stop()
    assert_nothing_lost_nothing_doubled(outcome, logs)
    assert outcome.figures["over_http"] >= LOAD // 10
    assert outcome.figures["router_reconnects"] >= 1
