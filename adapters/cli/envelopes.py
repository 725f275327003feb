"""``lienthong header new``, ``lienthong sign`` and ``lienthong verify``."""

from __future__ import annotations

import datetime as dt
import mimetypes
import sys
import uuid
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from cryptography import x509
from pydantic import ValidationError

from adapters.cli.output import EXIT_REJECTED, fail, print_json
from adapters.files import (
    FolderAttachments,
    JsonRegistry,
    load_certificates,
    load_crls,
    load_private_key,
    measure_file,
    read_bytes,
)
from adapters.tsa.client import HttpTimestamper
from exchange.errors import InputError
from exchange.policy import VerificationPolicy
from exchange.ports import FixedClock, SystemClock
from exchange.signing import SigningKey, sign_detached
from exchange.timestamps import TimestampVerifier, TsaRevocation
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verifier
from schemas.header import AttachmentRef, Header, Priority, StatusCode, SteeringType

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")

header_app = typer.Typer(help="Write envelope headers.", no_args_is_help=True)


def _emit(data: bytes, out: Path | None) -> None:
    if out is not None:
        out.write_bytes(data)
        return
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def _attachments(files: list[Path]) -> list[AttachmentRef]:
    refs = []
    for path in files:
        if not path.is_file():
            raise InputError(f"attachment {path} is not a file")
        measured = measure_file(path)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        refs.append(
            AttachmentRef(
                name=path.name, media_type=media_type, size=measured.size, sha256=measured.sha256
            )
        )
    return refs


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _build(**fields: object) -> bytes:
    try:
        header = Header.model_validate(fields, strict=False)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "header"
        fail(f"{where}: {first['msg']}")
    return header.to_json_bytes()


Recipients = Annotated[
    list[str], typer.Option("--recipient", help="Recipient agency code (repeat).")
]
Sender = Annotated[str, typer.Option(help="Sender agency code, e.g. 000.00.00.G22.")]
Out = Annotated[Path | None, typer.Option(help="Write the header here instead of stdout.")]


@header_app.command("new")
def header_new(
    sender: Sender,
    recipient: Recipients,
    subject: Annotated[str, typer.Option(help="Trích yếu: what the document is about.")],
    attachment: Annotated[
        list[Path] | None, typer.Option("--attachment", help="File to attach (repeat).")
    ] = None,
    number: Annotated[str, typer.Option(help="Số: the document's number.")] = "1",
    notation: Annotated[str, typer.Option(help="Ký hiệu, e.g. STC-BCTC.")] = "CV",
    doc_type: Annotated[str, typer.Option("--type", help="Loại văn bản.")] = "Công văn",
    place: Annotated[str, typer.Option(help="Place of promulgation.")] = "Hà Nội",
    date: Annotated[
        str | None, typer.Option(help="Date of promulgation, YYYY-MM-DD (today in Viet Nam).")
    ] = None,
    signer_name: Annotated[str | None, typer.Option(help="Full name of the signer.")] = None,
    signer_position: Annotated[str | None, typer.Option(help="Position of the signer.")] = None,
    competence: Annotated[
        str | None, typer.Option(help="Signing competence: TM., KT., ...")
    ] = None,
    priority: Annotated[Priority, typer.Option(help="Độ khẩn.")] = Priority.NORMAL,
    steering: Annotated[SteeringType, typer.Option(help="Steering type.")] = SteeringType.NORMAL,
    due_date: Annotated[str | None, typer.Option(help="Due date, YYYY-MM-DD.")] = None,
    message_id: Annotated[str | None, typer.Option(help="Message id (a new UUID).")] = None,
    created_at: Annotated[str | None, typer.Option(help="RFC 3339 UTC time (now).")] = None,
    out: Out = None,
) -> None:
    """Print a new document header (envelope v1) as UTF-8 JSON."""
    signer = None
    if signer_name or signer_position:
        if not (signer_name and signer_position):
            fail("--signer-name and --signer-position go together")
        signer = {"full_name": signer_name, "position": signer_position, "competence": competence}
    document = {
        "number": number,
        "notation": notation,
        "type": doc_type,
        "subject": subject,
        "promulgation_place": place,
        "promulgation_date": date or dt.datetime.now(VIETNAM).date().isoformat(),
        "signer": signer,
        "priority": priority,
        "steering_type": steering,
        "due_date": due_date,
    }
    _emit(
        _build(
            version=1,
            message_id=message_id or str(uuid.uuid4()),
            kind="document",
            sender=sender,
            recipients=recipient,
            created_at=created_at or _utc_text(_now()),
            document=document,
            attachments=_attachments(attachment or []),
        ),
        out,
    )


def _utc_text(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@header_app.command("status")
def header_status(
    sender: Sender,
    recipient: Recipients,
    for_message: Annotated[str, typer.Option("--for", help="Message id answered.")],
    code: Annotated[StatusCode, typer.Option(help="edXML status code (01-16).")],
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    out: Out = None,
) -> None:
    """Print a status header answering a document."""
    _emit(
        _build(
            version=1,
            message_id=str(uuid.uuid4()),
            kind="status",
            sender=sender,
            recipients=recipient,
            created_at=_utc_text(_now()),
            status={"for_message_id": for_message, "code": code, "description": description},
        ),
        out,
    )


def sign(
    header: Annotated[Path, typer.Option(help="Header file; its exact bytes are signed.")],
    cert: Annotated[Path, typer.Option(help="Organisation (seal) certificate, PEM.")],
    key: Annotated[Path, typer.Option(help="Private key of the seal, PEM.")],
    out: Annotated[Path, typer.Option(help="Where to write the DER signature.")],
    chain: Annotated[
        Path | None, typer.Option(help="Intermediate certificates to embed, PEM.")
    ] = None,
    signer_cert: Annotated[
        list[Path] | None, typer.Option(help="Personal signer certificate (repeat).")
    ] = None,
    signer_key: Annotated[
        list[Path] | None, typer.Option(help="Personal signer key, in the same order (repeat).")
    ] = None,
    tsa: Annotated[
        str | None,
        typer.Option(help="RFC 3161 TSA URL: embed a token over each signature value (CAdES-T)."),
    ] = None,
) -> None:
    """Write a detached CMS signature over the header: the seal plus any personal signers."""
    content = read_bytes(header, "header file")
    personal_certs, personal_keys = signer_cert or [], signer_key or []
    if len(personal_certs) != len(personal_keys):
        fail("give one --signer-key for each --signer-cert, in the same order")
    signers = [SigningKey(_one_certificate(cert), load_private_key(key))]
    signers += [
        SigningKey(_one_certificate(c), load_private_key(k))
        for c, k in zip(personal_certs, personal_keys, strict=True)
    ]
    for signer in signers:
        if signer.certificate.public_key() != signer.private_key.public_key():
            subject = signer.certificate.subject.rfc4514_string()
            fail(f"a key does not belong to certificate '{subject}'")
    intermediates = load_certificates(chain, "chain file") if chain else []
    timestamper = HttpTimestamper(tsa) if tsa else None
    out.write_bytes(sign_detached(content, signers, chain=intermediates, timestamper=timestamper))
    stamped = f", time-stamped by {tsa}" if tsa else ""
    typer.echo(
        f"signed {header} ({len(content)} bytes) by {len(signers)} signer(s){stamped} -> {out}",
        err=True,
    )


def _one_certificate(path: Path) -> x509.Certificate:
    certs = load_certificates(path)
    if len(certs) != 1:
        fail(f"{path} must hold exactly one certificate, it holds {len(certs)}")
    return certs[0]


def _parse_at(value: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--at {value!r} is not an RFC 3339 time")
    if at.tzinfo is None:
        fail("--at needs a UTC offset (e.g. 2026-11-27T08:00:00Z)")
    return at.astimezone(dt.UTC)


def _print_accepted(result: Accepted) -> None:
    h = result.header
    typer.echo(f"ACCEPTED  message {h.message_id} ({h.kind})")
    typer.echo(f"  sender      {h.sender}")
    typer.echo(f"  recipients  {', '.join(h.recipients)}")
    for s in (result.seal, *result.personal):
        label = "seal" if s is result.seal else "signer"
        title = f", {s.title}" if s.title else ""
        typer.echo(f"  {label:<10}  {s.name}{title}  [{s.agency_code}]  sha256:{s.fingerprint}")
        stamp = f"  time-stamped {s.timestamp.isoformat()} by {s.tsa}" if s.timestamp else ""
        typer.echo(f"              signed {s.signing_time.isoformat()}{stamp}")
    typer.echo(f"  trusted time {result.trusted_time.isoformat()} ({result.time_source})")
    if not result.registry_checked:
        typer.echo(
            "  warning: no --registry given: the sender's registration and the recipients "
            "were not checked",
            err=True,
        )


def verify(
    header: Annotated[Path, typer.Option(help="Header file, as signed.")],
    signature: Annotated[Path, typer.Option(help="Detached DER CMS signature.")],
    trust_anchors: Annotated[Path, typer.Option(help="Trust anchor certificates, PEM.")],
    crl: Annotated[list[Path] | None, typer.Option(help="CRL file, PEM or DER (repeat).")] = None,
    attachments: Annotated[
        Path | None, typer.Option(help="Folder holding the attachments by name.")
    ] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Registry JSON (agencies and seal fingerprints).")
    ] = None,
    at: Annotated[str | None, typer.Option(help="Judge at this RFC 3339 time, not now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    tsa_trust_anchors: Annotated[
        Path | None,
        typer.Option(help="Trust anchors of time-stamp authorities, PEM (the trust anchors)."),
    ] = None,
    tsa_cert: Annotated[
        list[Path] | None,
        typer.Option(help="TSA certificates for tokens that do not embed them, PEM (repeat)."),
    ] = None,
    tsa_revocation: Annotated[
        TsaRevocation,
        typer.Option(
            help="require: a current CRL (--crl) for every link of the TSA's chain; "
            "if_available: only when some CRL of that chain is given."
        ),
    ] = TsaRevocation.REQUIRE,
    require_timestamp: Annotated[
        bool,
        typer.Option(
            "--require-timestamp/--timestamp-optional",
            help="Reject a signer without an RFC 3161 token (timestamp_required).",
        ),
    ] = False,
    timestamp_skew: Annotated[
        int, typer.Option(min=0, help="Seconds genTime may lie from signingTime.")
    ] = 600,
) -> None:
    """Verify a signed header. Exit 0 accepted, 1 rejected (reason code), 2 unusable input."""
    header_bytes = read_bytes(header, "header file")
    signature_bytes = read_bytes(signature, "signature file")
    _check_usable(header_bytes, signature_bytes, header, signature)
    anchors = load_certificates(trust_anchors, "trust anchor file")
    store = TrustStore(anchors, [c for path in crl or [] for c in load_crls(path)])
    clock = FixedClock(_parse_at(at)) if at else SystemClock()
    timestamps = TimestampVerifier(
        load_certificates(tsa_trust_anchors, "TSA trust anchor file")
        if tsa_trust_anchors
        else store,
        store,
        revocation=tsa_revocation,
        certificates=[c for path in tsa_cert or [] for c in load_certificates(path)],
    )
    policy = VerificationPolicy(
        require_timestamp=require_timestamp,
        timestamp_skew=dt.timedelta(seconds=timestamp_skew),
    )
    verifier = Verifier(
        store,
        JsonRegistry.load(registry) if registry else None,
        clock,
        policy,
        timestamps=timestamps,
    )
    source = FolderAttachments(attachments) if attachments else None
    verdict = verifier.verify(header_bytes, signature_bytes, source)
    if isinstance(verdict, Accepted):
        if as_json:
            print_json(
                {
                    "verdict": "accepted",
                    "message_id": str(verdict.header.message_id),
                    "sender": verdict.sender,
                    "recipients": verdict.header.recipients,
                    "seal": verdict.seal.as_dict(),
                    "personal_signers": [s.as_dict() for s in verdict.personal],
                    "trusted_time": verdict.trusted_time.isoformat(),
                    "time_source": verdict.time_source,
                    "registry_checked": verdict.registry_checked,
                }
            )
        else:
            _print_accepted(verdict)
        return
    if as_json:
        print_json(
            {"verdict": "rejected", "reason": verdict.reason.value, "detail": verdict.detail}
        )
    else:
        typer.echo(f"REJECTED  {verdict.reason.value}: {verdict.detail}")
    raise typer.Exit(EXIT_REJECTED)


def _check_usable(header: bytes, signature: bytes, header_path: Path, signature_path: Path) -> None:
    """Input that is not even an attempt at an envelope is unusable (exit 2), not rejected.

    A signature file must at least open a DER SEQUENCE, and a header file a JSON object; a
    truncated or malformed CMS, or a header with bad JSON inside its braces, is for the verifier
    to reject with a reason code.
    """
    if not signature:
        fail(f"{signature_path} is empty")
    if signature.lstrip().startswith(b"-----BEGIN"):
        fail(f"{signature_path} is PEM; lienthong signatures are DER (openssl ... -outform DER)")
    if signature[0] != 0x30:
        fail(f"{signature_path} is not a DER signature")
    if not header.lstrip().startswith(b"{"):
        fail(f"{header_path} is not a JSON header")
