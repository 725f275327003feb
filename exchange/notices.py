"""Rejection notices: the bus tells a sender, in a signed status envelope, why it refused."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cryptography import x509

from exchange.ports import Clock
from exchange.reasons import Reason
from exchange.routing import Notice
from exchange.signing import SigningKey, sign_detached
from schemas.header import Header, StatusBody, StatusCode

_MAX_DESCRIPTION = 2000


class BusNotary:
    """Signs notices with the bus's own certificate (its sender is the bus's agency code)."""

    def __init__(
        self,
        bus_code: str,
        key: SigningKey,
        clock: Clock,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        self.bus_code = bus_code
        self.key = key
        self.clock = clock
        self.chain = tuple(chain)

    def notice(self, rejected_message_id: str, sender: str, reason: Reason, detail: str) -> Notice:
        now = self.clock.now().replace(microsecond=0)
        message_id = str(uuid.uuid4())
        header = Header(
            version=1,
            message_id=uuid.UUID(message_id),
            kind="status",
            sender=self.bus_code,
            recipients=[sender],
            created_at=now,
            status=StatusBody(
                for_message_id=uuid.UUID(rejected_message_id),
                code=StatusCode.REJECTED,
                description=f"{reason.value}: {detail}"[:_MAX_DESCRIPTION],
            ),
        ).to_json_bytes()
        signature = sign_detached(header, [self.key], chain=self.chain, signing_time=now)
        return Notice(header, signature, message_id, sender)
