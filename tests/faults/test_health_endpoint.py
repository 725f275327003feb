"""The router's health endpoint (``lienthong router --health-port``), without a broker.

The fault scenarios watch it report a killed broker and a cut database; here its HTTP surface:
``/healthz`` while the loop runs, ``/readyz`` 200 only when every check is ``ok``, and nothing
else answered as healthy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

from adapters.amqp.health import HealthServer
from tests.services import free_port


def serve_and_get(
    checks: Mapping[str, str], *requests: tuple[str, str]
) -> list[tuple[int, dict[str, object]]]:
    async def scenario() -> list[tuple[int, dict[str, object]]]:
        async def ready_checks() -> Mapping[str, str]:
            return checks

        port = free_port()
        server = HealthServer("127.0.0.1", port, ready_checks, lambda: {"batches": 7})
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                answers = []
                for method, path in requests:
                    response = await client.request(method, path, timeout=5)
                    answers.append((response.status_code, response.json()))
                return answers
        finally:
            await server.close()

    return asyncio.run(scenario())


def test_ready_when_every_check_is_ok() -> None:
    ((status, body),) = serve_and_get({"broker": "ok", "database": "ok"}, ("GET", "/readyz"))
    assert status == 200
    assert body == {"status": "ok", "checks": {"broker": "ok", "database": "ok"}}


def test_not_ready_when_a_dependency_is_down_and_says_which() -> None:
    checks = {"broker": "unavailable: reconnecting", "database": "ok"}
    ((status, body),) = serve_and_get(checks, ("GET", "/readyz"))
    assert status == 503
    assert body == {"status": "unavailable", "checks": checks}


def test_alive_while_a_dependency_is_down_with_its_counters() -> None:
    ((status, body),) = serve_and_get({"broker": "unavailable: closed"}, ("GET", "/healthz"))
    assert status == 200
    assert body == {"status": "ok", "checks": {"process": "ok"}, "info": {"batches": 7}}


def test_other_paths_and_methods_are_not_healthy() -> None:
    answers = serve_and_get(
        {"broker": "ok"}, ("GET", "/"), ("POST", "/readyz"), ("GET", "/readyz?verbose=1")
    )
    assert [status for status, _ in answers] == [404, 405, 200]
    assert all(body["status"] == "unavailable" for _, body in answers[:2])
