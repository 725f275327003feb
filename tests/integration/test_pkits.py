"""NIST PKITS (2011 data, sections 4.1-4.16) through lienthong's chain and CRL validation.

Each case of ``tests/vectors/pkits_cases.json`` (made by ``scripts/pkits_extract.py``; its header
says where the expectations come from) is fed to ``TrustStore.check_path`` with the PKITS trust
anchor, the CRLs its S/MIME message carries and the intermediates it carries, at 2020-01-01:
accepted or rejected must match PKITS, and a rejection must carry the recorded reason code.
PKITS end entities are not all document signers (some are CA certificates), so the key-usage rule
of ``judge`` is left out here; ``test_judge_adds_only_the_usage_rule`` checks that ``judge``
differs from it by that rule alone. Cases outside lienthong's profile are listed in the data
file with the reason, and are not run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from exchange.certificates import CertFacts, certificate_facts
from exchange.errors import Rejected
from exchange.reasons import Reason
from exchange.trust import TrustStore

PKITS = files("cryptography_vectors") / "x509" / "PKITS_data"
CASES_FILE = Path(__file__).resolve().parent.parent / "vectors" / "pkits_cases.json"
ANCHOR = "TrustAnchorRootCertificate.crt"
PKITS_TEST_COUNT = 224  # sections 4.1-4.16 of the PKITS specification
# Raising this is fine; lowering it means a case was dropped from the profile: say why.
APPLICABLE_COUNT = 141

CHAIN_REASONS = frozenset(
    {
        Reason.UNTRUSTED_CHAIN,
        Reason.CERTIFICATE_EXPIRED,
        Reason.CERTIFICATE_NOT_YET_VALID,
        Reason.WEAK_ALGORITHM,
        Reason.UNSUPPORTED_ALGORITHM,
    }
)

# PKITS 4.4.14/4.4.15 carry negative serial numbers on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


@dataclass(frozen=True, slots=True)
class Case:
    number: str
    name: str
    expected: str
    applicable: bool
    reason: Reason | None
    why_not: str | None
    ee: str
    intermediates: tuple[str, ...]
    crls: tuple[str, ...]


def _case(entry: dict[str, Any]) -> Case:
    reason = entry.get("reason")
    return Case(
        number=entry["number"],
        name=entry["name"],
        expected=entry["expected"],
        applicable=entry["applicable"],
        reason=Reason(reason) if reason is not None else None,
        why_not=entry.get("why_not"),
        ee=entry["ee"],
        intermediates=tuple(entry["intermediates"]),
        crls=tuple(entry["crls"]),
    )


DOCUMENT: dict[str, Any] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
CASES = [_case(entry) for entry in DOCUMENT["cases"]]
APPLICABLE = [case for case in CASES if case.applicable]
AT = dt.datetime.fromisoformat(DOCUMENT["at"])


@cache
def _cert(name: str) -> CertFacts:
    return certificate_facts((PKITS / "certs" / name).read_bytes())


@cache
def _crl(name: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl((PKITS / "crls" / name).read_bytes())


def _decide(case: Case, *, judge: bool) -> tuple[Reason | None, str]:
    """The reason lienthong rejects the case's path for, and why; (None, "") if it accepts."""
    store = TrustStore([_cert(ANCHOR).cert], [_crl(name) for name in case.crls])
    signer = _cert(case.ee)
    intermediates = [_cert(name) for name in case.intermediates]
    try:
        if judge:
            store.judge(signer, intermediates, at=AT, now=AT)
        else:
            store.check_path(signer, intermediates, at=AT, now=AT, require_document_signing=False)
    except Rejected as exc:
        return exc.reason, exc.detail
    return None, ""


@pytest.mark.parametrize("case", APPLICABLE, ids=[case.name for case in APPLICABLE])
def test_pkits(case: Case) -> None:
    got, detail = _decide(case, judge=False)
    if case.expected == "valid":
        assert got is None, f"PKITS {case.number}: valid path rejected: {got}: {detail}"
    else:
        assert got is not None, f"PKITS {case.number}: invalid path accepted"
        assert got is case.reason, f"PKITS {case.number}: {got}: {detail}"


def test_judge_adds_only_the_usage_rule() -> None:
    """``judge`` (what the verifier calls) decides as ``check_path``, plus the signer's usage."""
    for case in APPLICABLE:
        got, detail = _decide(case, judge=True)
        # judge's order: chain, then the signer's usage, then revocation.
        want = case.reason
        if case.reason not in CHAIN_REASONS and _cert(case.ee).usage_problem is not None:
            want = Reason.KEY_USAGE_INVALID
        assert got is want, f"PKITS {case.number}: {got}: {detail}"


def test_data_file_lists_every_case_and_the_applicable_count() -> None:
    assert len(CASES) == PKITS_TEST_COUNT
    assert len({case.number for case in CASES}) == PKITS_TEST_COUNT
    assert len({case.name for case in CASES}) == PKITS_TEST_COUNT
    assert len(APPLICABLE) == DOCUMENT["applicable_count"] == APPLICABLE_COUNT
    for case in CASES:
        assert case.expected in ("valid", "invalid"), case.number
        if case.applicable:
            assert case.why_not is None, case.number
            assert (case.reason is not None) == (case.expected == "invalid"), case.number
        else:
            assert case.why_not, f"PKITS {case.number} is not applicable without a reason"
            assert case.reason is None, case.number
