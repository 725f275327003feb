"""What every fault scenario shares: the signed corpus, a steady load, the bus, and the verdict.

A scenario runs a fresh bus (its own PostgreSQL database and exchange prefix: the corpus's
message ids never collide across scenarios) as real ``lienthong router``/``api`` processes, puts
a steady load of signed envelopes on it from a ``Load`` thread (AMQP publishers, and optionally
agency systems over HTTP), injects its fault from the test's thread meanwhile, then waits for the
backlog to drain, proves the router serves again with a fresh message, stops the processes
gracefully (SIGTERM: they must exit 0), and lets the checker classify every message sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from adapters.amqp.publisher import BrokerUnavailable, Publisher
from adapters.amqp.topology import Topology
from adapters.client import ApiError, BusClient
from adapters.db import trace
from adapters.db.tables import inbox, trace_events
from exchange.signing import sign_detached
from exchange.submission import Submission
from exchange.tracing import verify_chain
from tests.faults.checker import History, Verdict, check, observe
from tests.faults.rabbitnode import kill_nodes_under
from tests.helpers import G22, H37, Pki, header_bytes
from tests.services import LIENTHONG, BusProcesses, free_port

LOAD = 5000  # envelopes of steady load per scenario
PROBES = 4  # fresh envelopes sent after recovery, to prove the router serves again
POISON = 12  # envelopes that make verification blow up (the poison scenario)
POISON_MARK = "[fault-suite poison]"
SPARE = 8
RESULTS = Path(__file__).resolve().parents[2] / "fault-results"
WRITTEN: list[dict[str, Any]] = []  # this session's figures, for the summary table


@dataclass(frozen=True)
class Envelope:
    message_id: str
    header: bytes
    signature: bytes
    body: bytes  # the AMQP submission: header, signature (no inline attachments)
    recipients: frozenset[str] = frozenset({H37})


@dataclass(frozen=True)
class Corpus:
    load: Sequence[Envelope]
    probes: Sequence[Envelope]
    poison: Sequence[Envelope]
    spare: Sequence[Envelope]  # for `lienthong send` during a fault


def sign_corpus(pki: Pki) -> Corpus:
    """Signed once per session; each scenario's bus is fresh, so the same ids serve each."""
    seal, chain = pki.seal(G22), pki.chain()

    def envelope(subject: str | None = None) -> Envelope:
        message_id = str(uuid.uuid4())
        extra = {"subject": subject} if subject else {}
        header = header_bytes(message_id=message_id, recipients=[H37], **extra)
        signature = sign_detached(header, [seal], chain=chain)
        return Envelope(message_id, header, signature, Submission(header, signature).encode())

    return Corpus(
        load=[envelope() for _ in range(LOAD)],
        probes=[envelope() for _ in range(PROBES)],
        poison=[envelope(f"Văn bản thử nghiệm {POISON_MARK}") for _ in range(POISON)],
        spare=[envelope() for _ in range(SPARE)],
    )


# --- load -------------------------------------------------------------------------------------


RUNNING_LOADS: list[Load] = []  # stopped after every scenario by the suite's conftest


class Load:
    """Publishes envelopes at a steady rate from its own thread and event loop.

    Every envelope is recorded as sent before its first attempt and as confirmed when a publisher
    returned (the broker confirmed) or the API answered 202. Publishers retry with backoff (the
    product's own retry loops); an envelope whose retries ran out stays unconfirmed.
    ``http_every`` sends every n-th envelope through the API with ``BusClient`` instead.
    """

    def __init__(
        self,
        envelopes: Sequence[Envelope],
        history: History,
        *,
        topology: Topology,
        amqp_urls: Sequence[str],
        rate: float,
        window: int = 200,
        retries: int = 40,
        http: Callable[[], BusClient] | None = None,
        http_every: int = 0,
        http_workers: int = 8,
    ) -> None:
        self.envelopes = list(envelopes)
        self.history = history
        self.topology = topology
        self.amqp_urls = list(amqp_urls)
        self.rate = rate
        self.window = window
        self.retries = retries
        self.http = http
        self.http_every = http_every if http is not None else 0
        self.http_workers = http_workers
        self.lock = threading.Lock()
        self.sent_at: dict[str, float] = {}
        self.confirmed_at: dict[str, float] = {}
        self.failures: dict[str, str] = {}
        self.over_http: set[str] = set()
        self.started = 0.0
        self.finished = 0.0
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._error: BaseException | None = None
        self._main_task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self._stopped = False

    def start(self) -> Load:
        self.started = time.time()
        RUNNING_LOADS.append(self)
        self._thread.start()
        return self

    def stop(self, within: float = 30) -> None:
        """Stop sending and give up on what is still retrying (a scenario that failed must not
        leave publishers retrying into the next one)."""
        with self.lock:
            self._stopped = True
            running = self._main_task
        if running is not None:
            loop, task = running
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(within)

    def progress(self) -> int:
        with self.lock:
            return len(self.sent_at)

    def confirmed(self) -> int:
        with self.lock:
            return len(self.confirmed_at)

    def wait_sent(self, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while self.progress() < count:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError(f"the load sent {self.progress()} of {count} in time")
            time.sleep(0.05)

    def join(self, within: float) -> None:
        self._thread.join(within)
        if self._thread.is_alive():
            raise AssertionError(
                f"the load did not finish within {within:.0f}s: {self.progress()} sent, "
                f"{self.confirmed()} confirmed"
            )
        if self._error is not None:
            raise self._error

    def _sent(self, envelope: Envelope) -> None:
        with self.lock:
            self.history.sent(envelope.message_id, envelope.recipients)
            self.sent_at[envelope.message_id] = time.time()

    def _confirmed(self, envelope: Envelope) -> None:
        with self.lock:
            self.history.confirm(envelope.message_id)
            self.confirmed_at[envelope.message_id] = time.time()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by join()
            self._error = exc
        self.finished = time.time()

    async def _main(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self.lock:
            if self._stopped:
                return
            self._main_task = (asyncio.get_running_loop(), task)
        publishers = [
            Publisher(
                url,
                self.topology,
                timeout=5,
                retries=self.retries,
                connection_name=f"{self.topology.prefix}-load-{i}",
            )
            for i, url in enumerate(self.amqp_urls)
        ]
        workers = concurrent.futures.ThreadPoolExecutor(self.http_workers, "fault-http")
        clients: list[BusClient] = []
        local = threading.local()
        window = asyncio.Semaphore(self.window)
        spread = itertools.cycle(publishers)

        def client() -> BusClient:
            found: BusClient | None = getattr(local, "client", None)
            if found is None:
                assert self.http is not None
                found = local.client = self.http()
                with self.lock:
                    clients.append(found)
            return found

        def submit(envelope: Envelope) -> None:
            client().submit(envelope.header, envelope.signature, retries=self.retries)

        async def one(envelope: Envelope, index: int) -> None:
            try:
                if self.http_every and index % self.http_every == 0:
                    self.over_http.add(envelope.message_id)
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(workers, submit, envelope)
                else:
                    await next(spread).publish(envelope.body, message_id=envelope.message_id)
            except (BrokerUnavailable, ApiError, httpx.HTTPError) as exc:
                with self.lock:
                    self.failures[envelope.message_id] = f"{type(exc).__name__}: {exc}"
                return
            finally:
                window.release()
            self._confirmed(envelope)

        tasks = []
        start = time.monotonic()
        try:
            for index, envelope in enumerate(self.envelopes):
                delay = start + index / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await window.acquire()
                self._sent(envelope)
                tasks.append(asyncio.create_task(one(envelope, index)))
            await asyncio.gather(*tasks)
        finally:
            for publisher in publishers:
                await publisher.close()
            workers.shutdown(wait=True)
            for c in clients:
                c.close()


# --- the bus ----------------------------------------------------------------------------------


@dataclass
class FaultBus:
    """A bus for one scenario: its processes, where its clients connect, and its database."""

    processes: BusProcesses
    topology: Topology
    database_url: str  # direct, for the checker (the processes may go through a proxy)
    health_ports: list[int] = field(default_factory=list)

    def start_router(
        self, *, health: bool = True, amqp_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """A ``lienthong router`` process (with its health endpoint), connected to the bus's
        broker or to ``amqp_url`` (another node of a cluster)."""
        number = len(self.health_ports)
        args = [LIENTHONG, "router", "--name", f"{self.topology.prefix}-router-{number}"]
        port = free_port()
        if health:
            args += ["--health-port", str(port)]
        env = self.processes.env
        if amqp_url is not None:
            env["LIENTHONG_AMQP_URL"] = amqp_url
        with (self.processes.root / f"router-{number}.log").open("ab") as log:
            router = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.routers.append(router)
        self.health_ports.append(port)
        if health:
            wait_until(
                "the router's health endpoint",
                lambda: router_ready(port)[0] is not None,
                within=30,
                bus=self,
            )
        return router

    def kill_router(self, index: int = -1) -> subprocess.Popen[bytes]:
        """SIGKILL a router (a crash: nothing finished, nothing returned) and forget it."""
        router = self.processes.routers.pop(index)
        router.send_signal(signal.SIGKILL)
        router.wait(timeout=10)
        return router

    def router_ready(self, index: int = -1) -> tuple[int | None, dict[str, Any]]:
        return router_ready(self.health_ports[index])

    def router_info(self, index: int = -1) -> dict[str, Any]:
        response = httpx.get(f"http://127.0.0.1:{self.health_ports[index]}/healthz", timeout=5)
        info: dict[str, Any] = response.json()["info"]
        return info

    def api_ready(self) -> tuple[int | None, dict[str, Any]]:
        try:
            response = httpx.get(f"{self.processes.url}/readyz", timeout=10)
        except httpx.HTTPError:
            return None, {}
        body: dict[str, Any] = response.json()
        return response.status_code, body

    def check_alive(self) -> None:
        for process in [*self.processes.routers, *filter(None, [self.processes.api])]:
            code = process.poll()
            if code is not None and code != -signal.SIGKILL:
                raise AssertionError(f"a bus process exited ({code})\n{self.logs()}")

    def logs(self) -> str:
        return self.processes.logs()[-12000:]


def router_ready(port: int) -> tuple[int | None, dict[str, Any]]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    except httpx.HTTPError:
        return None, {}
    body: dict[str, Any] = response.json()
    return response.status_code, body


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    within: float,
    bus: FaultBus | None = None,
    poll: float = 0.1,
) -> float:
    """Poll until ``check()``; return when (time.time()) it first held."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within:.0f}s waiting for {what}"
                + (f"\n{bus.logs()}" if bus else "")
            )
        if bus is not None:
            bus.check_alive()
        time.sleep(poll)
    return time.time()


def delivered_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inbox)).scalar() or 0)


def delivered_ids(engine: sa.Engine, ids: Sequence[str]) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(inbox.c.message_id).where(inbox.c.message_id.in_(list(ids)))
            ).scalars()
        )


def queue_messages(queue: str, node: str | None = None) -> int | None:
    """Messages in a queue, ready or delivered and unacknowledged (rabbitmqctl); None when the
    listing leaves the queue out, as a cluster's does while the queue elects a new leader."""
    listed = subprocess.run(
        [
            "rabbitmqctl",
            *(["-n", node] if node else []),
            "list_queues",
            "-q",
            "name",
            "messages",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for line in listed.stdout.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return None


@contextlib.contextmanager
def fault_bus(
    pki: Pki,
    root: Path,
    *,
    amqp_url: str,
    database_url: str,
    process_database_url: str | None = None,
    api: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[FaultBus]:
    """A prepared bus (schema, agencies) whose processes reach the broker at ``amqp_url`` and
    the database at ``process_database_url`` (a proxy, say), else ``database_url``."""
    env = {"LIENTHONG_AMQP_URL": amqp_url, **(extra_env or {})}
    if process_database_url is not None:
        env["LIENTHONG_DATABASE_URL"] = process_database_url
    processes = BusProcesses(root=root, pki_dir=pki.root, database_url=database_url, extra_env=env)
    processes.prepare()
    bus = FaultBus(processes, Topology(processes.prefix), database_url)
    try:
        if api:
            processes.start_api()
        yield bus
    finally:
        processes.stop()


@contextlib.contextmanager
def rabbit_root() -> Iterator[Path]:
    """A folder for RabbitMQ nodes, reachable by the ``rabbitmq`` user; every node started
    under it is killed (by the PID it wrote) and the folder removed, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="lt-faults-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        kill_nodes_under(root)
        for pid_file in root.glob("*/pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        time.sleep(0.5)
        shutil.rmtree(root, ignore_errors=True)


def send_cli(bus: FaultBus, envelope: Envelope, folder: Path) -> subprocess.Popen[bytes]:
    """``lienthong send`` of one envelope, as an agency's shell script would run it."""
    folder.mkdir(parents=True, exist_ok=True)
    header = folder / f"{envelope.message_id}.json"
    signature = folder / f"{envelope.message_id}.p7s"
    header.write_bytes(envelope.header)
    signature.write_bytes(envelope.signature)
    with (bus.processes.root / "send.log").open("ab") as log:
        return subprocess.Popen(
            [LIENTHONG, "send", "--header", str(header), "--signature", str(signature)],
            env=bus.processes.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


# --- the end of a scenario --------------------------------------------------------------------


@dataclass
class Timeline:
    fault_start: float = 0.0
    fault_end: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    verdict: Verdict
    figures: dict[str, Any]


def settle(
    bus: FaultBus,
    load: Load,
    history: History,
    engine: sa.Engine,
    *,
    within: float,
    node: str | None = None,
) -> None:
    """Wait until every confirmed envelope is delivered and the router queue is empty."""
    load.join(within)

    def all_delivered() -> bool:
        with load.lock:
            confirmed = set(history.confirmed) - history.expected_dead
        return len(delivered_ids(engine, sorted(confirmed))) >= len(confirmed)

    wait_until("every confirmed envelope to be delivered", all_delivered, within=within, bus=bus)
    wait_until(
        "the router queue to drain",
        lambda: queue_messages(bus.topology.router_queue, node) == 0,
        within=within,
        bus=bus,
        poll=0.5,
    )


def probe(
    bus: FaultBus,
    envelopes: Sequence[Envelope],
    engine: sa.Engine,
    history: History,
    amqp_url: str,
    *,
    http: Callable[[], BusClient] | None = None,
) -> float:
    """Send fresh envelopes after recovery (AMQP, and HTTP when given); seconds to delivery."""
    started = time.time()
    for i, envelope in enumerate(envelopes):
        history.sent(envelope.message_id, envelope.recipients)
        if http is not None and i % 2 == 1:
            with http() as client:
                client.submit(envelope.header, envelope.signature)
        else:
            publisher = Publisher(amqp_url, bus.topology, connection_name="fault-probe")

            async def send(p: Publisher = publisher, e: Envelope = envelope) -> None:
                try:
                    await p.publish(e.body, message_id=e.message_id)
                finally:
                    await p.close()

            asyncio.run(send())
        history.confirm(envelope.message_id)
    ids = [e.message_id for e in envelopes]
    done = wait_until(
        "the fresh envelopes sent after recovery to be delivered",
        lambda: len(delivered_ids(engine, ids)) == len(ids),
        within=30,
        bus=bus,
    )
    return done - started


def stop_gracefully(bus: FaultBus) -> dict[str, int]:
    """SIGTERM every process; each must finish its work and exit 0 within 20 s."""
    processes = {f"router-{i}": p for i, p in enumerate(bus.processes.routers)}
    if bus.processes.api is not None:
        processes["api"] = bus.processes.api
    codes: dict[str, int] = {}
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            codes[name] = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait()
    bus.processes.routers.clear()
    bus.processes.api = None
    return codes


def first_delivery_after(engine: sa.Engine, moment: float) -> float | None:
    at = dt.datetime.fromtimestamp(moment, dt.UTC)
    with engine.connect() as conn:
        first = conn.execute(
            sa.select(sa.func.min(inbox.c.delivered_at)).where(inbox.c.delivered_at > at)
        ).scalar()
    return None if first is None else _aware(first).timestamp() - moment


def drained_after(engine: sa.Engine, load: Load, moment: float) -> float | None:
    """Seconds from ``moment`` until the last envelope sent before it was delivered."""
    with load.lock:
        backlog = {m for m, t in load.sent_at.items() if t <= moment}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(inbox.c.message_id, inbox.c.delivered_at)).all()
    times = [_aware(at).timestamp() for m, at in rows if m in backlog]
    return None if not times else max(0.0, max(times) - moment)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def traces_intact(engine: sa.Engine) -> int:
    """Verify every subject's hash chain; return how many subjects there are."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(trace_events).order_by(trace_events.c.subject, trace_events.c.seq)
        ).all()
    chains = 0
    for subject, group in itertools.groupby(rows, key=lambda r: r.subject):
        broken = verify_chain([trace._stored(r) for r in group])
        if broken is not None:
            raise AssertionError(f"the trace of {subject} is broken at event {broken + 1}")
        chains += 1
    return chains


def conclude(
    name: str,
    bus: FaultBus,
    load: Load,
    history: History,
    engine: sa.Engine,
    timeline: Timeline,
    *,
    probe_s: float,
    started: float,
) -> Outcome:
    """Classify every message, write fault-results/<name>.json, and return the figures."""
    exit_codes = stop_gracefully(bus)
    graceful = all(code == 0 for name, code in exit_codes.items() if name.startswith("router"))
    if "api" in exit_codes:
        # uvicorn re-raises SIGTERM once it has shut down (so the status names the signal):
        # graceful when its shutdown completed (in-flight requests answered, publisher closed).
        api_log = (bus.processes.root / "api.log").read_text(errors="replace")
        graceful = graceful and exit_codes["api"] in (0, -signal.SIGTERM)
        graceful = graceful and "Application shutdown complete" in api_log
    verdict = check(history, observe(engine))
    first = first_delivery_after(engine, timeline.fault_end)
    drained = drained_after(engine, load, timeline.fault_end)
    figures: dict[str, Any] = {
        "scenario": name,
        "sent": len(history.recipients),
        "confirmed": len(history.confirmed),
        "delivered": len(verdict.ok),
        "duplicates_absorbed": verdict.duplicates_absorbed,
        "fault_s": round(timeline.fault_end - timeline.fault_start, 2),
        "first_delivery_after_fault_s": None if first is None else round(first, 2),
        "backlog_drained_after_fault_s": None if drained is None else round(drained, 2),
        "fresh_message_delivered_in_s": round(probe_s, 2),
        "classes": verdict.counts(),
        "over_http": len(load.over_http),
        "publish_failures": len(load.failures),
        "publish_failure_examples": sorted(set(load.failures.values()))[:5],
        "load_s": round(load.finished - load.started, 2),
        "total_s": round(time.monotonic() - started, 2),
        "exit_codes": exit_codes,
        "graceful": graceful,
        "trace_subjects": traces_intact(engine),
        **timeline.notes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    WRITTEN.append(figures)
    return Outcome(verdict, figures)


def assert_nothing_lost_nothing_doubled(outcome: Outcome, bus_logs: str = "") -> None:
    verdict, figures = outcome.verdict, outcome.figures
    assert verdict.valid, f"{figures['scenario']}: {verdict.explain()}\n{bus_logs[-6000:]}"
    assert not verdict.lost
    assert not verdict.duplicated
    assert figures["graceful"], (
        f"a process did not shut down gracefully: {figures['exit_codes']}\n{bus_logs[-6000:]}"
    )
    assert figures["confirmed"] >= LOAD * 0.99, f"too few confirmed: {figures}"


@contextlib.contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()
