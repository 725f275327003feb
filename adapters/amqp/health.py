"""A small health endpoint for processes without an HTTP API of their own (the router).

``GET /healthz`` answers 200 while the process's event loop runs (with its counters);
``GET /readyz`` answers 200 when every check says ``ok``, else 503 with what is down. The body is
the API's ``Health`` shape: ``{"status": "ok" | "unavailable", "checks": {...}}``. It is plain
HTTP/1.1 on asyncio streams (one request per connection, bodies capped), so the router needs no
web framework and no second event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

Checks = Callable[[], Awaitable[Mapping[str, str]]]
Info = Callable[[], Mapping[str, object]]

MAX_REQUEST_HEAD = 8192
READ_TIMEOUT_S = 5.0


class HealthServer:
    def __init__(self, host: str, port: int, ready_checks: Checks, info: Info) -> None:
        self.host = host
        self.port = port
        self.ready_checks = ready_checks
        self.info = info
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("health endpoint on http://%s:%d/readyz", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, body = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body = 400, {"status": "unavailable", "checks": {"request": "unreadable"}}
        except ConnectionError:
            writer.close()
            return
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        writer.write(
            f"HTTP/1.1 {status} {reason.get(status, 'Service Unavailable')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _answer(self, head: bytes) -> tuple[int, dict[str, object]]:
        if len(head) > MAX_REQUEST_HEAD:
            return 400, {"status": "unavailable", "checks": {"request": "too large"}}
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, {"status": "unavailable", "checks": {"request": f"{method} not allowed"}}
        if path == "/healthz":
            return 200, {"status": "ok", "checks": {"process": "ok"}, "info": dict(self.info())}
        if path == "/readyz":
            checks = dict(await self.ready_checks())
            ok = all(value == "ok" for value in checks.values())
            return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": checks}
        return 404, {"status": "unavailable", "checks": {"request": f"no route {path}"}}
