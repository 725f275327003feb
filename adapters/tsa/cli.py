"""``lienthong tsa serve``: run a time-stamp authority on its own (an agency or a province can)."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from adapters.cli.output import fail
from adapters.settings import Settings
from adapters.tsa.authority import DEFAULT_POLICY
from adapters.tsa.service import STATE_FILE, load_authority, standalone_app

app = typer.Typer(help="Run an RFC 3161 time-stamp authority.", no_args_is_help=True)


@app.command("serve")
def serve(
    cert: Annotated[
        Path,
        typer.Option(help="TSA certificate, PEM (critical timeStamping EKU); chain may follow."),
    ],
    key: Annotated[Path, typer.Option(help="Private key of the TSA certificate, PEM.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")],
    chain: Annotated[
        Path | None, typer.Option(help="Intermediates to embed in tokens (certReq), PEM.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(help=f"Where serial numbers persist ({STATE_FILE}); LIENTHONG_DATA_DIR."),
    ] = None,
    policy: Annotated[str, typer.Option(help="TSA policy OID stamped in tokens.")] = DEFAULT_POLICY,
    accuracy_ms: Annotated[
        int, typer.Option(min=1, max=60_000, help="Accuracy claimed for the host's clock.")
    ] = 1000,
) -> None:
    """Serve RFC 3161 over HTTP: POST /v1/tsa (application/timestamp-query) until Ctrl-C.

    genTime is the host's UTC clock: keep it NTP-disciplined within the claimed accuracy.
    """
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if data_dir is None:
        try:
            data_dir = Settings().data_dir
        except ValueError as exc:
            fail(f"invalid LIENTHONG_* settings: {exc}")
    authority = load_authority(
        cert,
        key,
        data_dir=data_dir,
        chain=chain,
        policy=policy,
        accuracy=dt.timedelta(milliseconds=accuracy_ms),
    )
    typer.echo(
        f"lienthong TSA '{authority.certificate.subject.rfc4514_string()}' (policy "
        f"{authority.policy_dotted}) on http://{host}:{port}/v1/tsa",
        err=True,
    )
    uvicorn.run(
        standalone_app(authority),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=5,
        limit_concurrency=1000,
    )
