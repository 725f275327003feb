#!/usr/bin/env python3
"""The routing process's work alone: decide and record batches, no broker.

    .venv/bin/python scripts/bench_route.py [--messages 3000] [--batch 1,4,16,64] [--rounds 3]
        [--attachment-share 0.05] [--database sqlite|postgresql] [--sql STATEMENTS]
        [--process [--depth 2] [--rate 900]]

A benchmark, never a test. It builds the bus as the routing process does (``bootstrap.build``
over a development PKI and a fresh database, with the background WAL checkpointer), signs
``make bench``'s envelopes (headers of about 4 KiB, 1-3 recipients, a share with an inline
1 MiB attachment) and routes them in batches of each size: ``Router.decide`` then
``Router.record`` in this process, or, with ``--process``, through a real routing process and
its pipe (``adapters.routing_process.RoutingProcess``, one batch at a time), as the router does.

For each batch size it prints the CPU each message took (user + system: in-process the whole
process, deciding, inserting, committing, the blob writers and the checkpointer, then split by
thread; with ``--process`` the routing process's, and this process's for pickling and piping),
the minor page faults per message, and the wall time per batch; the best of ``--rounds`` rounds,
each on new envelopes. The last line is one JSON object. Use it for A/B runs of the routing
path, alternating the two sides: on a shared machine CPU time per message still varies by
10-20% from one run to the next, but far less than a whole-bus run (``scripts/bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' service helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import ATTACHMENT_NAME, Attachments, Signer, SignerSetup, make_pki, plan

from exchange.routing import Incoming, Outcome
from exchange.submission import Submission
from tests.services import LIENTHONG, postgres_database

TICKS = os.sysconf("SC_CLK_TCK")


def bodies(signer: Signer, codes: list[str], start: int, count: int, share: float) -> list[bytes]:
    out = []
    for spec in plan(codes, start, count, share):
        envelope = signer.sign(spec)
        files = (
            {}
            if envelope.attachment < 0
            else {ATTACHMENT_NAME: signer.attachments.content(envelope.attachment)}
        )
        out.append(Submission(envelope.header, envelope.signature, files).encode())
    return out


def _stat(path: str) -> list[str]:
    text = Path(path).read_text()
    return text[text.rindex(")") + 2 :].split()


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads, by name less its number."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = _stat(f"/proc/self/task/{thread.native_id}/stat")
        except OSError:
            continue
        name = thread.name.rstrip("0123456789_").removeprefix("lienthong-") or "thread"
        if thread is threading.main_thread():
            name = "main"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def written(pid: int | str = "self") -> int:
    """Bytes a process asked the kernel to write (``wchar``: files, pipes and sockets)."""
    for row in Path(f"/proc/{pid}/io").read_text().splitlines():
        if row.startswith("wchar:"):
            return int(row.split()[1])
    return 0


def process_cpu(pid: int) -> tuple[float, int]:
    """CPU seconds and minor page faults of a process."""
    fields = _stat(f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / TICKS, int(fields[7])


@contextlib.contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{root / 'lienthong.db'}"


class InProcess:
    """Decide then record on this thread, as the routing process does for one batch."""

    def __init__(self) -> None:
        from adapters import bootstrap
        from adapters.db.checkpoint import WalCheckpointer
        from adapters.routing_process import quiet_garbage_collector
        from adapters.settings import Settings

        self.bus = bootstrap.build(Settings().resolved(), background_checkpoints=True)
        self.checkpoints = WalCheckpointer(self.bus.engine).__enter__()
        quiet_garbage_collector()
        self.decide = self.record = 0.0

    def route(self, batch: Sequence[bytes]) -> list[Outcome]:
        router = self.bus.router
        t0 = time.thread_time()
        decisions = router.decide([Incoming(b) for b in batch])
        t1 = time.thread_time()
        outcomes = router.record(decisions)
        self.decide += t1 - t0
        self.record += time.thread_time() - t1
        return outcomes

    def start(self) -> dict[str, float]:
        self.decide = self.record = 0.0
        snapshot = thread_cpu()
        snapshot["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        snapshot["written"] = written()
        return snapshot

    def figures(self, before: dict[str, float], count: int) -> dict[str, float]:
        after = thread_cpu()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before["faults"]
        out = {
            "cpu_us_per_msg": sum(after.values()) - sum(v for k, v in before.items() if k in after),
            "decide_us_per_msg": self.decide,
            "record_us_per_msg": self.record,
            **{f"{k}_us_per_msg": v - before.get(k, 0.0) for k, v in after.items()},
        }
        out = {k: v / count * 1e6 for k, v in out.items()}
        out["page_faults_per_msg"] = faults / count
        out["kib_written_per_msg"] = (written() - before["written"]) / count / 1024
        return out

    def close(self) -> None:
        self.checkpoints.__exit__(None, None, None)
        self.bus.engine.dispose()


class ThroughProcess:
    """Through a routing process and its pipe, one batch at a time."""

    def __init__(self) -> None:
        import uvloop

        from adapters.routing_process import RoutingProcess

        self.loop = uvloop.new_event_loop()
        self.process = RoutingProcess()
        self.loop.run_until_complete(self.process.start())
        pid = self.process.pid()
        assert pid is not None
        self.pid = pid

    def route(self, batch: Sequence[bytes]) -> list[Outcome]:
        return self.loop.run_until_complete(self.process.route([Incoming(b) for b in batch]))

    def route_all(self, batches: Sequence[Sequence[bytes]], depth: int) -> list[Outcome]:
        """Every batch, ``depth`` of them in the routing process at once (as the router does)."""

        async def go() -> list[Outcome]:
            slots = asyncio.Semaphore(depth)

            async def one(batch: Sequence[bytes]) -> list[Outcome]:
                async with slots:
                    return await self.process.route([Incoming(b) for b in batch])

            done = await asyncio.gather(*(one(b) for b in batches))
            return [o for outcomes in done for o in outcomes]

        return self.loop.run_until_complete(go())

    def route_at(
        self, batches: Sequence[Sequence[bytes]], depth: int, rate: float
    ) -> tuple[list[Outcome], list[float]]:
        """Every batch at its time (open loop: ``rate`` messages per second), ``depth`` in
        the routing process at once; each batch's latency from its time to its answer."""

        async def go() -> tuple[list[Outcome], list[float]]:
            slots = asyncio.Semaphore(depth)
            latencies: list[float] = []
            started = time.perf_counter()

            async def one(k: int, batch: Sequence[bytes]) -> list[Outcome]:
                due = started + sum(len(b) for b in batches[:k]) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                async with slots:
                    outcomes = await self.process.route([Incoming(b) for b in batch])
                latencies.append(time.perf_counter() - due)
                return outcomes

            done = await asyncio.gather(*(one(k, b) for k, b in enumerate(batches)))
            return [o for outcomes in done for o in outcomes], latencies

        return self.loop.run_until_complete(go())

    def start(self) -> dict[str, float]:
        cpu, faults = process_cpu(self.pid)
        return {
            "child": cpu,
            "faults": faults,
            "self": time.process_time(),
            "written": written(self.pid),
        }

    def figures(self, before: dict[str, float], count: int) -> dict[str, float]:
        cpu, faults = process_cpu(self.pid)
        mine = time.process_time() - before["self"]
        return {
            "cpu_us_per_msg": (cpu - before["child"]) / count * 1e6,
            "pipe_us_per_msg": mine / count * 1e6,
            "page_faults_per_msg": (faults - before["faults"]) / count,
            "kib_written_per_msg": (written(self.pid) - before["written"]) / count / 1024,
        }

    def close(self) -> None:
        self.loop.run_until_complete(self.process.close())
        self.loop.close()


def measure(
    routing: InProcess | ThroughProcess, size: int, work: list[bytes], depth: int, rate: float
) -> dict[str, float]:
    before = routing.start()
    wall0 = time.perf_counter()
    batches = [work[i : i + size] for i in range(0, len(work), size)]
    latencies: list[float] = []
    if isinstance(routing, ThroughProcess) and rate:
        outcomes, latencies = routing.route_at(batches, depth, rate)
    elif isinstance(routing, ThroughProcess):
        outcomes = routing.route_all(batches, depth)
    else:
        outcomes = [o for batch in batches for o in routing.route(batch)]
    if any(o is not Outcome.STORED for o in outcomes):
        raise SystemExit(f"not stored: {set(outcomes)}")
    wall = time.perf_counter() - wall0
    figures = routing.figures(before, len(work))
    figures["wall_ms_per_batch"] = wall / (len(work) / size) * 1e3
    figures["msgs_per_s"] = len(work) / wall
    if latencies:
        ordered = sorted(latencies)
        for q in (50, 99):
            figures[f"batch_p{q}_ms"] = (
                ordered[min(len(ordered) - 1, len(ordered) * q // 100)] * 1e3
            )
    return figures


def line(size: int, best: dict[str, float]) -> str:
    shown = ("cpu_us_per_msg", "wall_ms_per_batch", "msgs_per_s", "page_faults_per_msg")
    rest = " ".join(
        f"{k.removesuffix('_us_per_msg')} {v:.0f}"
        for k, v in best.items()
        if k.endswith("_us_per_msg") and k not in shown
    )
    if "batch_p99_ms" in best:
        rest += f" batch p50 {best['batch_p50_ms']:.1f} ms p99 {best['batch_p99_ms']:.1f} ms"
    return (
        f"{size:>6} {best['cpu_us_per_msg']:>11.0f} {best['wall_ms_per_batch']:>14.2f} "
        f"{best['msgs_per_s']:>13.0f} {best['page_faults_per_msg']:>8.1f} "
        f"{best['kib_written_per_msg']:>9.1f}   {rest}"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="envelopes per round")
    parser.add_argument("--batch", default="1,4,16,64", help="batch sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agencies", type=int, default=8)
    parser.add_argument("--attachment-share", type=float, default=0.05)
    parser.add_argument("--attachment-bytes", type=int, default=1 << 20)
    parser.add_argument("--header-bytes", type=int, default=4096)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--process", action="store_true", help="through a routing process, as the router does"
    )
    parser.add_argument(
        "--depth", type=int, default=1, help="with --process: batches in the process at once"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="with --process: offer batches open loop at this many messages per second and "
        "report each batch's latency (p50, p99)",
    )
    parser.add_argument(
        "--sql",
        default="",
        help="SQLite only: statements (separated by ;) run on the fresh database after its "
        "migrations, to try a schema change such as an index before writing a migration",
    )
    args = parser.parse_args(argv)
    if args.sql and args.database != "sqlite":
        parser.error("--sql applies to the SQLite database only")
    sizes = [int(s) for s in args.batch.split(",")]

    root = Path(tempfile.mkdtemp(prefix="lienthong-bench-route-"))
    try:
        _, codes = make_pki(root / "pki", args.agencies)
        with database(args.database, root) as url:
            for key in [k for k in os.environ if k.startswith("LIENTHONG_")]:
                del os.environ[key]
            os.environ.update(
                {
                    "LIENTHONG_DATA_DIR": str(root / "var"),
                    "LIENTHONG_DATABASE_URL": url,
                    "LIENTHONG_PKI_DIR": str(root / "pki"),
                }
            )
            for command in (["db", "upgrade"], ["agency", "import-pki", str(root / "pki")]):
                subprocess.run([LIENTHONG, *command], check=True, capture_output=True)
            if args.sql:
                try_schema_change(url, args.sql)
            signer = Signer(SignerSetup(str(root / "pki"), tuple(codes), args.header_bytes, 0))
            signer.attachments = Attachments(args.attachment_bytes)
            routing: InProcess | ThroughProcess = ThroughProcess() if args.process else InProcess()
            try:
                results = run(
                    routing,
                    sizes,
                    args,
                    lambda s, n: bodies(signer, codes, s, n, args.attachment_share),
                )
            finally:
                routing.close()
        print(json.dumps({"database": args.database, "process": args.process, "by_batch": results}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def try_schema_change(url: str, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        for statement in filter(str.strip, sql.split(";")):
            db.execute(statement)
        db.commit()


def run(
    routing: InProcess | ThroughProcess,
    sizes: list[int],
    args: argparse.Namespace,
    make: Callable[[int, int], list[bytes]],
) -> dict[int, dict[str, float]]:
    # A first batch warms the caches (chains, registry, statements).
    start = 256
    routing.route(make(0, start))
    print(
        f"{'batch':>6} {'cpu µs/msg':>11} {'wall ms/batch':>14} {'msg/s (wall)':>13} "
        f"{'faults':>8} {'KiB out':>9}   µs/msg by part"
    )
    results: dict[int, dict[str, float]] = {}
    for size in sizes:
        best: dict[str, float] | None = None
        for _ in range(args.rounds):
            work = make(start, args.messages)
            start += len(work)
            figures = measure(routing, size, work, args.depth, args.rate)
            if best is None or figures["cpu_us_per_msg"] < best["cpu_us_per_msg"]:
                best = figures
        assert best is not None
        results[size] = best
        print(line(size, best), flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
