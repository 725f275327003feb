"""An RFC 3161 client over HTTP: ``HttpTimestamper`` obtains tokens for ``sign_detached``."""

from __future__ import annotations

import hashlib
import secrets

import httpx

from adapters.tsa.protocol import MEDIA_QUERY, MEDIA_REPLY, encode_request, parse_response
from exchange import oids
from exchange.errors import LienthongError
from exchange.timestamps import TokenError, parse_token


class TsaError(LienthongError):
    """The time-stamp authority could not be reached, refused, or answered something wrong."""


class HttpTimestamper:
    """A ``Timestamper``: POSTs a SHA-256 query (with a fresh 64-bit nonce and certReq) to ``url``.

    The reply is checked before its token is used: granted, a token whose TSTInfo carries the
    imprint and the nonce of this query (a replayed or misdirected reply is refused). The token's
    signature and TSA chain are for the verifier to judge; this client does not trust it more.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        policy: bytes | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.policy = policy
        self._client = client

    def timestamp(self, signature_value: bytes) -> bytes:
        digest = hashlib.sha256(signature_value).digest()
        nonce = secrets.randbits(64)
        query = encode_request(digest, nonce=nonce, cert_req=True, policy=self.policy)
        try:
            if self._client is not None:
                reply = self._post(self._client, query)
            else:
                with httpx.Client(timeout=self.timeout) as client:
                    reply = self._post(client, query)
        except httpx.HTTPError as exc:
            raise TsaError(f"the TSA at {self.url} is unreachable: {exc}") from None
        media = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != MEDIA_REPLY:
            raise TsaError(
                f"the TSA at {self.url} answered HTTP {reply.status_code} with "
                f"{media or 'no media type'}, not {MEDIA_REPLY}"
            )
        try:
            response = parse_response(reply.content)
        except TokenError as exc:
            raise TsaError(f"the TSA at {self.url} answered an unreadable reply: {exc}") from None
        if not response.granted or response.token is None:
            text = "; ".join(response.texts) or "no reason given"
            bits = ",".join(str(b) for b in sorted(response.fail_info)) or "-"
            raise TsaError(
                f"the TSA at {self.url} refused (status {response.status}, failInfo bits "
                f"{bits}): {text}"
            )
        try:
            info = parse_token(response.token).info
        except TokenError as exc:
            raise TsaError(f"the TSA at {self.url} sent a malformed token: {exc}") from None
        if info.hash_algorithm != oids.SHA256 or info.hashed_message != digest:
            raise TsaError(f"the token from {self.url} is over other data than the query")
        if info.nonce != nonce:
            raise TsaError(f"the token from {self.url} does not echo the query's nonce")
        return response.token

    def _post(self, client: httpx.Client, query: bytes) -> httpx.Response:
        return client.post(
            self.url, content=query, headers={"content-type": MEDIA_QUERY, "accept": MEDIA_REPLY}
        )
