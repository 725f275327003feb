"""Why an envelope is rejected: the one list of reason codes.

The CLI prints these codes, the API puts them in problem details, the trace stores them; a
rejection always carries exactly one. Members are listed in the order the verifier checks them
(see ``exchange.verification``), so the first failing check names the rejection.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # 0. Byte budgets, before any parser sees the input.
    HEADER_TOO_LARGE = "header_too_large"
    SIGNATURE_TOO_LARGE = "signature_too_large"
    # 1. Malformed: not a DER CMS SignedData, not a UTF-8 JSON object.
    MALFORMED_SIGNATURE = "malformed_signature"
    MALFORMED_HEADER = "malformed_header"
    # 2. Count limits.
    TOO_MANY_CERTIFICATES = "too_many_certificates"
    TOO_MANY_SIGNERS = "too_many_signers"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TOO_MANY_ATTACHMENTS = "too_many_attachments"
    # 3. Header schema.
    HEADER_UNKNOWN_FIELD = "header_unknown_field"
    INVALID_AGENCY_CODE = "invalid_agency_code"
    HEADER_INVALID = "header_invalid"
    # 4. Signature math and messageDigest.
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    WEAK_ALGORITHM = "weak_algorithm"
    SIGNED_ATTRIBUTES_INVALID = "signed_attributes_invalid"
    SIGNER_CERTIFICATE_MISSING = "signer_certificate_missing"
    DIGEST_MISMATCH = "digest_mismatch"
    BAD_SIGNATURE = "bad_signature"
    # 5. Chain to a trust anchor, at the trusted time.
    UNTRUSTED_CHAIN = "untrusted_chain"
    CERTIFICATE_EXPIRED = "certificate_expired"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    # 6. Key usage of the signer's certificate.
    KEY_USAGE_INVALID = "key_usage_invalid"
    # 7. Revocation.
    CRL_MISSING = "crl_missing"
    CRL_EXPIRED = "crl_expired"
    CRL_INVALID = "crl_invalid"
    CERTIFICATE_REVOKED = "certificate_revoked"
    # 8. Sender binding.
    SEAL_MISSING = "seal_missing"
    MULTIPLE_SEALS = "multiple_seals"
    SENDER_MISMATCH = "sender_mismatch"
    SIGNER_AGENCY_MISMATCH = "signer_agency_mismatch"
    SENDER_UNKNOWN = "sender_unknown"
    SENDER_DISABLED = "sender_disabled"
    CERTIFICATE_NOT_REGISTERED = "certificate_not_registered"
    # 9. Time: signingTime, and RFC 3161 timestamp tokens.
    SIGNING_TIME_IN_FUTURE = "signing_time_in_future"
    TIMESTAMP_REQUIRED = "timestamp_required"
    TIMESTAMP_MALFORMED = "timestamp_malformed"
    TIMESTAMP_INVALID = "timestamp_invalid"
    TIMESTAMP_UNTRUSTED = "timestamp_untrusted"
    TIMESTAMP_NOT_FOR_TIMESTAMPING = "timestamp_not_for_timestamping"
    TIMESTAMP_IMPRINT_MISMATCH = "timestamp_imprint_mismatch"
    TIMESTAMP_SKEW = "timestamp_skew"
    # 10. Freshness of created_at.
    MESSAGE_STALE = "message_stale"
    MESSAGE_FROM_FUTURE = "message_from_future"
    # 11. Replay.
    REPLAY = "replay"
    # 12. Recipients.
    RECIPIENT_UNKNOWN = "recipient_unknown"
    RECIPIENT_DISABLED = "recipient_disabled"
    # 13. Attachments.
    ATTACHMENT_MISSING = "attachment_missing"
    ATTACHMENT_TOO_LARGE = "attachment_too_large"
    ATTACHMENT_SIZE_MISMATCH = "attachment_size_mismatch"
    ATTACHMENT_DIGEST_MISMATCH = "attachment_digest_mismatch"
    # 14. Routing rules the router applies to an envelope that verified.
    ATTACHMENT_UNDECLARED = "attachment_undeclared"
    STATUS_UNRELATED = "status_unrelated"
    # Transport: a body that is not a lienthong submission at all (dead-lettered).
    MALFORMED_SUBMISSION = "malformed_submission"


DESCRIPTIONS: dict[Reason, str] = {
    Reason.HEADER_TOO_LARGE: "The header is larger than the configured byte limit.",
    Reason.SIGNATURE_TOO_LARGE: "The signature is larger than the configured byte limit.",
    Reason.MALFORMED_SIGNATURE: "The signature is not a DER-encoded, detached CMS SignedData.",
    Reason.MALFORMED_HEADER: "The header is not a UTF-8 JSON object without duplicate keys.",
    Reason.TOO_MANY_CERTIFICATES: "The signature embeds more certificates than allowed.",
    Reason.TOO_MANY_SIGNERS: "The signature has more signers than allowed.",
    Reason.TOO_MANY_RECIPIENTS: "The header lists more recipients than allowed.",
    Reason.TOO_MANY_ATTACHMENTS: "The header lists more attachments than allowed.",
    Reason.HEADER_UNKNOWN_FIELD: "The header has a field that envelope v1 does not define.",
    Reason.INVALID_AGENCY_CODE: "An agency code is not in the canonical QĐ 20/2020 form.",
    Reason.HEADER_INVALID: "The header does not satisfy the envelope v1 schema.",
    Reason.UNSUPPORTED_ALGORITHM: "A digest, signature or key algorithm is not supported.",
    Reason.WEAK_ALGORITHM: "A digest, signature or key is too weak (SHA-1, MD5, RSA < 2048).",
    Reason.SIGNED_ATTRIBUTES_INVALID: "Signed attributes are missing, repeated or inconsistent.",
    Reason.SIGNER_CERTIFICATE_MISSING: "A signer's certificate is not in the signature.",
    Reason.DIGEST_MISMATCH: "The header bytes do not match the signed messageDigest.",
    Reason.BAD_SIGNATURE: "A signature value does not verify with the signer's public key.",
    Reason.UNTRUSTED_CHAIN: "A signer's certificate does not chain to a trust anchor.",
    Reason.CERTIFICATE_EXPIRED: "A certificate in the chain had expired at the trusted time.",
    Reason.CERTIFICATE_NOT_YET_VALID: "A certificate in the chain was not yet valid.",
    Reason.KEY_USAGE_INVALID: "A signer's certificate is not for signing documents.",
    Reason.CRL_MISSING: "No CRL is loaded for an issuer in the chain.",
    Reason.CRL_EXPIRED: "The CRL for an issuer in the chain is past its nextUpdate.",
    Reason.CRL_INVALID: (
        "No usable CRL: not signed by the issuer's key, issuer not a CRL signer, or future-dated."
    ),
    Reason.CERTIFICATE_REVOKED: "A certificate in the chain was revoked by the trusted time.",
    Reason.SEAL_MISSING: "No signer holds an organisation (seal) certificate.",
    Reason.MULTIPLE_SEALS: "More than one signer holds an organisation certificate.",
    Reason.SENDER_MISMATCH: "The seal's organizationIdentifier is not the header's sender.",
    Reason.SIGNER_AGENCY_MISMATCH: "A personal signer belongs to another agency.",
    Reason.SENDER_UNKNOWN: "The sender is not a registered agency.",
    Reason.SENDER_DISABLED: "The sender agency is disabled.",
    Reason.CERTIFICATE_NOT_REGISTERED: "The seal certificate is not registered for the sender.",
    Reason.SIGNING_TIME_IN_FUTURE: "A signer's signingTime is after the trusted time.",
    Reason.TIMESTAMP_REQUIRED: "Policy requires an RFC 3161 timestamp on every signer.",
    Reason.TIMESTAMP_MALFORMED: "A timestamp token is not a well-formed RFC 3161 token.",
    Reason.TIMESTAMP_INVALID: "A timestamp token's signature does not verify.",
    Reason.TIMESTAMP_UNTRUSTED: "A timestamp token's TSA does not chain to a TSA trust anchor.",
    Reason.TIMESTAMP_NOT_FOR_TIMESTAMPING: "The TSA certificate lacks a critical timeStamping EKU.",
    Reason.TIMESTAMP_IMPRINT_MISMATCH: "A timestamp token is over other data than its signature.",
    Reason.TIMESTAMP_SKEW: "A timestamp's genTime is too far from the signingTime.",
    Reason.MESSAGE_STALE: "created_at is older than the acceptance window.",
    Reason.MESSAGE_FROM_FUTURE: "created_at is in the future beyond the allowed skew.",
    Reason.REPLAY: "The message_id was seen before with other bytes.",
    Reason.RECIPIENT_UNKNOWN: "A recipient is not a registered agency.",
    Reason.RECIPIENT_DISABLED: "A recipient agency is disabled.",
    Reason.ATTACHMENT_MISSING: "An attachment in the manifest was not supplied.",
    Reason.ATTACHMENT_TOO_LARGE: "An attachment is larger than the configured limit.",
    Reason.ATTACHMENT_SIZE_MISMATCH: "An attachment's size differs from the manifest.",
    Reason.ATTACHMENT_DIGEST_MISMATCH: "An attachment's SHA-256 differs from the manifest.",
    Reason.ATTACHMENT_UNDECLARED: "The submission carries a file the manifest does not list.",
    Reason.STATUS_UNRELATED: "A status update answers no message its sender received.",
    Reason.MALFORMED_SUBMISSION: "The message body is not a lienthong submission.",
}
