"""Object identifiers lienthong reads and writes, as DER content octets ready to compare."""

from __future__ import annotations

from exchange.der import encode_oid

# CMS (RFC 5652) and attributes.
SIGNED_DATA = encode_oid("1.2.840.113549.1.7.2")
DATA = encode_oid("1.2.840.113549.1.7.1")
TST_INFO = encode_oid("1.2.840.113549.1.9.16.1.4")
ATTR_CONTENT_TYPE = encode_oid("1.2.840.113549.1.9.3")
ATTR_MESSAGE_DIGEST = encode_oid("1.2.840.113549.1.9.4")
ATTR_SIGNING_TIME = encode_oid("1.2.840.113549.1.9.5")
ATTR_SIGNING_CERTIFICATE = encode_oid("1.2.840.113549.1.9.16.2.12")
ATTR_SIGNING_CERTIFICATE_V2 = encode_oid("1.2.840.113549.1.9.16.2.47")
ATTR_CMS_ALGORITHM_PROTECTION = encode_oid("1.2.840.113549.1.9.52")
ATTR_SIGNATURE_TIMESTAMP_TOKEN = encode_oid("1.2.840.113549.1.9.16.2.14")

# Digests.
SHA1 = encode_oid("1.3.14.3.2.26")
MD5 = encode_oid("1.2.840.113549.2.5")
SHA224 = encode_oid("2.16.840.1.101.3.4.2.4")
SHA256 = encode_oid("2.16.840.1.101.3.4.2.1")
SHA384 = encode_oid("2.16.840.1.101.3.4.2.2")
SHA512 = encode_oid("2.16.840.1.101.3.4.2.3")
SHA3_256 = encode_oid("2.16.840.1.101.3.4.2.8")
SHA3_384 = encode_oid("2.16.840.1.101.3.4.2.9")
SHA3_512 = encode_oid("2.16.840.1.101.3.4.2.10")
MGF1 = encode_oid("1.2.840.113549.1.1.8")

# Signatures.
RSA_ENCRYPTION = encode_oid("1.2.840.113549.1.1.1")
MD5_WITH_RSA = encode_oid("1.2.840.113549.1.1.4")
SHA1_WITH_RSA = encode_oid("1.2.840.113549.1.1.5")
RSASSA_PSS = encode_oid("1.2.840.113549.1.1.10")
SHA256_WITH_RSA = encode_oid("1.2.840.113549.1.1.11")
SHA384_WITH_RSA = encode_oid("1.2.840.113549.1.1.12")
SHA512_WITH_RSA = encode_oid("1.2.840.113549.1.1.13")
SHA224_WITH_RSA = encode_oid("1.2.840.113549.1.1.14")
ECDSA_WITH_SHA1 = encode_oid("1.2.840.10045.4.1")
ECDSA_WITH_SHA224 = encode_oid("1.2.840.10045.4.3.1")
ECDSA_WITH_SHA256 = encode_oid("1.2.840.10045.4.3.2")
ECDSA_WITH_SHA384 = encode_oid("1.2.840.10045.4.3.3")
ECDSA_WITH_SHA512 = encode_oid("1.2.840.10045.4.3.4")
EC_PUBLIC_KEY = encode_oid("1.2.840.10045.2.1")
ED25519 = encode_oid("1.3.101.112")
ED448 = encode_oid("1.3.101.113")
DSA_WITH_SHA1 = encode_oid("1.2.840.10040.4.3")

# X.509 names, extensions and policies (dotted: these go through cryptography's ObjectIdentifier).
ORGANIZATION_IDENTIFIER = "2.5.4.97"
EKU_DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"
EKU_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
EKU_TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
EKU_ANY = "2.5.29.37.0"
EKU_MS_DOCUMENT_SIGNING = "1.3.6.1.4.1.311.10.3.12"
EKU_ADOBE_AUTHENTIC_DOCUMENTS = "1.2.840.113583.1.1.5"
# ETSI EN 319 411-2 certificate policies that say whose certificate it is.
POLICY_QCP_NATURAL = "0.4.0.194112.1.0"
POLICY_QCP_LEGAL = "0.4.0.194112.1.1"
POLICY_QCP_NATURAL_QSCD = "0.4.0.194112.1.2"
POLICY_QCP_LEGAL_QSCD = "0.4.0.194112.1.3"
