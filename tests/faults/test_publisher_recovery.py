"""One Publisher shared by many concurrent publishes (as the API shares one) through a cut.

Before: every publish that failed on the dropped connection closed the publisher's connection,
including the new one another publish had just opened, so a cut became a cascade of reconnects
and failed publishes. Now a failed publish drops only the connection it failed on.
"""

from __future__ import annotations

import asyncio

from adapters.amqp.publisher import BrokerUnavailable, Publisher
from adapters.amqp.topology import Topology
from tests.faults.proxy import TcpProxy

CONCURRENT = 200


def test_concurrent_publishes_through_a_cut_share_one_new_connection(
    proxy: TcpProxy, topology: Topology
) -> None:
    async def scenario() -> int:
        publisher = Publisher(proxy.url(), topology, retries=10, timeout=5)
        try:
            await publisher.publish(b"first")  # connected
            # Publishes in flight when every connection is cut at once.
            flight = [
                asyncio.create_task(publisher.publish(f"m-{i}".encode())) for i in range(CONCURRENT)
            ]
            await asyncio.sleep(0)
            await asyncio.to_thread(proxy.cut)
            await asyncio.wait_for(asyncio.gather(*flight), timeout=60)
        finally:
            await publisher.close()
        return proxy.connections

    connections = asyncio.run(scenario())
    # The first connection, and one (or, with an unlucky cut, two) after the cut: not one per
    # failed publish.
    assert connections <= 3, connections


def test_a_late_failure_does_not_close_the_connection_that_replaced_its_own(
    proxy: TcpProxy, topology: Topology
) -> None:
    async def scenario() -> tuple[bool, int]:
        publisher = Publisher(proxy.url(), topology, retries=5, timeout=5)
        try:
            await publisher.publish(b"before the cut")
            stale = publisher._exchange
            await asyncio.to_thread(proxy.cut)
            await publisher.publish(b"after the cut")  # reconnects
            fresh = publisher._connection
            # A publish that was still waiting on the old connection fails only now.
            await publisher._drop(stale)
            kept = publisher._connection is fresh and fresh is not None and not fresh.is_closed
            await publisher.publish(b"on the same connection")
        finally:
            await publisher.close()
        return kept, proxy.connections

    kept, connections = asyncio.run(scenario())
    assert kept
    assert connections == 2


def test_publishes_waiting_on_one_failed_connection_attempt_share_its_answer(
    proxy: TcpProxy, topology: Topology
) -> None:
    async def scenario() -> tuple[list[BaseException | None], int]:
        publisher = Publisher(proxy.url(), topology, retries=0, timeout=5)
        proxy.pause()  # the broker "refuses": every connection is closed at once
        try:
            results = await asyncio.gather(
                *(publisher.publish(b"x") for _ in range(50)), return_exceptions=True
            )
        finally:
            proxy.resume()
            await publisher.close()
        return [r if isinstance(r, BaseException) else None for r in results], publisher._attempts

    results, attempts = asyncio.run(scenario())
    assert all(isinstance(r, BrokerUnavailable) for r in results)
    # One attempt answered the 49 publishes queued behind it, not 50 attempts one by one.
    assert attempts == 1
