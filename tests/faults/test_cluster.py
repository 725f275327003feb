"""Scenario 6: a three-node RabbitMQ cluster, one node SIGKILLed under load and brought back.

The test starts its own cluster (node names, ports and data folders of its own, beside the
machine's broker). The router queue is a quorum queue replicated on all three nodes. Two routers
compete for it, one connected to each of two nodes; publishers spread over all three. The node
that leads the queue, which also carries one router and a publisher, is killed: the queue elects
a new leader on the surviving majority, the other router goes on, the publishers of the dead node
retry until it is back, and its router reconnects when it returns.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.faults.checker import History
from tests.faults.harness import (
    LOAD,
    Corpus,
    FaultBus,
    Load,
    Timeline,
    assert_nothing_lost_nothing_doubled,
    conclude,
    engine_for,
    fault_bus,
    probe,
    rabbit_root,
    settle,
    wait_until,
)
from tests.faults.rabbitnode import RabbitNode, cluster, free_base_port
from tests.helpers import Pki
from tests.services import postgres_database

DOWN_S = 10.0


def queue_status(node: RabbitNode, queue: str) -> dict[str, object] | None:
    """The queue as ``node`` lists it; None when the listing leaves it out, as it does while
    the queue is being declared or elects a new leader."""
    listed = node.ctl(
        "list_queues", "-q", "--formatter", "json", "name", "type", "leader", "members"
    )
    for entry in json.loads(listed.stdout):
        if entry["name"] == queue:
            found: dict[str, object] = entry
            return found
    return None


def listed_status(node: RabbitNode, queue: str, bus: FaultBus) -> dict[str, object]:
    """Wait (a minute at most) until ``node`` lists the queue, and return what it lists."""
    seen: list[dict[str, object]] = []

    def listed() -> bool:
        status = queue_status(node, queue)
        if status is not None:
            seen.append(status)
        return status is not None

    wait_until(f"{node.node} to list {queue}", listed, within=60, bus=bus, poll=0.5)
    return seen[-1]


def leader_of(node: RabbitNode, queue: str) -> str | None:
    status = queue_status(node, queue)
    return None if status is None else str(status["leader"])


@pytest.mark.faults
def test_a_cluster_node_killed_and_brought_back_loses_and_doubles_nothing(
    pki: Pki, corpus: Corpus, tmp_path: Path
) -> None:
    started = time.monotonic()
    with rabbit_root() as root, postgres_database() as url, engine_for(url) as engine:
        nodes = cluster(root, 3, free_base_port(3))
        by_name = {node.node: node for node in nodes}
        boot_s = round(time.monotonic() - started, 1)
        with fault_bus(pki, tmp_path, amqp_url=nodes[0].url, database_url=url) as bus:
            history = History()
            bus.start_router()  # on nodes[0], which declares the queue
            bus.start_router(amqp_url=nodes[1].url)
            wait_until(
                "both routers to report ready",
                lambda: all(bus.router_ready(i)[0] == 200 for i in range(2)),
                within=60,
                bus=bus,
            )
            queue = bus.topology.router_queue
            status = listed_status(nodes[1], queue, bus)
            assert status["type"] == "quorum"
            assert sorted(status["members"]) == sorted(by_name), status  # type: ignore[call-overload]
            leader = by_name[str(status["leader"])]
            load = Load(
                corpus.load,
                history,
                topology=bus.topology,
                amqp_urls=[node.url for node in nodes],
                rate=250,
            ).start()
            timeline = Timeline()
            load.wait_sent(LOAD // 3, within=60)

            leader.kill()
            timeline.fault_start = time.time()
            survivor = next(node for node in nodes if node is not leader)
            new_leader = wait_until(
                "a new leader of the router queue",
                lambda: leader_of(survivor, queue) not in (None, leader.node),
                within=30,
                bus=bus,
                poll=0.5,
            )
            time.sleep(max(0.0, timeline.fault_start + DOWN_S - time.time()))
            leader.start()
            timeline.fault_end = time.time()
            wait_until(
                "both routers to report ready",
                lambda: all(bus.router_ready(i)[0] == 200 for i in range(2)),
                within=60,
                bus=bus,
            )
            settle(bus, load, history, engine, within=120, node=survivor.node)
            probe_s = probe(bus, corpus.probes, engine, history, leader.url)
            after = listed_status(survivor, queue, bus)
            timeline.notes.update(
                {
                    "cluster_boot_s": boot_s,
                    "killed": leader.node,
                    "leader_elected_after_s": round(new_leader - timeline.fault_start, 2),
                    "leader_after": after["leader"],
                    "members_after": len(after["members"]),  # type: ignore[arg-type]
                    "router_reconnects": [bus.router_info(i)["reconnects"] for i in range(2)],
                }
            )
            outcome = conclude(
                "cluster_node_killed",
                bus,
                load,
                history,
                engine,
                timeline,
                probe_s=probe_s,
                started=started,
            )
            logs = bus.logs()
        for node in nodes:
            node.stop()
    assert_nothing_lost_nothing_doubled(outcome, logs)
    assert outcome.figures["members_after"] == 3
    # The router on the killed node lost its connection and came back by itself.
    assert max(outcome.figures["router_reconnects"]) >= 1
