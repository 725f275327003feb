"""A TCP proxy a fault scenario puts between lienthong and the broker, to cut connections.

It runs its own event loop in a thread; ``cut()`` drops every open connection at once (both
directions, like a network fault), and ``pause()``/``resume()`` refuse new ones meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listen_port = listen_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._accepting = True
        self.cuts = 0
        self.connections = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        sock: socket.socket = self._server.sockets[0]
        port: int = sock.getsockname()[1]
        return port

    def url(self, scheme: str = "amqp", credentials: str = "guest:guest@") -> str:
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/"

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    def cut(self) -> int:
        """Drop every open connection; returns how many sockets were cut."""

        async def drop() -> int:
            writers = list(self._writers)
            for writer in writers:
                transport = writer.transport
                with contextlib.suppress(OSError):
                    transport.abort()
            return len(writers)

        self.cuts += 1
        return asyncio.run_coroutine_threadsafe(drop(), self._loop).result(timeout=10)

    def pause(self) -> None:
        self._accepting = False

    def resume(self) -> None:
        self._accepting = True

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
