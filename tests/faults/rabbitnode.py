"""RabbitMQ nodes a fault scenario starts itself, beside the machine's shared broker.

Each node has its own name (``cN@localhost``), AMQP and distribution ports, data, log, pid,
plugins and feature-flags files, and its own config file (the machine's rabbitmq.conf pins the
listener to 5672). ``rabbitmq-server`` started as root switches to the ``rabbitmq`` user, so the
node's folder is owned by it. Nodes run in the foreground under ``setsid`` and are stopped or
killed by the PID the node writes; the shared epmd is never touched.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def _rabbitmq_owns(path: Path) -> None:
    shutil.chown(path, "rabbitmq", "rabbitmq")
    for child in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a running node's file may come and go
            shutil.chown(child, "rabbitmq", "rabbitmq")


_STARTED: list[RabbitNode] = []  # every node started, until kill_nodes_under() kills it


@dataclass
class RabbitNode:
    name: str  # e.g. "c1"
    root: Path
    port: int
    dist_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    settings: str = ""  # more rabbitmq.conf lines (e.g. deploy/rabbitmq.conf)

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def folder(self) -> Path:
        return self.root / self.name

    def _env(self) -> dict[str, str]:
        folder = self.folder
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(folder / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        }

    def start(self, timeout: float = 60) -> None:
        folder = self.folder
        for sub in ("mnesia", "log"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n" + self.settings
        )
        shutil.chown(self.root, "rabbitmq", "rabbitmq")
        _rabbitmq_owns(folder)  # its own folder only: the other nodes' are theirs
        if self not in _STARTED:
            _STARTED.append(self)
        with (folder / "console.log").open("ab") as out:
            self.process = subprocess.Popen(
                ["setsid", "rabbitmq-server"],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.ctl("await_startup", "--timeout", "5", check=False)
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"node {self.node} did not start:\n{self.console()}")

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args], capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"rabbitmqctl {args} on {self.node}: {done.stderr}")
        return done

    def pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM (a crash: no clean shutdown)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        (self.folder / "pid").unlink(missing_ok=True)

    def stop(self) -> None:
        if self.pid() is None:
            return
        self.ctl("stop", check=False)
        deadline = time.monotonic() + 30
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                return
            time.sleep(0.2)
        self.process = None
        (self.folder / "pid").unlink(missing_ok=True)

    def join(self, seed: RabbitNode) -> None:
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.node)
        self.ctl("start_app")
        self.wait_ready()

    def console(self) -> str:
        path = self.folder / "console.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def kill_nodes_under(root: Path) -> None:
    """SIGKILL every node started under ``root`` and reap its process, whatever happened to
    the scenario (an unreaped process is an unraisable warning in a later test)."""
    for node in [node for node in _STARTED if node.root == root]:
        node.kill()
        _STARTED.remove(node)


def single(root: Path) -> RabbitNode:
    """One node on ports below the ephemeral range (see ``free_base_port``), not yet started."""
    base = free_base_port(1)
    return RabbitNode(f"lt{base}b", root, base, base + 20000)


def cluster(root: Path, size: int, base_port: int) -> list[RabbitNode]:
    """Start ``size`` nodes on base_port, base_port+1, ... and join them into one cluster."""
    nodes = [
        RabbitNode(f"lt{base_port}c{i + 1}", root, base_port + i, base_port + 20000 + i)
        for i in range(size)
    ]
    # Booting a node takes seconds: boot them side by side, then join them one by one.
    with concurrent.futures.ThreadPoolExecutor(size) as pool:
        for started in [pool.submit(node.start) for node in nodes]:
            started.result()
    for node in nodes[1:]:
        node.join(nodes[0])
    return nodes


def free_base_port(count: int, start: int = 5690, stop: int = 6400) -> int:
    """A port p with p..p+count-1 and p+20000..p+20000+count-1 free (AMQP, distribution).

    Both ranges lie below the kernel's ephemeral ports (32768 and up): a node that is killed
    and restarted must bind its ports again, and while it is down an outgoing connection (or a
    publisher's retry connecting to itself) may take an ephemeral port as its own.
    """
    for base in range(start, stop, 10):
        ports = [*range(base, base + count), *range(base + 20000, base + 20000 + count)]
        if all(_free(port) for port in ports):
            return base
    raise AssertionError(f"no free ports for {count} RabbitMQ nodes in {start}..{stop}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
