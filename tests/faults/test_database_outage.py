"""Scenario 3: the database unavailable for 10 s while messages flow.

The scenario's own PostgreSQL database is reached by the router and the API through a TCP proxy;
for 10 s the proxy cuts every connection and refuses new ones (the machine's PostgreSQL server
keeps running: other sessions use it). The router holds its batch and retries with backoff
(nothing acknowledged before its commit, no delivery counted against the limit), the API answers
503 with Retry-After (agency systems retry), and both ``/readyz`` say the database is down.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

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

OUTAGE_S = 10.0


@pytest.mark.faults
def test_ten_seconds_without_the_database_loses_and_doubles_nothing(
    pki: Pki, corpus: Corpus, tmp_path: Path
) -> None:
    started = time.monotonic()
    seal_cert, seal_key = pki.dev.seal(G22)
    with postgres_database() as url, engine_for(url) as engine:
        direct = sa.engine.make_url(url)
        proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).start()
        through_proxy = direct.set(port=proxy.port).render_as_string(hide_password=False)
        try:
            with fault_bus(
                pki,
                tmp_path,
                amqp_url=AMQP_URL,
                database_url=url,
                process_database_url=through_proxy,
                api=True,
            ) as bus:
                try:

                    def agency() -> BusClient:
                        return bus.processes.client(seal_cert, seal_key)

                    history = History()
                    bus.start_router()
                    load = Load(
                        corpus.load,
                        history,
                        topology=bus.topology,
                        amqp_urls=[AMQP_URL],
                        rate=250,
                        http=agency,
                        http_every=10,
                    ).start()
                    timeline = Timeline()
                    load.wait_sent(LOAD // 3, within=60)

                    proxy.pause()
                    proxy.cut()
                    timeline.fault_start = time.time()
                    delivered_at_start = _delivered(engine)
                    reported: dict[str, float] = {}
                    while time.time() < timeline.fault_start + OUTAGE_S:
                        proxy.cut()  # whatever slipped in while the proxy was pausing
                        _down(bus.api_ready(), "api", reported, timeline.fault_start)
                        _down(bus.router_ready(), "router", reported, timeline.fault_start)
                        time.sleep(0.2)
                    delivered_during = _delivered(engine) - delivered_at_start
                    proxy.resume()
                    timeline.fault_end = time.time()
                    assert set(reported) == {"api", "router"}, (
                        f"/readyz did not report the database down: {reported}"
                    )
                    back = wait_until(
                        "the router's /readyz to report the database back",
                        lambda: bus.router_ready()[0] == 200,
                        within=20,
                        bus=bus,
                    )
                    settle(bus, load, history, engine, within=120)
                    probe_s = probe(bus, corpus.probes, engine, history, AMQP_URL, http=agency)
                    timeline.notes.update(
                        {
                            "api_readyz_down_after_s": reported["api"],
                            "router_readyz_down_after_s": reported["router"],
                            "router_readyz_back_after_s": round(back - timeline.fault_end, 2),
                            "delivered_during_outage": delivered_during,
                            "router_db_retries": bus.router_info()["db_retries"],
                            "proxy_cuts": proxy.cuts,
                        }
                    )
                    outcome = conclude(
                        "database_unavailable_10s",
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
    # Nothing reached an inbox while the database was away, and the router waited it out.
    assert outcome.figures["delivered_during_outage"] == 0
    assert outcome.figures["router_db_retries"] > 0
    assert outcome.figures["classes"]["dead_lettered"] == 0


def _delivered(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM inbox")).scalar() or 0)


def _down(
    ready: tuple[int | None, dict[str, object]],
    who: str,
    reported: dict[str, float],
    since: float,
) -> None:
    status, body = ready
    checks = body.get("checks")
    if (
        who not in reported
        and status == 503
        and isinstance(checks, dict)
        and checks.get("database") != "ok"
    ):
        reported[who] = round(time.time() - since, 2)
