"""Publishing submissions: persistent, mandatory, confirmed; retried with backoff.

A publish counts as done only when the broker confirmed it (``publisher_confirms=True``) and did
not return it as unroutable (``on_return_raises=True`` with ``mandatory=True``): otherwise a
returned message would look like success. A retry after a dropped connection can publish the
same bytes twice; the router recognises the second copy by its digest and absorbs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from adapters.amqp.topology import ROUTING_KEY, Topology, declare
from exchange.submission import CONTENT_TYPE

log = logging.getLogger(__name__)

# What a publish raises when the broker is gone, refused it, or closed the channel under it (a
# dropped connection leaves the channel closed: ChannelInvalidStateError, a RuntimeError).
UNAVAILABLE = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not confirm in time."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(f"RabbitMQ at {redact(url)} is unavailable: {cause}")
        self.url = url
        self.cause = cause


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class Publisher:
    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        timeout: float = 10.0,
        retries: int = 8,
        connection_name: str = "lienthong-publisher",
    ) -> None:
        self.url = url
        self.topology = topology
        self.timeout = timeout
        self.retries = retries
        self.connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is not None and self._connection and not self._connection.is_closed:
                return self._exchange
            await self.close()
            self._connection = await aio_pika.connect_robust(
                self.url,
                timeout=self.timeout,
                client_properties={"connection_name": self.connection_name},
            )
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = (await declare(channel, self.topology)).submit
            return self._exchange

    async def ping(self) -> None:
        """Connect, or check the connection; BrokerUnavailable when the broker is unreachable."""
        try:
            await self._ready()
        except UNAVAILABLE as exc:
            await self._drop()
            raise BrokerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from None

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        """Publish until the broker confirms; raise BrokerUnavailable when retries run out."""
        delay = 0.1
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                exchange = await self._ready()
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type=CONTENT_TYPE,
                        message_id=message_id,
                    ),
                    routing_key=ROUTING_KEY,
                    mandatory=True,
                    timeout=self.timeout,
                )
                return
            except UNAVAILABLE as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("publish attempt %d failed: %s", attempt + 1, last)
                await self._drop()
            if attempt < self.retries:
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, 5.0)
        raise BrokerUnavailable(self.url, last)

    async def _drop(self) -> None:
        async with self._lock:
            await self.close()

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(AMQPError, ConnectionError, OSError):
                await connection.close()
