"""Scenario 5: poison messages that make verification blow up, amid a steady load.

The router runs in this process (the one way to make the verifier itself raise: lienthong has no
test hook): a real RouterService over a real ``bootstrap.build`` bus, whose verifier raises an
unexpected exception for envelopes marked as poison. Each such envelope fails alone (its batch
is routed without it), returns to the queue, and once past the quorum queue's delivery limit is
dead-lettered, kept in ``dead_letters`` and traced (``dead_lettered``); every other envelope is
delivered exactly once, and the router goes on serving.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters import bootstrap
from adapters.amqp.router import RouterService, in_thread
from adapters.amqp.topology import Topology
from adapters.db.routing import record_dead_letter
from adapters.db.tables import dead_letters
from adapters.settings import Settings
from exchange.routing import Outcome
from tests.faults.checker import History
from tests.faults.harness import (
    POISON,
    POISON_MARK,
    Corpus,
    FaultBus,
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

DELIVERY_LIMIT = 3


class VerificationBlewUp(RuntimeError):
    """What the verifier raises for a poison envelope: not a rejection, a crash."""


class InProcessRouter:
    """A RouterService on its own thread and event loop, stopped as SIGTERM stops it."""

    def __init__(self, bus: FaultBus, root: Path, pki: Pki) -> None:
        settings = Settings(
            data_dir=root / "var",
            database_url=bus.database_url,
            amqp_url=AMQP_URL,
            pki_dir=pki.root,
            exchange_prefix=bus.topology.prefix,
            delivery_limit=DELIVERY_LIMIT,
            crl_poll_s=0.5,
        ).resolved()
        built = bootstrap.build(settings)
        self.engine = built.engine
        verify = built.verifier.verify
        mark = POISON_MARK.encode()

        def exploding(header: bytes, *args: Any, **kwargs: Any) -> Any:
            if mark in header:
                raise VerificationBlewUp("the verifier crashed on this envelope")
            return verify(header, *args, **kwargs)

        # The one substitution: the real verifier, raising for marked envelopes.
        built.verifier.verify = exploding  # type: ignore[method-assign]
        self.service = RouterService(
            settings.amqp_url,
            Topology(settings.exchange_prefix, settings.delivery_limit),
            in_thread(built.router.route, built.crl_sync.maybe_refresh),
            lambda body, tid, reason, detail: record_dead_letter(
                built.engine, body, tid, reason, detail, built.clock.now()
            ),
            prefetch=settings.prefetch,
            batch_max=settings.batch_max,
            batch_wait_ms=settings.batch_wait_ms,
            name=f"{bus.topology.prefix}-router-in-process",
        )
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="fault-router", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.service.run(self._stop, self._ready))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc
        finally:
            self._loop.close()

    def start(self) -> None:
        self._thread.start()
        wait_until("the in-process router", self._ready.is_set, within=30)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the router did not stop"
        self.engine.dispose()
        if self.error is not None:
            raise self.error


@pytest.fixture
def scenario(pki: Pki, tmp_path: Path) -> Iterator[tuple[FaultBus, InProcessRouter]]:
    with (
        postgres_database() as url,
        fault_bus(
            pki,
            tmp_path,
            amqp_url=AMQP_URL,
            database_url=url,
            extra_env={"LIENTHONG_DELIVERY_LIMIT": str(DELIVERY_LIMIT)},
        ) as bus,
    ):
        bus.topology = Topology(bus.topology.prefix, DELIVERY_LIMIT)
        router = InProcessRouter(bus, tmp_path, pki)
        try:
            yield bus, router
        finally:
            if router._thread.is_alive():
                router.stop()
            delete_topology(bus.topology.prefix)


@pytest.mark.faults
def test_poison_messages_are_dead_lettered_and_traced_while_the_rest_flows(
    scenario: tuple[FaultBus, InProcessRouter], corpus: Corpus
) -> None:
    started = time.monotonic()
    bus, router = scenario
    poison_ids = {e.message_id for e in corpus.poison}
    # The poison spread through the load, one every len(load) / POISON envelopes.
    step = len(corpus.load) // POISON
    mixed = list(corpus.load)
    for i, envelope in enumerate(corpus.poison):
        mixed.insert(step * i + step // 2 + i, envelope)
    with engine_for(bus.database_url) as engine:
        history = History(expected_dead=set(poison_ids))
        router.start()
        load = Load(mixed, history, topology=bus.topology, amqp_urls=[AMQP_URL], rate=250)
        timeline = Timeline(fault_start=time.time())
        load.start()

        def dead() -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar() or 0
                )

        settle(bus, load, history, engine, within=120)
        timeline.fault_end = wait_until(
            "every poison message to be dead-lettered", lambda: dead() >= POISON, within=60
        )
        probe_s = probe(bus, corpus.probes, engine, history, AMQP_URL)
        stats = router.service.stats
        router.stop()
        with engine.connect() as conn:
            reasons = conn.execute(
                sa.select(dead_letters.c.transport_id, dead_letters.c.reason)
            ).all()
        timeline.notes.update(
            {
                "poison": POISON,
                "delivery_limit": DELIVERY_LIMIT,
                "dead_lettered": stats.dead_lettered,
                "returned_to_queue": stats.outcomes.get(Outcome.RETRY.value, 0),
            }
        )
        outcome = conclude(
            "poison_messages",
            bus,
            load,
            history,
            engine,
            timeline,
            probe_s=probe_s,
            started=started,
        )
    assert_nothing_lost_nothing_doubled(outcome, bus.logs())
    assert outcome.verdict.dead_lettered == poison_ids
    assert {tid: reason for tid, reason in reasons} == dict.fromkeys(
        poison_ids, "delivery_limit_exceeded"
    )
    # Each poison envelope crashed verification once per delivery: the first and each retry.
    assert outcome.figures["returned_to_queue"] >= POISON * (DELIVERY_LIMIT + 1)
