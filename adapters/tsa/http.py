"""RFC 3161 over HTTP (RFC 3161 3.4): ``POST /v1/tsa`` with ``application/timestamp-query``.

Every POST gets an ``application/timestamp-reply`` body, a DER TimeStampResp, never a 500: a
query the TSA cannot read or will not serve is a PKIStatus rejection with its failInfo (HTTP 200,
as TSAs answer; 413 and 415 for an oversized body or another media type, with the same kind of
body; 503 when this process runs no TSA). ``GET /v1/tsa/certificates`` gives the TSA certificate
and the chain it embeds, as PEM, for clients that verify tokens (``openssl ts -verify``).

Time-stamping is unauthenticated, like any public TSA: a token reveals nothing but a hash.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapters.tsa.authority import TimeStampAuthority
from adapters.tsa.protocol import MAX_REQUEST_BYTES, MEDIA_QUERY, MEDIA_REPLY, FailInfo, rejection

log = logging.getLogger(__name__)

PATH = "/v1/tsa"
_BINARY = {"type": "string", "format": "binary"}
_TEXT = {"type": "string"}


def _reply(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=MEDIA_REPLY)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_router(
    authority: TimeStampAuthority | None, *, max_request_bytes: int = MAX_REQUEST_BYTES
) -> APIRouter:
    """The TSA's routes; with ``authority`` None they answer 503 (this process runs no TSA)."""
    router = APIRouter(tags=["time-stamping"])

    @router.post(
        PATH,
        response_class=Response,
        responses={
            status: {"content": {MEDIA_REPLY: {"schema": _BINARY}}, "description": description}
            for status, description in (
                (200, "A DER TimeStampResp: granted with a token, or a rejection."),
                (413, "A rejection (badRequest): the query is too large."),
                (415, "A rejection (badRequest): the body is not application/timestamp-query."),
                (503, "A rejection (systemFailure): this process runs no TSA."),
            )
        },
        openapi_extra={
            "requestBody": {"required": True, "content": {MEDIA_QUERY: {"schema": _BINARY}}}
        },
    )
    async def timestamp(request: Request) -> Response:
        """Time-stamp a hash (RFC 3161): a DER TimeStampReq in, a DER TimeStampResp out."""
        try:
            if authority is None:
                return _reply(
                    rejection(FailInfo.SYSTEM_FAILURE, "this process runs no time-stamp authority"),
                    503,
                )
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != MEDIA_QUERY:
                return _reply(
                    rejection(
                        FailInfo.BAD_REQUEST, f"the query's media type must be {MEDIA_QUERY}"
                    ),
                    415,
                )
            body = await _read_limited(request, max_request_bytes)
            if body is None:
                return _reply(
                    rejection(
                        FailInfo.BAD_REQUEST, f"a query is at most {max_request_bytes} bytes"
                    ),
                    413,
                )
            return _reply(await run_in_threadpool(authority.respond, body))
        except Exception:
            log.exception("the TSA route failed")
            return _reply(rejection(FailInfo.SYSTEM_FAILURE, "the time-stamp authority failed"))

    @router.get(
        PATH + "/certificates",
        response_class=Response,
        responses={
            200: {
                "content": {"application/pem-certificate-chain": {"schema": _TEXT}},
                "description": "The TSA certificate and its chain (PEM).",
            },
            404: {"description": "This process runs no time-stamp authority."},
        },
    )
    async def certificates() -> Response:
        """The TSA certificate, then the chain its tokens embed (PEM)."""
        if authority is None:
            return Response(b"", status_code=404)
        pem = b"".join(
            c.public_bytes(Encoding.PEM) for c in (authority.certificate, *authority.chain)
        )
        return Response(pem, media_type="application/pem-certificate-chain")

    return router
