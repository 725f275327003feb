"""``lienthong db|agency|crl|router|api|run|send|pull|ack|trace``: running and using the bus."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
import uvicorn
import uvloop

from adapters import bootstrap
from adapters.amqp.health import HealthServer
from adapters.amqp.publisher import BrokerUnavailable, Publisher, redact
from adapters.amqp.router import RouterService, RoutingFailed
from adapters.amqp.topology import Topology, TopologyMismatch
from adapters.cli.output import EXIT_REJECTED, EXIT_UNAVAILABLE, fail, print_json
from adapters.client import ApiError, BusClient
from adapters.db import registry as reg
from adapters.db import trace as trace_db
from adapters.db.routing import record_dead_letter
from adapters.files import load_certificates, load_crls, read_bytes
from adapters.http.app import build_api, create_app
from adapters.pki.folder import DevPki
from adapters.routing_process import RoutingProcess, quiet_garbage_collector
from adapters.settings import Settings
from adapters.trustsync import store_crl
from exchange.ports import SystemClock
from exchange.routing import loose_identity
from exchange.submission import Submission
from exchange.tracing import verify_chain
from schemas.agency import is_agency_code

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
agency_app = typer.Typer(
    help="The registry of agencies and their certificates.", no_args_is_help=True
)
crl_app = typer.Typer(help="Certificate revocation lists.", no_args_is_help=True)

log = logging.getLogger("lienthong")


def _settings() -> Settings:
    try:
        return Settings().resolved()
    except ValueError as exc:
        fail(f"invalid LIENTHONG_* settings: {exc}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the current schema."""
    settings = _settings()
    bootstrap.database(settings, upgrade=True)
    typer.echo(f"database at {redact(settings.database)} is current")


def _code(code: str) -> str:
    if not is_agency_code(code):
        raise typer.BadParameter(f"{code!r} is not a canonical agency code")
    return code


@agency_app.command("add")
def agency_add(
    code: Annotated[str, typer.Argument(help="Agency code, e.g. 000.00.00.G22.")],
    name: Annotated[str, typer.Option(help="Agency name.")],
    cert: Annotated[
        list[Path] | None, typer.Option(help="Certificate to pin: its seal or a credential.")
    ] = None,
) -> None:
    """Register an agency (or rename it) and pin its certificates."""
    _code(code)
    engine = bootstrap.database(_settings())
    now = _now()
    with engine.begin() as conn:
        created = reg.add_agency(conn, code, name, now)
        pinned = [
            reg.pin_certificate(conn, code, c, now)
            for path in cert or []
            for c in load_certificates(path)
        ]
    typer.echo(f"{'registered' if created else 'updated'} {code} {name}")
    for fingerprint in pinned:
        typer.echo(f"  pinned sha256:{fingerprint}")


@agency_app.command("pin")
def agency_pin(code: str, cert: Path) -> None:
    """Pin one more certificate to an agency."""
    engine = bootstrap.database(_settings())
    with engine.begin() as conn:
        for c in load_certificates(cert):
            typer.echo(f"pinned sha256:{reg.pin_certificate(conn, _code(code), c, _now())}")


@agency_app.command("unpin")
def agency_unpin(fingerprint: str) -> None:
    """Stop trusting a pinned certificate (by SHA-256 fingerprint)."""
    engine = bootstrap.database(_settings())
    with engine.begin() as conn:
        reg.unpin_certificate(conn, fingerprint.lower(), _now())
    typer.echo(f"unpinned {fingerprint}")


@agency_app.command("disable")
def agency_disable(code: str) -> None:
    """Disable an agency: it can neither send nor receive nor call the API."""
    engine = bootstrap.database(_settings())
    with engine.begin() as conn:
        reg.set_active(conn, _code(code), False, _now())
    typer.echo(f"disabled {code}")


@agency_app.command("enable")
def agency_enable(code: str) -> None:
    """Enable a disabled agency again."""
    engine = bootstrap.database(_settings())
    with engine.begin() as conn:
        reg.set_active(conn, _code(code), True, _now())
    typer.echo(f"enabled {code}")


@agency_app.command("list")
def agency_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered agencies and their pinned certificates."""
    engine = bootstrap.database(_settings())
    with engine.connect() as conn:
        rows = reg.list_agencies(conn)
    if as_json:
        print_json(
            [{"code": c, "name": n, "active": a, "seal_fingerprints": f} for c, n, a, f in rows]
        )
        return
    for code, name, active, pins in rows:
        typer.echo(f"{code:<16} {'active  ' if active else 'DISABLED'} {name}")
        for fingerprint in pins:
            typer.echo(f"{'':<16} sha256:{fingerprint}")


@agency_app.command("import-pki")
def agency_import_pki(folder: Path) -> None:
    """Register every agency of a development PKI with its seal pinned."""
    pki = DevPki(folder)
    engine = bootstrap.database(_settings())
    now = _now()
    with engine.begin() as conn:
        for agency in pki.agencies():
            reg.add_agency(conn, agency.code, agency.name, now)
            for cert in load_certificates(pki.seal(agency.code)[0]):
                reg.pin_certificate(conn, agency.code, cert, now)
            typer.echo(f"registered {agency.code} {agency.name}")


@crl_app.command("load")
def crl_load(files: list[Path]) -> None:
    """Load CRLs into the database; every router and API process picks them up."""
    engine = bootstrap.database(_settings())
    with engine.begin() as conn:
        for path in files:
            for crl in load_crls(path):
                added = store_crl(conn, crl, _now())
                typer.echo(
                    f"{'loaded' if added else 'already loaded'}: {crl.issuer.rfc4514_string()}"
                )


def router(
    name: Annotated[
        str, typer.Option(help="Connection name shown by RabbitMQ.")
    ] = "lienthong-router",
    health_port: Annotated[
        int | None,
        typer.Option(help="Serve /healthz and /readyz (broker and database state) on this port."),
    ] = None,
    health_host: Annotated[str, typer.Option(help="Address of the health endpoint.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Run a router until SIGTERM or Ctrl-C: consume, verify, store, deliver, acknowledge."""
    _logging()
    settings = _settings()
    engine = bootstrap.database(settings)
    clock = SystemClock()
    quiet_garbage_collector()
    # Verifying and recording happen in a child process (a GIL of its own): this one only
    # moves messages between the broker and it.
    routing = RoutingProcess()
    service = RouterService(
        settings.amqp_url,
        Topology(settings.exchange_prefix, settings.delivery_limit),
        routing.route,
        lambda body, tid, reason, detail: record_dead_letter(
            engine, body, tid, reason, detail, clock.now()
        ),
        prefetch=settings.prefetch,
        batch_max=settings.batch_max,
        batch_wait_ms=settings.batch_wait_ms,
        name=name,
        # The next batch waits in the pipe while the child routes the last one.
        depth=2,
    )

    async def ready_checks() -> dict[str, str]:
        return {
            "broker": service.broker_state(),
            "database": await database_state(engine),
            "routing": routing.state(),
        }

    def info() -> dict[str, object]:
        stats = service.stats
        return {
            "batches": stats.batches,
            "holding": service.holding(),
            "outcomes": dict(stats.outcomes),
            "dead_lettered": stats.dead_lettered,
            "db_retries": stats.db_retries,
            "reconnects": stats.reconnects,
            "acked_at_once": stats.acked_at_once,
            "routing_process": {"pid": routing.pid(), "starts": routing.starts},
            "last_delivery_s_ago": None
            if stats.last_delivery is None
            else round(time.monotonic() - stats.last_delivery, 3),
        }

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await routing.start()
        except RoutingFailed as exc:
            fail(str(exc))
        health = None
        try:
            if health_port is not None:
                health = HealthServer(health_host, health_port, ready_checks, info)
                await health.start()
            await service.run(stop)
        finally:
            await routing.close()
            if health is not None:
                await health.close()
        log.info("router stopped: %s", json.dumps(service.stats.outcomes))

    try:
        # uvloop (with uvicorn[standard]) runs the AMQP side of routing in less CPU.
        uvloop.run(main())
    except (OSError, ConnectionError) as exc:
        _unreachable(settings, exc)
    except TopologyMismatch as exc:
        fail(str(exc))


DATABASE_CHECK_S = 3.0


async def database_state(engine: sa.Engine) -> str:
    """``ok`` when the database answers a query within DATABASE_CHECK_S seconds."""

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), DATABASE_CHECK_S)
    except TimeoutError:
        return f"unavailable: no answer within {DATABASE_CHECK_S:g}s"
    except sa.exc.DBAPIError as exc:
        return f"unavailable: {type(exc.orig).__name__}"
    return "ok"


def _unreachable(settings: Settings, exc: BaseException) -> None:
    fail(
        f"cannot reach RabbitMQ at {redact(settings.amqp_url)} ({exc}). Start one "
        "(`rabbitmq-server -detached`, or `docker compose up -d rabbitmq`) or set "
        "LIENTHONG_AMQP_URL.",
        EXIT_UNAVAILABLE,
    )


def api(
    host: Annotated[str | None, typer.Option(help="Listen address (LIENTHONG_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (LIENTHONG_API_PORT).")] = None,
) -> None:
    """Serve the HTTP API (uvicorn) until SIGTERM or Ctrl-C."""
    _logging()
    settings = _settings()
    app = create_app(build_api(bootstrap.build(settings)))
    uvicorn.run(
        app,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
        timeout_graceful_shutdown=10,
        limit_concurrency=1000,
    )


def run() -> None:
    """Run the API and a router (two processes) until Ctrl-C."""
    settings = _settings()
    bootstrap.database(settings, upgrade=True)
    command = [sys.executable, "-m", "adapters.cli.main"]
    children = [
        subprocess.Popen([*command, "api"]),
        subprocess.Popen([*command, "router"]),
    ]
    typer.echo(
        f"lienthong serving on http://{settings.api_host}:{settings.api_port} (Ctrl-C stops)"
    )
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
    codes = [c.returncode for c in children]
    if any(code not in (0, -signal.SIGTERM) for code in codes):
        raise typer.Exit(1)


def send(
    header: Annotated[Path, typer.Option(help="The signed header file.")],
    signature: Annotated[Path, typer.Option(help="Its detached DER signature.")],
    attachment: Annotated[
        list[Path] | None, typer.Option(help="A file of the manifest to send inline (repeat).")
    ] = None,
) -> None:
    """Publish an envelope to the bus over AMQP (persistent, mandatory, confirmed)."""
    settings = _settings()
    header_bytes = read_bytes(header, "header file")
    submission = Submission(
        header_bytes,
        read_bytes(signature, "signature file"),
        {p.name: read_bytes(p, "attachment") for p in attachment or []},
    )
    message_id, _ = loose_identity(header_bytes)
    publisher = Publisher(
        settings.amqp_url,
        Topology(settings.exchange_prefix, settings.delivery_limit),
        timeout=settings.publish_timeout_s,
        retries=settings.publish_retries,
        connection_name="lienthong-send",
    )

    async def main() -> None:
        try:
            await publisher.publish(submission.encode(), message_id=message_id)
        finally:
            await publisher.close()

    try:
        asyncio.run(main())
    except BrokerUnavailable as exc:
        _unreachable(settings, exc)
    typer.echo(f"queued {message_id or '(no message id)'}: confirmed by the broker")


ApiUrl = Annotated[str, typer.Option("--api", help="Base URL of the bus API.")]
Cert = Annotated[Path, typer.Option(help="Certificate registered to your agency (PEM).")]
Key = Annotated[Path, typer.Option(help="Its private key (PEM).")]


def _client(api_url: str, cert: Path, key: Path) -> BusClient:
    return BusClient.from_files(api_url, cert, key)


def pull(
    cert: Cert,
    key: Key,
    api_url: ApiUrl = "http://127.0.0.1:8470",
    out: Annotated[Path | None, typer.Option(help="Save each message under OUT/<id>/.")] = None,
    ack: Annotated[bool, typer.Option("--ack", help="Acknowledge what was pulled.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """Pull unacknowledged messages from your inbox (and save and acknowledge them)."""
    try:
        with _client(api_url, cert, key) as client:
            page = client.inbox(limit=limit)
            pending = [i for i in page["items"] if i["acknowledged_at"] is None]
            if not pending:
                typer.echo("inbox: nothing unacknowledged")
            for item in pending:
                message = client.read(item["message_id"])
                label = message.get("subject") or f"status {message.get('status_code')}"
                typer.echo(f"{item['message_id']}  from {item['sender']}  {item['kind']}: {label}")
                if out is not None:
                    _save(client, message, out / item["message_id"])
                if ack:
                    client.ack(item["message_id"])
                    typer.echo("  acknowledged")
    except ApiError as exc:
        fail(str(exc), EXIT_REJECTED)
    except OSError as exc:
        fail(f"cannot reach the bus API at {api_url}: {exc}", EXIT_UNAVAILABLE)


def _save(client: BusClient, message: dict[str, object], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "header.json").write_bytes(base64.b64decode(str(message["header"])))
    (folder / "signature.der").write_bytes(base64.b64decode(str(message["signature"])))
    attachments = message.get("attachments")
    for link in attachments if isinstance(attachments, list) else []:
        (folder / Path(link["name"]).name).write_bytes(client.blob(link["sha256"]))
    typer.echo(f"  saved to {folder}")


def ack(message_id: str, cert: Cert, key: Key, api_url: ApiUrl = "http://127.0.0.1:8470") -> None:
    """Acknowledge a message of your inbox."""
    try:
        with _client(api_url, cert, key) as client:
            result = client.ack(message_id)
    except ApiError as exc:
        fail(str(exc), EXIT_REJECTED)
    except OSError as exc:
        fail(f"cannot reach the bus API at {api_url}: {exc}", EXIT_UNAVAILABLE)
    typer.echo(f"acknowledged {message_id} at {result['acknowledged_at']}")


def trace(
    subject: Annotated[str, typer.Argument(help="A message id (or digest:<hex>).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the trace timeline of a message, read from the bus's database."""
    engine = bootstrap.database(_settings())
    with engine.connect() as conn:
        events = trace_db.timeline(conn, subject)
    if not events:
        fail(f"nothing was traced for {subject}", 1)
    broken = verify_chain(events)
    if as_json:
        print_json(
            {
                "subject": subject,
                "chain_intact": broken is None,
                "events": [
                    {
                        "seq": e.seq,
                        "event": e.event.event.value,
                        "at": e.event.at.isoformat(),
                        "sender": e.event.sender,
                        "recipient": e.event.recipient,
                        "reason": e.event.reason,
                        "detail": e.event.detail,
                        "hash": e.hash,
                    }
                    for e in events
                ],
            }
        )
        return
    typer.echo(f"trace of {subject}")
    for e in events:
        ev = e.event
        who = " ".join(
            part
            for part in (
                f"from {ev.sender}" if ev.sender and ev.event.value == "submitted" else "",
                f"to {ev.recipient}" if ev.recipient else "",
                f"by {ev.actor}" if ev.actor and ev.actor != ev.sender else "",
            )
            if part
        )
        reason = f"  [{ev.reason}]" if ev.reason else ""
        detail = f"  {ev.detail}" if ev.detail else ""
        when = ev.at.isoformat(timespec="milliseconds")
        typer.echo(f"  {e.seq:>3}  {when}  {ev.event.value:<13} {who}{reason}{detail}")
    typer.echo("  chain: intact" if broken is None else f"  chain: BROKEN at event {broken + 1}")
    if broken is not None:
        raise typer.Exit(EXIT_REJECTED)
