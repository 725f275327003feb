"""A client of the bus's HTTP API for agency systems (and the ``lienthong`` command).

Every request is signed (``adapters.httpsig``) with the key of a certificate registered to the
agency. Submissions are retried with backoff (jittered, at least the ``Retry-After`` the bus asks
for, at most 5 s apart) while the bus answers 502/503/504 or cannot be reached or does not
answer: the router absorbs the duplicates a retry may create. Each attempt is signed anew.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from adapters import httpsig
from adapters.files import load_certificates, load_private_key

# Answers after which a submission is sent again: the bus (or a proxy before it) could not
# queue it now. Anything else is final.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_DELAY_S = 5.0


class ApiError(Exception):
    """The bus answered with a problem (RFC 9457)."""

    def __init__(
        self, status: int, problem: Mapping[str, Any], retry_after: float | None = None
    ) -> None:
        self.status = status
        self.problem = dict(problem)
        self.code = str(problem.get("code", "error"))
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {problem.get('detail', '')}")


class BusClient:
    def __init__(
        self,
        base_url: str,
        certificate: x509.Certificate,
        key: PrivateKeyTypes,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key = key
        self.key_id = hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    @classmethod
    def from_files(cls, base_url: str, cert: Path, key: Path, **kwargs: Any) -> BusClient:
        return cls(base_url, load_certificates(cert)[0], load_private_key(key), **kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> httpx.Response:
        url = httpx.URL(path, params=dict(params) if params else None)
        headers = httpsig.sign_request(
            self.key,
            self.key_id,
            method,
            url.path,
            url.query.decode(),
            body,
            now=int(time.time()),
        )
        if content_type:
            headers["Content-Type"] = content_type
        response = self.http.request(method, url, content=body, headers=headers)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": "http_error", "detail": response.text[:200]}
            raise ApiError(response.status_code, problem, _retry_after(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # sending
    def submit(
        self,
        header: bytes,
        signature: bytes,
        attachments: Mapping[str, bytes] | None = None,
        *,
        retries: int = 8,
    ) -> dict[str, Any]:
        body = json.dumps(
            {
                "header": base64.b64encode(header).decode(),
                "signature": base64.b64encode(signature).decode(),
                "attachments": [
                    {"name": name, "content": base64.b64encode(content).decode()}
                    for name, content in (attachments or {}).items()
                ],
            }
        ).encode()
        delay = 0.2
        for attempt in range(retries + 1):
            wait = delay * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
            try:
                result: dict[str, Any] = self._json(
                    "POST", "/v1/messages", body=body, content_type="application/json"
                )
                return result
            except ApiError as exc:
                if exc.status not in RETRY_STATUSES or attempt == retries:
                    raise
                if exc.retry_after is not None:
                    wait = min(max(wait, exc.retry_after), MAX_DELAY_S)
            except httpx.TransportError:
                # Connection refused or reset, or no answer: the envelope may have been queued
                # anyway; sending it again is safe (the router absorbs the copy).
                if attempt == retries:
                    raise
            time.sleep(wait)
            delay = min(delay * 2, MAX_DELAY_S)
        raise AssertionError("unreachable")

    def upload(self, content: bytes) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", "/v1/blobs", body=content, content_type="application/octet-stream"
        )
        return result

    def message_state(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/messages/{message_id}")
        return result

    # receiving
    def inbox(self, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = self._json("GET", "/v1/inbox", params=params)
        return result

    def read(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/inbox/{message_id}")
        return result

    def ack(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/inbox/{message_id}/ack")
        return result

    def blob(self, sha256: str) -> bytes:
        return self.request("GET", f"/v1/blobs/{sha256}").content

    # directory and administration
    def agencies(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/agencies")
        return result

    def trace(self, subject: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/trace/{subject}")
        return result

    def search_trace(self, **params: str | int) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/v1/trace", params=params)
        return result


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
