"""Entry point of the ``lienthong`` command: sub-commands and error translation."""

from __future__ import annotations

import typer

from adapters.cli import bus, envelopes, pki
from adapters.cli.output import EXIT_UNUSABLE
from adapters.tsa import cli as tsa
from exchange.errors import LienthongError

app = typer.Typer(
    name="lienthong",
    help="Inter-agency signed message exchange bus.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(pki.app, name="pki")
app.add_typer(envelopes.header_app, name="header")
app.command("sign")(envelopes.sign)
app.command("verify")(envelopes.verify)
app.add_typer(bus.db_app, name="db")
app.add_typer(bus.agency_app, name="agency")
app.add_typer(bus.crl_app, name="crl")
app.add_typer(tsa.app, name="tsa")
for command in (bus.router, bus.api, bus.run, bus.send, bus.pull, bus.ack, bus.trace):
    app.command()(command)


def main() -> None:
    try:
        app()
    except LienthongError as exc:
        typer.echo(f"lienthong: {exc}", err=True)
        raise SystemExit(EXIT_UNUSABLE) from None


if __name__ == "__main__":
    main()
