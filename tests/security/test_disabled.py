"""Credentials and seals that no longer count: a disabled agency (as sender, recipient and API
caller) and an unpinned seal. B = H37_FINANCE is disabled, or its seal unpinned, for a module."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.support import call, message_id_of, submit
from tests.helpers import G22, H37_FINANCE, header_bytes
from tests.security.hostile import Hostile

B = H37_FINANCE
REGISTRY_TTL_S = 5.5  # the router's CachedRegistry reloads every 5 s


@pytest.fixture(scope="module")
def disabled(hostile: Hostile) -> Iterator[str]:
    hostile.bus.cli("agency", "disable", B)
    time.sleep(REGISTRY_TTL_S)
    try:
        yield B
    finally:
        hostile.bus.cli("agency", "enable", B)
        time.sleep(REGISTRY_TTL_S)  # before any later test sends to B


def test_disabled_agency_sends_over_amqp(hostile: Hostile, disabled: str) -> None:
    """The HTTP API would refuse its credential; its own AMQP client is refused by the router."""
    header = header_bytes(sender=disabled, recipients=[G22])
    signature = hostile.pki.sign(header, sender=disabled)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id_of(header),
        reason="sender_disabled",
        notice_to=None,  # a disabled agency gets no notices either
    )


def test_envelope_to_a_disabled_agency(hostile: Hostile, disabled: str) -> None:
    header = header_bytes(recipients=[disabled])

    def attack() -> None:
        assert submit(hostile[G22], header, hostile.pki.sign(header)).status_code == 202

    hostile.router_rejects(
        attack, subject=message_id_of(header), reason="recipient_disabled", notice_to=G22
    )


def test_disabled_agency_credential_lists_its_inbox(hostile: Hostile, disabled: str) -> None:
    hostile.api_refuses(lambda: call(hostile[disabled], "GET", "/v1/inbox"), 403, "agency_disabled")


def test_disabled_agency_credential_uploads_a_blob(hostile: Hostile, disabled: str) -> None:
    hostile.api_refuses(
        lambda: call(
            hostile[disabled],
            "POST",
            "/v1/blobs",
            b"%PDF-1.7 disabled",
            content_type="application/octet-stream",
        ),
        403,
        "agency_disabled",
    )
