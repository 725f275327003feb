"""lienthong's time-stamp authority: what it grants, what it refuses (with which failInfo), that it
never fails a client with an exception, that its serial numbers are never reused, and its HTTP
doors (the route and the client) as seen through HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.db.tables import metadata
from adapters.pki import profiles as p
from adapters.tsa.authority import DEFAULT_POLICY, TimeStampAuthority
from adapters.tsa.client import HttpTimestamper, TsaError
from adapters.tsa.http import create_router
from adapters.tsa.protocol import (
    MEDIA_QUERY,
    MEDIA_REPLY,
    FailInfo,
    PkiStatus,
    TimeStampResponse,
    encode_request,
    encode_response,
    parse_response,
)
from adapters.tsa.serials import DbSerials, FileSerials
from adapters.tsa.service import standalone_app
from exchange import cms, der, oids
from exchange import derwrite as w
from exchange.errors import ConfigurationError
from exchange.ports import FixedClock
from exchange.timestamps import TimestampVerifier, parse_token
from tests import forge
from tests.helpers import Pki
from tests.timestamping import CountingSerials, authority, token_for, tsa_signer

SHA256_OF_HELLO = hashlib.sha256(b"hello").digest()
REFUSAL = encode_response(PkiStatus.REJECTION, text="no", fail_info=FailInfo.BAD_ALG)
GRANTED_GARBAGE = encode_response(PkiStatus.GRANTED, token=w.sequence(w.integer(1)))


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> TimeStampAuthority:
    return authority(pki)


def _respond(tsa: TimeStampAuthority, query: bytes) -> TimeStampResponse:
    return parse_response(tsa.respond(query))


def _refused(tsa: TimeStampAuthority, query: bytes, fail_info: FailInfo) -> str:
    response = _respond(tsa, query)
    assert response.status == PkiStatus.REJECTION, response
    assert response.fail_info == {int(fail_info)}, response
    assert response.token is None
    return "; ".join(response.texts)


def _query(digest: bytes = SHA256_OF_HELLO, algorithm: bytes = oids.SHA256, *extra: bytes) -> bytes:
    return w.sequence(w.integer(1), w.sequence(w.algorithm(algorithm), w.octets(digest)), *extra)


# --- granted ------------------------------------------------------------------------------------


def test_granted_token_echoes_the_query_and_verifies(pki: Pki, tsa: TimeStampAuthority) -> None:
    query = encode_request(SHA256_OF_HELLO, nonce=2**70 + 5, cert_req=True)
    response = _respond(tsa, query)
    assert response.status == PkiStatus.GRANTED
    assert response.token is not None
    token = parse_token(response.token)
    info = token.info
    assert info.nonce == 2**70 + 5
    assert info.policy_dotted == DEFAULT_POLICY
    assert info.accuracy == dt.timedelta(seconds=1)
    assert info.hash_algorithm == oids.SHA256
    assert info.hashed_message == SHA256_OF_HELLO
    assert info.gen_time.microsecond % 1000 == 0  # milliseconds
    assert info.tsa_name is not None
    assert tsa.facts.subject_der in info.tsa_name
    assert not info.ordering
    certs = {x509.load_der_x509_certificate(c) for c in token.signed.certificates}
    assert certs == {tsa.certificate, *pki.chain()}
    judge = TimestampVerifier(pki.anchors(), pki.crls())
    verified = judge.verify_token(response.token, b"hello", now=dt.datetime.now(dt.UTC))
    assert verified.tsa.cert == tsa.certificate


def test_message_imprint_is_copied_exactly_as_received(tsa: TimeStampAuthority) -> None:
    # Hash algorithm parameters absent (as openssl writes them) and NULL (as some clients do).
    for algorithm in (w.sequence(w.oid(oids.SHA256)), w.algorithm(oids.SHA256, w.null())):
        imprint = w.sequence(algorithm, w.octets(SHA256_OF_HELLO))
        response = _respond(tsa, w.sequence(w.integer(1), imprint))
        assert response.token is not None
        assert imprint in parse_token(response.token).tst_der


def test_cert_req_is_honoured(tsa: TimeStampAuthority) -> None:
    without = _respond(tsa, encode_request(SHA256_OF_HELLO, cert_req=False)).token
    assert without is not None
    assert parse_token(without).signed.certificates == []
    no_nonce = _respond(tsa, encode_request(SHA256_OF_HELLO, cert_req=True)).token
    assert no_nonce is not None
    assert parse_token(no_nonce).info.nonce is None
    assert len(parse_token(no_nonce).signed.certificates) == 1 + len(tsa.chain)


def test_sid_names_the_tsa_certificate_by_issuer_and_serial(tsa: TimeStampAuthority) -> None:
    token = parse_token(token_for(tsa, b"hello"))
    assert token.signer.sid == cms.IssuerSerial(tsa.facts.issuer_der, tsa.facts.serial)
    assert oids.ATTR_SIGNING_CERTIFICATE_V2 in token.signer.attributes


@pytest.mark.parametrize("algorithm", [oids.SHA384, oids.SHA512, oids.SHA3_256, oids.SHA3_512])
def test_stronger_hashes_are_granted(tsa: TimeStampAuthority, algorithm: bytes) -> None:
    name = {oids.SHA384: "sha384", oids.SHA512: "sha512", oids.SHA3_256: "sha3_256"}.get(
        algorithm, "sha3_512"
    )
    response = _respond(tsa, _query(hashlib.new(name, b"x").digest(), algorithm))
    assert response.status == PkiStatus.GRANTED


def test_a_requested_policy_of_this_tsa_is_granted(pki: Pki) -> None:
    signer = tsa_signer(pki)
    tsa = TimeStampAuthority(
        signer.certificate,
        signer.private_key,
        serials=CountingSerials(),
        clock=FixedClock(dt.datetime.now(dt.UTC)),
        other_policies=["1.2.704.1.3161.2"],
    )
    asked = der.encode_oid("1.2.704.1.3161.2")
    token = _respond(tsa, encode_request(SHA256_OF_HELLO, policy=asked)).token
    assert token is not None
    assert parse_token(token).info.policy == asked
    default = _respond(tsa, encode_request(SHA256_OF_HELLO)).token
    assert default is not None
    assert parse_token(default).info.policy_dotted == DEFAULT_POLICY


def test_ec_tsa_key_signs_tokens_that_verify(pki: Pki) -> None:
    ec_signer = forge.Authority.of(pki.dev).signer(
        p.Profile(
            subject=p.ca_name("lienthong EC TSA"),
            key_usage=p.key_usage(digital_signature=True),
            extended_key_usage=[ExtendedKeyUsageOID.TIME_STAMPING],
            eku_critical=True,
        ),
        forge.ec_key("secp256r1"),
    )
    tsa = authority(pki, signer=ec_signer)
    token = token_for(tsa, b"hello")
    judge = TimestampVerifier(pki.anchors(), pki.crls())
    verified = judge.verify_token(token, b"hello", now=dt.datetime.now(dt.UTC))
    assert verified.tsa.cert == ec_signer.certificate


# --- refused ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "size"),
    [(oids.SHA1, 20), (oids.MD5, 16), (oids.SHA224, 28), (der.encode_oid("1.2.3.4"), 32)],
    ids=["sha1", "md5", "sha224", "unknown"],
)
def test_weak_or_unknown_hash_is_bad_alg(
    tsa: TimeStampAuthority, algorithm: bytes, size: int
) -> None:
    _refused(tsa, _query(b"\x01" * size, algorithm), FailInfo.BAD_ALG)


@pytest.mark.parametrize("size", [0, 20, 31, 33, 64])
def test_imprint_of_the_wrong_length_is_bad_data_format(tsa: TimeStampAuthority, size: int) -> None:
    text = _refused(tsa, _query(b"\x01" * size), FailInfo.BAD_DATA_FORMAT)
    assert "makes 32" in text


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"garbage",
        b"\x30\x80\x02\x01\x01\x00\x00",  # BER indefinite length
        _query() + b"\x00",  # trailing bytes
        _query()[:-1],  # truncated
        w.sequence(w.integer(1)),  # no messageImprint
        w.sequence(w.integer(1), w.sequence(w.octets(SHA256_OF_HELLO))),
        _query(SHA256_OF_HELLO, oids.SHA256, w.boolean(True), w.integer(5)),  # out of order
        _query(SHA256_OF_HELLO, oids.SHA256, w.tlv(der.BOOLEAN, b"\x01")),  # not DER TRUE
    ],
    ids=[
        "empty", "garbage", "ber", "trailing", "truncated", "no-imprint",
        "imprint-without-algorithm", "fields-out-of-order", "boolean-not-der",
    ],
)  # fmt: skip
def test_malformed_query_is_bad_data_format(tsa: TimeStampAuthority, query: bytes) -> None:
    _refused(tsa, query, FailInfo.BAD_DATA_FORMAT)


def test_version_other_than_1_is_bad_request(tsa: TimeStampAuthority) -> None:
    imprint = w.sequence(w.algorithm(oids.SHA256), w.octets(SHA256_OF_HELLO))
    _refused(tsa, w.sequence(w.integer(2), imprint), FailInfo.BAD_REQUEST)


def test_unknown_policy_is_unaccepted_policy(tsa: TimeStampAuthority) -> None:
    query = encode_request(SHA256_OF_HELLO, policy=der.encode_oid("1.3.6.1.4.1.57264.2"))
    text = _refused(tsa, query, FailInfo.UNACCEPTED_POLICY)
    assert "1.3.6.1.4.1.57264.2" in text


def test_request_extensions_are_unaccepted_extension(tsa: TimeStampAuthority) -> None:
    extension = w.sequence(w.oid(der.encode_oid("1.2.3.4")), w.octets(b"x"))
    query = _query(SHA256_OF_HELLO, oids.SHA256, w.implicit(0, w.sequence(extension)))
    _refused(tsa, query, FailInfo.UNACCEPTED_EXTENSION)


def test_clock_outside_the_tsa_certificate_is_time_not_available(pki: Pki) -> None:
    signer = tsa_signer(pki)
    late = signer.certificate.not_valid_after_utc + dt.timedelta(days=1)
    tsa = authority(pki, clock=FixedClock(late))
    _refused(tsa, encode_request(SHA256_OF_HELLO), FailInfo.TIME_NOT_AVAILABLE)


def test_internal_failure_is_system_failure(pki: Pki) -> None:
    class Broken:
        def next_serial(self) -> int:
            raise OSError("disk full")

    signer = tsa_signer(pki)
    tsa = TimeStampAuthority(
        signer.certificate,
        signer.private_key,
        serials=Broken(),
        clock=FixedClock(dt.datetime.now(dt.UTC)),
    )
    _refused(tsa, encode_request(SHA256_OF_HELLO), FailInfo.SYSTEM_FAILURE)


def test_failinfo_bits_are_encoded_as_der_named_bit_strings() -> None:
    for bit in FailInfo:
        response = encode_response(PkiStatus.REJECTION, fail_info=bit, text="x")
        assert parse_response(response).fail_info == {int(bit)}
        status_info = der.children(response, *der.whole(response, der.SEQUENCE))[0]
        fields = der.children(response, status_info[2], status_info[3])
        _, _, start, stop = fields[-1]
        assert stop - start == int(bit) // 8 + 2  # unused-bits octet, then no trailing zero octet
        assert response[start] == 7 - int(bit) % 8


def test_a_key_that_is_not_the_certificates_is_refused(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="does not belong"):
        TimeStampAuthority(
            tsa_signer(pki).certificate,
            forge.rsa_key(),
            serials=CountingSerials(),
            clock=FixedClock(dt.datetime.now(dt.UTC)),
        )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(st.integers(0, 120), st.integers(0, 255)).map(
            lambda edit: _mutate(_query(SHA256_OF_HELLO, oids.SHA256, w.integer(9)), *edit)
        ),
    )
)
def test_any_query_gets_a_time_stamp_response_never_an_exception(
    tsa: TimeStampAuthority, query: bytes
) -> None:
    response = _respond(tsa, query)
    if response.status == PkiStatus.GRANTED:
        assert response.token is not None
        info = parse_token(response.token).info
        assert info.hashed_message in query
    else:
        assert response.status == PkiStatus.REJECTION
        assert len(response.fail_info) == 1


def _mutate(data: bytes, index: int, value: int) -> bytes:
    if index >= len(data):
        return data + bytes((value,))
    return data[:index] + bytes((value,)) + data[index + 1 :]


# --- serial numbers -----------------------------------------------------------------------------


def test_file_serials_are_unique_and_survive_restarts(tmp_path: Path) -> None:
    path = tmp_path / "tsa" / "serials.json"
    first = FileSerials(path, "tsa-a", block=4)
    issued = [first.next_serial() for _ in range(6)]
    assert issued == [1, 2, 3, 4, 5, 6]
    # A restart (new instance) continues after the reserved block, never below it.
    second = FileSerials(path, "tsa-a", block=4)
    after = [second.next_serial() for _ in range(3)]
    assert min(after) > max(issued)
    assert len(set(issued + after)) == 9
    # Another TSA in the same file has its own sequence.
    assert FileSerials(path, "tsa-b", block=4).next_serial() == 1


def test_file_serials_shared_by_two_processes_never_collide(tmp_path: Path) -> None:
    path = tmp_path / "serials.json"
    one, two = FileSerials(path, "tsa", block=3), FileSerials(path, "tsa", block=3)
    seen = [one.next_serial() if i % 2 else two.next_serial() for i in range(40)]
    assert len(set(seen)) == 40


def test_file_serials_are_thread_safe(tmp_path: Path) -> None:
    serials = FileSerials(tmp_path / "serials.json", "tsa", block=7)
    out: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        got = [serials.next_serial() for _ in range(200)]
        with lock:
            out.extend(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(out)) == 1600


def test_unreadable_state_file_stops_the_tsa_at_start(tmp_path: Path) -> None:
    path = tmp_path / "serials.json"
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="unreadable"):
        FileSerials(path, "tsa")
    path.write_text('{"tsa": -3}')
    with pytest.raises(ConfigurationError, match="name: serial"):
        FileSerials(path, "tsa")


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'tsa.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_database_serials_are_unique_and_survive_restarts(sqlite: sa.Engine) -> None:
    first = DbSerials(sqlite, "tsa", block=5)
    issued = [first.next_serial() for _ in range(7)]
    assert issued == list(range(1, 8))
    second = DbSerials(sqlite, "tsa", block=5)
    interleaved = [(first if i % 2 else second).next_serial() for i in range(30)]
    assert len(set(issued + interleaved)) == 37
    with sqlite.connect() as conn:
        stored = conn.execute(sa.text("select next_serial from tsa_serials")).scalar_one()
    assert stored > max(issued + interleaved)


# --- HTTP: the route, and the client -------------------------------------------------------------


class AsgiClient:
    """Requests to an ASGI app in this process (httpx's ASGI transport, no server, no socket)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tsa.test") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(send())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)


@pytest.fixture(scope="module")
def client(tsa: TimeStampAuthority) -> AsgiClient:
    return AsgiClient(standalone_app(tsa))


def test_route_answers_a_query_with_a_reply(client: AsgiClient) -> None:
    query = encode_request(SHA256_OF_HELLO, nonce=42)
    reply = client.post("/v1/tsa", content=query, headers={"content-type": MEDIA_QUERY})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == MEDIA_REPLY
    response = parse_response(reply.content)
    assert response.status == PkiStatus.GRANTED
    assert response.token is not None
    assert parse_token(response.token).info.nonce == 42


@pytest.mark.parametrize(
    ("body", "media", "status", "fail_info"),
    [
        (b"garbage", MEDIA_QUERY, 200, FailInfo.BAD_DATA_FORMAT),
        (b"", MEDIA_QUERY, 200, FailInfo.BAD_DATA_FORMAT),
        (encode_request(SHA256_OF_HELLO), "application/octet-stream", 415, FailInfo.BAD_REQUEST),
        (b"\x30" * 20_000, MEDIA_QUERY, 413, FailInfo.BAD_REQUEST),
    ],
    ids=["garbage", "empty", "wrong-media-type", "too-large"],
)
def test_route_rejects_with_a_time_stamp_response(
    client: AsgiClient, body: bytes, media: str, status: int, fail_info: FailInfo
) -> None:
    reply = client.post("/v1/tsa", content=body, headers={"content-type": media})
    assert reply.status_code == status
    assert reply.headers["content-type"] == MEDIA_REPLY
    assert parse_response(reply.content).fail_info == {int(fail_info)}


def test_route_without_a_tsa_is_503_with_a_time_stamp_response() -> None:
    app = FastAPI()
    app.include_router(create_router(None))
    reply = AsgiClient(app).post(
        "/v1/tsa", content=encode_request(SHA256_OF_HELLO), headers={"content-type": MEDIA_QUERY}
    )
    assert reply.status_code == 503
    assert parse_response(reply.content).fail_info == {int(FailInfo.SYSTEM_FAILURE)}


def test_route_serves_the_tsa_certificates(client: AsgiClient, tsa: TimeStampAuthority) -> None:
    reply = client.get("/v1/tsa/certificates")
    assert reply.status_code == 200
    assert x509.load_pem_x509_certificates(reply.content) == [tsa.certificate, *tsa.chain]


def _mock_client(handler: httpx.MockTransport) -> httpx.Client:
    return httpx.Client(transport=handler, base_url="http://tsa.test")


def test_http_timestamper_returns_a_token_over_the_signature_value(
    tsa: TimeStampAuthority,
) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        assert request.headers["content-type"] == MEDIA_QUERY
        return httpx.Response(
            200, content=tsa.respond(request.content), headers={"content-type": MEDIA_REPLY}
        )

    stamper = HttpTimestamper(
        "http://tsa.test/v1/tsa", client=_mock_client(httpx.MockTransport(handler))
    )
    token = stamper.timestamp(b"signature value")
    info = parse_token(token).info
    assert info.hashed_message == hashlib.sha256(b"signature value").digest()
    assert info.nonce is not None
    assert len(seen) == 1


def test_http_timestamper_refuses_a_reply_to_another_query(tsa: TimeStampAuthority) -> None:
    captured = tsa.respond(encode_request(hashlib.sha256(b"signature value").digest(), nonce=1))

    def replay(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=captured, headers={"content-type": MEDIA_REPLY})

    stamper = HttpTimestamper("http://tsa.test/", client=_mock_client(httpx.MockTransport(replay)))
    with pytest.raises(TsaError, match="nonce"):
        stamper.timestamp(b"signature value")
    with pytest.raises(TsaError, match="other data"):
        stamper.timestamp(b"another signature value")


@pytest.mark.parametrize(
    ("status", "content", "media", "message"),
    [
        (200, REFUSAL, MEDIA_REPLY, "refused"),
        (200, b"<html>", "text/html", "not application/timestamp-reply"),
        (502, b"", "", "HTTP 502"),
        (200, b"garbage", MEDIA_REPLY, "unreadable"),
        (200, GRANTED_GARBAGE, MEDIA_REPLY, "malformed token"),
    ],
    ids=["rejection", "html", "bad-gateway", "garbage", "granted-garbage"],
)  # fmt: skip
def test_http_timestamper_reports_what_went_wrong(
    status: int, content: bytes, media: str, message: str
) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        headers = {"content-type": media} if media else {}
        return httpx.Response(status, content=content, headers=headers)

    stamper = HttpTimestamper("http://tsa.test/", client=_mock_client(httpx.MockTransport(handler)))
    with pytest.raises(TsaError, match=message):
        stamper.timestamp(b"signature value")


def test_http_timestamper_reports_an_unreachable_tsa() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    stamper = HttpTimestamper("http://tsa.test/", client=_mock_client(httpx.MockTransport(handler)))
    with pytest.raises(TsaError, match="unreachable"):
        stamper.timestamp(b"signature value")
