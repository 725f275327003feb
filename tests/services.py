"""The real services integration and end-to-end tests run against, and the bus as processes.

RabbitMQ and PostgreSQL are the machine's (``LIENTHONG_TEST_AMQP_URL``,
``LIENTHONG_TEST_POSTGRES_URL`` override them). Every test run gets its own PostgreSQL database
and every bus its own exchange prefix, so tests never see each other's rows or queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import sqlalchemy as sa

from adapters.client import BusClient

AMQP_URL = os.environ.get("LIENTHONG_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "LIENTHONG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LIENTHONG = str(Path(sys.executable).with_name("lienthong"))


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the duration of the block; its URL."""
    name = f"lt_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (a router's routing process) that are still its own."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaped, or a zombie no one waited for yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def delete_topology(prefix: str) -> None:
    """Remove a test bus's queues and exchanges from the broker."""

    async def delete() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for queue in (f"{prefix}.router", f"{prefix}.dead"):
                await channel.queue_delete(queue)
            for exchange in (f"{prefix}.submit", f"{prefix}.dead"):
                await channel.exchange_delete(exchange)

    asyncio.run(delete())


@dataclass
class BusProcesses:
    """A bus run as its real processes: ``lienthong api`` and ``lienthong router``(s)."""

    root: Path
    pki_dir: Path
    database_url: str
    prefix: str = field(default_factory=lambda: f"lt-test-{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    api: subprocess.Popen[bytes] | None = None
    routers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(
            {
                "LIENTHONG_DATA_DIR": str(self.root / "var"),
                "LIENTHONG_DATABASE_URL": self.database_url,
                "LIENTHONG_PKI_DIR": str(self.pki_dir),
                "LIENTHONG_AMQP_URL": AMQP_URL,
                "LIENTHONG_EXCHANGE_PREFIX": self.prefix,
                "LIENTHONG_API_PORT": str(self.port),
                "LIENTHONG_CRL_POLL_S": "0.5",
                **self.extra_env,
            }
        )
        return env

    def cli(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [LIENTHONG, *map(str, args)], env=self.env, capture_output=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"lienthong {args} failed: {done.stderr.decode()}")
        return done

    def prepare(self) -> None:
        self.cli("db", "upgrade")
        self.cli("agency", "import-pki", self.pki_dir)

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as handle:  # the child keeps its own descriptor
            return subprocess.Popen(
                [LIENTHONG, *args], env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )

    def start_api(self) -> None:
        self.api = self._spawn("api", log="api.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.api.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the API did not start: {(self.root / 'api.log').read_text()}")

    def start_router(self, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start a router and wait until it consumes: its routing process has built the bus
        (and read the registry) by then, so what a test changes afterwards is not missed.
        ``wait=False`` returns at once (``make bench`` starts several routers together)."""
        consuming = self.consuming()
        router = self._spawn("router", "--name", f"{self.prefix}-router", log="router.log")
        self.routers.append(router)
        if not wait:
            return router
        deadline = time.monotonic() + 60
        while self.consuming() == consuming:
            if router.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the router did not start: {self.logs()}")
            time.sleep(0.05)
        return router

    def consuming(self) -> int:
        """How many times a router of this bus has started consuming (its shared log says)."""
        log = self.root / "router.log"
        return log.read_text(errors="replace").count("router consuming") if log.exists() else 0

    def stop(self) -> None:
        for process in [*self.routers, *([self.api] if self.api else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*self.routers, *([self.api] if self.api else [])]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.routers.clear()
        self.api = None

    def client(self, cert: Path, key: Path) -> BusClient:
        return BusClient.from_files(self.url, cert, key)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}"
            for p in sorted(self.root.glob("*.log"))
        )
