"""Property-based tests of the RFC 3161 reader (exchange/timestamps.py) and, around them, of the
header parser: where tests/unit/test_der_properties.py covers the DER/CMS reader and header
spellings, these cover TSTInfo and whole tokens.

- Differential: TSTInfo values generated field by field (every optional field present or not)
  and written with exchange.derwrite are read by ``parse_tst_info`` exactly as asn1crypto reads
  them; where DER allows one encoding only (an accuracy of zero millis, a BOOLEAN that is not
  00/FF, a fraction with a trailing zero) the reader refuses what asn1crypto would let through.
- Robustness: arbitrary bytes and mutations of real tokens (the bus's TSA) make ``parse_token``
  and ``parse_tst_info`` return or raise ``TokenError``, and ``TimestampVerifier.verify_token``
  return or raise ``Rejected`` with a timestamp reason; a mutated token is never accepted unless
  the mutation lies outside what is signed (the unsigned certificate bag).
- The header parser returns a ``Header`` or raises ``Rejected`` for any bytes and any JSON value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pytest
from asn1crypto import tsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange import der, oids
from exchange import derwrite as w
from exchange.envelope import parse_header
from exchange.errors import Rejected
from exchange.policy import Limits
from exchange.ports import FixedClock
from exchange.reasons import Reason
from exchange.timestamps import TimestampVerifier, TokenError, parse_token, parse_tst_info
from tests import timestamping
from tests.helpers import Pki

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIMESTAMP_REASONS = {r for r in Reason if r.value.startswith("timestamp_")}
HEADER_REASONS = ("malformed_header", "header_", "too_many_", "invalid_agency_code")
HASHES = {oids.SHA256: 32, oids.SHA384: 48, oids.SHA512: 64}


@dataclass(frozen=True)
class Tst:
    """A generated TSTInfo: its fields and its DER."""

    policy: str
    hash_oid: bytes
    hashed: bytes
    serial: int
    gen_time: dt.datetime
    accuracy: tuple[int | None, int | None, int | None] | None
    ordering: bool | None  # None: absent (DEFAULT FALSE)
    nonce: int | None
    tsa: bytes | None  # DER of a GeneralName
    extensions: tuple[tuple[str, bool, bytes], ...] | None
    encoding: bytes


def _generalized(value: dt.datetime) -> bytes:
    return w.generalized_time(value)


@st.composite
def tst_infos(draw: st.DrawFn) -> Tst:
    policy = "1.3.6.1.4.1." + ".".join(
        str(a) for a in draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=5))
    )
    hash_oid = draw(st.sampled_from(sorted(HASHES)))
    hashed = draw(st.binary(min_size=HASHES[hash_oid], max_size=HASHES[hash_oid]))
    serial = draw(st.integers(0, 2**159))
    gen_time = draw(st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2099, 12, 31))).replace(
        tzinfo=dt.UTC
    )
    accuracy = draw(
        st.none()
        | st.tuples(
            st.none() | st.integers(0, 2**31 - 1),
            st.none() | st.integers(1, 999),
            st.none() | st.integers(1, 999),
        )
    )
    ordering = draw(st.none() | st.booleans())
    nonce = draw(st.none() | st.integers(0, 2**64))
    tsa = draw(
        st.none()
        | st.builds(
            lambda cn: w.explicit(
                4,
                w.sequence(w.set_of(w.sequence(w.oid(der.encode_oid("2.5.4.3")), w.utf8(cn)))),
            ),
            st.text(min_size=1, max_size=20),
        )
    )
    extensions = draw(
        st.none()
        | st.lists(
            st.tuples(
                st.integers(1, 2**20).map(lambda n: f"1.3.6.1.4.1.{n}"),
                st.booleans(),
                st.binary(max_size=20),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda e: e[0],
        ).map(tuple)
    )
    fields = [
        w.integer(1),
        w.oid(der.encode_oid(policy)),
        w.sequence(w.algorithm(hash_oid), w.octets(hashed)),
        w.integer(serial),
        _generalized(gen_time),
    ]
    if accuracy is not None:
        seconds, millis, micros = accuracy
        parts = [w.integer(seconds)] if seconds is not None else []
        if millis is not None:
            parts.append(w.implicit(0, w.integer(millis), constructed=False))
        if micros is not None:
            parts.append(w.implicit(1, w.integer(micros), constructed=False))
        fields.append(w.sequence(*parts))
    if ordering is not None:
        fields.append(w.boolean(ordering))
    if nonce is not None:
        fields.append(w.integer(nonce))
    if tsa is not None:
        fields.append(w.explicit(0, tsa))
    if extensions is not None:
        fields.append(
            w.implicit(
                1,
                w.sequence(
                    *(
                        w.sequence(
                            w.oid(der.encode_oid(o)),
                            *([w.boolean(True)] if critical else []),
                            w.octets(value),
                        )
                        for o, critical, value in extensions
                    )
                ),
            )
        )
    return Tst(
        policy,
        hash_oid,
        hashed,
        serial,
        gen_time,
        accuracy,
        ordering,
        nonce,
        tsa,
        extensions,
        w.sequence(*fields),
    )


@SETTINGS
@given(tst_infos())
def test_tst_info_reads_like_asn1crypto(tst: Tst) -> None:
    ours = parse_tst_info(tst.encoding)
    theirs = tsp.TSTInfo.load(tst.encoding)
    assert ours.version == 1
    assert theirs["version"].native == "v1"
    assert ours.policy_dotted == theirs["policy"].dotted == tst.policy
    assert ours.hash_algorithm == tst.hash_oid
    assert ours.hashed_message == theirs["message_imprint"]["hashed_message"].native
    assert ours.serial == theirs["serial_number"].native == tst.serial
    assert ours.gen_time == theirs["gen_time"].native == tst.gen_time
    assert ours.ordering == bool(tst.ordering) == theirs["ordering"].native
    assert ours.nonce == theirs["nonce"].native == tst.nonce
    if tst.accuracy is None:
        assert ours.accuracy is None
    else:
        seconds, millis, micros = (v or 0 for v in tst.accuracy)
        native = theirs["accuracy"].native
        assert ours.accuracy == dt.timedelta(
            seconds=seconds, milliseconds=millis, microseconds=micros
        )
        assert (native["seconds"] or 0, native["millis"] or 0, native["micros"] or 0) == (
            seconds,
            millis,
            micros,
        )
    assert ours.tsa_name == tst.tsa
    expected = tst.extensions or ()
    assert [(der.decode_oid(e.oid), e.critical, e.value) for e in ours.extensions] == list(expected)
    assert len(theirs["extensions"]) == len(expected) if tst.extensions else True


@SETTINGS
@given(tst_infos(), st.data())
def test_tst_info_with_a_field_out_of_order_is_refused(tst: Tst, data: st.DataObject) -> None:
    start, stop = der.whole(tst.encoding, der.SEQUENCE)
    parts = [tst.encoding[pos:end] for _, pos, _, end in der.children(tst.encoding, start, stop)]
    optional = parts[5:]
    if len(optional) < 2:
        return
    i = data.draw(st.integers(0, len(optional) - 2))
    swapped = [*optional[:i], optional[i + 1], optional[i], *optional[i + 2 :]]
    with pytest.raises(TokenError):
        parse_tst_info(w.sequence(*parts[:5], *swapped))


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("accuracy of zero millis", w.sequence(w.implicit(0, w.integer(0), constructed=False))),
        ("accuracy of 1000 micros", w.sequence(w.implicit(1, w.integer(1000), constructed=False))),
        ("negative accuracy seconds", w.sequence(w.integer(-1))),
        ("ordering that is not 00 or FF", w.tlv(der.BOOLEAN, b"\x01")),
        (
            "tsa of two names",
            w.explicit(0, w.explicit(4, w.sequence()) + w.explicit(4, w.sequence())),
        ),
    ],
)
def test_tst_info_fields_that_are_not_der_are_refused(name: str, field: bytes) -> None:
    base = [
        w.integer(1),
        w.oid(der.encode_oid("1.3.6.1.4.1.1")),
        w.sequence(w.algorithm(oids.SHA256), w.octets(bytes(32))),
        w.integer(1),
        w.generalized_time(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    ]
    with pytest.raises(TokenError):
        parse_tst_info(w.sequence(*base, field))


@pytest.mark.parametrize(
    "gen_time", [b"20260101000000.10Z", b"20260101000000.Z", b"202601010000Z", b"20260101000000"]
)
def test_gen_time_that_is_not_der_is_refused(gen_time: bytes) -> None:
    fields = [
        w.integer(1),
        w.oid(der.encode_oid("1.3.6.1.4.1.1")),
        w.sequence(w.algorithm(oids.SHA256), w.octets(bytes(32))),
        w.integer(1),
        w.tlv(der.GENERALIZED_TIME, gen_time),
    ]
    with pytest.raises(TokenError):
        parse_tst_info(w.sequence(*fields))


@SETTINGS
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_are_a_tst_info_or_token_error(data: bytes) -> None:
    for parse in (parse_tst_info, parse_token):
        with contextlib.suppress(TokenError):
            parse(data)


# --- whole tokens, mutated ------------------------------------------------------------------

# cryptography warns about (and still loads) a mutated certificate whose serial turned negative.
CRYPTOGRAPHY_WARNINGS = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number which wasn't positive", "ignore:Attribute's length must be"
)


@pytest.fixture(scope="module")
def token_and_judge(pki: Pki) -> tuple[bytes, TimestampVerifier, dt.datetime]:
    """A token, its judge, and the time both agree on, read when the fixture is made (not at
    import: the suite runs long, and the trust store's material is made later)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    tsa = timestamping.authority(pki, clock=FixedClock(now))
    token = timestamping.token_for(tsa, b"signature value")
    judge = TimestampVerifier(pki.trust())
    assert judge.verify_token(token, b"signature value", now=now).gen_time == now
    return token, judge, now


def _unchecked(token: bytes) -> list[tuple[int, int]]:
    """Regions of a token that nothing signs and the verifier does not judge: the SignedData
    version and digestAlgorithms (the SignerInfo names its own), and the certificate bag (the
    TSA certificate in it is found by the signer identifier and bound by the signed ESS
    signingCertificateV2; a changed byte there makes another certificate, which then fails)."""
    _, start, stop = der.read(token, 0, len(token))
    outer = der.children(token, start, stop)
    inner = der.children(token, outer[1][2], outer[1][3])
    fields = der.children(token, inner[0][2], inner[0][3])
    return [(pos, end) for tag, pos, _, end in fields if tag in (der.INTEGER, der.SET, 0xA0)][:3]


@CRYPTOGRAPHY_WARNINGS
@settings(SETTINGS, max_examples=150)
@given(st.data())
def test_mutated_token_is_a_timestamp_rejection_or_unchanged_in_meaning(
    token_and_judge: tuple[bytes, TimestampVerifier, dt.datetime], data: st.DataObject
) -> None:
    token, judge, now = token_and_judge
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "replace_run"]))
    at = data.draw(st.integers(0, len(token) - 1))
    if kind == "flip":
        mutated = bytearray(token)
        mutated[at] ^= data.draw(st.integers(1, 255))
        candidate = bytes(mutated)
    elif kind == "cut":
        candidate = token[:at] + token[at + data.draw(st.integers(1, 64)) :]
    elif kind == "insert":
        candidate = token[:at] + data.draw(st.binary(min_size=1, max_size=16)) + token[at:]
    else:
        run = data.draw(st.binary(min_size=1, max_size=32))
        candidate = token[:at] + run + token[at + len(run) :]
    if candidate == token:
        return
    with contextlib.suppress(TokenError):
        parse_token(candidate)
    try:
        verified = judge.verify_token(candidate, b"signature value", now=now)
    except Rejected as rejected:
        reason = rejected.reason
    else:
        # Accepted: only a change that nothing signs or checks may be.
        assert kind in ("flip", "replace_run"), kind
        assert any(start <= at < stop for start, stop in _unchecked(token)), at
        assert verified.gen_time == now
        assert verified.info.hashed_message == hashlib.sha256(b"signature value").digest()
        return
    assert reason in TIMESTAMP_REASONS


# --- the header parser on anything --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(JSON)
def test_header_parser_on_any_json_value(value: Any) -> None:
    with pytest.raises(Rejected) as rejected:
        parse_header(json.dumps(value).encode(), Limits())
    assert rejected.value.reason.value.startswith(HEADER_REASONS)


@SETTINGS
@given(st.binary(max_size=512))
def test_header_parser_on_any_bytes(data: bytes) -> None:
    with contextlib.suppress(Rejected):
        parse_header(data, Limits())
        raise AssertionError(f"accepted {data!r}")  # no 512 random bytes are a header
