"""HTTP Message Signatures (RFC 9421) as lienthong uses them to authenticate agency systems.

Every request is signed with the key of a certificate registered (pinned) to the agency, over
the method, path, query and ``Content-Digest`` (RFC 9530) of the body::

    Content-Digest: sha-256=:<base64>:
    Signature-Input: sig1=("@method" "@path" "@query" "content-digest");created=1764230400;\
expires=1764230460;nonce="<random>";keyid="<SHA-256 of the certificate>";alg="rsa-v1_5-sha256"
    Signature: sig1=:<base64>:

The server takes the agency's identity from the certificate named by ``keyid`` — never from
anything else the caller writes — checks the signature, that ``created`` is within the allowed
skew and ``expires`` not past, and that the nonce was not used before (so a captured request
cannot be replayed). Algorithms: ``rsa-v1_5-sha256``, ``rsa-pss-sha512``, ``ecdsa-p256-sha256``
(r||s, as RFC 9421 requires) and ``ed25519``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

COMPONENTS = ("@method", "@path", "@query", "content-digest")
LABEL = "sig1"
MAX_LIFETIME = 300  # seconds between created and expires

_INPUT = re.compile(
    r'^sig1=\("@method" "@path" "@query" "content-digest"\)'
    r"((?:;[a-z]+=(?:[0-9]{1,12}|\"[A-Za-z0-9_\-.:]{1,128}\"))+)$"
)
_PARAM = re.compile(r';([a-z]+)=([0-9]{1,12}|"[A-Za-z0-9_\-.:]{1,128}")')
_SIGNATURE = re.compile(r"^sig1=:([A-Za-z0-9+/=]{1,2048}):$")
_DIGEST = re.compile(r"^sha-256=:([A-Za-z0-9+/=]{44}):$")
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")


class SignatureProblem(Exception):
    """The request's signature headers are missing, malformed, or do not verify."""


@dataclass(frozen=True, slots=True)
class SignatureInput:
    created: int
    expires: int
    nonce: str
    keyid: str
    alg: str
    params: str  # the serialised parameters, exactly as received


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def digest_value(header: str) -> bytes:
    """The SHA-256 a Content-Digest header states."""
    match = _DIGEST.match(header.strip())
    if match is None:
        raise SignatureProblem("Content-Digest must be one sha-256=:<base64>: value")
    return base64.b64decode(match.group(1))


def signature_base(method: str, path: str, query: str, digest: str, params: str) -> bytes:
    lines = [
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"@query": ?{query}',
        f'"content-digest": {digest}',
        f'"@signature-params": ("@method" "@path" "@query" "content-digest"){params}',
    ]
    return "\n".join(lines).encode("utf-8")


def parse_input(value: str) -> SignatureInput:
    match = _INPUT.match(value.strip())
    if match is None:
        raise SignatureProblem(
            'Signature-Input must be sig1=("@method" "@path" "@query" "content-digest") '
            "with created, expires, nonce, keyid and alg"
        )
    params = match.group(1)
    found: dict[str, str] = {}
    for name, raw in _PARAM.findall(params):
        if name in found:
            raise SignatureProblem(f"signature parameter {name} appears twice")
        found[name] = raw
    try:
        created, expires = int(found["created"]), int(found["expires"])
        nonce, keyid, alg = (found[k].strip('"') for k in ("nonce", "keyid", "alg"))
    except (KeyError, ValueError):
        raise SignatureProblem("created, expires, nonce, keyid and alg are all required") from None
    if set(found) - {"created", "expires", "nonce", "keyid", "alg"}:
        raise SignatureProblem("unknown signature parameters")
    if not _NONCE.match(nonce):
        raise SignatureProblem("nonce must be 16-64 characters of [A-Za-z0-9_-]")
    if not re.fullmatch(r"[0-9a-f]{64}", keyid):
        raise SignatureProblem("keyid must be the SHA-256 fingerprint of a registered certificate")
    return SignatureInput(created, expires, nonce, keyid, alg, params)


def parse_signature(value: str) -> bytes:
    match = _SIGNATURE.match(value.strip())
    if match is None:
        raise SignatureProblem("Signature must be sig1=:<base64>:")
    try:
        return base64.b64decode(match.group(1), validate=True)
    except ValueError:
        raise SignatureProblem("Signature is not base64") from None


def algorithm_for(key: CertificatePublicKeyTypes | PrivateKeyTypes) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "rsa-v1_5-sha256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return "ecdsa-p256-sha256"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise SignatureProblem(f"no RFC 9421 algorithm for {type(key).__name__}")


def verify(key: CertificatePublicKeyTypes, alg: str, signature: bytes, base: bytes) -> None:
    try:
        if alg == "rsa-v1_5-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, base, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "rsa-pss-sha512" and isinstance(key, rsa.RSAPublicKey):
            key.verify(
                signature, base, padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512()
            )
        elif alg == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64 or not isinstance(key.curve, ec.SECP256R1):
                raise SignatureProblem("ecdsa-p256-sha256 signatures are 64 bytes (r||s)")
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), base, ec.ECDSA(hashes.SHA256()))
        elif alg == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, base)
        else:
            raise SignatureProblem(f"algorithm {alg!r} does not fit the registered key")
    except InvalidSignature:
        raise SignatureProblem("the request signature does not verify") from None


def sign_request(
    key: PrivateKeyTypes,
    keyid: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    now: int,
    lifetime: int = 60,
) -> dict[str, str]:
    """Headers that sign one request (the client side)."""
    alg = algorithm_for(key)
    digest = content_digest(body)
    params = (
        f';created={now};expires={now + lifetime};nonce="{secrets.token_urlsafe(24)}"'
        f';keyid="{keyid}";alg="{alg}"'
    )
    base = signature_base(method, path, query, digest, params)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(base, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(base, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(base)
    else:
        raise SignatureProblem(f"cannot sign requests with {type(key).__name__}")
    return {
        "Content-Digest": digest,
        "Signature-Input": f'sig1=("@method" "@path" "@query" "content-digest"){params}',
        "Signature": f"sig1=:{base64.b64encode(signature).decode()}:",
    }
