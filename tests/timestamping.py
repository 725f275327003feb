"""Test material for trusted time: a real TSA in-process, TSA certificates good and bad, CRLs at
any instant, and surgery on the unsigned attributes of a CMS signature.

Everything is real cryptography: tokens are made by ``adapters.tsa.authority`` with keys and
certificates issued by the development PKI's CA keys on disk, and verified as the bus does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapters.files import load_certificates, load_private_key
from adapters.pki import profiles as p
from adapters.tsa.authority import TimeStampAuthority
from adapters.tsa.protocol import encode_request, parse_response
from exchange import der, oids
from exchange import derwrite as w
from exchange.policy import VerificationPolicy
from exchange.ports import Clock, FixedClock, Registry, ReplayGuard, SystemClock
from exchange.signing import SigningKey, sign_detached
from exchange.timestamps import TimestampVerifier, TsaRevocation
from exchange.trust import TrustStore
from exchange.verification import TimestampJudge, Verifier
from tests import forge
from tests.forge import Authority
from tests.helpers import G22, Pki

VPCP = "Văn phòng Chính phủ"


class CountingSerials:
    """A SerialSource in memory (unique within a test)."""

    def __init__(self, start: int = 1) -> None:
        self._count = itertools.count(start)

    def next_serial(self) -> int:
        return next(self._count)


def tsa_signer(pki: Pki) -> SigningKey:
    """The development PKI's TSA certificate and key."""
    cert, key = pki.dev.tsa
    return SigningKey(load_certificates(cert)[0], load_private_key(key))


def authority(
    pki: Pki,
    *,
    signer: SigningKey | None = None,
    clock: Clock | None = None,
    chain: Sequence[x509.Certificate] | None = None,
    strict: bool = True,
) -> TimeStampAuthority:
    """A TSA signing with ``signer`` (the development TSA by default)."""
    signer = signer or tsa_signer(pki)
    return TimeStampAuthority(
        signer.certificate,
        signer.private_key,
        serials=CountingSerials(),
        clock=clock or SystemClock(),
        chain=pki.chain() if chain is None else chain,
        require_timestamping_certificate=strict,
    )


def token_for(tsa: TimeStampAuthority, data: bytes, *, cert_req: bool = True) -> bytes:
    """A token from ``tsa`` over ``data`` (SHA-256), through its query/response interface."""
    query = encode_request(hashlib.sha256(data).digest(), nonce=7, cert_req=cert_req)
    response = parse_response(tsa.respond(query))
    assert response.granted, response
    assert response.token is not None
    return response.token


@dataclass
class InProcessTimestamper:
    """A ``Timestamper`` backed by a TSA in this process. ``stamped`` says what is really sent
    to the TSA (the signature value by default); ``tamper`` edits the token it returns."""

    tsa: TimeStampAuthority
    stamped: Callable[[bytes], bytes] = lambda value: value
    tamper: Callable[[bytes], bytes] = lambda token: token
    cert_req: bool = True
    tokens: list[bytes] = field(default_factory=list)

    def timestamp(self, signature_value: bytes) -> bytes:
        token = self.tamper(
            token_for(self.tsa, self.stamped(signature_value), cert_req=self.cert_req)
        )
        self.tokens.append(token)
        return token


def tsa_certificate(
    pki: Pki,
    *,
    eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.TIME_STAMPING,),
    eku_critical: bool = True,
    issuer: Authority | None = None,
    validity: p.Validity | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> SigningKey:
    """A TSA certificate issued by the PKI's issuing CA (or ``issuer``), as specified."""
    profile = p.Profile(
        subject=p.ca_name("lienthong Test TSA"),
        key_usage=p.key_usage(digital_signature=True, content_commitment=True),
        extended_key_usage=list(eku),
        eku_critical=eku_critical,
    )
    issuer = issuer or Authority.of(pki.dev, forge.ISSUING_CA)
    return issuer.signer(profile, key or forge.rsa_key(2048, 7), validity=validity)


def fresh_crls(
    pki: Pki,
    instant: dt.datetime,
    *,
    revoked: Sequence[tuple[x509.Certificate, dt.datetime, x509.ReasonFlags | None]] = (),
    number: int = 1000,
) -> list[x509.CertificateRevocationList]:
    """CRLs of the root and issuing CA, current at ``instant``; the issuing CA's lists ``revoked``
    (certificate, revocation date, reason)."""
    crls = []
    for name, entries in ((forge.ROOT_CA, ()), (forge.ISSUING_CA, revoked)):
        ca = Authority.of(pki.dev, name)
        crls.append(
            p.build_crl(
                ca.cert,
                ca.key,
                number,
                [(cert.serial_number, when, reason) for cert, when, reason in entries],
                instant - dt.timedelta(hours=1),
                instant + dt.timedelta(days=7),
            )
        )
    return crls


def verifier(
    pki: Pki,
    *,
    clock: Clock | None = None,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
    timestamps: TimestampJudge | None = None,
    revocation: TsaRevocation = TsaRevocation.REQUIRE,
    registry: Registry | None = None,
    policy: VerificationPolicy | None = None,
    replay: ReplayGuard | None = None,
) -> Verifier:
    """A verifier whose TSA trust anchors are the trust anchors (the bus's default)."""
    trust = TrustStore(pki.anchors(), pki.crls() if crls is None else crls)
    judge = timestamps or TimestampVerifier(trust, revocation=revocation)
    return Verifier(
        trust, registry, clock or SystemClock(), policy, timestamps=judge, replay=replay
    )


def sign_stamped(
    pki: Pki,
    header: bytes,
    timestamper: InProcessTimestamper | None,
    *,
    signers: Sequence[SigningKey] | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    return sign_detached(
        header,
        signers if signers is not None else [pki.seal(G22)],
        chain=pki.chain(),
        signing_time=signing_time,
        timestamper=timestamper,
    )


def at_instant(instant: dt.datetime) -> FixedClock:
    return FixedClock(instant)


# --- CMS surgery -----------------------------------------------------------------------------


def _signer_infos(signature: bytes) -> tuple[int, int, list[bytes]]:
    """(start, stop) of the signerInfos SET's TLV inside ``signature``, and each SignerInfo TLV."""
    start, stop = der.whole(signature, der.SEQUENCE)
    parts = der.children(signature, start, stop)
    inner = der.children(signature, parts[1][2], parts[1][3])
    fields = der.children(signature, inner[0][2], inner[0][3])
    _, set_pos, set_start, set_stop = fields[-1]
    infos = [signature[pos:end] for _, pos, _, end in der.children(signature, set_start, set_stop)]
    return set_pos, set_stop, infos


def _split_unsigned(info: bytes) -> tuple[list[bytes], bytes | None]:
    """A SignerInfo's fields without its unsigned attributes, and the token it carries."""
    start, stop = der.whole(info, der.SEQUENCE)
    fields = [info[pos:end] for _, pos, _, end in der.children(info, start, stop)]
    if fields[-1][0] != der.context(1):
        return fields, None
    attrs = fields[-1]
    astart, astop = der.whole(attrs, der.context(1))
    (_, _, vstart, vstop) = der.children(attrs, astart, astop)[0]
    parts = der.children(attrs, vstart, vstop)
    assert der.oid(attrs, parts[0][2], parts[0][3]) == oids.ATTR_SIGNATURE_TIMESTAMP_TOKEN
    (_, tpos, _, tend) = der.children(attrs, parts[1][2], parts[1][3])[0]
    return fields[:-1], attrs[tpos:tend]


def _with_token(fields: list[bytes], token: bytes | None) -> bytes:
    if token is None:
        return w.sequence(*fields)
    attribute = w.sequence(w.oid(oids.ATTR_SIGNATURE_TIMESTAMP_TOKEN), w.set_of(token))
    return w.sequence(*fields, w.implicit(1, w.set_of(attribute)))


def rebuild(signature: bytes, infos: Sequence[bytes]) -> bytes:
    """``signature`` with its SignerInfos replaced (lengths of the enclosing TLVs recomputed)."""
    start, stop = der.whole(signature, der.SEQUENCE)
    parts = der.children(signature, start, stop)
    inner = der.children(signature, parts[1][2], parts[1][3])
    sd_start, sd_stop = inner[0][2], inner[0][3]
    fields = [signature[pos:end] for _, pos, _, end in der.children(signature, sd_start, sd_stop)]
    fields[-1] = w.tlv(der.SET, b"".join(infos))
    signed_data = w.sequence(*fields)
    return w.sequence(signature[parts[0][1] : parts[0][3]], w.explicit(0, signed_data))


def tokens_of(signature: bytes) -> list[bytes | None]:
    return [_split_unsigned(info)[1] for info in _signer_infos(signature)[2]]


def move_token(signature: bytes, source: int, target: int) -> bytes:
    """The token of SignerInfo ``source`` moved to SignerInfo ``target`` (SET order)."""
    infos = [_split_unsigned(info) for info in _signer_infos(signature)[2]]
    token = infos[source][1]
    assert token is not None
    rebuilt = []
    for index, (fields, own) in enumerate(infos):
        if index == source:
            rebuilt.append(_with_token(fields, None))
        elif index == target:
            rebuilt.append(_with_token(fields, token))
        else:
            rebuilt.append(_with_token(fields, own))
    return rebuild(signature, rebuilt)


def replace_token(signature: bytes, index: int, token: bytes) -> bytes:
    infos = [_split_unsigned(info) for info in _signer_infos(signature)[2]]
    return rebuild(
        signature,
        [
            _with_token(fields, token if i == index else own)
            for i, (fields, own) in enumerate(infos)
        ],
    )


def tst_info_of(token: bytes) -> tuple[int, int]:
    """(start, stop) of the TSTInfo's DER bytes inside a token."""
    from exchange import cms

    content = cms.parse_signed_data(token).content
    assert content is not None
    at = token.index(content)
    return at, at + len(content)


def tamper_gen_time(token: bytes) -> bytes:
    """The token with the last digit of its genTime's seconds changed; the TSA's signature is
    left as it was, so the TSTInfo no longer matches the signed messageDigest."""
    start, stop = tst_info_of(token)
    tst = token[start:stop]
    tstart, tstop = der.whole(tst, der.SEQUENCE)
    _, _, gstart, _ = der.children(tst, tstart, tstop)[4]
    digit = start + gstart + 13  # YYYYMMDDHHMMS|S
    changed = b"1" if token[digit : digit + 1] != b"1" else b"2"
    return token[:digit] + changed + token[digit + 1 :]


def drop_token(signature: bytes, index: int) -> bytes:
    """``signature`` without the token of SignerInfo ``index`` (SET order)."""
    infos = [_split_unsigned(info) for info in _signer_infos(signature)[2]]
    return rebuild(
        signature,
        [_with_token(fields, None if i == index else own) for i, (fields, own) in enumerate(infos)],
    )


def signer_index(signature: bytes, cert: x509.Certificate) -> int:
    """The position (SET order) of the SignerInfo signed with ``cert``."""
    from exchange import cms

    infos = cms.parse_signed_data(signature).signer_infos
    matches = [
        i
        for i, info in enumerate(infos)
        if isinstance(info.sid, cms.IssuerSerial) and info.sid.serial == cert.serial_number
    ]
    assert len(matches) == 1
    return matches[0]
