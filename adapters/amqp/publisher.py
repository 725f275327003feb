"""Publishing submissions: persistent, mandatory, confirmed; retried with backoff.

A publish counts as done only when the broker confirmed it (``publisher_confirms=True``) and did
not return it as unroutable (``on_return_raises=True`` with ``mandatory=True``): otherwise a
returned message would look like success. A retry after a dropped connection can publish the
same bytes twice; the router recognises the second copy by its digest and absorbs it.

One Publisher is shared by concurrent publishes (the API's requests). They share one connection:
a publish that failed drops only the connection it failed on (never a newer one another publish
has just opened), and while the broker is unreachable one connection attempt answers all the
publishes waiting for it, so a hundred waiting requests do not make a hundred attempts in turn.
The Publisher reconnects itself (a plain connection, reopened by the next attempt), which keeps
it free of a second, background reconnect loop racing its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.connection import make_url
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from adapters.amqp.topology import ROUTING_KEY, Topology, declare
from exchange.submission import CONTENT_TYPE

log = logging.getLogger(__name__)

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)

# What a publish raises when the broker is gone, refused it, or closed the channel under it (a
# dropped connection leaves the channel closed: ChannelInvalidStateError, a RuntimeError). A
# connection closed during aiormq's handshake surfaces as StopAsyncIteration or EOFError (its
# frame reader ran dry): the broker is unreachable all the same.
UNAVAILABLE = (
    AMQPError,
    ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
    EOFError,
    StopAsyncIteration,
)


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
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # Connection attempts made, and how the last one failed (None: it succeeded).
        self._attempts = 0
        self._failure: BaseException | None = None

    async def _ready(self) -> tuple[AbstractExchange, AbstractChannel]:
        """The submit exchange and the channel it is declared on, connecting if need be."""
        attempts = self._attempts
        async with self._lock:
            if (
                self._exchange is not None
                and self._channel is not None
                and self._connection
                and not self._connection.is_closed
            ):
                return self._exchange, self._channel
            if self._attempts != attempts and self._failure is not None:
                # Another publish tried to connect while this one waited, and failed: its
                # answer is this one's too (the caller backs off before asking again).
                raise self._failure
            await self.close()
            # Made here rather than by aio_pika.connect(), which drops a connection whose
            # handshake failed without closing it (its __del__ then leaks a close coroutine).
            self._connection = aio_pika.Connection(
                make_url(self.url),
                client_properties={"connection_name": self.connection_name},
            )
            try:
                await self._connection.connect(timeout=self.timeout)
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._exchange = (await declare(channel, self.topology)).submit
                self._channel = channel
            except UNAVAILABLE as exc:
                self._failure = exc
                await self.close()
                raise
            except BaseException:
                self._failure = None
                await self.close()
                raise
            finally:
                # Counted once settled: a publish arriving meanwhile waits for this answer.
                self._attempts += 1
            self._failure = None
            return self._exchange, channel

    async def ping(self) -> None:
        """Check the broker answers (a round trip, within ``timeout``); BrokerUnavailable if not.

        A connection that looks open may lead to a broker that stopped answering: the check
        asks the broker about the submit exchange rather than trusting the socket.
        """
        exchange: AbstractExchange | None = None
        try:
            exchange, channel = await self._ready()
            await asyncio.wait_for(
                channel.declare_exchange(
                    self.topology.submit_exchange, aio_pika.ExchangeType.DIRECT, passive=True
                ),
                timeout=self.timeout,
            )
        except UNAVAILABLE as exc:
            await self._drop(exchange)
            raise BrokerUnavailable(self.url, f"{type(exc).__name__}: {exc}") from None

    async def publish(self, body: bytes, *, message_id: str | None = None) -> None:
        """Publish until the broker confirms; raise BrokerUnavailable when retries run out."""
        delay = 0.1
        last = "no attempt"
        for attempt in range(self.retries + 1):
            exchange: AbstractExchange | None = None
            try:
                exchange, channel = await self._ready()
                # Published on the aiormq channel beneath aio-pika's, which is what
                # Exchange.publish does after it has built an aio_pika.Message and its
                # properties: a quarter of a publish's CPU (an open-loop publisher at 800
                # msg/s, 355-364 against 250-293 µs per message). The answers are the same:
                # a nack raises DeliveryError, a returned message PublishError (the channel
                # was opened with on_return_raises).
                underlay = await channel.get_underlay_channel()
                await underlay.basic_publish(
                    body,
                    exchange=exchange.name,
                    routing_key=ROUTING_KEY,
                    properties=Basic.Properties(
                        delivery_mode=PERSISTENT,
                        content_type=CONTENT_TYPE,
                        message_id=message_id,
                    ),
                    mandatory=True,
                    timeout=self.timeout,
                )
                return
            except UNAVAILABLE as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("publish attempt %d failed: %s", attempt + 1, last)
                await self._drop(exchange)
            if attempt < self.retries:
                await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, 5.0)
        raise BrokerUnavailable(self.url, last)

    async def _drop(self, failed: AbstractExchange | None) -> None:
        """Close the connection ``failed`` was published on, unless it was replaced already."""
        if failed is None:
            return
        async with self._lock:
            if self._exchange is failed:
                await self.close()

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        self._channel = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*UNAVAILABLE):
                await connection.close()
