"""The router stops on SIGTERM (its stop event) promptly even while the broker is unreachable.

A robust channel that lost its broker waits for the reconnection before it cancels a consumer;
stopping must not wait for a broker that may never come back. And with the broker back, what
the router held is delivered again: nothing was acknowledged without being routed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aio_pika

from adapters.amqp.router import RouterService, in_thread
from adapters.amqp.topology import ROUTING_KEY, Topology, declare
from exchange.routing import Incoming, Outcome
from tests.faults.proxy import TcpProxy
from tests.services import AMQP_URL


def test_a_router_without_its_broker_stops_within_seconds(
    proxy: TcpProxy, topology: Topology
) -> None:
    routed: list[bytes] = []

    def route(batch: Sequence[Incoming]) -> list[Outcome]:
        routed.extend(item.body for item in batch)
        return [Outcome.STORED] * len(batch)

    async def scenario() -> tuple[str, str, float]:
        service = RouterService(
            proxy.url(),
            topology,
            in_thread(route),
            lambda *_: None,
            name=f"{topology.prefix}-router",
        )
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(service.run(stop, ready))
        await asyncio.wait_for(ready.wait(), timeout=15)
        connected = service.broker_state()
        proxy.pause()
        await asyncio.to_thread(proxy.cut)
        await asyncio.sleep(1.5)  # a reconnection attempt or two fail meanwhile
        cut = service.broker_state()
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, timeout=30)
        return connected, cut, time.monotonic() - started

    connected, cut, stopping = asyncio.run(scenario())
    proxy.resume()
    assert connected == "ok"
    assert cut.startswith("unavailable"), cut
    assert stopping < 8, f"stopping took {stopping:.1f}s"

    async def after() -> int:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            declared = await declare(channel, topology)
            await declared.submit.publish(aio_pika.Message(b"later"), routing_key=ROUTING_KEY)
            queue = await channel.declare_queue(
                topology.router_queue, passive=True, arguments=topology.router_arguments()
            )
            return queue.declaration_result.message_count or 0

    assert asyncio.run(after()) == 1  # the queue is intact, nobody is consuming it
    assert routed == []
