"""Generate tests/vectors/pkits_cases.json from the NIST PKITS data in cryptography_vectors.

Every PKITS test (sections 4.1-4.16) ships an S/MIME message ``smime/Signed<TestName>.eml`` whose
PKCS#7 SignedData carries the certificates and CRLs of that test's path; this script reads them
(asn1crypto), names each one by the file in ``certs/`` or ``crls/`` with the same bytes, and writes
one entry per test: number, name, end-entity, intermediates, CRLs, expected result, lienthong's
reason code for invalid ones, and whether the case fits lienthong's profile.

Run: ``.venv/bin/python scripts/pkits_extract.py`` (rewrites the JSON file; check the diff).
"""

from __future__ import annotations

import email
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import cryptography_vectors
from asn1crypto import cms, x509

from exchange import der

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "vectors" / "pkits_cases.json"
PKITS = Path(cryptography_vectors.__file__).parent / "x509" / "PKITS_data"
ANCHOR = "TrustAnchorRootCertificate.crt"

# The tests of each section in the order of the PKITS specification (NIST, "Public Key
# Interoperability Test Suite (PKITS), Certification Path Validation", version 1.0.1, 2011 data);
# names are the S/MIME file names without "Signed" and ".eml".
SECTIONS: dict[str, list[str]] = {
    "4.1": [
        "ValidSignaturesTest1",
        "InvalidCASignatureTest2",
        "InvalidEESignatureTest3",
        "ValidDSASignaturesTest4",
        "ValidDSAParameterInheritanceTest5",
        "InvalidDSASignatureTest6",
    ],
    "4.2": [
        "InvalidCAnotBeforeDateTest1",
        "InvalidEEnotBeforeDateTest2",
        "Validpre2000UTCnotBeforeDateTest3",
        "ValidGeneralizedTimenotBeforeDateTest4",
        "InvalidCAnotAfterDateTest5",
        "InvalidEEnotAfterDateTest6",
        "Invalidpre2000UTCEEnotAfterDateTest7",
        "ValidGeneralizedTimenotAfterDateTest8",
    ],
    "4.3": [
        "InvalidNameChainingEETest1",
        "InvalidNameChainingOrderTest2",
        "ValidNameChainingWhitespaceTest3",
        "ValidNameChainingWhitespaceTest4",
        "ValidNameChainingCapitalizationTest5",
        "ValidNameChainingUIDsTest6",
        "ValidRFC3280MandatoryAttributeTypesTest7",
        "ValidRFC3280OptionalAttributeTypesTest8",
        "ValidUTF8StringEncodedNamesTest9",
        "ValidRolloverfromPrintableStringtoUTF8StringTest10",
        "ValidUTF8StringCaseInsensitiveMatchTest11",
    ],
    "4.4": [
        "MissingCRLTest1",
        "InvalidRevokedCATest2",
        "InvalidRevokedEETest3",
        "InvalidBadCRLSignatureTest4",
        "InvalidBadCRLIssuerNameTest5",
        "InvalidWrongCRLTest6",
        "ValidTwoCRLsTest7",
        "InvalidUnknownCRLEntryExtensionTest8",
        "InvalidUnknownCRLExtensionTest9",
        "InvalidUnknownCRLExtensionTest10",
        "InvalidOldCRLnextUpdateTest11",
        "Invalidpre2000CRLnextUpdateTest12",
        "ValidGeneralizedTimeCRLnextUpdateTest13",
        "ValidNegativeSerialNumberTest14",
        "InvalidNegativeSerialNumberTest15",
        "ValidLongSerialNumberTest16",
        "ValidLongSerialNumberTest17",
        "InvalidLongSerialNumberTest18",
        "ValidSeparateCertificateandCRLKeysTest19",
        "InvalidSeparateCertificateandCRLKeysTest20",
        "InvalidSeparateCertificateandCRLKeysTest21",
    ],
    "4.5": [
        "ValidBasicSelfIssuedOldWithNewTest1",
        "InvalidBasicSelfIssuedOldWithNewTest2",
        "ValidBasicSelfIssuedNewWithOldTest3",
        "ValidBasicSelfIssuedNewWithOldTest4",
        "InvalidBasicSelfIssuedNewWithOldTest5",
        "ValidBasicSelfIssuedCRLSigningKeyTest6",
        "InvalidBasicSelfIssuedCRLSigningKeyTest7",
        "InvalidBasicSelfIssuedCRLSigningKeyTest8",
    ],
    "4.6": [
        "InvalidMissingbasicConstraintsTest1",
        "InvalidcAFalseTest2",
        "InvalidcAFalseTest3",
        "ValidbasicConstraintsNotCriticalTest4",
        "InvalidpathLenConstraintTest5",
        "InvalidpathLenConstraintTest6",
        "ValidpathLenConstraintTest7",
        "ValidpathLenConstraintTest8",
        "InvalidpathLenConstraintTest9",
        "InvalidpathLenConstraintTest10",
        "InvalidpathLenConstraintTest11",
        "InvalidpathLenConstraintTest12",
        "ValidpathLenConstraintTest13",
        "ValidpathLenConstraintTest14",
        "ValidSelfIssuedpathLenConstraintTest15",
        "InvalidSelfIssuedpathLenConstraintTest16",
        "ValidSelfIssuedpathLenConstraintTest17",
    ],
    "4.7": [
        "InvalidkeyUsageCriticalkeyCertSignFalseTest1",
        "InvalidkeyUsageNotCriticalkeyCertSignFalseTest2",
        "ValidkeyUsageNotCriticalTest3",
        "InvalidkeyUsageCriticalcRLSignFalseTest4",
        "InvalidkeyUsageNotCriticalcRLSignFalseTest5",
    ],
    "4.8": [
        "AllCertificatesSamePolicyTest1",
        "AllCertificatesNoPoliciesTest2",
        "DifferentPoliciesTest3",
        "DifferentPoliciesTest4",
        "DifferentPoliciesTest5",
        "OverlappingPoliciesTest6",
        "DifferentPoliciesTest7",
        "DifferentPoliciesTest8",
        "DifferentPoliciesTest9",
        "AllCertificatesSamePoliciesTest10",
        "AllCertificatesAnyPolicyTest11",
        "DifferentPoliciesTest12",
        "AllCertificatesSamePoliciesTest13",
        "AnyPolicyTest14",
        "UserNoticeQualifierTest15",
        "UserNoticeQualifierTest16",
        "UserNoticeQualifierTest17",
        "UserNoticeQualifierTest18",
        "UserNoticeQualifierTest19",
        "CPSPointerQualifierTest20",
    ],
    "4.9": [
        "ValidRequireExplicitPolicyTest1",
        "ValidRequireExplicitPolicyTest2",
        "InvalidRequireExplicitPolicyTest3",
        "ValidRequireExplicitPolicyTest4",
        "InvalidRequireExplicitPolicyTest5",
        "ValidSelfIssuedrequireExplicitPolicyTest6",
        "InvalidSelfIssuedrequireExplicitPolicyTest7",
        "InvalidSelfIssuedrequireExplicitPolicyTest8",
    ],
    "4.10": [
        "ValidPolicyMappingTest1",
        "InvalidPolicyMappingTest2",
        "ValidPolicyMappingTest3",
        "InvalidPolicyMappingTest4",
        "ValidPolicyMappingTest5",
        "ValidPolicyMappingTest6",
        "InvalidMappingFromanyPolicyTest7",
        "InvalidMappingToanyPolicyTest8",
        "ValidPolicyMappingTest9",
        "InvalidPolicyMappingTest10",
        "ValidPolicyMappingTest11",
        "ValidPolicyMappingTest12",
        "ValidPolicyMappingTest13",
        "ValidPolicyMappingTest14",
    ],
    "4.11": [
        "InvalidinhibitPolicyMappingTest1",
        "ValidinhibitPolicyMappingTest2",
        "InvalidinhibitPolicyMappingTest3",
        "ValidinhibitPolicyMappingTest4",
        "InvalidinhibitPolicyMappingTest5",
        "InvalidinhibitPolicyMappingTest6",
        "ValidSelfIssuedinhibitPolicyMappingTest7",
        "InvalidSelfIssuedinhibitPolicyMappingTest8",
        "InvalidSelfIssuedinhibitPolicyMappingTest9",
        "InvalidSelfIssuedinhibitPolicyMappingTest10",
        "InvalidSelfIssuedinhibitPolicyMappingTest11",
    ],
    "4.12": [
        "InvalidinhibitAnyPolicyTest1",
        "ValidinhibitAnyPolicyTest2",
        "inhibitAnyPolicyTest3",
        "InvalidinhibitAnyPolicyTest4",
        "InvalidinhibitAnyPolicyTest5",
        "InvalidinhibitAnyPolicyTest6",
        "ValidSelfIssuedinhibitAnyPolicyTest7",
        "InvalidSelfIssuedinhibitAnyPolicyTest8",
        "ValidSelfIssuedinhibitAnyPolicyTest9",
        "InvalidSelfIssuedinhibitAnyPolicyTest10",
    ],
    "4.13": [
        "ValidDNnameConstraintsTest1",
        "InvalidDNnameConstraintsTest2",
        "InvalidDNnameConstraintsTest3",
        "ValidDNnameConstraintsTest4",
        "ValidDNnameConstraintsTest5",
        "ValidDNnameConstraintsTest6",
        "InvalidDNnameConstraintsTest7",
        "InvalidDNnameConstraintsTest8",
        "InvalidDNnameConstraintsTest9",
        "InvalidDNnameConstraintsTest10",
        "ValidDNnameConstraintsTest11",
        "InvalidDNnameConstraintsTest12",
        "InvalidDNnameConstraintsTest13",
        "ValidDNnameConstraintsTest14",
        "InvalidDNnameConstraintsTest15",
        "InvalidDNnameConstraintsTest16",
        "InvalidDNnameConstraintsTest17",
        "ValidDNnameConstraintsTest18",
        "ValidSelfIssuedDNnameConstraintsTest19",
        "InvalidSelfIssuedDNnameConstraintsTest20",
        "ValidRFC822nameConstraintsTest21",
        "InvalidRFC822nameConstraintsTest22",
        "ValidRFC822nameConstraintsTest23",
        "InvalidRFC822nameConstraintsTest24",
        "ValidRFC822nameConstraintsTest25",
        "InvalidRFC822nameConstraintsTest26",
        "ValidDNandRFC822nameConstraintsTest27",
        "InvalidDNandRFC822nameConstraintsTest28",
        "InvalidDNandRFC822nameConstraintsTest29",
        "ValidDNSnameConstraintsTest30",
        "InvalidDNSnameConstraintsTest31",
        "ValidDNSnameConstraintsTest32",
        "InvalidDNSnameConstraintsTest33",
        "ValidURInameConstraintsTest34",
        "InvalidURInameConstraintsTest35",
        "ValidURInameConstraintsTest36",
        "InvalidURInameConstraintsTest37",
        "InvalidDNSnameConstraintsTest38",
    ],
    "4.14": [
        "ValiddistributionPointTest1",
        "InvaliddistributionPointTest2",
        "InvaliddistributionPointTest3",
        "ValiddistributionPointTest4",
        "ValiddistributionPointTest5",
        "InvaliddistributionPointTest6",
        "ValiddistributionPointTest7",
        "InvaliddistributionPointTest8",
        "InvaliddistributionPointTest9",
        "ValidNoissuingDistributionPointTest10",
        "InvalidonlyContainsUserCertsCRLTest11",
        "InvalidonlyContainsCACertsCRLTest12",
        "ValidonlyContainsCACertsCRLTest13",
        "InvalidonlyContainsAttributeCertsTest14",
        "InvalidonlySomeReasonsTest15",
        "InvalidonlySomeReasonsTest16",
        "InvalidonlySomeReasonsTest17",
        "ValidonlySomeReasonsTest18",
        "ValidonlySomeReasonsTest19",
        "InvalidonlySomeReasonsTest20",
        "InvalidonlySomeReasonsTest21",
        "ValidIDPwithindirectCRLTest22",
        "InvalidIDPwithindirectCRLTest23",
        "ValidIDPwithindirectCRLTest24",
        "ValidIDPwithindirectCRLTest25",
        "InvalidIDPwithindirectCRLTest26",
        "InvalidcRLIssuerTest27",
        "ValidcRLIssuerTest28",
        "ValidcRLIssuerTest29",
        "ValidcRLIssuerTest30",
        "InvalidcRLIssuerTest31",
        "InvalidcRLIssuerTest32",
        "ValidcRLIssuerTest33",
        "InvalidcRLIssuerTest34",
        "InvalidcRLIssuerTest35",
    ],
    "4.15": [
        "InvaliddeltaCRLIndicatorNoBaseTest1",
        "ValiddeltaCRLTest2",
        "InvaliddeltaCRLTest3",
        "InvaliddeltaCRLTest4",
        "ValiddeltaCRLTest5",
        "InvaliddeltaCRLTest6",
        "ValiddeltaCRLTest7",
        "ValiddeltaCRLTest8",
        "InvaliddeltaCRLTest9",
        "InvaliddeltaCRLTest10",
    ],
    "4.16": [
        "ValidUnknownNotCriticalCertificateExtensionTest1",
        "InvalidUnknownCriticalCertificateExtensionTest2",
    ],
}

# Expected results under the PKITS default inputs (initial-policy-set any-policy; explicit policy,
# policy mapping inhibit and any-policy inhibit all false) for the names without a Valid/Invalid
# prefix. PKITS 4.4.1 and 4.12.3 are named without the prefix; 4.8.x mostly so.
UNPREFIXED: dict[str, str] = {
    "MissingCRLTest1": "invalid",
    "AllCertificatesSamePolicyTest1": "valid",
    "AllCertificatesNoPoliciesTest2": "valid",
    "DifferentPoliciesTest3": "valid",
    "DifferentPoliciesTest4": "invalid",
    "DifferentPoliciesTest5": "invalid",
    "OverlappingPoliciesTest6": "valid",
    "DifferentPoliciesTest7": "invalid",
    "DifferentPoliciesTest8": "invalid",
    "DifferentPoliciesTest9": "invalid",
    "AllCertificatesSamePoliciesTest10": "valid",
    "AllCertificatesAnyPolicyTest11": "valid",
    "DifferentPoliciesTest12": "invalid",
    "AllCertificatesSamePoliciesTest13": "valid",
    "AnyPolicyTest14": "valid",
    "UserNoticeQualifierTest15": "valid",
    "UserNoticeQualifierTest16": "valid",
    "UserNoticeQualifierTest17": "valid",
    "UserNoticeQualifierTest18": "valid",
    "UserNoticeQualifierTest19": "valid",
    "CPSPointerQualifierTest20": "valid",
    "inhibitAnyPolicyTest3": "valid",
}

# Why a case does not fit lienthong's profile, by test number. Two kinds:
# - the feature is outside the profile (DSA, reason-partitioned, indirect and delta CRLs): every
#   case of it, valid or invalid, is left out;
# - lienthong is deliberately stricter than PKITS on a valid path. The invalid cases next to those
#   stay in: lienthong must still reject them (the reason code tells how).
_DSA = "DSA keys and signatures: lienthong accepts RSA >= 2048, ECDSA P-256/384/521 and EdDSA"
_REASONS = (
    "reason-partitioned CRLs (onlySomeReasons): lienthong uses only complete CRLs, one per CA"
)
_INDIRECT = "indirect CRLs / cRLIssuer: lienthong uses only CRLs issued by the certificate's CA"
_DELTA = "delta CRLs: lienthong uses full CRLs only and never merges a delta into its base"
_TIME = (
    "GeneralizedTime validity before 2050: cryptography refuses it as RFC 5280 4.1.2.5 requires "
    "UTCTime (deliberate DER strictness; fails closed)"
)
_NAMES = (
    "name chaining by exact encoding: cryptography chains on identical Names (RFC 5280 4.1.2.6 "
    "has CAs encode them identically), without RFC 4518 case/whitespace folding (fails closed)"
)
_CRL_KEY = (
    "CRL signed by a separate CRL-signing key: lienthong believes only CRLs signed by the key "
    "that issued the certificate (deliberate; no CRL-issuer path building; fails closed)"
)
_ROLLOVER = (
    "CA key rollover: the CRL is signed by the CA's other key; lienthong believes only CRLs "
    "signed by the key that issued the certificate (deliberate; fails closed)"
)
_SELF_ISSUED = (
    "self-issued intermediate under pathLenConstraint: cryptography counts it toward the limit "
    "(as mozilla::pkix does deliberately; RFC 5280 4.2.1.9 exempts it; fails closed)"
)
_POLICY = (
    "certificate-policy controls (policyConstraints, policyMappings, inhibitAnyPolicy): lienthong "
    "does no policy processing and refuses any path that carries them (deliberate; fails closed)"
)
_DN_CONSTRAINTS = (
    "directoryName name constraints: cryptography does not evaluate them and refuses every path "
    "under such a CA (fails closed)"
)
_URI_CONSTRAINTS = (
    "URI name constraints: cryptography does not evaluate them and refuses every path under such "
    "a CA (fails closed)"
)
_NOT_APPLICABLE: dict[str, str] = {
    **dict.fromkeys(["4.1.4", "4.1.5", "4.1.6"], _DSA),
    "4.2.4": _TIME,
    **dict.fromkeys(["4.3.3", "4.3.4", "4.3.5", "4.3.10", "4.3.11"], _NAMES),
    **dict.fromkeys(["4.4.19", "4.5.6"], _CRL_KEY),
    **dict.fromkeys(["4.5.1", "4.5.4"], _ROLLOVER),
    **dict.fromkeys(["4.6.15", "4.6.17"], _SELF_ISSUED),
    **dict.fromkeys(
        ["4.8.6", "4.8.10", "4.8.11", "4.8.13", "4.8.14", "4.8.18"]
        + ["4.9.1", "4.9.2", "4.9.4", "4.9.6"]
        + [f"4.10.{n}" for n in (1, 3, 5, 6, 9, 11, 12, 13, 14)]
        + ["4.11.2", "4.11.4", "4.11.7"]
        + ["4.12.2", "4.12.3", "4.12.7", "4.12.9"],
        _POLICY,
    ),
    **dict.fromkeys([f"4.13.{n}" for n in (1, 4, 5, 6, 11, 14, 18, 19, 27)], _DN_CONSTRAINTS),
    **dict.fromkeys(["4.13.34", "4.13.36"], _URI_CONSTRAINTS),
    **dict.fromkeys([f"4.14.{n}" for n in range(15, 22)], _REASONS),
    **dict.fromkeys([f"4.14.{n}" for n in range(22, 36)], _INDIRECT),
    **dict.fromkeys([f"4.15.{n}" for n in range(1, 11)], _DELTA),
}

# lienthong's Reason code for each applicable invalid case (checked by the test).
_REASON_CODES: dict[str, list[str]] = {
    "untrusted_chain": (
        ["4.1.2", "4.1.3", "4.3.1", "4.3.2", "4.4.15", "4.5.8", "4.6.1", "4.6.2", "4.6.3"]
        + [f"4.6.{n}" for n in (5, 6, 9, 10, 11, 12, 16)]
        + ["4.7.1", "4.7.2"]
        + [f"4.8.{n}" for n in (4, 5, 7, 8, 9, 12)]
        + ["4.9.3", "4.9.5", "4.9.7", "4.9.8"]
        + [f"4.10.{n}" for n in (2, 4, 7, 8, 10)]
        + [f"4.11.{n}" for n in (1, 3, 5, 6, 8, 9, 10, 11)]
        + [f"4.12.{n}" for n in (1, 4, 5, 6, 8, 10)]
        + [f"4.13.{n}" for n in (2, 3, 7, 8, 9, 10, 12, 13, 15, 16, 17, 20, 22, 24, 26)]
        + [f"4.13.{n}" for n in (28, 29, 31, 33, 35, 37, 38)]
        + ["4.16.2"]
    ),
    "certificate_not_yet_valid": ["4.2.1", "4.2.2"],
    "certificate_expired": ["4.2.5", "4.2.6", "4.2.7"],
    "crl_missing": ["4.4.1", "4.4.5", "4.4.6", "4.4.9", "4.4.10"]
    + [f"4.14.{n}" for n in (3, 8, 9, 11, 12, 14)],
    "crl_expired": ["4.4.11", "4.4.12"],
    "crl_invalid": ["4.4.4", "4.4.20", "4.4.21", "4.5.2", "4.5.5", "4.5.7", "4.7.4", "4.7.5"],
    "certificate_revoked": ["4.4.2", "4.4.3", "4.4.8", "4.4.18", "4.14.2", "4.14.6"],
}
REASON_CODES = {number: code for code, numbers in _REASON_CODES.items() for number in numbers}


def expected_of(name: str) -> str:
    if name.startswith("Valid"):
        return "valid"
    if name.startswith("Invalid"):
        return "invalid"
    return UNPREFIXED[name]


def _by_digest(folder: Path) -> dict[str, str]:
    """File name by SHA-256; of identical files the first by name wins (WrongCRLCACRL.crl is a
    copy of TrustAnchorRootCRL.crl, and is named so only in PKITS 4.4.6)."""
    names: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        names.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path.name)
    return names


def _pkcs7(path: Path) -> bytes:
    message = email.message_from_bytes(path.read_bytes())
    for part in message.walk():
        if part.get_content_type() in ("application/pkcs7-signature", "application/pkcs7-mime"):
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload
    raise ValueError(f"{path.name}: no PKCS#7 part")


def _raw_sets(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """The certificates and CRLs of a SignedData, as the exact bytes it carries.

    (asn1crypto's ``dump()`` re-encodes some fields, e.g. a subjectUniqueID's unused bits, so
    the elements are cut out of the DER here instead.)
    """
    start, stop = der.whole(data, der.SEQUENCE)
    fields = der.children(data, start, stop)
    signed_start, signed_stop = der.expect(data, fields[1][2], fields[1][3], der.SEQUENCE)
    certs: list[bytes] = []
    crls: list[bytes] = []
    for tag, _, cstart, cstop in der.children(data, signed_start, signed_stop):
        if tag in (der.context(0), der.context(1)):
            elements = [data[pos:end] for _, pos, _, end in der.children(data, cstart, cstop)]
            (certs if tag == der.context(0) else crls).extend(elements)
    return certs, crls


def case(number: str, name: str, certs: dict[str, str], crls: dict[str, str]) -> dict[str, Any]:
    data = _pkcs7(PKITS / "smime" / f"Signed{name}.eml")
    signed = cms.ContentInfo.load(data)["content"]
    signer_id = signed["signer_infos"][0]["sid"].chosen
    raw_certs, raw_crls = _raw_sets(data)
    ee: str | None = None
    others: list[str] = []
    for raw in raw_certs:
        file = certs[hashlib.sha256(raw).hexdigest()]
        cert = x509.Certificate.load(raw)
        if (
            cert.issuer == signer_id["issuer"]
            and cert.serial_number == signer_id["serial_number"].native
        ):
            ee = file
        elif file != ANCHOR:
            others.append(file)
    if ee is None:
        raise ValueError(f"{name}: the signer's certificate is not in the message")
    crl_files = sorted(crls[hashlib.sha256(raw).hexdigest()] for raw in raw_crls)
    why_not = _NOT_APPLICABLE.get(number)
    entry: dict[str, Any] = {
        "number": number,
        "name": name,
        "expected": expected_of(name),
        "applicable": why_not is None,
    }
    if entry["expected"] == "invalid" and why_not is None:
        entry["reason"] = REASON_CODES[number]
    if why_not is not None:
        entry["why_not"] = why_not
    entry["ee"] = ee
    entry["intermediates"] = others
    entry["crls"] = crl_files
    return entry


HEADER = [
    "NIST PKITS (Public Key Interoperability Test Suite, 2011 data, RSA-2048/SHA-256), sections "
    "4.1-4.16, as shipped in cryptography_vectors/x509/PKITS_data; run by "
    "tests/integration/test_pkits.py. Generated by scripts/pkits_extract.py: ee, intermediates and "
    "crls are what each test's smime/Signed<name>.eml carries in its PKCS#7 SignedData (the trust "
    "anchor TrustAnchorRootCertificate.crt left out; TrustAnchorRootCRL.crl kept).",
    "expected: the PKITS specification's result under its default inputs (initial-policy-set "
    "any-policy; initial explicit policy, policy mapping inhibit and any-policy inhibit all "
    "false): the Valid/Invalid prefix of the name; for the unprefixed 4.4.1, 4.8.x and 4.12.3 "
    "the specification's text. Cross-checked against pyHanko's PKITS fixture "
    "(MatthiasValvekens/pyHanko tests/fixtures/nist_pkits/pkits.json: an entry without "
    "'params' is invalid iff it has an 'error'), which agrees on every test it runs with default "
    "inputs, and against BouncyCastle's bcgit/bc-java prov/src/test/java/org/bouncycastle/jce/"
    "provider/test/nist/NistCertPathTest2.java for the 4.8 defaults.",
    "applicable=false (why_not says why; the case is not run): DSA, reason-partitioned, indirect "
    "and delta CRL cases, all of them; and valid paths on which lienthong is deliberately "
    "stricter than PKITS (it fails closed). Every other case is run and must match; invalid "
    "paths must be rejected even where the rejection is such a refusal. reason: the Reason code "
    "lienthong gives for an applicable invalid case.",
    "at: the trusted time and 'now' of every case (PKITS certificates and CRLs are valid "
    "2010-01-01 to 2030-12-31).",
]


def main() -> int:
    certs = _by_digest(PKITS / "certs")
    crls = _by_digest(PKITS / "crls")
    cases = [
        case(f"{section}.{index}", name, certs, crls)
        for section, names in SECTIONS.items()
        for index, name in enumerate(names, start=1)
    ]
    numbers = {c["number"] for c in cases}
    invalid_applicable = {
        c["number"] for c in cases if c["applicable"] and c["expected"] == "invalid"
    }
    if len(cases) != 224 or not set(_NOT_APPLICABLE) <= numbers:
        raise SystemExit("the test table and the not-applicable table disagree")
    if set(REASON_CODES) != invalid_applicable:
        raise SystemExit(
            f"reason codes missing or extra: {sorted(set(REASON_CODES) ^ invalid_applicable)}"
        )
    document = {
        "about": HEADER,
        "at": "2020-01-01T00:00:00Z",
        "applicable_count": sum(1 for c in cases if c["applicable"]),
        "cases": cases,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    # One case a line, so that a change to one case is a one-line diff.
    head = json.dumps({k: v for k, v in document.items() if k != "cases"}, indent=1)
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    OUTPUT.write_text(f'{head[:-2]},\n "cases": [\n{body}\n ]\n}}\n', encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
