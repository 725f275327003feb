"""Real third-party RFC 3161 tokens (``shared/vectors/rfc3161``) through lienthong's token check.

The vectors are responses of real TSAs (IdenTrust, Sigstore) over the bytes ``hello`` (or the
file ``payload``), so the TSTInfo and imprint are checked against that data with
``TimestampVerifier.verify_token``, the method the SignerInfo path uses with the signature value.
Each chain file holds the TSA certificate (or not), intermediates and the root: the
self-signed certificates are the TSA trust anchors, the others are supplied out of band. No CRL
exists for these TSAs, so revocation is ``if_available``. Each lands as the README says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from adapters.files import load_certificates
from adapters.tsa.protocol import PkiStatus, parse_request, parse_response
from exchange import oids
from exchange.errors import Rejected
from exchange.reasons import Reason
from exchange.timestamps import TimestampVerifier, TsaRevocation, VerifiedToken, parse_token
from tests.helpers import RFC3161_VECTORS

VECTORS = RFC3161_VECTORS
NOW = dt.datetime.now(dt.UTC)
HELLO = b"hello"


@dataclass(frozen=True)
class Case:
    folder: str
    response: str
    reason: Reason | None  # None: the token verifies
    gen_time: str | None = None  # ISO 8601, when it verifies
    tsa: str | None = None  # the TSA certificate's subject, when it verifies


CASES = [
    Case(
        "identrust",
        "issue-104.tsr",
        None,
        "2025-03-11T08:52:08+00:00",
        "CN=TrustID Timestamp Authority,O=IdenTrust,C=US",
    ),
    Case(
        "sigstage",
        "response-sha256.tsr",
        None,
        "2025-05-09T11:58:55+00:00",
        "CN=sigstore-tsa,O=sigstore.dev",
    ),
    Case(
        "sigstage",
        "response-sha384.tsr",
        None,
        "2025-05-09T11:58:55+00:00",
        "CN=sigstore-tsa,O=sigstore.dev",
    ),
    Case(
        "sigstage",
        "response-sha512.tsr",
        None,
        "2025-05-09T11:58:56+00:00",
        "CN=sigstore-tsa,O=sigstore.dev",
    ),
    Case(
        "sigstage",
        "response-no-embedded-cert.tsr",
        None,
        "2025-06-18T08:13:02+00:00",
        "CN=sigstore-tsa,O=sigstore.dev",
    ),
    Case("sigstage", "response-invalid-signature.tsr", Reason.TIMESTAMP_INVALID),
    Case(
        "sigstore.mock",
        "response-expired.tsr",
        None,
        "2023-02-01T00:00:00+00:00",
        "O=sigstore.mock,CN=tsa signing",
    ),
    Case(
        "test_tsa",
        "response.tsr",
        None,
        "2024-10-08T15:40:32+00:00",
        "CN=Test TSA Timestamping,O=local",
    ),
    Case(
        "test_tsa",
        "response-injected-certs.tsr",
        None,
        "2024-10-08T15:40:32+00:00",
        "CN=Test TSA Timestamping,O=local",
    ),
    # Signed by a TSA certificate that another "Test TSA Intermediate" (another key) issued: it
    # answers other_request.der (below) but does not chain to ts_chain.pem. openssl ts -verify and
    # rfc3161-client refuse it with that chain too ("unable to get local issuer certificate").
    Case("test_tsa", "other_response.tsr", Reason.TIMESTAMP_UNTRUSTED),
]


def _data(folder: Path) -> bytes:
    payload = folder / "payload"
    return payload.read_bytes() if payload.exists() else HELLO


def _verifier(folder: Path) -> TimestampVerifier:
    chain = load_certificates(folder / "ts_chain.pem")
    anchors = [c for c in chain if c.issuer == c.subject]
    supplied = [c for c in chain if c.issuer != c.subject]
    assert anchors
    return TimestampVerifier(anchors, revocation=TsaRevocation.IF_AVAILABLE, certificates=supplied)


def _token(folder: Path, name: str) -> bytes:
    response = parse_response((folder / name).read_bytes())
    assert response.status == PkiStatus.GRANTED
    assert response.token is not None
    return response.token


def _verify(case: Case) -> VerifiedToken:
    folder = VECTORS / case.folder
    return _verifier(folder).verify_token(_token(folder, case.response), _data(folder), now=NOW)


def test_every_vector_file_is_covered() -> None:
    on_disk = {(f.parent.name, f.name) for f in VECTORS.glob("*/*.tsr")}
    assert on_disk == {(c.folder, c.response) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.folder}/{c.response}")
def test_vector_lands_as_the_readme_says(case: Case) -> None:
    if case.reason is None:
        verified = _verify(case)
        assert verified.gen_time == dt.datetime.fromisoformat(case.gen_time or "")
        assert verified.proof().tsa == case.tsa
        return
    with pytest.raises(Rejected) as caught:
        _verify(case)
    assert caught.value.reason is case.reason


def test_expired_sigstore_mock_chain_verifies_only_at_its_gen_time() -> None:
    folder = VECTORS / "sigstore.mock"
    chain = load_certificates(folder / "ts_chain.pem")
    assert all(c.not_valid_after_utc < NOW for c in chain)  # expired since
    verified = _verify(CASES[6])
    assert verified.tsa.cert.not_valid_before_utc <= verified.gen_time
    assert verified.gen_time <= verified.tsa.cert.not_valid_after_utc


def test_injected_certificates_do_not_displace_the_signer_named_by_sid() -> None:
    folder = VECTORS / "test_tsa"
    injected = parse_token(_token(folder, "response-injected-certs.tsr"))
    subjects = [x509.load_der_x509_certificate(c).subject for c in injected.signed.certificates]
    tsa_name = x509.Name.from_rfc4514_string("CN=Test TSA Timestamping,O=local")
    assert sum(s == tsa_name for s in subjects) >= 2  # a spoofed twin shares the TSA's name
    assert len(subjects) == 3
    verified = _verify(CASES[8])
    plain = _verify(CASES[7])
    assert verified.tsa.cert == plain.tsa.cert
    assert verified.tsa.cert.issuer.rfc4514_string() == "CN=Test TSA Intermediate,O=local"


def test_token_without_embedded_certificate_is_untrusted_unless_supplied() -> None:
    folder = VECTORS / "sigstage"
    token = _token(folder, "response-no-embedded-cert.tsr")
    assert parse_token(token).signed.certificates == []
    chain = load_certificates(folder / "ts_chain.pem")
    anchors = [c for c in chain if c.issuer == c.subject]
    bare = TimestampVerifier(anchors, revocation=TsaRevocation.IF_AVAILABLE)
    with pytest.raises(Rejected) as caught:
        bare.verify_token(token, HELLO, now=NOW)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED


@pytest.mark.parametrize("case", [c for c in CASES if c.reason is None], ids=lambda c: c.response)
def test_verified_vector_over_other_data_is_imprint_mismatch(case: Case) -> None:
    folder = VECTORS / case.folder
    with pytest.raises(Rejected) as caught:
        _verifier(folder).verify_token(_token(folder, case.response), _data(folder) + b"!", now=NOW)
    assert caught.value.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH


def test_vector_is_untrusted_under_another_vendors_anchors() -> None:
    sigstage, identrust = VECTORS / "sigstage", VECTORS / "identrust"
    with pytest.raises(Rejected) as caught:
        _verifier(identrust).verify_token(_token(sigstage, "response-sha256.tsr"), HELLO, now=NOW)
    assert caught.value.reason is Reason.TIMESTAMP_UNTRUSTED


def test_vector_judged_before_its_gen_time_is_timestamp_skew() -> None:
    case = CASES[1]
    folder = VECTORS / case.folder
    before = dt.datetime.fromisoformat(case.gen_time or "") - dt.timedelta(hours=1)
    with pytest.raises(Rejected) as caught:
        _verifier(folder).verify_token(_token(folder, case.response), HELLO, now=before)
    assert caught.value.reason is Reason.TIMESTAMP_SKEW


def test_test_tsa_response_answers_its_request() -> None:
    folder = VECTORS / "test_tsa"
    request = parse_request((folder / "request.der").read_bytes())
    assert request.cert_req
    for name in ("response.tsr", "response-injected-certs.tsr"):
        info = parse_token(_token(folder, name)).info
        assert info.nonce == request.nonce
        assert info.hash_algorithm == request.hash_algorithm == oids.SHA512
        assert info.hashed_message == request.hashed_message == hashlib.sha512(HELLO).digest()


def test_other_response_has_the_imprint_of_other_request_but_not_its_nonce() -> None:
    # The README pairs them; the bytes say other_response.tsr stamps the same imprint with
    # another nonce, so a client matching replies to its queries (HttpTimestamper) refuses it.
    folder = VECTORS / "test_tsa"
    request = parse_request((folder / "other_request.der").read_bytes())
    info = parse_token(_token(folder, "other_response.tsr")).info
    assert info.hashed_message == request.hashed_message == hashlib.sha512(HELLO).digest()
    assert request.nonce is not None
    assert info.nonce is not None
    assert info.nonce != request.nonce


def test_sigstage_request_is_a_sha512_query_over_hello() -> None:
    request = parse_request((VECTORS / "sigstage" / "request.der").read_bytes())
    assert request.hash_algorithm == oids.SHA512
    assert request.hashed_message == hashlib.sha512(HELLO).digest()
    assert request.cert_req
    assert request.policy is None
