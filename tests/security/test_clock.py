"""Clock-skew games: a signingTime far from the TSA's genTime, tokens from the future,
signingTime ahead of the bus, created_at far in the past or the future, an expired seal that
backdates its signature, and request signatures whose created lies (see also test_replay)."""

from __future__ import annotations

import datetime as dt
import time

import httpx

from exchange.ports import FixedClock
from exchange.signing import sign_detached
from tests import timestamping
from tests.e2e.support import message_id_of, signed_headers
from tests.forge import window
from tests.helpers import G22, H37, header_bytes
from tests.security import material as m
from tests.security.hostile import Hostile, now, queued


def stamped(
    hostile: Hostile, header: bytes, *, signing_time: dt.datetime, gen_time: dt.datetime
) -> bytes:
    """Signed at ``signing_time`` (as claimed) with a token of the PKI's TSA at ``gen_time``."""
    tsa = timestamping.authority(hostile.pki, clock=FixedClock(gen_time))
    return sign_detached(
        header,
        [hostile.pki.seal(G22)],
        chain=hostile.pki.chain(),
        signing_time=signing_time,
        timestamper=timestamping.InProcessTimestamper(tsa),
    )


def test_time_stamped_envelope_is_accepted(hostile: Hostile) -> None:
    """The control: signingTime and genTime agree, and the bus says the time came from a TSA."""
    header = header_bytes(recipients=[H37])
    message_id = hostile.deliver(
        header, stamped(hostile, header, signing_time=now(), gen_time=now())
    )
    message = hostile[H37].read(message_id)
    assert message["time_source"] == "timestamp"
    assert message["signers"][0]["timestamp"] is not None


def test_signing_time_an_hour_before_gen_time(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = stamped(hostile, header, signing_time=now() - dt.timedelta(hours=1), gen_time=now())
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id_of(header),
        reason="timestamp_skew",
        notice_to=G22,
    )


def test_token_with_a_gen_time_an_hour_ahead_of_the_bus(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = stamped(hostile, header, signing_time=now(), gen_time=now() + dt.timedelta(hours=1))
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id_of(header),
        reason="timestamp_skew",
        notice_to=G22,
    )


def test_signing_time_a_day_ahead_without_a_token(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = hostile.pki.sign(header, signing_time=now() + dt.timedelta(days=1))
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id_of(header),
        reason="signing_time_in_future",
        notice_to=G22,
    )


def test_created_at_three_days_old(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37], created_at=now() - dt.timedelta(days=3))
    hostile.router_rejects(
        lambda: queued(hostile, header, hostile.pki.sign(header)),
        subject=message_id_of(header),
        reason="message_stale",
        notice_to=G22,
    )


def test_created_at_an_hour_ahead(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37], created_at=now() + dt.timedelta(hours=1))
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, hostile.pki.sign(header)),
        subject=message_id_of(header),
        reason="message_from_future",
        notice_to=G22,
    )


def test_expired_seal_backdating_its_signing_time(hostile: Hostile) -> None:
    """A seal that expired five weeks ago claims to have signed while it was valid; without a
    token nothing proves it, so the chain is judged now."""
    expired = m.seal_from(m.issuing(hostile.pki), validity=window(-400, -35))
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(
        header, expired, hostile.pki.chain(), signing_time=now() - dt.timedelta(days=100)
    )
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id_of(header),
        reason="certificate_expired",
        notice_to=G22,
    )


def test_request_signature_created_ten_minutes_ahead(hostile: Hostile, http: httpx.Client) -> None:
    headers = signed_headers(hostile[G22], "GET", "/v1/inbox", now=int(time.time()) + 600)
    hostile.api_refuses(
        lambda: http.get("/v1/inbox", headers=headers), 401, "signature_from_future"
    )


def test_request_signature_expiring_before_it_was_created(
    hostile: Hostile, http: httpx.Client
) -> None:
    headers = signed_headers(hostile[G22], "GET", "/v1/inbox", lifetime=-30)
    hostile.api_refuses(lambda: http.get("/v1/inbox", headers=headers), 401, "signature_expired")
