#!/usr/bin/env python3
"""lienthong against the bare broker, measured in one run (``make bench``; issue 7).

    .venv/bin/python scripts/bench.py [--quick] [--messages 6000] [--loads 25,50,75,90]
        [--routers 1,2,4] [--databases sqlite,postgresql] [--soak SECONDS] [--out bench-results]

A benchmark, never a test. ``--agencies`` agencies (default 8: the three demo agencies of the
development PKI and more issued with ``DevPki.issue_agency``) send signed envelopes (headers of
about 4 KiB, 1-3 recipients, a share - default 5% - with an inline 1 MiB attachment) through the
whole bus, run as its real processes (``lienthong router`` and ``lienthong api``, each bus with
its own database and exchange prefix). For each database:

* drain: ``--messages`` envelopes are published (confirmed) while no router runs; then the router
  starts (``--main-routers``, default one), and the rate is taken from the moment it consumes to
  the last message stored (start-up excluded). This is the maximum throughput, ``e2e_msgs_per_s``
  for the first database;
* latency at offered loads: with the router running, envelopes are published open-loop (a
  constant rate, whatever the confirms do) at each ``--loads`` fraction of that maximum for
  ``--duration`` seconds. A thread polls the inbox table by id every ``--poll-ms``; an envelope's
  latency is the moment the poller first sees its inbox row minus the moment its publish was
  issued. ``p99_ms`` is the p99 at half the maximum. The broker alone is measured at each of
  these loads too (first database): the same envelopes, rate and publisher into a queue declared
  as the router's, taken by a bare aio-pika consumer in a process of its own that acks each
  delivery (``bare broker`` rows, and ``bare_broker_p99_ms``): the part of the latency no router
  can take away. Each AMQP level's latency is also split in two at the moment the router took
  the envelope (its ``messages.received_at``): submit -> router (broker, batch, pipe) and router
  -> inbox (verify, record, commit), p50 and p99 of each (``split_ms``);
* HTTP: ``--http-messages`` envelopes submitted through ``POST /v1/messages`` by concurrent
  ``BusClient`` submitters, each signing its requests as its agency (closed loop: throughput),
  then open-loop at half that throughput (latency);
* router RSS (VmRSS of the router process) at the start and at the end.

A scaling table follows: the drain with 1, 2 and 4 router processes (``--routers``) for each
database, each on a bus of its own; with r routers, (r + 1) / 2 x ``--messages`` envelopes are
drained and the rate is taken once all r routers consume. ``--soak SECONDS`` keeps the first
database's bus, after its HTTP phase, under constant load at half its maximum and samples the
router's RSS every ``--soak-interval`` seconds (growth target under 10%; the issue asks for 600 s).
Soak envelopes are signed beforehand into a spool file, and their attachments cycle through 64
distinct contents (the blob store keeps each once) so that a long soak does not fill the disk.

The baselines run on the same broker in the same run: a bare aio-pika consume -> publish with
confirms -> ack loop over the same message bodies with the same prefetch (``bench_bus.py``'s,
run before and after the bus phases; the ratio uses the faster run), and ``cryptography``'s bare
RSA-2048 verification (plus ``Verifier.verify`` on one of the envelopes). The bare loop and this
script's publishers run on uvloop, the event loop the router runs on.

The broker is, by default (``--broker own``), a RabbitMQ node the run starts for itself beside
the machine's (as root: the node runs as the rabbitmq user), with the settings lienthong deploys
its broker with (``deploy/rabbitmq.conf``: a quorum queue write-ahead log of 16 MiB, whose
rollovers stall deliveries far less than the default's); the run goes on in a child process
given its URL, and the node is removed at the end. ``--broker machine`` uses the machine's
(``LIENTHONG_TEST_AMQP_URL``) as it is configured. PostgreSQL is the machine's
(``LIENTHONG_TEST_POSTGRES_URL``); PostgreSQL databases and broker queues are created for the
run and removed.

Output: tables on stdout, a progress bar on stderr, ``OUT/bench.json`` (every figure, the load
average along the way), ``OUT/bench.png`` (throughput and latency against offered load, the
scaling, the soak), and, as the last line of stdout, one JSON object with ``e2e_msgs_per_s``,
``baseline_msgs_per_s``, ``ratio``, ``p99_ms`` and more.

It also prints the CPU each part used in each phase (router, API, broker, PostgreSQL, this script,
other processes: shares of the machine's cores, from /proc), and with ``--py-spy PATH`` (py-spy
installed anywhere, e.g. ``python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy``) it
records the router (with its routing process) during the drain and at half load, and the API
during the HTTP closed loop, into ``OUT/profile-*.txt`` (where the time goes, by process and
thread, by part and by function; with ``--py-spy-gil`` only the thread holding the GIL, that is
where Python's CPU goes). ``--prefetch``,
``--batch-max`` and ``--batch-wait-ms`` set the router's ``LIENTHONG_*`` settings.

``scripts/bench_verify.py`` (the verifier alone, step by step) and ``scripts/bench_bus.py`` stay
runnable on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import platform
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' service helpers

import aio_pika
import sqlalchemy as sa
import uvloop
from bench_bus import bench_baseline
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from adapters.amqp.publisher import Publisher
from adapters.amqp.topology import Topology, declare
from adapters.client import BusClient
from adapters.db.keys import chunks
from adapters.db.tables import messages, rejections
from adapters.files import load_certificates, load_private_key
from adapters.pki.folder import DemoAgency, DevPki
from adapters.settings import Settings
from exchange.signing import SigningKey, sign_detached
from exchange.submission import Submission
from exchange.verification import Accepted
from tests.faults.rabbitnode import RabbitNode, free_base_port
from tests.helpers import InlineAttachments, Pki
from tests.services import AMQP_URL, BusProcesses, children, delete_topology, postgres_database

MIB = 1024 * 1024
PUBLISH_WINDOW = 256  # confirms in flight while pre-publishing (as bench_bus.py)
CHUNK = 250  # envelopes per signing job
SOAK_ATTACHMENT_POOL = 64
ATTACHMENT_NAME = "phu-luc-du-toan.pdf"
SUBJECT = "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027 và kế hoạch tài chính; "
EXTRA_AGENCIES = (
    ("000.00.00.G09", "Bộ Tài chính (thử nghiệm)", "Nguyễn Văn An", "Bộ trưởng", None),
    ("000.00.00.G12", "Bộ Nội vụ (thử nghiệm)", "Đỗ Thị Bình", "Bộ trưởng", None),
    ("000.00.00.H29", "Ủy ban nhân dân tỉnh H29", "Vũ Minh Châu", "Chủ tịch", "Tỉnh H29"),
    ("000.00.03.H29", "Sở Nội vụ tỉnh H29", "Hoàng Văn Dũng", "Giám đốc", "Tỉnh H29"),
    ("000.00.00.H53", "Ủy ban nhân dân tỉnh H53", "Phan Thị Giang", "Chủ tịch", "Tỉnh H53"),
    ("000.00.11.H53", "Sở Tài chính tỉnh H53", "Bùi Quốc Huy", "Giám đốc", "Tỉnh H53"),
    ("000.00.00.K29", "Hội đồng nhân dân tỉnh H29", "Ngô Thị Lan", "Chủ tịch", "Tỉnh H29"),
    ("000.00.00.G16", "Bộ Tư pháp (thử nghiệm)", "Trịnh Văn Khoa", "Bộ trưởng", None),
)

console = Console(stderr=True)


# --- envelopes -----------------------------------------------------------------------------


class Envelope(NamedTuple):
    message_id: str
    sender: str
    header: bytes
    signature: bytes
    attachment: int  # the index of its attachment's content, -1 for none


class Spec(NamedTuple):
    sender: str
    recipients: tuple[str, ...]
    attachment: int


class Attachments:
    """Attachment contents of ``size`` bytes, distinct by index (a 16-byte prefix)."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.size = max(size, 16)
        self.base = random.Random(seed).randbytes(self.size)  # noqa: S311 - filler bytes

    def content(self, index: int) -> bytes:
        return index.to_bytes(16, "big") + self.base[16:]


def body(envelope: Envelope, attachments: Attachments) -> bytes:
    """The submission as published: header, signature and the inline attachment if any."""
    files = (
        {}
        if envelope.attachment < 0
        else {ATTACHMENT_NAME: attachments.content(envelope.attachment)}
    )
    return Submission(envelope.header, envelope.signature, files).encode()


def encode(header: dict[str, Any]) -> bytes:
    return json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def header_template(sender: str, recipient: str, target: int) -> dict[str, Any]:
    """A document header of about ``target`` bytes (one recipient, no attachment): longer
    subject, type, place and signer fields, within the schema's limits."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    header: dict[str, Any] = {
        "version": 1,
        "message_id": str(uuid.uuid4()),
        "kind": "document",
        "sender": sender,
        "recipients": [recipient],
        "created_at": "2026-01-01T00:00:00Z",
        "document": {
            "number": "2491",
            "notation": "STC-BCTC",
            "type": "Công văn",
            "subject": "Về việc",
            "promulgation_place": "Hà Nội",
            "promulgation_date": today,
            "signer": {"full_name": "Trần Văn Minh", "position": "Bộ trưởng", "competence": "KT."},
            "priority": "urgent",
            "steering_type": "directive",
        },
        "attachments": [],
    }
    document = header["document"]
    fill = SUBJECT * 40
    for holder, name, limit in (
        (document, "subject", 2000),
        (document, "type", 200),
        (document, "promulgation_place", 200),
        (document["signer"], "position", 200),
        (document["signer"], "full_name", 200),
    ):
        low, high = len(holder[name]), limit  # the longest value that keeps the header short
        while low < high:
            middle = (low + high + 1) // 2
            holder[name] = fill[:middle].strip() or "x"
            if len(encode(header)) <= target:
                low = middle
            else:
                high = middle - 1
        holder[name] = fill[:low].strip() or "x"
        if len(encode(header)) >= target - 8:
            break
    return header


@dataclass(frozen=True)
class SignerSetup:
    """What a signing process needs (picklable)."""

    pki_root: str
    codes: tuple[str, ...]
    header_bytes: int
    attachment_bytes: int


class Signer:
    """Signs envelopes as their sender's seal, like an agency system does."""

    def __init__(self, setup: SignerSetup) -> None:
        dev = DevPki(Path(setup.pki_root))
        self.chain = load_certificates(dev.chain)
        self.keys: dict[str, SigningKey] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        for index, code in enumerate(setup.codes):
            cert, key = dev.seal(code)
            self.keys[code] = SigningKey(load_certificates(cert)[0], load_private_key(key))
            other = setup.codes[(index + 1) % len(setup.codes)]
            self.templates[code] = header_template(code, other, setup.header_bytes)
        self.attachments = Attachments(setup.attachment_bytes)
        self.digests: dict[int, str] = {}

    def _attachment_ref(self, index: int) -> dict[str, Any]:
        digest = self.digests.get(index)
        if digest is None:
            digest = hashlib.sha256(self.attachments.content(index)).hexdigest()
            self.digests[index] = digest
        return {
            "name": ATTACHMENT_NAME,
            "media_type": "application/pdf",
            "size": self.attachments.size,
            "sha256": digest,
        }

    def sign(self, spec: Spec) -> Envelope:
        header = dict(self.templates[spec.sender])
        message_id = str(uuid.uuid4())
        header["message_id"] = message_id
        header["recipients"] = list(spec.recipients)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        header["created_at"] = now.isoformat().replace("+00:00", "Z")
        header["attachments"] = (
            [] if spec.attachment < 0 else [self._attachment_ref(spec.attachment)]
        )
        data = encode(header)
        signature = sign_detached(data, [self.keys[spec.sender]], chain=self.chain)
        return Envelope(message_id, spec.sender, data, signature, spec.attachment)


_worker_signer: Signer | None = None


def _init_worker(setup: SignerSetup) -> None:
    global _worker_signer  # one Signer per signing process
    _worker_signer = Signer(setup)


def _sign_chunk(specs: list[Spec]) -> list[Envelope]:
    assert _worker_signer is not None
    return [_worker_signer.sign(spec) for spec in specs]


def plan(codes: Sequence[str], start: int, count: int, share: float, pool: int = 0) -> list[Spec]:
    """Who sends what: senders in turn, 1-3 other agencies as recipients, an attachment on a
    ``share`` of the envelopes evenly spread (distinct contents, or cycling through ``pool``)."""
    specs = []
    for k in range(start, start + count):
        sender = codes[k % len(codes)]
        others = [c for c in codes if c != sender]
        wanted = min(1 + k % 3, len(others))
        recipients = tuple(others[(k + j) % len(others)] for j in range(wanted))
        with_attachment = math.floor((k + 1) * share) > math.floor(k * share)
        attachment = (k % pool if pool else k) if with_attachment else -1
        specs.append(Spec(sender, recipients, attachment))
    return specs


class Factory:
    """Signs envelopes in worker processes (in this one for small counts)."""

    def __init__(self, setup: SignerSetup, workers: int, progress: Reporter, share: float) -> None:
        self.setup = setup
        self.workers = workers
        self.share = share
        self.progress = progress
        self.issued = 0  # envelopes planned so far: attachment indices stay distinct
        self._executor: ProcessPoolExecutor | None = None
        self._local: Signer | None = None

    def _chunks(self, count: int, pool: int) -> list[list[Spec]]:
        specs = plan(self.setup.codes, self.issued, count, self.share, pool)
        self.issued += count
        return [specs[i : i + CHUNK] for i in range(0, len(specs), CHUNK)]

    def signed(self, count: int, label: str, *, pool: int = 0) -> Iterator[list[Envelope]]:
        chunks = self._chunks(count, pool)
        task = self.progress.task(f"signing {label}", count)
        if count < 1500 or self.workers <= 1:
            if self._local is None:
                self._local = Signer(self.setup)
            for chunk in chunks:
                signed = [self._local.sign(spec) for spec in chunk]
                self.progress.advance(task, len(signed))
                yield signed
        else:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(self.setup,),
                )
            for signed in self._executor.map(_sign_chunk, chunks):
                self.progress.advance(task, len(signed))
                yield signed
        self.progress.done(task)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


class Stock:
    """Signed envelopes shared by the buses: each bus has its own database, so the same
    envelopes serve every bus; within a bus, ``take`` never hands one out twice."""

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.envelopes: list[Envelope] = []
        self.cursor = 0

    def reset(self) -> None:
        self.cursor = 0

    def take(self, count: int, label: str) -> list[Envelope]:
        missing = self.cursor + count - len(self.envelopes)
        if missing > 0:
            for chunk in self.factory.signed(missing, label):
                self.envelopes.extend(chunk)
        taken = self.envelopes[self.cursor : self.cursor + count]
        self.cursor += count
        return taken


class Spool:
    """Envelopes kept in a file (a long soak needs more than memory should hold)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def fill(self, chunks: Iterable[list[Envelope]]) -> None:
        with self.path.open("wb") as handle:
            for chunk in chunks:
                pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
                self.count += len(chunk)

    def __iter__(self) -> Iterator[Envelope]:
        with self.path.open("rb") as handle:
            while True:
                try:
                    chunk: list[Envelope] = pickle.load(handle)  # noqa: S301 - our own file
                except EOFError:
                    return
                yield from chunk


# --- progress ------------------------------------------------------------------------------


class Reporter:
    """The progress bar (stderr) and a log of the load average along the run."""

    def __init__(self, progress: Progress) -> None:
        self.bar = progress
        self.loadavg: list[dict[str, Any]] = []

    def task(self, label: str, total: float) -> TaskID:
        return self.bar.add_task(label, total=total)

    def advance(self, task: TaskID, amount: float = 1) -> None:
        self.bar.advance(task, amount)

    def done(self, task: TaskID) -> None:
        total = self.bar.tasks[self.bar.task_ids.index(task)].total
        self.bar.update(task, completed=total)

    def log(self, text: str) -> None:
        self.bar.console.log(text)

    def mark(self, phase: str) -> None:
        one, five, fifteen = os.getloadavg()
        self.loadavg.append(
            {"phase": phase, "at": time.time(), "1m": one, "5m": five, "15m": fifteen}
        )


# --- measuring -----------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process and its children (a router's routing process), in KiB (None once
    it is gone)."""
    own = _vm_rss(pid)
    if own is None:
        return None
    return own + sum(_vm_rss(child) or 0 for child in children(pid))


def _vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(v * 1000 for v in values)
    return {
        "p50_ms": quantile(ordered, 0.50),
        "p95_ms": quantile(ordered, 0.95),
        "p99_ms": quantile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
    }


TICK = os.sysconf("SC_CLK_TCK")
# Other processes of the machine using more than this many cores during a phase disturbed it
# (another session's tests, say): such an offered load is run again (--retries).
DISTURBED_CORES = 0.25


def disturbed(cpu: dict[str, float]) -> bool:
    return cpu.get("others", 0.0) > DISTURBED_CORES


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def _listener(port: int) -> int | None:
    """The process listening on a local TCP port (the machine's RabbitMQ)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{parts[9]}]")
    for pid in _pids_named("beam.smp"):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


class CpuMeter:
    """CPU seconds used by the parts of the run between two snapshots, as cores: the router(s),
    the API, the broker, PostgreSQL (the backends of the bench's database and the server's own
    processes), this script, kernel threads and interrupts (I/O done for all of them), and the
    rest of the machine (/proc/stat): other processes, e.g. another session's tests."""

    def __init__(self, amqp_port: int, database: str | None) -> None:
        self.broker = _listener(amqp_port)
        self.database = database

    def _postgres(self, pid: int) -> bool:
        if self.database is None:
            return False
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        # A client backend's title names its database and client; the server's own processes
        # (writer, checkpointer, WAL writer...) work for every database.
        return f" {self.database} " in title or "(" not in title

    def snapshot(self, routers: Sequence[int], api: int | None) -> dict[str, Any]:
        # A router's routing process counts as the router.
        family = [pid for router in routers for pid in (router, *children(router))]
        ours = {pid: "router" for pid in family} | {os.getpid(): "bench"}
        if api:
            ours[api] = "api"
        if self.broker:
            ours[self.broker] = "broker"
        groups: dict[str, dict[int, int]] = {
            g: {} for g in ("router", "api", "broker", "postgresql", "bench", "kernel")
        }
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                comm, rest = (entry / "stat").read_text().rsplit(")", 1)
            except (OSError, ValueError):
                continue
            fields = rest.split()
            ticks = int(fields[11]) + int(fields[12])
            name = comm.split("(", 1)[-1]
            if pid in ours:
                groups[ours[pid]][pid] = ticks
            elif fields[1] in ("0", "2") and pid != 1:
                groups["kernel"][pid] = ticks
            elif name == "postgres" and self._postgres(pid):
                groups["postgresql"][pid] = ticks
        stat = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return {
            "at": time.perf_counter(),
            "groups": groups,
            "total": sum(stat),
            "idle": stat[3] + stat[4],
            "irq": stat[5] + stat[6],
        }

    @staticmethod
    def cores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        wall = after["at"] - before["at"]
        total = after["total"] - before["total"]
        if wall <= 0 or total <= 0:
            return {}
        used: dict[str, float] = {}
        for group, pids in after["groups"].items():
            old = before["groups"].get(group, {})
            ticks = sum(t - old.get(pid, 0) for pid, t in pids.items())
            used[group] = ticks / TICK / wall
        cpus = os.cpu_count() or 1
        used["kernel"] += cpus * (after["irq"] - before["irq"]) / total
        used["machine"] = cpus * (total - (after["idle"] - before["idle"])) / total
        ours = sum(v for k, v in used.items() if k != "machine")
        used["others"] = max(0.0, used["machine"] - ours)
        return {k: round(v, 3) for k, v in used.items()}


GAP_S = 10.0


class InboxPoller:
    """Polls the inbox table by id every ``interval`` seconds from a thread: when each message's
    first inbox row became visible (``time.perf_counter``)."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-poller", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> InboxPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # The driver's own connection and one statement text: a poll every few milliseconds
        # through SQLAlchemy's expression and result layers cost the machine a tenth of a core
        # at half load (make bench, bench process 0.47 -> 0.36 cores with 20 ms polls), CPU the
        # bus under test would otherwise have.
        engine = sa.create_engine(self.url, poolclass=sa.NullPool)
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        after = f"SELECT id, message_id FROM inbox WHERE id > {mark} ORDER BY id"  # noqa: S608
        listed = "SELECT id, message_id FROM inbox WHERE id IN ({})"
        last = 0
        # Ids skipped over: with several routers on PostgreSQL a transaction that took lower ids
        # can commit after one that took higher ones; they are looked up until seen (or given up
        # after GAP_S: a rolled-back transaction leaves holes in the sequence for good).
        gaps: dict[int, float] = {}
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            while not self._stop.is_set():
                cursor.execute(after, (last,))
                rows = list(cursor.fetchall())
                if gaps:
                    wanted = sorted(gaps)
                    for at in range(0, len(wanted), 1000):
                        chunk = wanted[at : at + 1000]
                        cursor.execute(listed.format(", ".join([mark] * len(chunk))), chunk)
                        rows += cursor.fetchall()
                now = time.perf_counter()
                raw.rollback()  # the next poll reads a new snapshot
                self.polls += 1
                for row_id, message_id in rows:
                    self.seen.setdefault(message_id, now)
                    gaps.pop(row_id, None)
                    if row_id > last:
                        gaps.update(dict.fromkeys(range(last + 1, row_id), now))
                        last = row_id
                for row_id in [i for i, t in gaps.items() if now - t > GAP_S]:
                    del gaps[row_id]
                self._stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - reported by wait_for
            self.error = exc
        finally:
            raw.close()
            engine.dispose()

    def wait_for(self, ids: Iterable[str], timeout: float) -> list[str]:
        """Wait until every id was seen (or ``timeout``); the ids still missing."""
        pending = [i for i in ids if i not in self.seen]
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"the inbox poller failed: {self.error!r}")
            time.sleep(0.02)
            pending = [i for i in pending if i not in self.seen]
        return pending


@dataclass
class Level:
    """One offered load: open-loop submissions and the latency to the inbox."""

    transport: str
    database: str
    fraction: float
    offered_msgs_per_s: float
    issued_msgs_per_s: float
    delivered_msgs_per_s: float
    messages: int
    missing: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    p99_attachment_ms: float
    issue_lag_p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)
    attempts: int = 1
    # The latency in two: submit -> the router took the envelope (its messages.received_at:
    # broker, the router's batch, the pipe to the routing process), then -> visible in the
    # inbox (verifying, recording, committing). p50 and p99 of each; empty for the bare broker.
    split_ms: dict[str, float] = field(default_factory=dict)


def split_ms(
    issued: dict[str, float], taken: dict[str, float], seen: dict[str, float]
) -> dict[str, float]:
    """p50 and p99 of submit -> taken by the router, and of taken -> visible in the inbox."""
    both = [i for i in issued if i in taken and i in seen]
    before = latency_ms(taken[i] - issued[i] for i in both)
    after = latency_ms(seen[i] - taken[i] for i in both)
    return {
        "to_router_p50_ms": before["p50_ms"],
        "to_router_p99_ms": before["p99_ms"],
        "in_router_p50_ms": after["p50_ms"],
        "in_router_p99_ms": after["p99_ms"],
    }


def summarise(
    transport: str,
    database: str,
    fraction: float,
    rate: float,
    issued: dict[str, float],
    lags: list[float],
    errors: int,
    seen: dict[str, float],
    with_attachment: set[str],
    missing: list[str],
) -> Level:
    latencies = {i: seen[i] - t for i, t in issued.items() if i in seen}
    stats = latency_ms(latencies.values())
    big = latency_ms(v for i, v in latencies.items() if i in with_attachment)
    first, last_issue = min(issued.values()), max(issued.values())
    last_seen = max((seen[i] for i in latencies), default=first)
    return Level(
        transport,
        database,
        fraction,
        rate,
        len(issued) / max(last_issue - first, 1e-9),
        len(latencies) / max(last_seen - first, 1e-9),
        len(issued),
        len(missing),
        errors,
        stats["p50_ms"],
        stats["p95_ms"],
        stats["p99_ms"],
        stats["max_ms"],
        big["p99_ms"],
        latency_ms(lags)["p99_ms"],
    )


# Where a router's (or the API's) time goes: samples whose stack holds a frame that starts with
# the key (py-spy's "function (file)"), as a share of all samples.
PROFILE_PARTS = {
    "Router.decide (": "decide: parse, digest, verify a batch",
    "Verifier.verify (": "  verification (Verifier.verify)",
    "_Attachments.measure (": "    of which attachment SHA-256",
    "SqlRoutingStore.processed (": "  query: digests already processed",
    "SqlRoutingStore.recall (": "  query: ids already stored (recall)",
    "FileBlobStore.put (": "blob files (attachments, write + fsync)",
    "SqlRoutingStore.commit (": "the batch's transaction (SqlRoutingStore.commit)",
    "_Batch._flush (": "  inserting the rows (_Batch._flush)",
    "append (adapters/db/trace.py)": "    of which the trace (hash chain + insert)",
    "DefaultDialect.do_commit (": "  COMMIT",
    "_sqlite_begin (": "BEGIN IMMEDIATE (SQLite write lock, any connection)",
    "Connection.__reader (aiormq": "AMQP: reading frames (event loop)",
    "Channel._reader (aiormq": "AMQP: deliveries to messages (event loop)",
    "Connection.__writer (aiormq": "AMQP: writing frames, acks (event loop)",
    "RouterService._process (": "router: settling the batch (event loop)",
    "Authenticator.authenticate (": "API: request authentication",
    "certificate_by_fingerprint (": "  API: pinned certificate lookup",
    "use_nonce (": "  API: nonce insert",
    "Publisher.publish (": "API: publish with confirm",
}
PROFILE_WORKER = "Thread._bootstrap ("


class Profiler:
    """py-spy (``--py-spy PATH``) recording a process while it works; summaries in OUT."""

    def __init__(self, binary: str, out: Path, *, gil: bool = False) -> None:
        self.binary = binary
        self.out = out
        self.gil = gil  # sample only the thread holding the GIL: where Python's CPU goes
        self.summaries: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def record(self, pid: int, label: str) -> Iterator[None]:
        raw = self.out / f"profile-{label}.raw"
        spy = subprocess.Popen(
            [
                *(self.binary, "record", "--pid", str(pid), "--format", "raw"),
                *("--output", str(raw), "--rate", "200", "--nonblocking", "--subprocesses"),
                *(["--gil"] if self.gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)  # attached
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        if raw.exists():
            summary = summarise_profile(raw)
            self.summaries[label] = summary
            (self.out / f"profile-{label}.txt").write_text(
                profile_text(label, summary, gil=self.gil)
            )


def _frame(text: str) -> str:
    return re.sub(r":\d+\)$", ")", text)


def summarise_profile(raw: Path) -> dict[str, Any]:
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    parts = dict.fromkeys(PROFILE_PARTS, 0)
    # py-spy follows the router's routing process too (--subprocesses): its frames say which.
    threads: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        split = stack.split(";")
        frames = [_frame(f) for f in split if not f.startswith("process ")]
        if not frames:
            continue
        child = sum(f.startswith("process ") for f in split) > 1
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
        for needle in PROFILE_PARTS:
            if any(f.startswith(needle) for f in frames):
                parts[needle] += count
        worker = any(f.startswith(PROFILE_WORKER) for f in frames)
        thread = (
            ("routing process: " if child else "")
            + ("worker threads" if worker else "main thread")
            + ("" if child else " (event loop)")
        )
        threads[thread] = threads.get(thread, 0) + count

    def share(count: int) -> float:
        return count / total if total else 0.0

    def top(table: dict[str, int], count: int) -> list[tuple[str, float]]:
        ranked = sorted(table.items(), key=lambda item: -item[1])[:count]
        return [(name, share(c)) for name, c in ranked]

    return {
        "samples": total,
        "threads": {k: share(v) for k, v in sorted(threads.items(), key=lambda kv: -kv[1])},
        "parts": {PROFILE_PARTS[k]: share(v) for k, v in parts.items() if v},
        "own": top(own, 30),
        "inclusive": top(inclusive, 60),
    }


def profile_text(label: str, summary: dict[str, Any], *, gil: bool = False) -> str:
    what = "holding the GIL" if gil else "non-idle"
    lines = [f"py-spy profile {label}: {summary['samples']} samples (200 Hz, {what})", ""]
    lines += [f"{share:7.1%}  {name}" for name, share in summary["threads"].items()]
    lines += ["", "inclusive, by part:"]
    lines += [f"{share:7.1%}  {name}" for name, share in summary["parts"].items()]
    lines += ["", "own time, by function:"]
    lines += [f"{share:7.1%}  {name}" for name, share in summary["own"]]
    lines += ["", "inclusive time, by function:"]
    lines += [f"{share:7.1%}  {name}" for name, share in summary["inclusive"]]
    return "\n".join(lines) + "\n"


# --- the bus -------------------------------------------------------------------------------


@dataclass
class Drain:
    database: str
    routers: int
    messages: int
    measured: int
    seconds: float
    publish_msgs_per_s: float
    startup_s: float
    rss_start_kib: list[int]
    rss_end_kib: list[int]
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else float("nan")


class Bench:
    """One bus as processes: its database, its exchange prefix, its folder; removed on exit."""

    def __init__(self, name: str, root: Path, pki_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.root = root
        self.pki_dir = pki_dir
        self.env = env
        self._stack = contextlib.ExitStack()
        self.procs: BusProcesses
        self.engine: sa.Engine

    def __enter__(self) -> Bench:
        self.root.mkdir(parents=True)
        if self.name == "sqlite":
            url = f"sqlite:///{self.root / 'lienthong.db'}"
        else:
            url = self._stack.enter_context(postgres_database())
        self.url = url
        self.procs = BusProcesses(
            root=self.root, pki_dir=self.pki_dir, database_url=url, extra_env=self.env
        )
        self._stack.callback(shutil.rmtree, self.root, ignore_errors=True)
        self._stack.callback(delete_topology, self.procs.prefix)
        self._stack.callback(self.procs.stop)
        self.procs.prepare()
        # One connection kept open: a new PostgreSQL connection per poll would fork a backend
        # every few milliseconds, CPU the bus would miss.
        self.engine = sa.create_engine(url, pool_size=1, max_overflow=0)
        self._stack.callback(self.engine.dispose)
        database = None if self.name == "sqlite" else sa.engine.make_url(url).database
        self.meter = CpuMeter(urllib.parse.urlsplit(AMQP_URL).port or 5672, database)
        return self

    def cpu(self) -> dict[str, Any]:
        """A CPU snapshot of the bus's processes, the broker, PostgreSQL and this script."""
        api = self.procs.api.pid if self.procs.api else None
        return self.meter.snapshot([r.pid for r in self.procs.routers], api)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def topology(self) -> Topology:
        return Topology(self.procs.prefix)

    def counts(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar()
            refused = conn.execute(sa.select(sa.func.count()).select_from(rejections)).scalar()
        return int(stored or 0), int(refused or 0)

    def first_rejection(self) -> str:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(rejections.c.reason, rejections.c.detail)).first()
        return f"{row[0]}: {row[1]}" if row else "none"

    def taken_at(self, ids: Sequence[str]) -> dict[str, float]:
        """When the router took each of these envelopes (``messages.received_at``, the time
        it began to decide the batch), on ``time.perf_counter``'s clock."""
        offset = time.time() - time.perf_counter()
        out: dict[str, float] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(ids, 1000):
                query = sa.select(messages.c.message_id, messages.c.received_at).where(
                    messages.c.message_id.in_(chunk)
                )
                for message_id, received in conn.execute(query):
                    out[message_id] = received.timestamp() - offset
        return out

    def check_alive(self) -> None:
        for router in self.procs.routers:
            if router.poll() is not None:
                raise SystemExit(f"a router exited:\n{self.procs.logs()[-4000:]}")

    def outcomes(self) -> dict[str, int]:
        """The routers' outcome counts, from the line each logs when it stops."""
        total: dict[str, int] = {}
        log = self.root / "router.log"
        for match in re.finditer(r"router stopped: (\{.*\})", log.read_text(errors="replace")):
            for key, value in json.loads(match.group(1)).items():
                total[key] = total.get(key, 0) + int(value)
        return total

    def wait_stored(
        self, target: int, seen: Callable[[int], None] = lambda n: None, timeout: float = 900
    ) -> float:
        """Poll until ``target`` messages are stored; the moment they were."""
        deadline = time.monotonic() + timeout
        while True:
            stored, refused = self.counts()
            seen(stored)
            if refused:
                raise SystemExit(
                    f"{refused} bench envelopes were rejected ({self.first_rejection()})"
                )
            if stored >= target:
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{stored} of {target} stored in time:\n{self.procs.logs()[-4000:]}"
                )
            self.check_alive()
            time.sleep(0.01)


async def publish_all(
    topology: Topology,
    envelopes: Sequence[Envelope],
    attachments: Attachments,
    advance: Callable[[int], None],
) -> float:
    """Publish with confirms, ``PUBLISH_WINDOW`` in flight; messages per second."""
    publisher = Publisher(AMQP_URL, topology, connection_name="bench-publisher")
    window = asyncio.Semaphore(PUBLISH_WINDOW)

    async def one(envelope: Envelope) -> None:
        async with window:
            await publisher.publish(body(envelope, attachments), message_id=envelope.message_id)
        advance(1)

    try:
        await publisher.ping()
        started = time.perf_counter()
        await asyncio.gather(*(one(e) for e in envelopes))
        return len(envelopes) / (time.perf_counter() - started)
    finally:
        await publisher.close()


def drain(
    bench: Bench,
    envelopes: Sequence[Envelope],
    routers: int,
    attachments: Attachments,
    progress: Reporter,
    profile: Profiler | None = None,
) -> Drain:
    """Publish while no router runs, start ``routers``, time from the moment all of them consume
    to the last message stored (their start-up excluded, their first batch included)."""
    task = progress.task(f"{bench.name}: publishing {len(envelopes)} for the drain", len(envelopes))
    publish_rate = uvloop.run(
        publish_all(bench.topology, envelopes, attachments, lambda n: progress.advance(task, n))
    )
    drain_task = progress.task(f"{bench.name}: drain with {routers} router(s)", len(envelopes))
    launched = time.perf_counter()
    for _ in range(routers):
        bench.procs.start_router(wait=False)  # together: timed once all of them consume
    while bench.procs.consuming() < routers:
        bench.check_alive()
        if time.perf_counter() - launched > 120:
            raise SystemExit(f"the routers did not start:\n{bench.procs.logs()[-4000:]}")
        time.sleep(0.002)
    started = time.perf_counter()
    first, _ = bench.counts()
    cpu_start = bench.cpu()
    rss_start = [rss_kib(r.pid) or 0 for r in bench.procs.routers]
    recording = (
        profile.record(bench.procs.routers[0].pid, f"{bench.name}-router-drain")
        if profile
        else contextlib.nullcontext()
    )
    with recording:
        ended = bench.wait_stored(
            len(envelopes), lambda n: progress.bar.update(drain_task, completed=n)
        )
    cpu = CpuMeter.cores(cpu_start, bench.cpu())
    rss_end = [rss_kib(r.pid) or 0 for r in bench.procs.routers]
    progress.done(drain_task)
    if ended - started <= 0 or first >= len(envelopes):
        raise SystemExit("the drain was too short to time: raise --messages")
    return Drain(
        bench.name,
        routers,
        len(envelopes),
        len(envelopes) - first,
        ended - started,
        publish_rate,
        started - launched,
        rss_start,
        rss_end,
        cpu,
    )


async def amqp_open_loop(
    topology: Topology,
    envelopes: Iterable[Envelope],
    count: int,
    rate: float,
    attachments: Attachments,
    advance: Callable[[int], None],
    issued: dict[str, float],
    with_attachment: set[str],
) -> tuple[list[float], int]:
    """Publish ``count`` envelopes at ``rate`` per second whatever the confirms do (each publish
    is a task); returns the lags behind schedule and the number of failed publishes."""
    publisher = Publisher(AMQP_URL, topology, connection_name="bench-open-loop")
    await publisher.ping()
    tasks: set[asyncio.Task[None]] = set()
    lags: list[float] = []
    errors = 0

    def finished(task: asyncio.Task[None]) -> None:
        nonlocal errors
        tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            errors += 1
        advance(1)

    try:
        started = time.perf_counter()
        for k, envelope in enumerate(envelopes):
            if k >= count:
                break
            due = started + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the publishes in flight progress
            data = body(envelope, attachments)
            now = time.perf_counter()
            issued[envelope.message_id] = now
            lags.append(max(now - due, 0.0))
            if envelope.attachment >= 0:
                with_attachment.add(envelope.message_id)
            task = asyncio.create_task(publisher.publish(data, message_id=envelope.message_id))
            tasks.add(task)
            task.add_done_callback(finished)
        if tasks:
            await asyncio.wait(set(tasks))
    finally:
        await publisher.close()
    return lags, errors


def amqp_level(
    bench: Bench,
    poller: InboxPoller,
    envelopes: Sequence[Envelope],
    fraction: float,
    rate: float,
    attachments: Attachments,
    progress: Reporter,
    profile: Profiler | None = None,
) -> Level:
    label = f"{bench.name}: AMQP at {fraction:.0%} ({rate:.0f}/s)"
    task = progress.task(label, len(envelopes))
    issued: dict[str, float] = {}
    with_attachment: set[str] = set()
    recording = (
        profile.record(bench.procs.routers[0].pid, f"{bench.name}-router-{fraction:.0%}-load")
        if profile and abs(fraction - 0.5) < 1e-9
        else contextlib.nullcontext()
    )
    cpu_start = bench.cpu()
    with recording:
        lags, errors = uvloop.run(
            amqp_open_loop(
                bench.topology,
                envelopes,
                len(envelopes),
                rate,
                attachments,
                lambda n: progress.advance(task, n),
                issued,
                with_attachment,
            )
        )
        missing = poller.wait_for(issued, timeout=120)
    seen = poller.seen
    level = summarise(
        "amqp", bench.name, fraction, rate, issued, lags, errors, seen, with_attachment, missing
    )
    level.cpu = CpuMeter.cores(cpu_start, bench.cpu())
    level.split_ms = split_ms(issued, bench.taken_at(list(issued)), seen)
    return level


def _bare_consumer(url: str, prefix: str, count: int, prefetch: int, pipe: Connection) -> None:
    """The broker alone, in a process of its own as the router is: declare the bus's queues as
    a router does, consume, ack each delivery, note when it came (``time.perf_counter``, the
    same clock in every process of the machine)."""

    async def consume() -> dict[str, float]:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            source = (await declare(channel, Topology(prefix))).router
            seen: dict[str, float] = {}
            done = asyncio.Event()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                seen[message.message_id or ""] = time.perf_counter()
                await message.ack()
                if len(seen) >= count:
                    done.set()

            await source.consume(on_message)
            pipe.send("ready")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), BARE_WAIT_S)
            return seen

    pipe.send(uvloop.run(consume()))


BARE_WAIT_S = 120.0


def bare_level(
    bench: Bench,
    envelopes: Sequence[Envelope],
    fraction: float,
    rate: float,
    attachments: Attachments,
    prefetch: int,
    progress: Reporter,
) -> Level:
    """Latency of the broker alone at an offered load: the same envelopes, rate and publisher
    as the bus's level, into a queue declared as the router's, taken by a bare consumer."""
    topology = Topology(f"lt-bench-bare-{uuid.uuid4().hex[:10]}")
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    consumer = context.Process(
        target=_bare_consumer,
        args=(AMQP_URL, topology.prefix, len(envelopes), prefetch, theirs),
        name="bench-bare-consumer",
    )
    task = progress.task(f"bare broker at {fraction:.0%} ({rate:.0f}/s)", len(envelopes))
    issued: dict[str, float] = {}
    with_attachment: set[str] = set()
    consumer.start()
    try:
        if not mine.poll(60) or mine.recv() != "ready":
            raise SystemExit("the bare consumer did not start")
        # The consumer stands where the router does in the CPU table.
        assert consumer.pid is not None  # started
        family = [consumer.pid]
        cpu_start = bench.meter.snapshot(family, None)
        lags, errors = uvloop.run(
            amqp_open_loop(
                topology,
                envelopes,
                len(envelopes),
                rate,
                attachments,
                lambda n: progress.advance(task, n),
                issued,
                with_attachment,
            )
        )
        seen: dict[str, float] = mine.recv() if mine.poll(BARE_WAIT_S + 30) else {}
        cpu = CpuMeter.cores(cpu_start, bench.meter.snapshot(family, None))
    finally:
        consumer.join(10)
        if consumer.is_alive():
            consumer.kill()
        delete_topology(topology.prefix)
    missing = [i for i in issued if i not in seen]
    level = summarise(
        "bare", "broker", fraction, rate, issued, lags, errors, seen, with_attachment, missing
    )
    level.cpu = cpu
    return level


@dataclass
class HttpRun:
    issued: dict[str, float] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    with_attachment: set[str] = field(default_factory=set)


def http_submit(
    bench: Bench,
    dev: DevPki,
    envelopes: Sequence[Envelope],
    attachments: Attachments,
    per_agency: int,
    rate: float | None,
    advance: Callable[[int], None],
) -> HttpRun:
    """Submit over HTTP with ``per_agency`` BusClient threads per agency, each signing its
    requests with its agency's seal. ``rate`` None: closed loop (each thread submits as soon as
    its previous submission was answered); else open loop at ``rate`` per second."""
    run = HttpRun()
    codes = sorted({e.sender for e in envelopes})
    queues: dict[str, queue.Queue[tuple[Envelope, float] | None]] = {
        code: queue.Queue() for code in codes
    }
    clients = {
        code: [bench.procs.client(*dev.seal(code)) for _ in range(per_agency)] for code in codes
    }
    lock = threading.Lock()

    def work(client: BusClient, jobs: queue.Queue[tuple[Envelope, float] | None]) -> None:
        while (job := jobs.get()) is not None:
            envelope, due = job
            files = (
                {}
                if envelope.attachment < 0
                else {ATTACHMENT_NAME: attachments.content(envelope.attachment)}
            )
            started = time.perf_counter()
            with lock:
                run.issued[envelope.message_id] = started
                if due:
                    run.lags.append(max(started - due, 0.0))
                if files:
                    run.with_attachment.add(envelope.message_id)
            try:
                client.submit(envelope.header, envelope.signature, files, retries=0)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    run.errors.append(f"{type(exc).__name__}: {exc}")
            with lock:
                run.answered[envelope.message_id] = time.perf_counter()
            advance(1)

    threads = [
        threading.Thread(target=work, args=(client, queues[code]), daemon=True)
        for code in codes
        for client in clients[code]
    ]
    try:
        if rate is None:
            for envelope in envelopes:
                queues[envelope.sender].put((envelope, 0.0))
        for thread in threads:
            thread.start()
        if rate is not None:
            started = time.perf_counter()
            for k, envelope in enumerate(envelopes):
                due = started + k / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                queues[envelope.sender].put((envelope, due))
        for code in codes:
            for _ in range(per_agency):
                queues[code].put(None)
        for thread in threads:
            thread.join()
    finally:
        for client_list in clients.values():
            for client in client_list:
                client.close()
    return run


# --- baselines -----------------------------------------------------------------------------


def bare_rsa_per_s(pki: Pki, code: str, seconds: float) -> float:
    key = pki.seal(code).private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    message = bytes(range(256)) + bytes(44)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public = key.public_key()
    return calls_per_s(
        lambda: public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256()), seconds
    )


def verifier_per_s(pki: Pki, envelope: Envelope, seconds: float) -> float:
    verifier = pki.verifier()
    files = InlineAttachments({})
    if not isinstance(verifier.verify(envelope.header, envelope.signature, files), Accepted):
        raise SystemExit("the bench envelope does not verify")
    return calls_per_s(lambda: verifier.verify(envelope.header, envelope.signature, files), seconds)


def calls_per_s(action: Callable[[], object], seconds: float) -> float:
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            action()
        done += 50
    return done / elapsed


async def broker_version() -> str:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        assert connection.transport is not None
        properties = connection.transport.connection.server_properties
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)


# --- the run -------------------------------------------------------------------------------


@dataclass
class Options:
    agencies: int
    messages: int
    loads: list[float]
    duration: float
    routers: list[int]
    main_routers: int
    databases: list[str]
    http_messages: int
    http_per_agency: int
    soak: float
    soak_interval: float
    header_bytes: int
    attachment_share: float
    attachment_bytes: int
    prefetch: int
    batch_max: int
    batch_wait_ms: int
    poll_ms: float
    retries: int
    workers: int
    out: Path
    quick: bool
    broker: str
    py_spy: str | None
    py_spy_gil: bool
    loads_of: float | None


def parse(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run < 1 min")
    parser.add_argument("--agencies", type=int, default=8, help="3 demo agencies + issued ones")
    parser.add_argument("--messages", type=int, help="envelopes per drain (default 6000)")
    parser.add_argument("--loads", help="offered loads, %% of the maximum (default 25,50,75,90)")
    parser.add_argument("--duration", type=float, help="seconds per offered load (default 10)")
    parser.add_argument("--routers", help="router processes for the scaling table (1,2,4)")
    parser.add_argument("--databases", help="sqlite,postgresql (the first gives the headline)")
    parser.add_argument(
        "--main-routers", type=int, default=1, help="routers of the drain, loads and HTTP (1)"
    )
    parser.add_argument("--http-messages", type=int, help="closed-loop HTTP submissions (1000)")
    parser.add_argument("--http-per-agency", type=int, default=2, help="HTTP submitter threads")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (0: none)")
    parser.add_argument("--soak-interval", type=float, default=5.0, help="RSS sample period, s")
    parser.add_argument("--header-bytes", type=int, default=4096)
    parser.add_argument("--attachment-share", type=float, default=0.05)
    parser.add_argument("--attachment-bytes", type=int, default=MIB)
    parser.add_argument("--prefetch", type=int, default=256, help="LIENTHONG_PREFETCH, baseline")
    parser.add_argument("--batch-max", type=int, help="LIENTHONG_BATCH_MAX (default prefetch)")
    parser.add_argument(
        "--batch-wait-ms",
        type=int,
        default=Settings.model_fields["batch_wait_ms"].default,
        help="LIENTHONG_BATCH_WAIT_MS (default: the router's)",
    )
    parser.add_argument("--poll-ms", type=float, default=2.0, help="inbox poll period")
    parser.add_argument(
        "--retries", type=int, help="runs again of a load other processes disturbed (2)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="signers")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--broker",
        choices=("own", "machine"),
        default="own",
        help="own: a RabbitMQ node of the run's own with deploy/rabbitmq.conf (default); "
        "machine: the machine's (LIENTHONG_TEST_AMQP_URL) as it is configured",
    )
    parser.add_argument(
        "--py-spy", metavar="PATH", help="py-spy binary: profile the router and the API (1st db)"
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="profile only the thread holding the GIL (where Python's CPU time goes)",
    )
    parser.add_argument(
        "--loads-of",
        type=float,
        metavar="MSG_PER_S",
        help="offered loads are fractions of this rate, not of the measured drain (A/B runs)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    loads = [float(x) for x in str(pick(args.loads, "25,50,75,90", "50")).split(",") if x]
    loads = sorted({x / 100 if x > 1.5 else x for x in loads} | {0.5})
    databases = [
        "postgresql" if d.strip() in ("postgres", "postgresql") else d.strip()
        for d in str(pick(args.databases, "sqlite,postgresql", "sqlite")).split(",")
    ]
    if any(d not in ("sqlite", "postgresql") for d in databases):
        parser.error("--databases takes sqlite and/or postgresql")
    return Options(
        agencies=max(2, min(args.agencies, 3 + len(EXTRA_AGENCIES))),
        messages=int(pick(args.messages, 6000, 300)),
        loads=loads,
        duration=float(pick(args.duration, 10.0, 2.0)),
        routers=sorted({int(x) for x in str(pick(args.routers, "1,2,4", "1")).split(",")}),
        main_routers=max(1, args.main_routers),
        databases=databases,
        http_messages=int(pick(args.http_messages, 1000, 60)),
        http_per_agency=args.http_per_agency,
        soak=args.soak,
        soak_interval=args.soak_interval,
        header_bytes=args.header_bytes,
        attachment_share=args.attachment_share,
        attachment_bytes=args.attachment_bytes,
        prefetch=args.prefetch,
        batch_max=args.batch_max or args.prefetch,
        batch_wait_ms=args.batch_wait_ms,
        poll_ms=args.poll_ms,
        retries=int(pick(args.retries, 2, 0)),
        workers=max(1, args.workers),
        out=args.out,
        quick=quick,
        broker=args.broker,
        py_spy=args.py_spy,
        loads_of=args.loads_of,
        py_spy_gil=bool(args.py_spy_gil),
    )


def make_pki(root: Path, agencies: int) -> tuple[DevPki, list[str]]:
    dev = DevPki(root)
    dev.init()
    for code, name, leader, title, province in EXTRA_AGENCIES[: max(0, agencies - 3)]:
        dev.issue_agency(DemoAgency(code, name, leader, title, province))
    codes = [a.code for a in dev.agencies()][:agencies]
    return dev, codes


@dataclass
class Results:
    drains: list[Drain] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    http: dict[str, dict[str, Any]] = field(default_factory=dict)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    soak: dict[str, Any] | None = None


@dataclass
class Context:
    """What every phase of the run shares."""

    opts: Options
    root: Path
    dev: DevPki
    env: dict[str, str]
    stock: Stock
    factory: Factory
    attachments: Attachments
    results: Results
    progress: Reporter
    profile: Profiler | None


def main_phases(ctx: Context, name: str, soak: bool, bare: bool = False) -> None:
    """One database: the drain (maximum), latency at offered loads (and, with ``bare``, the
    broker's alone at each of them), HTTP, RSS, the soak."""
    opts, progress, results = ctx.opts, ctx.progress, ctx.results
    ctx.stock.reset()
    progress.mark(f"{name}: start")
    with Bench(name, ctx.root / f"{name}-main", ctx.dev.root, ctx.env) as bench:
        routers = opts.main_routers
        envelopes = ctx.stock.take(opts.messages * (routers + 1) // 2, "drain")
        first = drain(bench, envelopes, routers, ctx.attachments, progress, ctx.profile)
        results.drains.append(first)
        progress.log(
            f"{name}: drain {first.rate:.0f} msg/s ({first.measured} in {first.seconds:.2f}s)"
        )
        progress.mark(f"{name}: drain")
        router = bench.procs.routers[0]
        rss: dict[str, float] = {"start_kib": first.rss_start_kib[0]}
        rss["after_drain_kib"] = rss_kib(router.pid) or 0
        maximum = opts.loads_of or first.rate
        sweep = [(f, f * maximum, max(20, round(f * maximum * opts.duration))) for f in opts.loads]
        envelopes = ctx.stock.take(sum(n for _, _, n in sweep), "offered loads")
        with InboxPoller(bench.url, opts.poll_ms / 1000) as poller:
            at = 0
            for fraction, rate, count in sweep:
                tries: list[Level] = []
                while True:
                    if at + count > len(envelopes):  # a level run again needs more
                        envelopes += ctx.stock.take(count, "offered loads (again)")
                    level = amqp_level(
                        bench,
                        poller,
                        envelopes[at : at + count],
                        fraction,
                        rate,
                        ctx.attachments,
                        progress,
                        ctx.profile if not tries else None,
                    )
                    at += count
                    tries.append(level)
                    progress.log(
                        f"{name}: AMQP {fraction:.0%} of max: p50 {level.p50_ms:.1f} ms, p99 "
                        f"{level.p99_ms:.1f} ms, delivered {level.delivered_msgs_per_s:.0f}/s"
                        + (" (disturbed)" if disturbed(level.cpu) else "")
                    )
                    time.sleep(0.5)
                    if not disturbed(level.cpu) or len(tries) > opts.retries:
                        break
                    progress.log(
                        f"other processes used {level.cpu.get('others', 0):.2f} cores: again"
                    )
                level = min(tries, key=lambda lv: lv.cpu.get("others", 0.0))
                level.attempts = len(tries)
                results.levels.append(level)
                progress.mark(f"{name}: amqp {fraction:.0%}")
                if bare:
                    alone = bare_level(
                        bench,
                        envelopes[at - count : at],
                        fraction,
                        rate,
                        ctx.attachments,
                        opts.prefetch,
                        progress,
                    )
                    results.levels.append(alone)
                    progress.log(
                        f"bare broker at {fraction:.0%}: p50 {alone.p50_ms:.1f} ms, p99 "
                        f"{alone.p99_ms:.1f} ms"
                    )
                    progress.mark(f"bare broker {fraction:.0%}")
            rss["after_sweep_kib"] = rss_kib(router.pid) or 0
            if opts.http_messages > 0:
                bench.procs.start_api()
                results.http[name] = http_phases(ctx, bench, poller)
            rss["end_kib"] = rss_kib(router.pid) or 0
            rss["growth_pct"] = 100 * (rss["end_kib"] / rss["start_kib"] - 1)
            results.rss[name] = rss
            if soak:
                results.soak = run_soak(ctx, bench, poller, maximum)
        bench.procs.stop()
        results.outcomes[name] = bench.outcomes()


def http_phases(ctx: Context, bench: Bench, poller: InboxPoller) -> dict[str, Any]:
    """Closed loop (throughput), then open loop at half of it (latency)."""
    opts, progress, name = ctx.opts, ctx.progress, bench.name
    envelopes = ctx.stock.take(opts.http_messages, "HTTP")
    task = progress.task(f"{name}: HTTP closed loop", len(envelopes))
    api = bench.procs.api
    recording = (
        ctx.profile.record(api.pid, f"{name}-api-http")
        if ctx.profile and api
        else contextlib.nullcontext()
    )
    cpu_start = bench.cpu()
    with recording:
        run = http_submit(
            bench,
            ctx.dev,
            envelopes,
            ctx.attachments,
            opts.http_per_agency,
            None,
            lambda n: progress.advance(task, n),
        )
        missing = poller.wait_for(run.issued, timeout=120)
    closed_cpu = CpuMeter.cores(cpu_start, bench.cpu())
    if run.errors:
        progress.log(f"{name}: {len(run.errors)} HTTP errors, first: {run.errors[0]}")
    first = min(run.issued.values())
    seen = [poller.seen[i] for i in run.issued if i in poller.seen]
    submit_rate = len(run.answered) / (max(run.answered.values()) - first)
    e2e_rate = len(seen) / (max(seen) - first) if seen else float("nan")
    closed = latency_ms(poller.seen[i] - t for i, t in run.issued.items() if i in poller.seen)
    progress.log(f"{name}: HTTP submit {submit_rate:.0f}/s, end to end {e2e_rate:.0f}/s")
    progress.mark(f"{name}: http closed loop")
    time.sleep(0.5)

    rate = 0.5 * e2e_rate
    count = max(20, round(rate * opts.duration))
    envelopes = ctx.stock.take(count, "HTTP open loop")
    task = progress.task(f"{name}: HTTP at 50% ({rate:.0f}/s)", count)
    cpu_start = bench.cpu()
    open_run = http_submit(
        bench,
        ctx.dev,
        envelopes,
        ctx.attachments,
        2 * opts.http_per_agency,
        rate,
        lambda n: progress.advance(task, n),
    )
    missing_open = poller.wait_for(open_run.issued, timeout=120)
    level = summarise(
        "http",
        name,
        0.5,
        rate,
        open_run.issued,
        open_run.lags,
        len(open_run.errors),
        poller.seen,
        open_run.with_attachment,
        missing_open,
    )
    level.cpu = CpuMeter.cores(cpu_start, bench.cpu())
    ctx.results.levels.append(level)
    progress.log(f"{name}: HTTP at 50%: p50 {level.p50_ms:.1f} ms, p99 {level.p99_ms:.1f} ms")
    progress.mark(f"{name}: http open loop")
    return {
        "messages": len(run.issued),
        "submitters": opts.http_per_agency * len({e.sender for e in envelopes}),
        "submit_msgs_per_s": submit_rate,
        "e2e_msgs_per_s": e2e_rate,
        "closed_loop_latency": closed,
        "closed_loop_cpu_cores": closed_cpu,
        "missing": len(missing),
        "errors": len(run.errors) + len(open_run.errors),
        "first_error": next(iter(run.errors + open_run.errors), None),
        "open_loop_at_half": asdict(level),
    }


def run_soak(ctx: Context, bench: Bench, poller: InboxPoller, maximum: float) -> dict[str, Any]:
    """Constant load at half the maximum for ``--soak`` seconds; the router's RSS sampled."""
    opts, progress = ctx.opts, ctx.progress
    rate = 0.5 * maximum
    count = max(20, math.ceil(rate * opts.soak))
    spool = Spool(ctx.root / "soak.spool")
    spool.fill(ctx.factory.signed(count, "soak", pool=SOAK_ATTACHMENT_POOL))
    router = bench.procs.routers[0]
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while True:
            value = rss_kib(router.pid)
            if value is not None:
                samples.append((time.perf_counter() - started, value))
            if stop.wait(opts.soak_interval):
                return

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    progress.mark("soak: start")
    task = progress.task(f"soak {opts.soak:.0f}s at {rate:.0f}/s", count)
    issued: dict[str, float] = {}
    with_attachment: set[str] = set()
    cpu_start = bench.cpu()
    try:
        lags, errors = uvloop.run(
            amqp_open_loop(
                bench.topology,
                spool,
                count,
                rate,
                ctx.attachments,
                lambda n: progress.advance(task, n),
                issued,
                with_attachment,
            )
        )
        missing = poller.wait_for(issued, timeout=300)
    finally:
        stop.set()
        sampler.join()
        spool.path.unlink()
    progress.mark("soak: end")
    seen = poller.seen
    level = summarise(
        "amqp-soak", bench.name, 0.5, rate, issued, lags, errors, seen, with_attachment, missing
    )
    level.cpu = CpuMeter.cores(cpu_start, bench.cpu())
    windows = []
    span = max(opts.soak / 10, 1.0)
    zero = min(issued.values())
    for index in range(10):
        inside = [
            seen[i] - t
            for i, t in issued.items()
            if i in seen and index * span <= t - zero < (index + 1) * span
        ]
        windows.append({"from_s": index * span, "messages": len(inside), **latency_ms(inside)})
    first, last = samples[0][1], samples[-1][1]
    warm = next((v for t, v in samples if t >= 0.1 * opts.soak), first)
    return {
        "seconds": opts.soak,
        "rate_msgs_per_s": rate,
        "messages": count,
        "attachment_pool": SOAK_ATTACHMENT_POOL,
        "rss_samples": [{"t_s": round(t, 1), "rss_kib": v} for t, v in samples],
        "rss_first_kib": first,
        "rss_last_kib": last,
        "rss_max_kib": max(v for _, v in samples),
        "rss_growth_pct": 100 * (last / first - 1),
        "rss_growth_after_warmup_pct": 100 * (last / warm - 1),
        "latency": asdict(level),
        "windows": windows,
    }


def scaling_phase(ctx: Context, name: str, routers: int) -> None:
    """The drain with ``routers`` router processes, on a bus of its own."""
    ctx.stock.reset()
    with Bench(name, ctx.root / f"{name}-{routers}", ctx.dev.root, ctx.env) as bench:
        # More envelopes than one router drains: the first router to start drains some alone
        # while the others start, and only the rest counts.
        count = ctx.opts.messages * (routers + 1) // 2
        envelopes = ctx.stock.take(count, f"{routers} routers")
        result = drain(bench, envelopes, routers, ctx.attachments, ctx.progress)
        ctx.results.drains.append(result)
        bench.procs.stop()
        ctx.results.outcomes[f"{name}-{routers}"] = bench.outcomes()
    ctx.progress.log(f"{name}: {routers} routers drain {result.rate:.0f} msg/s")
    ctx.progress.mark(f"{name}: {routers} routers")


def plot(path: Path, results: Results, baseline: float, maximum: dict[str, float]) -> bool:
    """The PNG; False when matplotlib is missing (``pip install matplotlib``)."""
    try:
        import matplotlib
    except ImportError:
        console.log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    (throughput, latency), (scaling, soak) = axes
    colours = {"sqlite": "tab:blue", "postgresql": "tab:green"}
    for name, colour in colours.items():
        levels = [lv for lv in results.levels if lv.database == name and lv.transport == "amqp"]
        if not levels:
            continue
        offered = [lv.offered_msgs_per_s for lv in levels]
        throughput.plot(
            offered,
            [lv.delivered_msgs_per_s for lv in levels],
            "o-",
            color=colour,
            label=f"{name}: delivered",
        )
        throughput.axhline(maximum[name], color=colour, linestyle=":", label=f"{name}: drain max")
        for key, style in (("p50_ms", "o:"), ("p95_ms", "s--"), ("p99_ms", "^-")):
            latency.plot(
                offered,
                [getattr(lv, key) for lv in levels],
                style,
                color=colour,
                label=f"{name} {key[:3]}",
            )
    bare = [lv for lv in results.levels if lv.transport == "bare"]
    if bare:
        latency.plot(
            [lv.offered_msgs_per_s for lv in bare],
            [lv.p99_ms for lv in bare],
            "^--",
            color="black",
            label="broker alone p99",
        )
    throughput.axhline(baseline, color="black", linestyle="--", label="bare aio-pika loop")
    throughput.set(
        xlabel="offered load (msg/s, AMQP, open loop)",
        ylabel="msg/s",
        title="Throughput against offered load",
    )
    throughput.legend(fontsize=8)
    latency.axhline(100, color="red", linestyle=":", label="p99 target 100 ms")
    latency.set(
        xlabel="offered load (msg/s)",
        ylabel="submit -> inbox (ms)",
        yscale="log",
        title="Latency against offered load",
    )
    latency.legend(fontsize=8)
    names = sorted({d.database for d in results.drains})
    counts = sorted({d.routers for d in results.drains})
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        rates = {d.routers: d.rate for d in results.drains if d.database == name}
        xs = [i + index * width for i, r in enumerate(counts) if r in rates]
        scaling.bar(
            xs, [rates[r] for r in counts if r in rates], width, label=name, color=colours.get(name)
        )
    scaling.axhline(baseline, color="black", linestyle="--", label="bare aio-pika loop")
    scaling.set_xticks(
        [i + width * (len(names) - 1) / 2 for i in range(len(counts))],
        [f"{r} router(s)" for r in counts],
    )
    scaling.set(ylabel="drain msg/s", title="Scaling: router processes")
    scaling.legend(fontsize=8)
    if results.soak:
        samples = results.soak["rss_samples"]
        soak.plot(
            [s["t_s"] for s in samples],
            [s["rss_kib"] / 1024 for s in samples],
            "-",
            color="tab:purple",
        )
        soak.set(
            xlabel="seconds",
            ylabel="router RSS (MiB)",
            title=f"Soak at {results.soak['rate_msgs_per_s']:.0f}/s: RSS "
            f"{results.soak['rss_growth_pct']:+.1f}%",
        )
        soak.set_ylim(bottom=0)
        windows = results.soak["windows"]
        latency_axis = soak.twinx()
        middles = [w["from_s"] + results.soak["seconds"] / 20 for w in windows]
        for key, style in (("p50_ms", "o:"), ("p99_ms", "^-")):
            latency_axis.plot(
                middles,
                [w[key] for w in windows],
                style,
                color="tab:gray",
                label=f"latency {key[:3]}",
            )
        latency_axis.set_ylabel("submit -> inbox (ms)")
        latency_axis.set_ylim(bottom=0)
        latency_axis.legend(fontsize=8, loc="lower right")
    else:
        soak.text(0.5, 0.5, "no soak (--soak SECONDS)", ha="center", va="center")
        soak.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def report(
    opts: Options,
    results: Results,
    baselines: list[float],
    rsa: float,
    verify: float,
    envelope_sizes: dict[str, float],
) -> None:
    baseline = max(baselines)
    print()
    print(f"broker: {broker_description()}")
    print(f"{'throughput':<52} {'msgs':>7} {'seconds':>8} {'msg/s':>8} {'ratio':>7}")
    for index, value in enumerate(baselines):
        print(
            f"{f'bare aio-pika consume->publish(confirm)->ack #{index + 1}':<52} "
            f"{opts.messages:>7} {opts.messages / value:>8.2f} {value:>8.0f} {'':>7}"
        )
    print(f"{'bare RSA-2048 verify (cryptography, one core)':<52} {'':>7} {'':>8} {rsa:>8.0f}")
    print(f"{'Verifier.verify, a bench envelope (one core)':<52} {'':>7} {'':>8} {verify:>8.0f}")
    for d in results.drains:
        if d.routers == opts.main_routers:
            print(
                f"{f'lienthong AMQP drain, {d.database}, {d.routers} router(s)':<52} "
                f"{d.measured:>7} "
                f"{d.seconds:>8.2f} {d.rate:>8.0f} {d.rate / baseline:>7.3f}"
            )
    for name, http in results.http.items():
        print(
            f"{f'lienthong HTTP submit (202), {name}':<52} {http['messages']:>7} {'':>8} "
            f"{http['submit_msgs_per_s']:>8.0f} {http['submit_msgs_per_s'] / baseline:>7.3f}"
        )
        print(
            f"{f'lienthong HTTP end to end, {name}':<52} {http['messages']:>7} {'':>8} "
            f"{http['e2e_msgs_per_s']:>8.0f} {http['e2e_msgs_per_s'] / baseline:>7.3f}"
        )
    print(
        f"  (ratio: to the faster bare loop, {baseline:.0f}/s; envelopes: header "
        f"~{envelope_sizes['header']:.0f} B, body {envelope_sizes['small']:.0f} B or "
        f"{envelope_sizes['large'] / MIB:.2f} MiB for {opts.attachment_share:.0%})"
    )

    print()
    print(
        f"{'latency submit -> inbox':<12} {'database':<10} {'load':>5} {'offered':>8} "
        f"{'issued':>7} {'deliv.':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'p99 1MiB':>8} {'lost':>5} {'others':>7}"
    )
    for lv in results.levels:
        print(
            f"{lv.transport:<12} {lv.database:<10} {lv.fraction:>5.0%} "
            f"{lv.offered_msgs_per_s:>8.0f} {lv.issued_msgs_per_s:>7.0f} "
            f"{lv.delivered_msgs_per_s:>7.0f} {lv.p50_ms:>8.1f} {lv.p95_ms:>8.1f} "
            f"{lv.p99_ms:>8.1f} {lv.max_ms:>8.1f} {lv.p99_attachment_ms:>8.1f} "
            f"{lv.missing + lv.errors:>5} {lv.cpu.get('others', float('nan')):>6.2f}"
            + ("*" if disturbed(lv.cpu) else "")
        )

    split = [lv for lv in results.levels if lv.split_ms]
    if split:
        print()
        print(
            f"{'latency in two (ms)':<23} {'load':>5} {'to router p50':>14} {'p99':>7} "
            f"{'router to inbox p50':>20} {'p99':>7}"
        )
        for lv in split:
            sp = lv.split_ms
            print(
                f"{lv.transport + ' ' + lv.database:<23} {lv.fraction:>5.0%} "
                f"{sp['to_router_p50_ms']:>14.1f} {sp['to_router_p99_ms']:>7.1f} "
                f"{sp['in_router_p50_ms']:>20.1f} {sp['in_router_p99_ms']:>7.1f}"
            )
        print(
            "  (to router: submit -> the router took it, messages.received_at; router to "
            "inbox: verified, recorded, committed, seen)"
        )

    print()
    print(
        f"{'scaling (drain)':<16} {'routers':>7} {'msgs':>7} {'seconds':>8} {'msg/s':>8} "
        f"{'x 1':>6} {'ratio':>7} {'RSS MiB/router':>15} {'others':>7}"
    )
    for name in opts.databases:
        rows = sorted((d for d in results.drains if d.database == name), key=lambda d: d.routers)
        one = next((d.rate for d in rows if d.routers == 1), float("nan"))
        for d in rows:
            mib = sum(d.rss_end_kib) / len(d.rss_end_kib) / 1024
            print(
                f"{name:<16} {d.routers:>7} {d.measured:>7} {d.seconds:>8.2f} {d.rate:>8.0f} "
                f"{d.rate / one:>6.2f} {d.rate / baseline:>7.3f} {mib:>15.1f} "
                f"{d.cpu.get('others', float('nan')):>6.2f}" + ("*" if disturbed(d.cpu) else "")
            )
    print(
        f"  (others: cores other processes of the machine used meanwhile; * above "
        f"{DISTURBED_CORES}: disturbed)"
    )

    print()
    parts = ("router", "broker", "postgresql", "api", "bench", "kernel", "others", "machine")
    print(
        f"{'CPU, cores used (of ' + str(os.cpu_count()) + ')':<34}"
        + "".join(f"{p:>11}" for p in parts)
    )
    phases: list[tuple[str, dict[str, float]]] = [
        (f"drain {d.database} x{d.routers}", d.cpu) for d in results.drains
    ]
    phases += [(f"{lv.transport} {lv.database} {lv.fraction:.0%}", lv.cpu) for lv in results.levels]
    phases += [
        (f"http {n} closed loop", h["closed_loop_cpu_cores"]) for n, h in results.http.items()
    ]
    for label, cpu in phases:
        print(f"{label:<34}" + "".join(f"{cpu.get(p, float('nan')):>11.2f}" for p in parts))

    print()
    for name, rss in results.rss.items():
        print(
            f"router RSS, {name}: start {rss['start_kib'] / 1024:.1f} MiB, after drain "
            f"{rss['after_drain_kib'] / 1024:.1f}, after the loads "
            f"{rss['after_sweep_kib'] / 1024:.1f}, end {rss['end_kib'] / 1024:.1f} MiB "
            f"({rss['growth_pct']:+.1f}%)"
        )
    if results.soak:
        s = results.soak
        lat = s["latency"]
        print(
            f"soak {s['seconds']:.0f}s at {s['rate_msgs_per_s']:.0f} msg/s "
            f"({s['messages']} envelopes): router RSS {s['rss_first_kib'] / 1024:.1f} -> "
            f"{s['rss_last_kib'] / 1024:.1f} MiB ({s['rss_growth_pct']:+.1f}%; after the "
            f"first 10%: {s['rss_growth_after_warmup_pct']:+.1f}%; max "
            f"{s['rss_max_kib'] / 1024:.1f}); latency p50 {lat['p50_ms']:.1f} ms, p99 "
            f"{lat['p99_ms']:.1f} ms, lost {lat['missing'] + lat['errors']}"
        )
    for name, outcomes in results.outcomes.items():
        print(f"router outcomes, {name}: {json.dumps(outcomes)}")


# The broker settings lienthong deploys with. A run on the bench's own node ("--broker own") has
# them; the child process that does the run is told so by this variable.
BROKER_SETTINGS = Path(__file__).resolve().parents[1] / "deploy" / "rabbitmq.conf"
ON_OWN_BROKER = "LIENTHONG_BENCH_OWN_BROKER"


# Seconds a stopped bench gets to stop its routers and remove its folders.
STOP_GRACE_S = 60


def on_own_broker(argv: Sequence[str]) -> int:
    """Run the bench in a child process against a RabbitMQ node started for it with the
    deployment's settings, beside the machine's broker (which stays as it is); its exit code."""
    if os.geteuid() != 0:
        console.print(
            "--broker own starts a RabbitMQ node, which runs as the rabbitmq user: run as root, "
            "or give --broker machine"
        )
        return 2
    root = Path(tempfile.mkdtemp(prefix="lt-bench-broker-"))
    base = free_base_port(1)
    node = RabbitNode(
        f"lt{base}bench", root, base, base + 20000, settings=BROKER_SETTINGS.read_text("utf-8")
    )
    try:
        try:
            node.start()
        except AssertionError as exc:  # the node helper's "did not start", with its console
            console.print(
                f"could not start a RabbitMQ node for the bench ({exc}); or give --broker machine",
                markup=False,
            )
            return 2
        env = {**os.environ, "LIENTHONG_TEST_AMQP_URL": node.url, ON_OWN_BROKER: "1"}
        bench = subprocess.Popen([sys.executable, __file__, *argv], env=env)
        try:
            return bench.wait()
        except BaseException as stopped:
            # Stopped: the bench stops its routers and removes its folders, then the node goes
            # (it runs in a session of its own: no signal reaches it). Ctrl-C reached the bench
            # already (the terminal signals the whole process group); SIGTERM is passed on.
            if not isinstance(stopped, KeyboardInterrupt):
                bench.terminate()
            try:
                bench.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                bench.kill()
                bench.wait()
            raise
    finally:
        node.stop()
        node.kill()  # if it would not stop; nothing when it did
        shutil.rmtree(root, ignore_errors=True)


@functools.cache  # the report and bench.json both name it
def broker_description() -> str:
    if os.environ.get(ON_OWN_BROKER):
        settings = [
            line
            for line in BROKER_SETTINGS.read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        return f"a node of the bench's own, deploy/rabbitmq.conf: {'; '.join(settings)}"
    return f"the machine's ({AMQP_URL.rsplit('@', 1)[-1]}), as it is configured"


def _stopped(signum: int, _frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    raise SystemExit(128 + signum)


def main(argv: Sequence[str]) -> None:
    # SIGTERM unwinds like Ctrl-C does: routers stopped, folders removed, the bench's broker node
    # stopped. Without this, a stopped bench left its RabbitMQ node and routers running.
    signal.signal(signal.SIGTERM, _stopped)
    opts = parse(argv)
    if opts.broker == "own" and not os.environ.get(ON_OWN_BROKER):
        sys.exit(on_own_broker(argv))
    sys.setswitchinterval(0.0005)  # the poller thread is not kept waiting for the GIL
    opts.out.mkdir(parents=True, exist_ok=True)
    env = {
        "LIENTHONG_PREFETCH": str(opts.prefetch),
        "LIENTHONG_BATCH_MAX": str(opts.batch_max),
        "LIENTHONG_BATCH_WAIT_MS": str(opts.batch_wait_ms),
        "LIENTHONG_CRL_POLL_S": "10",  # the default (the test harness polls every 0.5 s)
    }
    started = time.perf_counter()
    results = Results()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    progress = Reporter(bar)
    progress.mark("start")
    profile = Profiler(opts.py_spy, opts.out, gil=opts.py_spy_gil) if opts.py_spy else None
    with bar, tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp:
        root = Path(tmp)
        dev, codes = make_pki(root / "pki", opts.agencies)
        pki = Pki(dev)
        setup = SignerSetup(str(dev.root), tuple(codes), opts.header_bytes, opts.attachment_bytes)
        factory = Factory(setup, opts.workers, progress, opts.attachment_share)
        attachments = Attachments(opts.attachment_bytes)
        stock = Stock(factory)
        try:
            drain_set = stock.take(opts.messages, "drain")
            bodies = [(e.message_id, body(e, attachments)) for e in drain_set]
            sizes = {
                "header": sum(len(e.header) for e in drain_set) / len(drain_set),
                "small": min(len(b) for _, b in bodies),
                "large": max(len(b) for _, b in bodies),
                "mean": sum(len(b) for _, b in bodies) / len(bodies),
            }
            progress.log(f"bare aio-pika loop over the same {len(bodies)} bodies")
            baselines = [uvloop.run(bench_baseline(bodies, opts.prefetch)).rate]
            progress.mark("baseline 1")
            del bodies
            ctx = Context(
                opts, root, dev, env, stock, factory, attachments, results, progress, profile
            )
            for index, name in enumerate(opts.databases):
                main_phases(ctx, name, soak=index == 0 and opts.soak > 0, bare=index == 0)
                for routers in opts.routers:
                    if routers != opts.main_routers:
                        scaling_phase(ctx, name, routers)
            bodies = [(e.message_id, body(e, attachments)) for e in drain_set]
            baselines.append(uvloop.run(bench_baseline(bodies, opts.prefetch)).rate)
            del bodies
            progress.mark("baseline 2")
            seconds = 1.0 if opts.quick else 3.0
            rsa = bare_rsa_per_s(pki, codes[0], seconds)
            verify = verifier_per_s(pki, drain_set[0], seconds)
            progress.mark("end")
        finally:
            factory.close()

    baseline = max(baselines)
    headline = opts.databases[0]
    maximum = {d.database: d.rate for d in results.drains if d.routers == opts.main_routers}
    half = {
        (lv.transport, lv.database): lv for lv in results.levels if abs(lv.fraction - 0.5) < 1e-9
    }
    report(opts, results, baselines, rsa, verify, sizes)

    postgres_version = None
    if "postgresql" in opts.databases:
        with contextlib.suppress(Exception), postgres_database() as url:
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            with engine.connect() as conn:
                postgres_version = conn.execute(sa.text("show server_version")).scalar()
            engine.dispose()
    loads = [m["1m"] for m in progress.loadavg]
    figures: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seconds": time.perf_counter() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "rabbitmq": uvloop.run(broker_version()),
            "broker": broker_description(),
            "postgresql": postgres_version,
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
                check=False,
            ).stdout.strip(),
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "envelope_bytes": sizes,
        "loadavg": progress.loadavg,
        "baseline_runs_msgs_per_s": baselines,
        "bare_rsa_verify_per_s": rsa,
        "verifier_verify_per_s": verify,
        "drains": [asdict(d) | {"rate": d.rate} for d in results.drains],
        "levels": [asdict(lv) for lv in results.levels],
        "http": results.http,
        "router_rss": results.rss,
        "router_outcomes": results.outcomes,
        "soak": results.soak,
        "profiles": profile.summaries if profile else None,
    }
    json_path = opts.out / "bench.json"
    png_path = opts.out / "bench.png"
    plotted = plot(png_path, results, baseline, maximum)
    e2e = maximum[headline]
    level = half[("amqp", headline)]
    http = results.http.get(headline, {})
    summary: dict[str, Any] = {
        "e2e_msgs_per_s": round(e2e, 1),
        "baseline_msgs_per_s": round(baseline, 1),
        "ratio": round(e2e / baseline, 3),
        "p99_ms": round(level.p99_ms, 1),
        "p50_ms": round(level.p50_ms, 1),
        "p95_ms": round(level.p95_ms, 1),
        "database": headline,
        "at_msgs_per_s": round(level.offered_msgs_per_s, 1),
        "e2e_by_database": {k: round(v, 1) for k, v in maximum.items()},
        "delivered_max_open_loop_msgs_per_s": round(
            max(
                lv.delivered_msgs_per_s
                for lv in results.levels
                if lv.transport == "amqp" and lv.database == headline
            ),
            1,
        ),
        "p99_ms_by_database": {
            db: round(lv.p99_ms, 1) for (t, db), lv in half.items() if t == "amqp"
        },
        # The broker alone at the same load, publisher and envelopes (its share of p99_ms).
        "bare_broker_p99_ms": round(half[("bare", "broker")].p99_ms, 1)
        if ("bare", "broker") in half
        else None,
        "scaling_msgs_per_s": {
            f"{d.database}-{d.routers}": round(d.rate, 1) for d in results.drains
        },
        "http_submit_msgs_per_s": round(http["submit_msgs_per_s"], 1) if http else None,
        "http_e2e_msgs_per_s": round(http["e2e_msgs_per_s"], 1) if http else None,
        "http_p99_ms": round(half[("http", headline)].p99_ms, 1)
        if ("http", headline) in half
        else None,
        "bare_rsa_verify_per_s": round(rsa, 1),
        "verifier_per_s": round(verify, 1),
        "router_rss_start_mib": round(results.rss[headline]["start_kib"] / 1024, 1),
        "router_rss_end_mib": round(results.rss[headline]["end_kib"] / 1024, 1),
        "soak_rss_growth_pct": round(results.soak["rss_growth_pct"], 2) if results.soak else None,
        "disturbed": {
            "drain": disturbed(next(d.cpu for d in results.drains if d.database == headline)),
            "half_load": disturbed(level.cpu),
        },
        "loadavg_1m_max": round(max(loads), 2),
        "loadavg_1m_start": round(loads[0], 2),
        "targets_met": {
            "ratio_ge_0.7": e2e / baseline >= 0.7,
            "p99_le_100ms": level.p99_ms <= 100,
            "soak_rss_lt_10pct": results.soak["rss_growth_pct"] < 10 if results.soak else None,
        },
        "json": str(json_path),
        "png": str(png_path) if plotted else None,
    }
    figures["summary"] = summary
    json_path.write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str))
    print(
        f"\nfigures: {json_path}, plot: {png_path} ({figures['seconds']:.0f} s; load average "
        f"1 min {min(loads):.2f}-{max(loads):.2f})"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
