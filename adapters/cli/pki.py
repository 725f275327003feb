"""``lienthong pki``: the development PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from adapters.pki.folder import DemoAgency, DevPki
from adapters.pki.profiles import KeyAlgorithm
from schemas.agency import is_agency_code

app = typer.Typer(
    help="A development PKI shaped like a national government CA.", no_args_is_help=True
)

DirArg = Annotated[Path, typer.Argument(help="Folder of the development PKI.")]


@app.command()
def init(
    folder: DirArg,
    algorithm: Annotated[
        KeyAlgorithm, typer.Option(help="Key algorithm of every certificate.")
    ] = KeyAlgorithm.RSA2048,
    force: Annotated[bool, typer.Option(help="Replace a PKI already in the folder.")] = False,
) -> None:
    """Create root and issuing CAs, demo agencies (seal + leader), a TSA, the bus, and CRLs."""
    pki = DevPki(folder)
    pki.init(algorithm, force=force)
    typer.echo(f"development PKI ({algorithm}) written to {folder}")
    for agency in pki.agencies():
        typer.echo(f"  {agency.code}  {agency.name}  (leader: {agency.leader}, {agency.title})")
    typer.echo(f"trust anchors: {pki.trust_anchors}   CRLs: {' '.join(map(str, pki.crls))}")


@app.command()
def issue(
    folder: DirArg,
    code: Annotated[str, typer.Option(help="Agency code, e.g. 000.00.11.H53.")],
    name: Annotated[str, typer.Option(help="Agency name.")],
    leader: Annotated[str, typer.Option(help="Full name of the leader who signs.")],
    title: Annotated[str, typer.Option(help="The leader's position.")],
    province: Annotated[str | None, typer.Option(help="Province, for the subject.")] = None,
) -> None:
    """Issue a seal and a leader's certificate for one more agency."""
    if not is_agency_code(code):
        raise typer.BadParameter(f"{code!r} is not a canonical agency code", param_hint="--code")
    DevPki(folder).issue_agency(DemoAgency(code, name, leader, title, province))
    typer.echo(f"issued seal and leader certificates for {code} in {folder / 'agencies' / code}")


_REASONS = {r.value: r for r in x509.ReasonFlags}


@app.command()
def revoke(
    folder: DirArg,
    cert: Annotated[Path, typer.Argument(help="PEM certificate to revoke.")],
    reason: Annotated[str, typer.Option(help="CRL reason.")] = "keyCompromise",
) -> None:
    """Revoke a certificate and reissue its CA's CRL."""
    if reason not in _REASONS:
        raise typer.BadParameter(f"one of {', '.join(_REASONS)}", param_hint="--reason")
    number = DevPki(folder).revoke(cert, reason=_REASONS[reason])
    typer.echo(f"revoked {cert}; CRL number {number} issued")


@app.command()
def crl(folder: DirArg) -> None:
    """Issue fresh CRLs for both CAs."""
    numbers = DevPki(folder).refresh_crls()
    typer.echo(", ".join(f"{name}: CRL {n}" for name, n in numbers.items()))
