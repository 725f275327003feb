"""The time-stamp authority: a TimeStampReq in, a TimeStampResp out (RFC 3161).

``TimeStampAuthority.respond`` never raises for what a client sends: every query gets a DER
TimeStampResp, granted with a token or a rejection with its failInfo:

- not DER, not a TimeStampReq, a malformed field, a hash of the wrong length: badDataFormat
- a version other than 1: badRequest
- a hash algorithm other than SHA-256/384/512 or SHA3-256/384/512 (SHA-1 and MD5 included,
  as the bus refuses them in signatures too): badAlg
- a reqPolicy other than the policies this TSA issues under: unacceptedPolicy
- any request extension (this TSA supports none): unacceptedExtension
- the clock outside the TSA certificate's validity: timeNotAvailable
- an internal failure (e.g. the serial store is unwritable): systemFailure

Tokens. TSTInfo: version 1, the policy (the request's if it asked for an accepted one, else the
default), the messageImprint exactly as received, a serial number from a ``SerialSource``
(unique and never reused, also across restarts), genTime from the clock to the millisecond,
accuracy, the nonce echoed, and ``tsa`` naming the TSA certificate's subject. SignedData: one
SignerInfo identified by issuerAndSerialNumber, signed attributes contentType (id-ct-TSTInfo),
signingTime, messageDigest and ESS signingCertificateV2 (SHA-256, with issuerSerial; RFC 5816);
the TSA certificate and ``chain`` are embedded when the request sets certReq.

Clock source: ``exchange.ports.SystemClock``, the host's UTC real-time clock (CLOCK_REALTIME). The
TSA claims ``accuracy`` (1 s by default) for it, so the host must keep its clock disciplined by
NTP (chrony or systemd-timesyncd) to well within that bound; the TSA refuses to stamp
(timeNotAvailable) when the clock reads a time outside its certificate's validity, the one gross
clock error it can see for itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from adapters.tsa.protocol import (
    FailInfo,
    PkiStatus,
    RequestError,
    TimeStampRequest,
    encode_response,
    parse_request,
    rejection,
)
from exchange import der, oids
from exchange import derwrite as w
from exchange.algorithms import HASHLIB_NAMES
from exchange.certificates import facts_from_certificate
from exchange.errors import ConfigurationError, InputError
from exchange.ports import Clock
from exchange.signing import raw_sign, scheme_for
from exchange.timestamps import EKU_TIME_STAMPING

log = logging.getLogger(__name__)

# lienthong's TSA policy, version 1: an OID under the UUID arc 2.25 (ITU-T X.667, no
# registration needed), from UUID ceac2444-5834-49dd-9672-e54042f34732, then arc 1 for the
# policy's first version. It says: genTime from an NTP-disciplined clock within the stated
# accuracy, serial numbers never reused, keys held by the operator of the bus or agency TSA.
DEFAULT_POLICY = "2.25.274714777772919336427624714104386832178.1"
DEFAULT_ACCURACY = dt.timedelta(seconds=1)
ACCEPTED_HASHES = {
    oid: hashlib.new(name).digest_size for oid, name in HASHLIB_NAMES.items()
}  # SHA-256/384/512, SHA3-256/384/512 -> digest length
REFUSED_HASH_NAMES = {oids.SHA1: "SHA-1", oids.MD5: "MD5", oids.SHA224: "SHA-224"}


class SerialSource(Protocol):
    """Hands out token serial numbers: unique for the TSA, never reused, also after restarts."""

    def next_serial(self) -> int: ...


class TimeStampAuthority:
    """Signs tokens with one TSA certificate and key. Thread-safe if the serial source is."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: PrivateKeyTypes,
        *,
        serials: SerialSource,
        clock: Clock,
        chain: Sequence[x509.Certificate] = (),
        policy: str = DEFAULT_POLICY,
        other_policies: Sequence[str] = (),
        accuracy: dt.timedelta = DEFAULT_ACCURACY,
        require_timestamping_certificate: bool = True,
    ) -> None:
        if certificate.public_key() != private_key.public_key():
            raise ConfigurationError("the TSA key does not belong to the TSA certificate")
        if require_timestamping_certificate:
            _check_tsa_certificate(certificate)
        if accuracy <= dt.timedelta(0):
            raise ConfigurationError("the TSA's accuracy must be positive")
        self.certificate = certificate
        self.facts = facts_from_certificate(certificate)
        self.key = private_key
        self.serials = serials
        self.clock = clock
        try:
            self.policy = der.encode_oid(policy)
            self.policies = frozenset({self.policy, *(der.encode_oid(p) for p in other_policies)})
        except ValueError as exc:
            raise ConfigurationError(f"TSA policy: {exc}") from None
        self.accuracy = accuracy
        self.digest_algorithm, self.signature_algorithm, self._hash = _scheme(private_key)
        self.chain = tuple(chain)
        embedded = {c.public_bytes(Encoding.DER) for c in (certificate, *self.chain)}
        self._certificates = w.tlv(0xA0, b"".join(sorted(embedded)))
        ess_id = w.sequence(
            w.octets(hashlib.sha256(self.facts.der).digest()),
            w.sequence(
                w.sequence(w.explicit(4, self.facts.issuer_der)), w.integer(self.facts.serial)
            ),
        )
        self._signing_certificate = w.sequence(
            w.oid(oids.ATTR_SIGNING_CERTIFICATE_V2), w.set_of(w.sequence(w.sequence(ess_id)))
        )
        self._sid = w.sequence(self.facts.issuer_der, w.integer(self.facts.serial))
        self._tsa_name = w.explicit(0, w.explicit(4, self.facts.subject_der))
        self._accuracy = _accuracy(accuracy)

    @property
    def policy_dotted(self) -> str:
        return der.decode_oid(self.policy)

    def respond(self, query: bytes) -> bytes:
        """A DER TimeStampResp for ``query``; never raises for anything a client sends."""
        try:
            request = self.check(query)
            return encode_response(PkiStatus.GRANTED, token=self.stamp(request))
        except RequestError as refused:
            return rejection(refused.fail_info, str(refused))
        except Exception:
            log.exception("the TSA failed to answer a query")
            return rejection(FailInfo.SYSTEM_FAILURE, "the time-stamp authority failed")

    def check(self, query: bytes) -> TimeStampRequest:
        """Parse and vet a query; RequestError with the failInfo of the first problem."""
        request = parse_request(query)
        algorithm = request.hash_algorithm
        if algorithm in REFUSED_HASH_NAMES:
            raise RequestError(
                FailInfo.BAD_ALG, f"{REFUSED_HASH_NAMES[algorithm]} imprints are refused"
            )
        size = ACCEPTED_HASHES.get(algorithm)
        if size is None:
            raise RequestError(
                FailInfo.BAD_ALG, f"hash algorithm {der.decode_oid(algorithm)} is not supported"
            )
        if len(request.hashed_message) != size:
            raise RequestError(
                FailInfo.BAD_DATA_FORMAT,
                f"the imprint is {len(request.hashed_message)} bytes; "
                f"{der.decode_oid(algorithm)} makes {size}",
            )
        if request.policy is not None and request.policy not in self.policies:
            raise RequestError(
                FailInfo.UNACCEPTED_POLICY,
                f"policy {der.decode_oid(request.policy)} is not one of this TSA's",
            )
        if request.has_extensions:
            raise RequestError(
                FailInfo.UNACCEPTED_EXTENSION, "this TSA accepts no request extensions"
            )
        return request

    def stamp(self, request: TimeStampRequest) -> bytes:
        """A token (DER ContentInfo) for a vetted request."""
        now = self.clock.now().astimezone(dt.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        cert = self.certificate
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise RequestError(
                FailInfo.TIME_NOT_AVAILABLE,
                f"the TSA clock reads {now.isoformat()}, outside its certificate's validity",
            )
        fields = [
            w.integer(1),
            w.oid(request.policy or self.policy),
            request.imprint,
            w.integer(self.serials.next_serial()),
            w.generalized_time(now),
            self._accuracy,
        ]
        if request.nonce is not None:
            fields.append(w.integer(request.nonce))
        fields.append(self._tsa_name)
        tst_info = w.sequence(*fields)
        attributes = w.set_of(
            w.sequence(w.oid(oids.ATTR_CONTENT_TYPE), w.set_of(w.oid(oids.TST_INFO))),
            w.sequence(w.oid(oids.ATTR_SIGNING_TIME), w.set_of(w.time(now))),
            w.sequence(
                w.oid(oids.ATTR_MESSAGE_DIGEST),
                w.set_of(w.octets(hashlib.new(self._hash, tst_info).digest())),
            ),
            self._signing_certificate,
        )
        signer_info = w.sequence(
            w.integer(1),
            self._sid,
            self.digest_algorithm,
            w.implicit(0, attributes),
            self.signature_algorithm,
            w.octets(raw_sign(self.key, attributes, self._hash)),
        )
        signed_data = w.sequence(
            w.integer(3),
            w.set_of(self.digest_algorithm),
            w.sequence(w.oid(oids.TST_INFO), w.explicit(0, w.octets(tst_info))),
            *([self._certificates] if request.cert_req else []),
            w.set_of(signer_info),
        )
        return w.sequence(w.oid(oids.SIGNED_DATA), w.explicit(0, signed_data))


def _check_tsa_certificate(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or not eku.critical or list(eku.value) != [EKU_TIME_STAMPING]:
        raise ConfigurationError(
            f"the TSA certificate {cert.subject.rfc4514_string()} must carry a critical "
            "extendedKeyUsage with timeStamping alone (RFC 3161 2.3)"
        )


def _accuracy(value: dt.timedelta) -> bytes:
    micros_total = value // dt.timedelta(microseconds=1)
    seconds, rest = divmod(micros_total, 1_000_000)
    millis, micros = divmod(rest, 1000)
    fields = []
    if seconds:
        fields.append(w.integer(seconds))
    if millis:
        fields.append(w.implicit(0, w.integer(millis), constructed=False))
    if micros:
        fields.append(w.implicit(1, w.integer(micros), constructed=False))
    return w.sequence(*fields)


def _scheme(key: PrivateKeyTypes) -> tuple[bytes, bytes, str]:
    """(digestAlgorithm DER, signatureAlgorithm DER, hashlib name) for a TSA key."""
    try:
        return scheme_for(key, rsa_oid=oids.SHA256_WITH_RSA)
    except InputError:
        raise ConfigurationError(
            f"{type(key).__name__} keys cannot sign time-stamp tokens"
        ) from None
