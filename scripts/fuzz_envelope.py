#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris) of the signature reader, the header parser and the verifier.

The first input byte picks a target, the rest is its input:

    0  cms.parse_signed_data(rest)             returns, or raises cms.CmsError
    1  Verifier.verify(header, signature)      returns Accepted or Rejection (RSA-2048 dev PKI)
    2  the same with an ECDSA P-256 dev PKI
    3  envelope.parse_header(rest)             returns a Header, or raises Rejected
    4  an RFC 3161 token: timestamps.parse_token(rest) returns or raises TokenError, and
       TimestampVerifier.verify_token(rest, ...) returns or raises Rejected (RSA-2048 dev PKI)

For 1 and 2, ``rest`` is split by its first two bytes (big-endian header length). Anything else
that escapes is a crash. An ``Accepted`` verdict for a header this harness did not sign is a
forgery, and a crash too. The verifiers of 1 and 2 judge RFC 3161 tokens (CAdES-T) as the bus
does, so the timestamp path is fuzzed through the envelope as well.

The trust stores and the seed corpus (signatures by lienthong and by openssl, seal alone and seal
plus leader, with and without a token of the development TSA, the third-party RFC 3161 tokens)
are made in a temporary folder at start.

A bounded run for CI (the same harness, in a virtual environment of its own; exit status 0 when
nothing escaped, about a minute for 200,000 inputs)::

    python3 -m venv /tmp/lienthong-fuzz
    /tmp/lienthong-fuzz/bin/pip install --quiet atheris -e .
    /tmp/lienthong-fuzz/bin/python scripts/fuzz_envelope.py -atheris_runs=200000 -seed=1

atheris is not a project dependency; run the harness from its own virtual environment:

    python3 -m venv /tmp/fuzzvenv
    /tmp/fuzzvenv/bin/pip install atheris -e /work/main
    /tmp/fuzzvenv/bin/python scripts/fuzz_envelope.py -max_total_time=600 [corpus_dir ...]
    /tmp/fuzzvenv/bin/python scripts/fuzz_envelope.py -atheris_runs=200000

Every libFuzzer flag passes through (-max_total_time=S, -atheris_runs=N, -jobs, -dict...). The
harness's own options:

    --allow-known      count the exceptions listed in KNOWN_ESCAPES (defects in code this
                       harness does not cover for fixes, each pinned by a strict xfail test in
                       tests/unit/test_der_properties.py) instead of stopping at them; the first
                       input of each kind is saved in the artifact folder
    --artifacts=DIR    where to save those inputs (default: a temporary folder, printed)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

with atheris.instrument_imports(include=["exchange", "schemas"]):
    from adapters.files import JsonRegistry, load_certificates, load_crls, load_private_key
    from adapters.pki.folder import DevPki
    from adapters.pki.profiles import KeyAlgorithm
    from adapters.tsa.authority import TimeStampAuthority
    from adapters.tsa.protocol import encode_request, parse_response
    from exchange import cms
    from exchange.envelope import parse_header
    from exchange.errors import Rejected
    from exchange.policy import Limits
    from exchange.ports import FixedClock, Measured
    from exchange.signing import SigningKey, sign_detached
    from exchange.timestamps import TimestampVerifier, TokenError, parse_token
    from exchange.trust import TrustStore
    from exchange.verification import Accepted, Rejection, Verifier
    from schemas.header import AttachmentRef

G22 = "000.00.00.G22"
H37 = "000.00.00.H37"
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc3161"

# Exceptions known to escape Verifier.verify from code outside exchange/der.py and cms.py
# (type -> the function they escape from). Keep in step with tests/unit/test_der_properties.py.
KNOWN_ESCAPES: dict[type[BaseException], str] = {}


def known_escape(exc: BaseException) -> str | None:
    where = KNOWN_ESCAPES.get(type(exc))
    frames = traceback.extract_tb(exc.__traceback__)
    if where is not None and any(frame.name == where for frame in frames):
        return f"{type(exc).__name__} in {where}"
    return None


def header(*, subject: str, recipients: Sequence[str], attachments: int) -> bytes:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = {
        "version": 1,
        "message_id": "6f1c2a9e-6a44-4a3f-9d8e-1c2b3a4d5e6f",
        "kind": "document",
        "sender": G22,
        "recipients": list(recipients),
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "document": {
            "number": "2491",
            "notation": "STC-BCTC",
            "type": "Công văn",
            "subject": subject,
            "promulgation_place": "Hà Nội",
            "promulgation_date": now.date().isoformat(),
            "signer": {"full_name": "Trần Văn Minh", "position": "Bộ trưởng", "competence": "KT."},
            "priority": "urgent",
        },
        "attachments": [
            {
                "name": f"phu-luc-{i}.pdf",
                "media_type": "application/pdf",
                "size": 1000 + i,
                "sha256": f"{i:064x}",
            }
            for i in range(attachments)
        ],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Pki:
    """A development PKI in a folder, with what the harness needs from it."""

    def __init__(self, folder: Path, algorithm: KeyAlgorithm) -> None:
        self.dev = DevPki(folder)
        self.dev.init(algorithm)
        self.now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)

    def key(self, which: Callable[[str], tuple[Path, Path]]) -> SigningKey:
        cert, key = which(G22)
        return SigningKey(load_certificates(cert)[0], load_private_key(key))

    def sign(self, content: bytes, *, personal: bool, stamped: bool = False) -> bytes:
        signers = [self.key(self.dev.seal), *([self.key(self.dev.leader)] if personal else [])]
        return sign_detached(
            content,
            signers,
            chain=load_certificates(self.dev.chain),
            timestamper=self if stamped else None,
        )

    def timestamp(self, signature_value: bytes) -> bytes:
        """A token of the PKI's TSA over ``signature_value`` (a Timestamper)."""
        cert, key = self.dev.tsa
        tsa = TimeStampAuthority(
            load_certificates(cert)[0],
            load_private_key(key),
            serials=_Serials(),
            clock=FixedClock(self.now - dt.timedelta(seconds=30)),
            chain=load_certificates(self.dev.chain),
        )
        query = encode_request(hashlib.sha256(signature_value).digest(), nonce=7, cert_req=True)
        token = parse_response(tsa.respond(query)).token
        assert token is not None
        return token

    def openssl(self, content: bytes, folder: Path, *, personal: bool) -> bytes | None:
        if shutil.which("openssl") is None:
            return None
        (folder / "content").write_bytes(content)
        command = ["openssl", "cms", "-sign", "-binary", "-outform", "DER"]
        command += ["-in", str(folder / "content"), "-certfile", str(self.dev.chain)]
        for cert, key in [self.dev.seal(G22), *([self.dev.leader(G22)] if personal else [])]:
            command += ["-signer", str(cert), "-inkey", str(key)]
        return subprocess.run(command, check=True, capture_output=True).stdout

    def trust(self) -> TrustStore:
        anchors = load_certificates(self.dev.trust_anchors)
        crls = [c for path in self.dev.crls for c in load_crls(path)]
        return TrustStore(anchors, crls)

    def verifier(self) -> Verifier:
        registry = JsonRegistry.load(self.dev.registry)
        trust = self.trust()
        return Verifier(trust, registry, FixedClock(self.now), timestamps=TimestampVerifier(trust))


class _Serials:
    def __init__(self) -> None:
        self.next = 0

    def next_serial(self) -> int:
        self.next += 1
        return self.next


class AsDeclared:
    """Attachments that are exactly as the manifest says, so that verdicts reach the end."""

    def measure(self, ref: AttachmentRef) -> Measured:
        return Measured(ref.size, ref.sha256)


ATTACHMENTS = AsDeclared()


def frame(target: int, payload: bytes) -> bytes:
    return bytes((target,)) + payload


def split(header_bytes: bytes, signature: bytes) -> bytes:
    return len(header_bytes).to_bytes(2, "big") + header_bytes + signature


def rfc3161_tokens() -> list[bytes]:
    from asn1crypto import tsp  # a dependency of lienthong; needed for the seeds only

    return [
        tsp.TimeStampResp.load(path.read_bytes())["time_stamp_token"].dump()
        for path in sorted(VECTORS.glob("*/*.tsr"))
    ]


class Harness:
    def __init__(self, folder: Path, allow_known: bool, artifacts: Path) -> None:
        self.pkis = [
            Pki(folder / "rsa", KeyAlgorithm.RSA2048),
            Pki(folder / "ec", KeyAlgorithm.EC_P256),
        ]
        self.verifiers = [p.verifier() for p in self.pkis]
        self.tokens = TimestampVerifier(self.pkis[0].trust())
        self.allow_known = allow_known
        self.artifacts = artifacts
        self.known: Counter[str] = Counter()
        self.headers = [
            header(subject="Về việc hướng dẫn xây dựng dự toán", recipients=[H37], attachments=0),
            header(
                subject="Về việc tổ chức Hội nghị tổng kết công tác năm 2026 — khẩn, hỏa tốc",
                recipients=[H37, "000.00.01.H37"],
                attachments=2,
            ),
        ]
        self.signed = set(self.headers)

    def seeds(self, folder: Path) -> list[bytes]:
        out = [frame(0, token) for token in rfc3161_tokens()]
        out += [frame(4, token) for token in rfc3161_tokens()]
        for index, pki in enumerate(self.pkis, start=1):
            for content in self.headers:
                for personal in (False, True):
                    stamped = pki.sign(content, personal=personal, stamped=True)
                    out.append(frame(4, pki.timestamp(b"fuzz")))
                    for signature in (
                        pki.sign(content, personal=personal),
                        stamped,
                        pki.openssl(content, folder, personal=personal),
                    ):
                        if signature is None:
                            continue
                        verdict = self.verifiers[index - 1].verify(content, signature, ATTACHMENTS)
                        assert isinstance(verdict, Accepted), verdict
                        out.append(frame(0, signature))
                        out.append(frame(index, split(content, signature)))
        out.extend(frame(3, content) for content in self.headers)
        return out

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        target, rest = data[0] % 5, data[1:]
        try:
            if target == 0:
                self.parse(rest)
            elif target in (1, 2):
                self.verify(self.verifiers[target - 1], rest)
            elif target == 3:
                self.header(rest)
            else:
                self.token(rest)
        except Exception as exc:
            what = known_escape(exc) if self.allow_known else None
            if what is None:
                raise
            self.known[what] += 1
            if self.known[what] == 1:
                path = self.artifacts / f"known-{what.replace(' ', '-')}"
                path.write_bytes(data)
                print(f"\n#known escape {what}: input saved to {path}", file=sys.stderr)
            # libFuzzer ends the process without Python's exit handlers: keep the tally on disk.
            (self.artifacts / "known-escapes.json").write_text(json.dumps(self.known))

    @staticmethod
    def parse(data: bytes) -> None:
        with contextlib.suppress(cms.CmsError):
            cms.parse_signed_data(data)

    def verify(self, verifier: Verifier, data: bytes) -> None:
        size = int.from_bytes(data[:2], "big")
        content, signature = data[2 : 2 + size], data[2 + size :]
        verdict = verifier.verify(content, signature, ATTACHMENTS)
        if isinstance(verdict, Accepted):
            if content not in self.signed:
                raise AssertionError(f"forgery: a header nobody signed was accepted: {content!r}")
        elif not isinstance(verdict, Rejection):
            raise AssertionError(f"not a verdict: {verdict!r}")

    @staticmethod
    def header(data: bytes) -> None:
        with contextlib.suppress(Rejected):
            parse_header(data, Limits())

    def token(self, data: bytes) -> None:
        with contextlib.suppress(TokenError):
            parse_token(data)
        with contextlib.suppress(Rejected):
            self.tokens.verify_token(data, b"fuzz", now=self.pkis[0].now)


def main(argv: list[str]) -> None:
    allow_known = "--allow-known" in argv
    artifacts_arg = next((a for a in argv if a.startswith("--artifacts=")), None)
    argv = [a for a in argv if a != "--allow-known" and a is not artifacts_arg]
    folder = Path(tempfile.mkdtemp(prefix="lienthong-fuzz-"))
    artifacts = Path(artifacts_arg.split("=", 1)[1]) if artifacts_arg else folder / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    harness = Harness(folder / "pki", allow_known, artifacts)
    paths = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if paths and all(p.is_file() for p in paths):
        # Reproduce: libFuzzer runs each given input once (a crash file, say); no seeding.
        print(f"#lienthong: running {len(paths)} input(s)", file=sys.stderr)
    else:
        seeds = harness.seeds(folder)
        corpus = paths[0] if paths else folder / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        if not paths:
            argv.append(str(corpus))
        for index, seed in enumerate(seeds):
            (corpus / f"seed-{index:03d}").write_bytes(seed)
        print(
            f"#lienthong: {len(seeds)} seeds in {corpus}; artifacts in {artifacts}", file=sys.stderr
        )
    atheris.Setup(argv, harness)
    atheris.Fuzz()  # does not return; with --allow-known, see artifacts/known-escapes.json


if __name__ == "__main__":
    main(sys.argv)
