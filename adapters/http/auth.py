"""Who is calling: agency systems and administrators, authenticated by request signatures.

See ``adapters.httpsig`` for the scheme. Identity comes only from the certificate the
``keyid`` names: a certificate pinned to an agency (that agency, if it is active), or one of the
administrator certificates. The certificate must still chain to the trust anchors and be
unrevoked by current CRLs: a revoked or expired credential stops working at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509

from adapters import httpsig
from adapters.db import inbox as db
from adapters.db.engine import reading
from adapters.db.registry import certificate_by_fingerprint
from adapters.db.tables import agencies
from adapters.http.problems import ApiProblem
from exchange.certificates import CertFacts, CertificateCache, facts_from_certificate
from exchange.errors import Rejected
from exchange.ports import Clock, Registry
from exchange.trust import TrustStore


@dataclass(frozen=True, slots=True)
class Caller:
    agency: str | None  # None for an administrator
    admin: bool
    key_id: str


def _unauthenticated(code: str, detail: str) -> ApiProblem:
    return ApiProblem(
        401,
        code,
        detail,
        headers={"Accept-Signature": 'sig1=("@method" "@path" "@query" "content-digest")'},
    )


class Authenticator:
    def __init__(
        self,
        engine: sa.Engine,
        registry: Registry,
        trust: TrustStore,
        clock: Clock,
        *,
        intermediates: Sequence[x509.Certificate] = (),
        admins: Sequence[x509.Certificate] = (),
        skew_s: int = 300,
        refresh_crls: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.trust = trust
        # Keeps the trust store's CRLs current (CrlSync.maybe_refresh); the lock keeps a CRL
        # being added from racing a judgement in another request's thread.
        self.refresh_crls = refresh_crls
        self._trust_lock = threading.Lock()
        self.clock = clock
        self.skew = skew_s
        self.certificates = CertificateCache()
        self.intermediates = [facts_from_certificate(c) for c in intermediates]
        self.admins: dict[str, CertFacts] = {
            f.fingerprint: f for f in (facts_from_certificate(c) for c in admins)
        }
        self._last_cleanup = 0.0

    def authenticate(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body_sha256: bytes | None,
    ) -> tuple[Caller, bytes]:
        """Check a request's signature; returns the caller and the body digest it states.

        ``body_sha256`` is the digest of a body already read; None for a streamed body, whose
        caller must compare the returned digest with what arrives.
        """
        missing = [
            h for h in ("signature-input", "signature", "content-digest") if h not in headers
        ]
        if missing:
            raise _unauthenticated("unauthenticated", f"missing {', '.join(missing)} header(s)")
        try:
            params = httpsig.parse_input(headers["signature-input"])
            signature = httpsig.parse_signature(headers["signature"])
            stated = httpsig.digest_value(headers["content-digest"])
        except httpsig.SignatureProblem as exc:
            raise _unauthenticated("bad_signature_headers", str(exc)) from None
        now = self.clock.now()
        instant = int(now.timestamp())
        if params.created > instant + self.skew:
            raise _unauthenticated("signature_from_future", "created is ahead of the bus clock")
        if params.expires < instant or instant - params.created > self.skew:
            raise _unauthenticated("signature_expired", "the request signature has expired")
        if (
            params.expires - params.created > httpsig.MAX_LIFETIME
            or params.expires < params.created
        ):
            raise _unauthenticated(
                "signature_lifetime",
                f"expires must follow created by at most {httpsig.MAX_LIFETIME}s",
            )
        facts, agency, active = self._credential(params.keyid)
        base = httpsig.signature_base(
            method, path, query, headers["content-digest"].strip(), params.params
        )
        try:
            httpsig.verify(facts.cert.public_key(), params.alg, signature, base)
        except httpsig.SignatureProblem as exc:
            raise _unauthenticated("bad_request_signature", str(exc)) from None
        if body_sha256 is not None and body_sha256 != stated:
            raise _unauthenticated("content_digest_mismatch", "Content-Digest is not the body's")
        expires_at = dt.datetime.fromtimestamp(params.expires, dt.UTC) + dt.timedelta(
            seconds=self.skew
        )
        if not db.use_nonce(self.engine, params.keyid, params.nonce, expires_at):
            raise _unauthenticated("replayed_request", "this request signature was used before")
        self._cleanup(now)
        try:
            with self._trust_lock:
                if self.refresh_crls is not None:
                    self.refresh_crls()
                self.trust.judge(facts, self.intermediates, at=now, now=now)
        except Rejected as rejected:
            raise _unauthenticated(rejected.reason.value, rejected.detail) from None
        if agency is not None and not active:
            raise ApiProblem(403, "agency_disabled", f"agency {agency} is not active")
        return Caller(agency, agency is None, params.keyid), stated

    def _credential(self, key_id: str) -> tuple[CertFacts, str | None, bool]:
        """The certificate ``key_id`` names, its agency (None: an administrator), and whether
        that agency is active, read now (not from the registry cache: disabling takes effect
        at the next request, as unpinning a certificate does)."""
        admin = self.admins.get(key_id)
        if admin is not None:
            return admin, None, True
        with reading(self.engine) as conn:
            registered = certificate_by_fingerprint(conn, key_id)
            if registered is None or not registered.active:
                raise _unauthenticated(
                    "unknown_key", "keyid names no active registered certificate"
                )
            active = conn.execute(
                sa.select(agencies.c.active).where(agencies.c.code == registered.agency_code)
            ).scalar()
        return facts_from_certificate(registered.certificate), registered.agency_code, bool(active)

    def _cleanup(self, now: dt.datetime) -> None:
        if time.monotonic() - self._last_cleanup > 60:
            self._last_cleanup = time.monotonic()
            db.forget_expired_nonces(self.engine, now)
