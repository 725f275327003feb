"""The HTTP API of the bus (``/v1``), served by uvicorn on a loopback or internal address."""

# No "from __future__ import annotations": FastAPI resolves the Depends() in route signatures,
# and these refer to dependencies local to create_app().

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from adapters.amqp.publisher import BrokerUnavailable, Publisher
from adapters.amqp.topology import Topology, TopologyMismatch
from adapters.blobstore import FileBlobStore, TooLarge
from adapters.bootstrap import Bus
from adapters.db import inbox as db
from adapters.db import trace as trace_db
from adapters.db.engine import reading
from adapters.db.inbox import Cursor, retrying
from adapters.db.registry import list_agencies
from adapters.files import load_certificates
from adapters.http import problems
from adapters.http.auth import Authenticator, Caller
from adapters.http.headers import SecurityHeaders
from adapters.http.problems import ApiProblem, responses
from exchange.envelope import envelope_digest
from exchange.routing import loose_identity
from exchange.submission import Submission
from exchange.tracing import Event, TraceEvent, subject_for, verify_chain
from schemas.api import (
    Acknowledged,
    Agency,
    AttachmentLink,
    BlobStored,
    Health,
    InboxEntry,
    InboxMessage,
    InboxPage,
    MessageState,
    SubmitAccepted,
    SubmitRequest,
    Timeline,
    TraceEntry,
    TracePage,
)

log = logging.getLogger(__name__)


class Api:
    """The state a running API process holds: the bus, a publisher, an authenticator."""

    def __init__(self, bus: Bus, publisher: Publisher, auth: Authenticator) -> None:
        self.bus = bus
        self.publisher = publisher
        self.auth = auth
        self.settings = bus.settings

    @property
    def engine(self) -> sa.Engine:
        return self.bus.engine

    @property
    def blobs(self) -> FileBlobStore:
        return self.bus.blobs


def build_api(bus: Bus) -> Api:
    settings = bus.settings
    intermediates = (
        load_certificates(settings.intermediates, "intermediate certificates")
        if settings.intermediates
        else []
    )
    admins = (
        load_certificates(settings.admin_certificates, "administrator certificates")
        if settings.admin_certificates
        else []
    )
    auth = Authenticator(
        bus.engine,
        bus.registry,
        bus.trust,
        bus.clock,
        intermediates=intermediates,
        admins=admins,
        skew_s=settings.auth_skew_s,
        refresh_crls=bus.crl_sync.maybe_refresh,
    )
    publisher = Publisher(
        settings.amqp_url,
        Topology(settings.exchange_prefix, settings.delivery_limit),
        timeout=settings.publish_timeout_s,
        retries=settings.publish_retries,
        connection_name="lienthong-api",
    )
    return Api(bus, publisher, auth)


async def _read_limited(request: Request, limit: int, idle: float) -> bytes:
    """The whole body, at most ``limit`` bytes; a body that sends nothing for ``idle`` seconds
    (slowloris) is cut with 408, as an upload is."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, "request_too_large", f"the body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(idle, 0.5))
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise ApiProblem(
                408, "request_stalled", f"no data for {idle:g}s; request cut"
            ) from None
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, "request_too_large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ApiProblem(
            422,
            "invalid_request",
            f"key {next(k for k in keys if keys.count(k) > 1)!r} appears twice in an object",
        )
    return found


def _no_duplicate_keys(body: bytes) -> None:
    """A body that two JSON parsers could read differently (a repeated key: pydantic keeps
    the last) is refused, as repeated keys in a header are."""
    json.loads(body, object_pairs_hook=_refuse_duplicates)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiProblem(400, "bad_base64", f"{what} is not base64") from None


def create_app(api: Api) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await api.publisher.close()

    app = FastAPI(
        title="lienthong",
        version="1",
        summary="Inter-agency signed message exchange bus",
        description=(
            "Agency systems authenticate every request with an HTTP Message Signature "
            "(RFC 9421) made with the key of a certificate registered to their agency; "
            "errors are RFC 9457 problem details."
        ),
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(SecurityHeaders)
    app.include_router(api.bus.tsa_router())
    settings = api.settings

    async def authenticated(request: Request) -> tuple[Caller, bytes]:
        body = await _read_limited(
            request, settings.max_request_bytes, settings.blob_idle_timeout_s
        )
        caller, _ = await run_in_threadpool(
            api.auth.authenticate,
            request.method,
            request.url.path,
            request.url.query,
            request.headers,
            hashlib.sha256(body).digest(),
        )
        return caller, body

    async def agency(found: Annotated[tuple[Caller, bytes], Depends(authenticated)]) -> str:
        caller, _ = found
        if caller.agency is None:
            raise ApiProblem(403, "agency_only", "this route is for agency systems")
        return caller.agency

    async def admin(found: Annotated[tuple[Caller, bytes], Depends(authenticated)]) -> Caller:
        caller, _ = found
        if not caller.admin:
            raise ApiProblem(403, "admin_only", "this route needs an administrator credential")
        return caller

    # --- submitting ------------------------------------------------------------------------

    submit_schema = SubmitRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    # The models the body refers to (InlineAttachment) go where its references point.
    submit_components = submit_schema.pop("$defs", {})
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(submit_components)
        return app.openapi_schema or generate_openapi()

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post(
        "/v1/messages",
        status_code=202,
        response_model=SubmitAccepted,
        tags=["sending"],
        responses=responses(400, 401, 403, 408, 413, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": submit_schema}},
            }
        },
    )
    async def submit(
        found: Annotated[tuple[Caller, bytes], Depends(authenticated)],
    ) -> JSONResponse:
        """Queue a signed envelope for the router; 202 once the broker has confirmed it."""
        caller, body = found
        if caller.agency is None:
            raise ApiProblem(403, "agency_only", "only agency systems submit envelopes")
        try:
            request = SubmitRequest.model_validate_json(body)
            _no_duplicate_keys(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiProblem(422, "invalid_request", f"{where}: {first['msg']}") from None
        header = _b64(request.header, "header")
        signature = _b64(request.signature, "signature")
        limits = api.bus.verifier.policy.limits
        files: dict[str, bytes] = {}
        for item in request.attachments:
            if item.name in files:  # what the body's JSON Schema cannot say: names are unique
                raise ApiProblem(
                    400, "duplicate_attachment", f"attachment {item.name!r} appears twice"
                )
            files[item.name] = _b64(item.content, f"attachment {item.name!r}")
        refusal = None
        if len(header) > limits.max_header_bytes:
            refusal = ("header_too_large", f"header exceeds {limits.max_header_bytes} bytes")
        elif len(signature) > limits.max_signature_bytes:
            refusal = (
                "signature_too_large",
                f"signature exceeds {limits.max_signature_bytes} bytes",
            )
        elif sum(len(c) for c in files.values()) > settings.max_inline_attachment_bytes:
            refusal = (
                "attachments_too_large",
                f"inline attachments exceed {settings.max_inline_attachment_bytes} bytes; "
                "upload large files to /v1/blobs first",
            )
        if refusal is not None:
            await run_in_threadpool(_trace_refusal, api, caller.agency, header, signature, *refusal)
            raise ApiProblem(413, *refusal)
        message_id, sender = loose_identity(header)
        if sender is not None and sender != caller.agency:
            raise ApiProblem(
                403, "not_your_sender", f"you are {caller.agency}; this header is sent by {sender}"
            )
        try:
            await api.publisher.publish(
                Submission(header, signature, files).encode(), message_id=message_id
            )
        except TopologyMismatch as exc:
            log.error("cannot publish: %s", exc)
            raise ApiProblem(
                503,
                "broker_misconfigured",
                "the bus cannot queue envelopes now; nothing was queued",
            ) from None
        except BrokerUnavailable as exc:
            raise ApiProblem(
                503,
                "broker_unavailable",
                f"{exc}; nothing was queued",
                headers={"Retry-After": "5"},
            ) from None
        accepted = SubmitAccepted(
            message_id=message_id,
            location=f"/v1/messages/{message_id}" if message_id else None,
        )
        return JSONResponse(
            accepted.model_dump(),
            status_code=202,
            headers={"Location": accepted.location} if accepted.location else None,
        )

    @app.get(
        "/v1/messages/{message_id}",
        response_model=MessageState,
        tags=["sending"],
        responses=responses(401, 403, 404, 408, 413, 422),
    )
    def message_state(
        message_id: MessageIdPath, sender: Annotated[str, Depends(agency)]
    ) -> MessageState:
        """Per-recipient delivery state of a message the caller sent (or why it was rejected)."""
        with reading(api.engine) as conn:
            found = db.message_state(conn, sender, message_id)
        if found is None:
            raise ApiProblem(
                404, "not_found", f"you sent no message {message_id} that the bus knows"
            )
        return MessageState.model_validate(found)

    # --- blobs -----------------------------------------------------------------------------

    @app.post(
        "/v1/blobs",
        status_code=201,
        response_model=BlobStored,
        tags=["sending"],
        responses=responses(400, 401, 403, 408, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def upload(request: Request) -> JSONResponse:
        """Upload a large attachment (streamed; addressed by its SHA-256 = Content-Digest)."""
        caller, stated = await run_in_threadpool(
            api.auth.authenticate,
            request.method,
            request.url.path,
            request.url.query,
            request.headers,
            None,
        )
        if caller.agency is None:
            raise ApiProblem(403, "agency_only", "only agency systems upload blobs")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_blob_bytes:
            raise ApiProblem(
                413, "blob_too_large", f"blobs are limited to {settings.max_blob_bytes} bytes"
            )
        sha256, size = await _receive_blob(
            request, api.blobs, settings.blob_idle_timeout_s, settings.max_blob_bytes, stated
        )
        if declared is not None and declared.isdigit() and int(declared) != size:
            raise ApiProblem(
                400, "length_mismatch", "the body is not as long as Content-Length says"
            )
        now = api.bus.clock.now()
        await run_in_threadpool(
            retrying,
            api.engine,
            lambda conn: db.record_blob(conn, sha256, size, caller.agency or "", now),
        )
        return JSONResponse(
            BlobStored(sha256=sha256, size=size).model_dump(),
            status_code=201,
            headers={"Location": f"/v1/blobs/{sha256}"},
        )

    @app.get(
        "/v1/blobs/{sha256}",
        tags=["receiving"],
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The blob's bytes"},
            **responses(401, 403, 404, 408, 413, 422),
        },
        response_class=StreamingResponse,
    )
    def download(sha256: Sha256Path, caller: Annotated[str, Depends(agency)]) -> StreamingResponse:
        """A blob, to its uploader or a party of a message that references it."""
        with reading(api.engine) as conn:
            visible = db.blob_visible_to(conn, sha256, caller)
        if not visible or not api.blobs.exists(sha256):
            raise ApiProblem(404, "not_found", f"no blob {sha256} that you may read")
        handle = api.blobs.open(sha256)

        def stream() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(1 << 20):
                    yield chunk

        return StreamingResponse(
            stream(),
            media_type="application/octet-stream",
            headers={
                "Content-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:"
            },
        )

    # --- receiving -------------------------------------------------------------------------

    @app.get(
        "/v1/inbox",
        response_model=InboxPage,
        tags=["receiving"],
        responses=responses(400, 401, 403, 408, 413, 422),
    )
    def list_inbox(
        recipient: Annotated[str, Depends(agency)],
        cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=settings.page_size_max)] = min(
            50, settings.page_size_max
        ),
    ) -> InboxPage:
        """The caller's inbox: unacknowledged messages first, oldest first."""
        try:
            position = Cursor.decode(cursor) if cursor else None
        except ValueError as exc:
            raise ApiProblem(400, "bad_cursor", str(exc)) from None
        with reading(api.engine) as conn:
            rows, following = db.inbox_page(conn, recipient, position, limit)
        return InboxPage(
            items=[InboxEntry.model_validate(_entry(r)) for r in rows],
            next_cursor=following.encode() if following else None,
        )

    @app.get(
        "/v1/inbox/{message_id}",
        response_model=InboxMessage,
        tags=["receiving"],
        responses=responses(401, 403, 404, 408, 413, 422),
    )
    def read_message(
        message_id: MessageIdPath, recipient: Annotated[str, Depends(agency)]
    ) -> InboxMessage:
        """One message of the caller's inbox: header, signature, verified signers, attachments."""
        now = api.bus.clock.now()

        def work(conn: sa.Connection) -> dict[str, Any] | None:
            found = db.inbox_message(conn, recipient, message_id)
            if found is not None:
                db.mark_fetched(conn, recipient, message_id, found["sender"], now)
            return found

        found = retrying(api.engine, work)
        if found is None:
            raise ApiProblem(404, "not_found", f"no message {message_id} in your inbox")
        entry = _entry(found)
        return InboxMessage.model_validate(
            {
                **entry,
                "fetched_at": found["fetched_at"] or now,
                "header": base64.b64encode(found["header"]).decode(),
                "header_json": json.loads(found["header"]),
                "signature": base64.b64encode(found["signature"]).decode(),
                "signers": found["signers"],
                "trusted_time": found["trusted_time"],
                "time_source": found["time_source"],
                "attachments": [
                    AttachmentLink(**a, href=f"/v1/blobs/{a['sha256']}")
                    for a in found["attachments"]
                ],
            }
        )

    @app.post(
        "/v1/inbox/{message_id}/ack",
        response_model=Acknowledged,
        tags=["receiving"],
        responses=responses(401, 403, 404, 408, 413, 422),
    )
    def acknowledge(
        message_id: MessageIdPath, recipient: Annotated[str, Depends(agency)]
    ) -> Acknowledged:
        """Acknowledge a message of the caller's inbox (idempotent)."""
        now = api.bus.clock.now()
        when = retrying(api.engine, lambda conn: db.acknowledge(conn, recipient, message_id, now))
        if when is None:
            raise ApiProblem(404, "not_found", f"no message {message_id} in your inbox")
        return Acknowledged(message_id=message_id, acknowledged_at=when)

    # --- directory and administration ------------------------------------------------------

    @app.get(
        "/v1/agencies",
        response_model=list[Agency],
        tags=["directory"],
        responses=responses(401, 403, 408, 413),
    )
    def agencies(found: Annotated[tuple[Caller, bytes], Depends(authenticated)]) -> list[Agency]:
        """The directory of agencies and their seal fingerprints."""
        with reading(api.engine) as conn:
            rows = list_agencies(conn)
        return [Agency(code=c, name=n, active=a, seal_fingerprints=f) for c, n, a, f in rows]

    @app.get(
        "/v1/trace/{subject}",
        response_model=Timeline,
        tags=["administration"],
        responses=responses(401, 403, 404, 408, 413, 422),
    )
    def timeline(subject: SubjectPath, _admin: Annotated[Caller, Depends(admin)]) -> Timeline:
        """The whole trace of one message, and whether its hash chain is intact."""
        with reading(api.engine) as conn:
            events = trace_db.timeline(conn, subject)
        if not events:
            raise ApiProblem(404, "not_found", f"nothing was traced for {subject}")
        return Timeline(
            subject=subject,
            chain_intact=verify_chain(events) is None,
            events=[_trace_entry(e) for e in events],
        )

    @app.get(
        "/v1/trace",
        response_model=TracePage,
        tags=["administration"],
        responses=responses(400, 401, 403, 408, 413, 422),
    )
    def search_trace(
        _admin: Annotated[Caller, Depends(admin)],
        sender: Annotated[str | None, Query(max_length=35)] = None,
        recipient: Annotated[str | None, Query(max_length=35)] = None,
        status: Annotated[str | None, Query(max_length=32)] = None,
        since: Annotated[str | None, Query(max_length=40)] = None,
        until: Annotated[str | None, Query(max_length=40)] = None,
        cursor: Annotated[int, Query(ge=0, le=db.MAX_ROW_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=settings.trace_page_size_max)] = min(
            100, settings.trace_page_size_max
        ),
    ) -> TracePage:
        """Trace events by sender, recipient, event (status) and time."""
        with reading(api.engine) as conn:
            found = trace_db.search(
                conn,
                sender=sender,
                recipient=recipient,
                event=status,
                since=_time(since, "since"),
                until=_time(until, "until"),
                after_id=cursor,
                limit=limit,
            )
        return TracePage(
            items=[_trace_entry(e) for _, e in found],
            next_cursor=str(found[-1][0]) if len(found) == limit else None,
        )

    # --- health ----------------------------------------------------------------------------

    @app.exception_handler(sa.exc.OperationalError)
    @app.exception_handler(sa.exc.InterfaceError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable (not refusing a request): the caller should retry, as
        # for a broker outage, and BusClient.submit does on 503.
        log.warning("database unavailable: %s", exc)
        return problems.problem_response(
            503,
            "database_unavailable",
            "the bus's database is unavailable; try again",
            request.url.path,
            {"Retry-After": "5"},
        )

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok", checks={"process": "ok"})

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "A dependency is down"}},
    )
    async def readyz() -> JSONResponse:
        """Ready when both the database and the broker answer."""
        checks: dict[str, str] = {}
        # Each check answers within seconds: a dependency that does not answer is down.
        try:
            await asyncio.wait_for(run_in_threadpool(_ping, api.engine), timeout=READY_TIMEOUT_S)
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = f"unavailable: no answer within {READY_TIMEOUT_S:g}s"
        except sa.exc.DBAPIError as exc:
            checks["database"] = f"unavailable: {type(exc.orig).__name__}"
        try:
            await asyncio.wait_for(api.publisher.ping(), timeout=READY_TIMEOUT_S)
            checks["broker"] = "ok"
        except TimeoutError:
            checks["broker"] = f"unavailable: no answer within {READY_TIMEOUT_S:g}s"
        except (BrokerUnavailable, OSError) as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    # Any route that reads the database answers 503 database_unavailable while it is
    # unreachable (the handler above): say so in every route's documentation.
    for route in app.routes:
        if (
            isinstance(route, APIRoute)
            and route.path.startswith("/v1/")
            and "/tsa" not in route.path
        ):
            route.responses.setdefault(503, responses(503)[503])
    return app


def _trace_refusal(
    api: Api, agency: str, header: bytes, signature: bytes, code: str, detail: str
) -> None:
    """An envelope refused at the door is traced like one the router rejects (never queued).

    It is traced under its message id only when the header names the caller as sender: nobody
    appends to another agency's trace by quoting its message ids.
    """
    message_id, sender = loose_identity(header)
    subject = subject_for(
        message_id if sender == agency else None, envelope_digest(header, signature)
    )
    now = api.bus.clock.now()
    events = [
        TraceEvent(subject, Event.SUBMITTED, now, sender=agency, actor=agency, detail="over HTTP"),
        TraceEvent(subject, Event.REJECTED, now, sender=agency, reason=code, detail=detail),
    ]
    retrying(api.engine, lambda conn: trace_db.append(conn, events))


READY_TIMEOUT_S = 3.0


def _ping(engine: sa.Engine) -> None:
    with reading(engine) as conn:
        conn.execute(sa.text("SELECT 1"))


UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MessageIdPath = Annotated[str, Path(pattern=UUID_PATTERN)]
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
SubjectPath = Annotated[
    str,
    Path(
        pattern=r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|digest:[0-9a-f]{64})$"
    ),
]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in InboxEntry.model_fields}


def _trace_entry(stored: Any) -> TraceEntry:
    e = stored.event
    return TraceEntry(
        subject=e.subject,
        seq=stored.seq,
        event=e.event.value,
        at=e.at,
        sender=e.sender,
        recipient=e.recipient,
        actor=e.actor,
        reason=e.reason,
        detail=e.detail,
        hash=stored.hash,
    )


def _time(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiProblem(400, "bad_time", f"{name} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ApiProblem(400, "bad_time", f"{name} needs a UTC offset")
    try:
        # What the database compares: UTC. Year 1 at +14:00 has none (OverflowError).
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ApiProblem(400, "bad_time", f"{name} is outside the years 1-9999 in UTC") from None


async def _receive_blob(
    request: Request, blobs: FileBlobStore, idle: float, limit: int, stated: bytes
) -> tuple[str, int]:
    """Stream a body to the blob store, cutting uploads that stall (slowloris) or grow too big.

    Only a body whose SHA-256 is the signed Content-Digest (``stated``) is committed; anything
    else leaves nothing behind.
    """
    stream = request.stream().__aiter__()
    received = hashlib.sha256()
    with blobs.writer(limit) as writer:
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(idle, 0.5))
            except StopAsyncIteration:
                if received.digest() != stated:
                    raise ApiProblem(
                        401, "content_digest_mismatch", "Content-Digest is not the body's"
                    ) from None
                return writer.finish()
            except TimeoutError:
                raise ApiProblem(
                    408, "upload_stalled", f"no data for {idle:g}s; upload cut"
                ) from None
            received.update(chunk)
            try:
                writer.write(chunk)
            except TooLarge:
                raise ApiProblem(
                    413, "blob_too_large", f"blobs are limited to {limit} bytes"
                ) from None
