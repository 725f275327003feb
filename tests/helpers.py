"""Shared test material: a real development PKI, headers, signatures and verifiers."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from adapters.files import JsonRegistry, load_certificates, load_crls, load_private_key
from adapters.pki.folder import DevPki
from exchange.policy import VerificationPolicy
from exchange.ports import AgencyRecord, Clock, FixedClock, Measured, SystemClock
from exchange.signing import SigningKey, sign_detached
from exchange.trust import TrustStore
from exchange.verification import Verifier
from schemas.header import AttachmentRef

# Third-party test data beside the checkout (../shared/vectors), or where
# LIENTHONG_SHARED_VECTORS points for a checkout elsewhere.
SHARED_VECTORS = Path(
    os.environ.get(
        "LIENTHONG_SHARED_VECTORS", Path(__file__).resolve().parents[2] / "shared" / "vectors"
    )
)
RFC3161_VECTORS = SHARED_VECTORS / "rfc3161"

G22 = "000.00.00.G22"
H37 = "000.00.00.H37"
H37_FINANCE = "000.00.01.H37"


def header_dict(
    sender: str = G22,
    recipients: Sequence[str] = (H37,),
    *,
    attachments: Sequence[Mapping[str, Any]] = (),
    created_at: dt.datetime | None = None,
    message_id: str | None = None,
    subject: str = "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027",
) -> dict[str, Any]:
    when = (created_at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    return {
        "version": 1,
        "message_id": message_id or str(uuid.uuid4()),
        "kind": "document",
        "sender": sender,
        "recipients": list(recipients),
        "created_at": when.isoformat().replace("+00:00", "Z"),
        "document": {
            "number": "2491",
            "notation": "STC-BCTC",
            "type": "Công văn",
            "subject": subject,
            "promulgation_place": "Hà Nội",
            "promulgation_date": when.date().isoformat(),
            "signer": {"full_name": "Trần Văn Minh", "position": "Bộ trưởng", "competence": "KT."},
            "priority": "urgent",
        },
        "attachments": list(attachments),
    }


def header_bytes(**kwargs: Any) -> bytes:
    return encode(header_dict(**kwargs))


def encode(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def attachment(name: str, content: bytes, media_type: str = "application/pdf") -> dict[str, Any]:
    return {
        "name": name,
        "media_type": media_type,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


class InlineAttachments:
    """Attachments given as bytes by name (an AttachmentSource)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)

    def measure(self, ref: AttachmentRef) -> Measured | None:
        content = self.files.get(ref.name)
        if content is None:
            return None
        return Measured(len(content), hashlib.sha256(content).hexdigest())


class MemoryRegistry:
    def __init__(self, records: Mapping[str, AgencyRecord]) -> None:
        self.records = dict(records)

    def agency(self, code: str) -> AgencyRecord | None:
        return self.records.get(code)


@dataclass
class Pki:
    """A development PKI made by ``lienthong pki init``, loaded for tests.

    Keys and certificates are read once: loading an RSA key checks it, which costs tens of ms.
    """

    dev: DevPki
    _loaded: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def _once(self, kind: str, name: str, load: Callable[[], Any]) -> Any:
        key = (kind, name)
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    @property
    def root(self) -> Path:
        return self.dev.root

    def anchors(self) -> list[x509.Certificate]:
        return load_certificates(self.dev.trust_anchors)

    def chain(self) -> list[x509.Certificate]:
        chain: list[x509.Certificate] = self._once(
            "chain", "", lambda: load_certificates(self.dev.chain)
        )
        return chain

    def crls(self) -> list[x509.CertificateRevocationList]:
        return [c for path in self.dev.crls for c in load_crls(path)]

    def seal(self, code: str = G22) -> SigningKey:
        cert, key = self.dev.seal(code)
        loaded: SigningKey = self._once(
            "seal", code, lambda: SigningKey(load_certificates(cert)[0], load_private_key(key))
        )
        return loaded

    def leader(self, code: str = G22) -> SigningKey:
        cert, key = self.dev.leader(code)
        loaded: SigningKey = self._once(
            "leader", code, lambda: SigningKey(load_certificates(cert)[0], load_private_key(key))
        )
        return loaded

    def registry(self) -> JsonRegistry:
        return JsonRegistry.load(self.dev.registry)

    def trust(self) -> TrustStore:
        return TrustStore(self.anchors(), self.crls())

    def verifier(
        self,
        *,
        clock: Clock | None = None,
        policy: VerificationPolicy | None = None,
        registry: Any = "default",
        trust: TrustStore | None = None,
    ) -> Verifier:
        return Verifier(
            trust or self.trust(),
            self.registry() if registry == "default" else registry,
            clock or SystemClock(),
            policy,
        )

    def sign(
        self,
        header: bytes,
        *,
        sender: str = G22,
        personal: bool = False,
        signing_time: dt.datetime | None = None,
    ) -> bytes:
        signers = [self.seal(sender)] + ([self.leader(sender)] if personal else [])
        return sign_detached(header, signers, chain=self.chain(), signing_time=signing_time)


def at(text: str) -> FixedClock:
    return FixedClock(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
