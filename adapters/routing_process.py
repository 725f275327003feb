"""Routing in a process of its own: the router's event loop keeps the broker, a child routes.

Verifying and recording are CPU work in Python. Run in threads of the router process, they
share its one GIL with the event loop that reads frames and sends acknowledgements: each waited
for the other, a batch's deliveries queued behind the last batch's verification, and the CPU
each message took grew by 40% (issue 7's measurements). Here the router process only moves
messages: it sends each batch's bodies to a child process through a pipe and gets back the
outcomes, while the child verifies, decides and records with a GIL of its own.

The child is ``python -m adapters.routing_process``, started with the router's environment (its
``LIENTHONG_*`` settings) and its working folder: a fresh interpreter that builds the bus as the
router would, then routes the batches it reads from stdin in the order they came (deciding
the next while the last one commits, see ``serve``), and writes each batch's outcomes (or the
kind of failure that stopped it, see ``Failure``) to the pipe that was its stdout; what it
prints goes to stderr, the router's log. Both ends are this module, in processes of the same
installation. A reply is a 4-byte length and a pickle. A batch is a 4-byte length, a pickle of
each message's body length and transport id, then the bodies as they are: pickling the bodies
too copied each of them twice more (into the pickle, then out of it), and the bodies are most of
what goes through (5% of ``make bench``'s envelopes carry 1 MiB).

The child ignores SIGINT and SIGTERM (Ctrl-C reaches the whole process group; a service manager
may signal every process of the unit): the router stops consuming, waits for the batches in hand
and then closes the pipe, and the child exits when it reads the end of it — also when the
router was killed. A child that dies fails the batches it held with ``Failure.FAILED`` (so the
router isolates them: only a message that kills it again returns to the queue) and is started
again for the next batch; one that cannot start reports why, and the router retries as it does
for a database outage.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from adapters.amqp.router import Failure, RoutingFailed, failure_of
from adapters.db.checkpoint import WalCheckpointer
from exchange.errors import LienthongError
from exchange.routing import Decision, Incoming, Outcome

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
# Seconds for the child to import, connect to the database and build the bus.
START_TIMEOUT_S = 60.0
# Seconds for the child to exit once its pipe is closed (it finishes the batch in hand).
STOP_TIMEOUT_S = 30.0

_Request = list[tuple[bytes, str | None]]
# ("ok", [outcome values]) or ("error", failure value, detail); the first frame is
# ("ready", pid) or ("error", "start", detail).
_Reply = tuple[object, ...]
# Allocations (net of frees) between two young collections; CPython's default is 700.
GC_YOUNG_THRESHOLD = 10_000


class _Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        if process.stdin is None or process.stdout is None:
            raise ValueError("the routing process needs pipes on stdin and stdout")
        self.writer = process.stdin
        self.reader = process.stdout
        self.waiting: collections.deque[asyncio.Future[_Reply]] = collections.deque()
        self.replies: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and self.replies is not None

    async def read_replies(self) -> None:
        """Hand each reply to the batch that waits for it, in order; on the end of the pipe,
        fail every batch still waiting."""
        try:
            while True:
                reply = await _read_frame(self.reader)
                if reply is None:
                    break
                future = self.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        finally:
            code = await self.process.wait()
            self.replies = None
            if self.waiting:
                log.error(
                    "the routing process %d exited (code %s) holding %d batch(es)",
                    self.process.pid,
                    code,
                    len(self.waiting),
                )
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(
                        RoutingFailed(Failure.FAILED, f"the routing process exited (code {code})")
                    )


class RoutingProcess:
    """``route`` for a RouterService, done by a child process (started again if it dies)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None  # None: this process's environment
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self.starts = 0

    def state(self) -> str:
        """``ok`` while the child is running; else why not (for the router's /readyz)."""
        if self._child is not None and self._child.alive:
            return "ok"
        return "unavailable: not running (started again for the next batch)"

    def pid(self) -> int | None:
        return self._child.process.pid if self._child is not None else None

    async def start(self) -> None:
        """Start the child now, raising RoutingFailed(OUTAGE) with its reason if it cannot."""
        await self._running()

    async def route(self, incoming: Sequence[Incoming]) -> list[Outcome]:
        child = await self._running()
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        # Queued and written in one step: replies come in the order of the requests.
        child.waiting.append(future)
        child.writer.writelines(_request_frame(incoming))
        with contextlib.suppress(ConnectionError):
            await child.writer.drain()  # a dead child fails the future instead
        reply = await future
        if reply[0] == "ok" and isinstance(reply[1], list):
            return [Outcome(value) for value in reply[1]]
        _, failure, detail = reply
        raise RoutingFailed(Failure(str(failure)), str(detail))

    async def _running(self) -> _Child:
        async with self._starting:
            if self._child is not None and self._child.alive:
                return self._child
            self._child = None
            child = await self._spawn()
            self._child = child
            return child

    async def _spawn(self) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            __name__,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
        )
        child = _Child(process)
        try:
            hello = await asyncio.wait_for(_read_frame(child.reader), START_TIMEOUT_S)
        except TimeoutError:
            hello = ("error", "start", f"it did not start within {START_TIMEOUT_S:g}s")
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            hello = ("error", "start", str(exc))
        if hello is None or hello[0] != "ready":
            detail = str(hello[2]) if hello is not None and len(hello) == 3 else "it exited"
            await _stop(process)
            raise RoutingFailed(Failure.OUTAGE, f"the routing process cannot start: {detail}")
        self.starts += 1
        if self.starts > 1:
            log.warning("routing process started again (pid %d)", process.pid)
        child.replies = asyncio.create_task(child.read_replies())
        return child

    async def close(self) -> None:
        """Close the pipe; the child exits once the batch in hand is done."""
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(ConnectionError):
            child.writer.close()
        await _stop(child.process)
        if child.replies is not None:
            await child.replies


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None:
        with contextlib.suppress(ConnectionError):
            process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.error("the routing process %d did not stop; killing it", process.pid)
        process.kill()
        await process.wait()


def _request_frame(incoming: Sequence[Incoming]) -> list[bytes]:
    """A batch as the child reads it (``_read_request``): the index, then the bodies."""
    index = [(len(item.body), item.transport_id) for item in incoming]
    return [_frame(index), *(item.body for item in incoming)]


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> _Reply | None:
    """The next frame, or None at the end of the pipe."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        data = await reader.readexactly(_LENGTH.unpack(head)[0])
    except asyncio.IncompleteReadError:
        return None
    reply: _Reply = pickle.loads(data)  # noqa: S301 - our own child's frames
    return reply


def quiet_garbage_collector() -> None:
    """Keep the cycle collector off the routing path.

    Everything built at start-up (modules, schemas, the wired core) lives as long as the
    process: frozen, the collector never walks it again. Routing a batch allocates tens of
    thousands of short-lived objects, almost none in cycles: with the default threshold the
    collector ran about once per 20 messages. make bench, one drain of 8,000 envelopes plus its
    loads: 486 collections taking 0.22 s in all (gen2 pauses of 44-65 ms, each a stall of every
    delivery in flight) before; 3 taking 0.045 s after.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


# --- the child --------------------------------------------------------------------------------


def _read_request(source: BinaryIO) -> _Request | None:
    """The next batch (see ``_request_frame``), or None at the end of the pipe."""
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    size = _LENGTH.unpack(head)[0]
    data = source.read(size)
    if len(data) < size:
        return None  # the router went away in the middle of a batch
    index: list[tuple[int, str | None]] = pickle.loads(data)  # noqa: S301 - our own router's
    request: _Request = []
    for length, transport_id in index:
        body = source.read(length)
        if len(body) < length:
            return None  # the router went away in the middle of a batch
        request.append((body, transport_id))
    return request


def _describe(exc: Exception) -> str:
    """A setting to fix says which in its own words; anything else is named by its class."""
    return str(exc) if isinstance(exc, LienthongError) else f"{type(exc).__name__}: {exc}"


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """Build the bus, say so, then route each batch read from ``source`` until its end.

    Batches are decided on this thread and recorded on another, in the order they came: the
    next batch is verified while the last one commits (the commit's fsync and the blob writes
    wait on the disk, not on the GIL). Answers go back in that order too, from the recording
    thread alone. The router sends at most ``depth`` batches before it has their answers, so
    what waits here is bounded.
    """
    from adapters import bootstrap
    from adapters.settings import Settings

    def send(value: object) -> None:
        sink.write(_frame(value))
        sink.flush()

    def failed(exc: Exception, count: int) -> None:
        log.info("routing a batch of %d failed: %r", count, exc)
        send(("error", failure_of(exc).value, _describe(exc)))

    try:
        # The batches' commits leave the WAL's checkpoints to a thread (see WalCheckpointer).
        bus = bootstrap.build(Settings().resolved(), background_checkpoints=True)
    except Exception as exc:  # noqa: BLE001 - reported to the router, which says it
        send(("error", "start", _describe(exc)))
        return
    router, refresh = bus.router, bus.crl_sync.maybe_refresh

    def record(decisions: Sequence[Decision]) -> None:
        try:
            outcomes = router.record(decisions)
        except Exception as exc:  # noqa: BLE001 - the router decides what follows
            failed(exc, len(decisions))
        else:
            send(("ok", [outcome.value for outcome in outcomes]))

    quiet_garbage_collector()
    send(("ready", os.getpid()))
    with (
        WalCheckpointer(bus.engine),
        ThreadPoolExecutor(1, thread_name_prefix="recording") as recording,
    ):
        while (request := _read_request(source)) is not None:
            try:
                refresh()
                decisions = router.decide([Incoming(body, tid) for body, tid in request])
            except Exception as exc:  # noqa: BLE001 - answered in its turn
                recording.submit(failed, exc, len(request))
            else:
                recording.submit(record, decisions)


def main() -> None:
    # The pipe to the router is what was stdout; what anything prints goes to stderr.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s routing[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with sink:
        serve(sys.stdin.buffer, sink)


if __name__ == "__main__":
    main()
