"""What every case of the security suite does around its attack.

An attack is made through one of the bus's doors (HTTP, or AMQP straight to the submit exchange,
as an agency's own client would); then the case checks, whatever the door:

- the verdict: the exact reason code (router) or HTTP status and problem code (API);
- what was written: counted in the bus's database before and after. A rejected submission leaves
  its trace events, its rejection record (what GET /v1/messages/{id} shows the sender) and, when
  the header names a registered and active sender, exactly one bus-signed rejection notice in
  that sender's inbox (issue 3); never a message, an inbox entry, an attachment or a blob of its
  own. What the API refuses at the door leaves at most its two trace events;
- that the bus still works: a good envelope sent afterwards is delivered, read by its recipient,
  and both processes are still running.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import sqlalchemy as sa
from cryptography import x509

from adapters.amqp.topology import Topology, declare
from adapters.client import ApiError, BusClient
from adapters.db.tables import (
    blob_uploads,
    blobs,
    dead_letters,
    inbox,
    message_attachments,
    messages,
    rejections,
    trace_events,
)
from adapters.trustsync import store_crl
from exchange.envelope import envelope_digest
from exchange.routing import loose_identity
from exchange.submission import CONTENT_TYPE, Submission
from tests.e2e.support import (
    BUS_CODE,
    Parties,
    call,
    eventually,
    message_id_of,
    problem,
    submit,
    wait_for_state,
)
from tests.forge import KeyCachingPki
from tests.helpers import G22, H37, header_bytes
from tests.services import AMQP_URL, BusProcesses

IDLE_TIMEOUT_S = 1  # LIENTHONG_BLOB_IDLE_TIMEOUT_S of the hostile bus
CRL_POLL_S = 0.5  # LIENTHONG_CRL_POLL_S of every test bus (tests/services.py)

TABLES = {
    "messages": messages,
    "inbox": inbox,
    "message_attachments": message_attachments,
    "blobs": blobs,
    "blob_uploads": blob_uploads,
    "rejections": rejections,
    "dead_letters": dead_letters,
    "trace_events": trace_events,
}
# What no rejected submission may add to.
NEVER = ("message_attachments", "blobs", "blob_uploads")


@dataclass(frozen=True)
class Counts:
    rows: Mapping[str, int]

    def __getitem__(self, table: str) -> int:
        return self.rows[table]


class Hostile:
    """The hostile bus, its PKI, a client per demo agency and an administrator."""

    def __init__(self, bus: BusProcesses, pki: KeyCachingPki) -> None:
        self.bus = bus
        self.pki = pki
        self.parties = Parties(bus, pki)
        self.admin = self.parties.admin
        self.engine = sa.create_engine(bus.database_url, poolclass=sa.NullPool)

    def __getitem__(self, code: str) -> BusClient:
        return self.parties[code]

    def close(self) -> None:
        self.parties.close()
        self.engine.dispose()

    # --- the database, read behind the bus's back ------------------------------------------

    def counts(self) -> Counts:
        with self.engine.connect() as conn:
            rows = {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in TABLES.items()
            }
        return Counts(rows)

    def messages_about(self, message_id: str) -> list[dict[str, Any]]:
        """Rows of ``messages`` with this id or answering it (notices, statuses)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(messages.c.message_id, messages.c.sender, messages.c.kind).where(
                    sa.or_(
                        messages.c.message_id == message_id,
                        messages.c.for_message_id == message_id,
                    )
                )
            )
            return [dict(r._mapping) for r in found]

    def inbox_of(self, message_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(inbox.c.recipient).where(inbox.c.message_id == message_id)
                ).scalars()
            )

    def load_crl(self, crl: x509.CertificateRevocationList) -> None:
        """What ``lienthong crl load`` does (every API and router process reads it within
        LIENTHONG_CRL_POLL_S), without starting a process; then wait out that poll."""
        with self.engine.begin() as conn:
            assert store_crl(conn, crl, dt.datetime.now(dt.UTC))
        time.sleep(CRL_POLL_S + 0.1)

    # --- doors -----------------------------------------------------------------------------

    def publish(self, body: bytes, *, transport_id: str | None = None) -> None:
        """Publish a body to the bus's submit exchange as an agency's own AMQP client would:
        persistent, mandatory, confirmed; the message id property is whatever it chooses."""

        async def send() -> None:
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                # Declared as the bus declares it (idempotent), as any client may.
                exchange = (await declare(channel, Topology(self.bus.prefix))).submit
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type=CONTENT_TYPE,
                        message_id=transport_id,
                    ),
                    routing_key="envelope",
                    mandatory=True,
                )

        asyncio.run(send())

    def publish_envelope(
        self,
        header: bytes,
        signature: bytes,
        attachments: Mapping[str, bytes] | None = None,
        *,
        transport_id: str | None = None,
    ) -> None:
        body = Submission(header, signature, dict(attachments or {})).encode()
        self.publish(body, transport_id=transport_id)

    # --- verdicts --------------------------------------------------------------------------

    def timeline(self, subject: str, event: str, timeout: float = 20) -> dict[str, Any]:
        """The trace of ``subject`` once it holds ``event``."""

        def probe() -> dict[str, Any] | None:
            try:
                found = self.admin.trace(subject)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                return None
            return found if event in [e["event"] for e in found["events"]] else None

        return eventually(probe, timeout=timeout, what=f"{event} in the trace of {subject}")

    def router_rejects(
        self,
        attack: Callable[[], None],
        *,
        subject: str,
        reason: str,
        notice_to: str | None,
        stored_before: bool = False,
    ) -> dict[str, Any]:
        """Run ``attack`` (a submission the API queues, or an AMQP publish) and check that the
        router rejects it with ``reason``, traced under ``subject``, writing nothing but its
        record and (to ``notice_to``) one notice; then that the bus still delivers.
        ``stored_before``: a message with this id was stored before (a replay's original)."""
        before = self.counts()
        attack()
        timeline = self.timeline(subject, "rejected")
        rejected = [e for e in timeline["events"] if e["event"] == "rejected"]
        assert [e["reason"] for e in rejected][-1:] == [reason], timeline
        assert timeline["chain_intact"] is True
        after = self.counts()
        notices = 0 if notice_to is None else 1
        self.assert_written(before, after, messages=notices, rejections=1)
        if not subject.startswith("digest:"):
            rows = self.messages_about(subject)
            assert [r["message_id"] for r in rows].count(subject) == int(stored_before), rows
            bus_notices = [r for r in rows if r["sender"] == BUS_CODE]
            assert [r["kind"] for r in bus_notices] == ["status"] * notices, rows
            for row in bus_notices:
                assert self.inbox_of(row["message_id"]) == [notice_to], row
        self.assert_alive()
        return timeline

    def router_absorbs(self, attack: Callable[[], None], *, subject: str) -> dict[str, Any]:
        """An identical re-send: traced as a duplicate, nothing else written."""
        before = self.counts()
        seen = self._count_events(subject, "duplicate")
        attack()

        def probe() -> dict[str, Any] | None:
            timeline = self.admin.trace(subject)
            found = [e for e in timeline["events"] if e["event"] == "duplicate"]
            return timeline if len(found) > seen else None

        timeline = eventually(probe, what=f"a duplicate in the trace of {subject}")
        after = self.counts()
        self.assert_written(before, after, messages=0, rejections=0)
        self.assert_alive()
        return timeline

    def _count_events(self, subject: str, event: str) -> int:
        try:
            timeline = self.admin.trace(subject)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return 0
        return sum(1 for e in timeline["events"] if e["event"] == event)

    def dead_letters(
        self,
        attack: Callable[[], None],
        *,
        subject: str,
        reason: str,
        dead_subject: str | None = None,
    ) -> dict[str, Any]:
        """What is not a submission at all: traced with ``reason`` under the digest of its body
        (``subject``) and dead-lettered (the body kept for administrators; traced under
        ``dead_subject``, the message id its header names when it can be read, else the same
        digest), nothing else written."""
        before = self.counts()
        attack()
        timeline = self.timeline(subject, "rejected")
        assert ("rejected", reason) in [(e["event"], e["reason"]) for e in timeline["events"]]
        dead = self.timeline(dead_subject or subject, "dead_lettered")
        assert [e["reason"] for e in dead["events"] if e["event"] == "dead_lettered"] == [reason]
        after = self.counts()
        self.assert_written(before, after, messages=0, rejections=0, dead_letters=1)
        self.assert_alive()
        return timeline

    def api_refuses(
        self,
        attack: Callable[[], httpx.Response],
        status: int,
        code: str,
        *,
        traced: bool = False,
    ) -> dict[str, Any]:
        """Run a request the API must refuse with ``status`` and problem ``code``; nothing is
        written but, when ``traced``, its two trace events (submitted, rejected)."""
        before = self.counts()
        body = problem(attack(), status, code)
        after = self.counts()
        self.assert_written(before, after, messages=0, rejections=0, trace_events=2 * traced)
        self.assert_alive()
        return body

    def server_refuses(self, attack: Callable[[], httpx.Response], status: int) -> str:
        """A request the HTTP server itself refuses (malformed HTTP, before any route runs):
        ``status``, nothing written at all."""
        before = self.counts()
        response = attack()
        assert response.status_code == status, (response.status_code, response.text[:300])
        after = self.counts()
        self.assert_written(before, after, messages=0, rejections=0, trace_events=0)
        self.assert_alive()
        return response.text

    def assert_written(
        self,
        before: Counts,
        after: Counts,
        *,
        messages: int,
        rejections: int,
        dead_letters: int = 0,
        trace_events: int | None = None,
    ) -> None:
        grown = {t: after[t] - before[t] for t in TABLES}
        expected = {
            "messages": messages,
            "inbox": messages,
            "rejections": rejections,
            "dead_letters": dead_letters,
            **dict.fromkeys(NEVER, 0),
        }
        assert {t: grown[t] for t in expected} == expected, grown
        if trace_events is not None:
            assert grown["trace_events"] == trace_events, grown

    # --- the bus goes on -------------------------------------------------------------------

    def deliver(self, header: bytes, signature: bytes, sender: str = G22) -> str:
        response = submit(self[sender], header, signature)
        assert response.status_code == 202, response.text
        message_id = message_id_of(header)
        assert wait_for_state(self[sender], message_id)["state"] == "stored"
        return message_id

    def assert_alive(self) -> None:
        """Both processes run, and a good envelope sent now reaches its recipient."""
        assert self.bus.api is not None
        assert self.bus.api.poll() is None, self.bus.logs()
        assert all(r.poll() is None for r in self.bus.routers), self.bus.logs()
        header = header_bytes(recipients=[H37], subject="Kiểm tra trục sau một cuộc tấn công")
        message_id = self.deliver(header, self.pki.sign(header))
        response = call(self[H37], "GET", f"/v1/inbox/{message_id}")
        assert response.status_code == 200, response.text
        assert response.json()["header"] == base64.b64encode(header).decode()


# --- envelopes -------------------------------------------------------------------------------


def queued(hostile: Hostile, header: bytes, signature: bytes, sender: str = G22) -> None:
    """Submitted over HTTP by ``sender`` and taken in at the door (202); the verdict comes later."""
    response = submit(hostile[sender], header, signature)
    assert response.status_code == 202, response.text


def subject_of(header: bytes, signature: bytes) -> str:
    """Where the bus traces an envelope: its message id, or the digest of its bytes."""
    message_id, _ = loose_identity(header)
    return message_id or f"digest:{envelope_digest(header, signature)}"


def body_subject(body: bytes) -> str:
    return f"digest:{hashlib.sha256(body).hexdigest()}"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_id() -> str:
    return str(uuid.uuid4())


def compact(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
