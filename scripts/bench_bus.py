"""End-to-end messages per second through the bus, next to a bare aio-pika loop on the same broker.

    .venv/bin/python scripts/bench_bus.py [--messages 5000] [--header-bytes 4096] [--prefetch 256]

A benchmark, never a test: it prints a table and, last, one JSON line
``{"sqlite_msgs_per_s", "postgres_msgs_per_s", "baseline_msgs_per_s", "ratio_sqlite",
"ratio_postgres"}``. For each database (SQLite, then PostgreSQL) the bus runs as its real
processes (``lienthong router``, one) under its own exchange prefix:

* drain: N signed envelopes (headers of about ``--header-bytes``) are published, confirmed, to
  the submit exchange while no router runs; then the router starts, and the rate is taken from
  its first commit to the last (start-up excluded) by polling the messages table;
* steady: with the router running, N more are published (confirmed, 256 in flight) while it
  routes; the rate is N over the time from the first publish to the last message stored.

The baseline is the same N bodies pre-published to a quorum queue and moved by a bare aio-pika
consumer with the same prefetch: consume, publish to a second quorum queue with publisher
confirms, then ack — the transport work the router does without verifying or storing anything.
The headline figures (JSON) are the drain rates.

RabbitMQ and PostgreSQL are the machine's (``LIENTHONG_TEST_AMQP_URL``,
``LIENTHONG_TEST_POSTGRES_URL``); the PostgreSQL database is created for the run and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import sqlalchemy as sa
from aio_pika.abc import AbstractIncomingMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' service helpers

from adapters.amqp.publisher import Publisher
from adapters.amqp.topology import Topology
from adapters.db.tables import messages
from adapters.pki.folder import DevPki
from exchange.signing import sign_detached
from exchange.submission import Submission
from tests.helpers import G22, H37, Pki, encode, header_dict
from tests.services import AMQP_URL, BusProcesses, delete_topology, postgres_database

PUBLISH_WINDOW = 256
SUBJECT = "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027 và kế hoạch tài chính; "


@dataclass
class Row:
    variant: str
    database: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")


def sized_header(target: int) -> bytes:
    """A valid document header of about ``target`` bytes: longer subject, type, place, signer."""
    header = header_dict(sender=G22, recipients=[H37], message_id=str(uuid.uuid4()))
    document = header["document"]
    fill = SUBJECT * 40
    fields: list[tuple[dict[str, Any], str, int]] = [
        (document, "subject", 2000),
        (document, "type", 200),
        (document, "promulgation_place", 200),
        (document["signer"], "position", 200),
        (document["signer"], "full_name", 200),
    ]
    for holder, field, limit in fields:
        for length in range(len(holder[field]), limit + 1):
            if len(encode(header)) >= target:
                return encode(header)
            holder[field] = fill[:length].strip()
    return encode(header)


def make_bodies(pki: Pki, count: int, header_bytes: int) -> list[tuple[str, bytes]]:
    seal, chain = pki.seal(G22), pki.chain()
    template = json.loads(sized_header(header_bytes))
    bodies = []
    for _ in range(count):
        template["message_id"] = message_id = str(uuid.uuid4())
        header = encode(template)
        signature = sign_detached(header, [seal], chain=chain)
        bodies.append((message_id, Submission(header, signature).encode()))
    return bodies


async def publish(topology: Topology, bodies: list[tuple[str, bytes]]) -> float:
    """Publish with confirms, ``PUBLISH_WINDOW`` in flight; seconds until all were confirmed."""
    publisher = Publisher(AMQP_URL, topology, connection_name="bench-publisher")
    window = asyncio.Semaphore(PUBLISH_WINDOW)

    async def one(message_id: str, body: bytes) -> None:
        async with window:
            await publisher.publish(body, message_id=message_id)

    try:
        await publisher.ping()
        started = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in bodies))
        return time.perf_counter() - started
    finally:
        await publisher.close()


def stored(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar() or 0)


def wait_stored(engine: sa.Engine, target: int, bus: BusProcesses, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while stored(engine) < target:
        if time.monotonic() > deadline or any(p.poll() is not None for p in bus.routers):
            raise SystemExit(f"the router did not store {target} messages:\n{bus.logs()[-4000:]}")
        time.sleep(0.01)


def bench_bus(
    name: str,
    database_url: str,
    pki: Pki,
    bodies: list[tuple[str, bytes]],
    root: Path,
    prefetch: int,
) -> tuple[Row, Row, dict[str, float]]:
    n = len(bodies) // 2
    drain_bodies, steady_bodies = bodies[:n], bodies[n:]
    bus = BusProcesses(
        root=root / name,
        pki_dir=pki.root,
        database_url=database_url,
        extra_env={"LIENTHONG_PREFETCH": str(prefetch), "LIENTHONG_BATCH_MAX": str(prefetch)},
    )
    bus.root.mkdir(parents=True)
    bus.prepare()
    topology = Topology(bus.prefix)
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    extra: dict[str, float] = {}
    try:
        extra["publish_drain_msgs_per_s"] = n / asyncio.run(publish(topology, drain_bodies))
        launched = time.perf_counter()
        bus.start_router()
        while (first := stored(engine)) == 0:
            if bus.routers[0].poll() is not None:
                raise SystemExit(f"the router exited:\n{bus.logs()[-4000:]}")
            time.sleep(0.005)
        first_commit = time.perf_counter()
        wait_stored(engine, n, bus)
        drained = time.perf_counter()
        drain = Row("drain (pre-published)", name, n - first, drained - first_commit)
        extra["drain_with_startup_s"] = drained - launched

        started = time.perf_counter()
        publishing = asyncio.run(publish(topology, steady_bodies))
        wait_stored(engine, 2 * n, bus)
        steady = Row("steady (publish while routing)", name, n, time.perf_counter() - started)
        extra["publish_steady_msgs_per_s"] = n / publishing
    finally:
        bus.stop()
        engine.dispose()
        delete_topology(bus.prefix)
    return drain, steady, extra


async def bench_baseline(bodies: list[tuple[str, bytes]], prefetch: int) -> Row:
    """Bare aio-pika: consume -> publish with confirms -> ack, ``prefetch`` messages in flight."""
    prefix = f"lt-bench-{uuid.uuid4().hex[:8]}"
    source, target = f"{prefix}.in", f"{prefix}.out"
    quorum: dict[str, Any] = {"x-queue-type": "quorum"}
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            await channel.declare_queue(source, durable=True, arguments=quorum)
            await channel.declare_queue(target, durable=True, arguments=quorum)
            window = asyncio.Semaphore(PUBLISH_WINDOW)

            async def put(message_id: str, body: bytes) -> None:
                async with window:
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            body,
                            message_id=message_id,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=source,
                        mandatory=True,
                    )

            await asyncio.gather(*(put(i, b) for i, b in bodies))

            consumer = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await consumer.set_qos(prefetch_count=prefetch)
            queue = await consumer.get_queue(source)
            done = asyncio.Event()
            handled = 0
            started = 0.0
            tasks: set[asyncio.Task[None]] = set()

            async def forward(message: AbstractIncomingMessage) -> None:
                nonlocal handled
                await consumer.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=target,
                    mandatory=True,
                )
                await message.ack()
                handled += 1
                if handled == len(bodies):
                    done.set()

            async def on_message(message: AbstractIncomingMessage) -> None:
                nonlocal started
                if not started:
                    started = time.perf_counter()
                task = asyncio.create_task(forward(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            tag = await queue.consume(on_message)
            await asyncio.wait_for(done.wait(), timeout=600)
            elapsed = time.perf_counter() - started
            await queue.cancel(tag)
        finally:
            await channel.queue_delete(source)
            await channel.queue_delete(target)
    return Row("bare aio-pika consume->publish(confirm)->ack", "-", len(bodies), elapsed)


@contextmanager
def database(name: str, root: Path) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{root / 'sqlite.db'}"
    else:
        with postgres_database() as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--header-bytes", type=int, default=4096)
    parser.add_argument("--prefetch", type=int, default=256, help="as LIENTHONG_PREFETCH")
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp:
        root = Path(tmp)
        dev = DevPki(root / "pki")
        dev.init()
        pki = Pki(dev)
        n = args.messages
        names = args.databases.split(",")
        started = time.perf_counter()
        bodies = make_bodies(pki, n * 2 * len(names), args.header_bytes)
        header_size = len(sized_header(args.header_bytes))
        print(
            f"{len(bodies)} envelopes signed in {time.perf_counter() - started:.1f}s; "
            f"header ~{header_size} B, body {len(bodies[0][1])} B, prefetch {args.prefetch}",
            file=sys.stderr,
        )
        rows: list[Row] = []
        extras: dict[str, dict[str, float]] = {}
        for index, name in enumerate(names):
            chunk = bodies[index * 2 * n : (index + 1) * 2 * n]
            with database(name, root) as url:
                drain, steady, extra = bench_bus(name, url, pki, chunk, root, args.prefetch)
            rows += [drain, steady]
            extras[name] = extra
            print(f"{name}: drain {drain.rate:.0f}/s, steady {steady.rate:.0f}/s", file=sys.stderr)
        baseline = asyncio.run(bench_baseline(bodies[:n], args.prefetch))
        rows.append(baseline)

    print(f"\n{'variant':<46} {'database':<9} {'messages':>8} {'seconds':>8} {'msgs/s':>8}")
    for row in rows:
        print(
            f"{row.variant:<46} {row.database:<9} {row.messages:>8} "
            f"{row.seconds:>8.2f} {row.rate:>8.0f}"
        )
    for name, extra in extras.items():
        print(
            f"  {name}: publisher alone {extra['publish_drain_msgs_per_s']:.0f}/s (router "
            f"stopped), {extra['publish_steady_msgs_per_s']:.0f}/s (while routing); drain "
            f"incl. router start-up {extra['drain_with_startup_s']:.1f}s"
        )
    drains = {row.database: row.rate for row in rows if row.variant.startswith("drain")}
    result = {
        "sqlite_msgs_per_s": round(drains.get("sqlite", float("nan")), 1),
        "postgres_msgs_per_s": round(drains.get("postgres", float("nan")), 1),
        "baseline_msgs_per_s": round(baseline.rate, 1),
        "ratio_sqlite": round(drains.get("sqlite", float("nan")) / baseline.rate, 3),
        "ratio_postgres": round(drains.get("postgres", float("nan")) / baseline.rate, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
