"""schemathesis against the API's own OpenAPI document (``create_app(...).openapi()``), in process.

Every operation is called with data generated from its schema, valid (positive) and invalid
(negative), three ways: signed by an agency's credential, signed by the administrator's, and not
signed at all. A signing ASGI wrapper makes the RFC 9421 signature over exactly what arrives
(method, path, query, body), as ``adapters.client`` would, so that generated requests reach the
routes behind authentication. Each response must pass schemathesis's checks: no server error,
a documented status code, content type, headers and body schema; invalid data refused. Valid
data is never answered 422 (the schema documents what the route validates), and a call without
a credential to an authenticated route is the documented 401.

The run is deterministic (``derandomize``); ``FUZZ_EXAMPLES`` sets the examples per operation,
mode and credential. The figures (operations, calls, statuses) are printed at the end.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters import bootstrap, httpsig
from adapters.db import registry as reg
from adapters.files import load_certificates, load_private_key
from adapters.http.app import build_api, create_app
from adapters.settings import Settings
from tests.helpers import G22, Pki
from tests.services import AMQP_URL, delete_topology

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
UNAUTHENTICATED = ("/v1/tsa", "/v1/tsa/certificates", "/healthz", "/readyz")

schemathesis.serializer.alias("application/timestamp-query", "application/octet-stream")


@dataclass(frozen=True)
class Credential:
    name: str
    key: PrivateKeyTypes
    key_id: str


class Signing:
    """ASGI wrapper: signs each request with ``credential`` (None: leaves it unsigned)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.credential: Credential | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        credential = self.credential
        if scope["type"] != "http" or credential is None:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        signed = httpsig.sign_request(
            credential.key,
            credential.key_id,
            scope["method"],
            scope["path"],
            scope["query_string"].decode("latin-1"),
            body,
            now=int(time.time()),
        )
        names = {name.lower().encode() for name in signed}
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in names]
        headers += [(k.lower().encode(), v.encode()) for k, v in signed.items()]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)


@dataclass
class Tally:
    calls: int = 0
    operations: set[str] = field(default_factory=set)
    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)


def credential(name: str, cert: Path, key: Path) -> Credential:
    der = load_certificates(cert)[0].public_bytes(Encoding.DER)
    return Credential(name, load_private_key(key), hashlib.sha256(der).hexdigest())


class Client:
    """Requests to the app in this process, on one event loop (the API's broker connection
    lives on it), through the signing wrapper."""

    def __init__(self, app: ASGIApp, openapi: Callable[[], dict[str, Any]]) -> None:
        self.openapi = openapi
        self.runner = asyncio.Runner()
        self.http = httpx.AsyncClient(
            # A server error comes back as the API's 500 response, for the checks to see.
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://testserver",
            timeout=30,
        )

    def request(self, **kwargs: Any) -> httpx.Response:
        return self.runner.run(self.http.request(**kwargs))

    def close(self, *closing: Any) -> None:
        for item in closing:
            self.runner.run(item())
        self.runner.run(self.http.aclose())
        self.runner.close()


@pytest.fixture(scope="module")
def served(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Signing, Client]]:
    root = tmp_path_factory.mktemp("openapi-fuzz")
    prefix = f"lt-fuzz-{uuid.uuid4().hex[:10]}"
    config = Settings(
        data_dir=root / "var",
        database_url=f"sqlite:///{root / 'lienthong.db'}",
        pki_dir=pki.root,
        amqp_url=AMQP_URL,
        exchange_prefix=prefix,
        crl_poll_s=60,
    )
    bus = bootstrap.build(config, upgrade=True)
    now = dt.datetime.now(dt.UTC)
    with bus.engine.begin() as conn:
        for agency in pki.dev.agencies():
            reg.add_agency(conn, agency.code, agency.name, now)
            for cert in load_certificates(pki.dev.seal(agency.code)[0]):
                reg.pin_certificate(conn, agency.code, cert, now)
    api = build_api(bus)
    app = create_app(api)
    wrapper = Signing(app)
    client = Client(wrapper, app.openapi)
    try:
        yield wrapper, client
    finally:
        client.close(api.publisher.close)
        bus.engine.dispose()
        with contextlib.suppress(Exception):
            delete_topology(prefix)


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    served: tuple[Signing, Client], pki: Pki
) -> None:
    wrapper, client = served
    credentials = [
        credential("agency", *pki.dev.seal(G22)),
        credential("admin", *pki.dev.admin),
        None,
    ]
    schema = schemathesis.openapi.from_dict(client.openapi())
    tally = Tally()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        tally.operations.add(operation.label)
        authenticated = operation.path not in UNAUTHENTICATED
        for signer in credentials:
            wrapper.credential = signer
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                run(operation, mode, signer, authenticated, client, tally)
    wrapper.credential = None
    print(  # the figures the report quotes (pytest -s)
        f"\nschemathesis: {len(tally.operations)} operations, {tally.calls} calls, "
        f"{len(tally.failures)} failures; statuses: "
        + ", ".join(f"{op} {status}: {n}" for (op, status), n in sorted(tally.statuses.items()))
    )
    assert tally.failures == [], "\n".join(tally.failures)
    assert len(tally.operations) >= 14
    assert tally.calls >= len(tally.operations) * 3


def run(
    operation: Any,
    mode: GenerationMode,
    signer: Credential | None,
    authenticated: bool,
    client: Client,
    tally: Tally,
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        request = case.as_transport_kwargs(base_url="http://testserver")
        assert not request.pop("cookies", None), request  # no operation takes cookies
        if isinstance(request.get("data"), bytes | str):  # requests' spelling of raw content
            request["content"] = request.pop("data")
        response = client.request(**request)
        tally.calls += 1
        tally.statuses[(operation.label, response.status_code)] += 1
        where = f"{operation.label} [{mode.value}, {signer.name if signer else 'unsigned'}]"
        if signer is None and authenticated and response.status_code != 401:
            tally.failures.append(f"{where}: {response.status_code} without a credential")
        if mode is GenerationMode.POSITIVE and response.status_code == 422:
            tally.failures.append(f"{where}: valid data refused: {response.text[:300]}")
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except AssertionError as exc:
            tally.failures.append(f"{where}: {exc}")

    try:
        check()
    except Unsatisfiable:
        # No invalid request exists (an operation without parameters or with a binary body).
        assert mode is GenerationMode.NEGATIVE, operation.label
