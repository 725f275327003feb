#!/usr/bin/env python3
"""Verifications per second of a typical envelope, next to one bare RSA-2048 verification.

A benchmark, never a test: run it by hand on a quiet machine.

    .venv/bin/python scripts/bench_verify.py [--seconds 3] [--rounds 5] [--profile]

The envelope: a development PKI (``DevPki.init()``, RSA-2048: root -> issuing CA -> seal) in a
temporary folder, a header of about 4 KiB (60 recipients, a long Vietnamese subject, 8 attachments
in the manifest), a seal-only detached CMS signature. One ``Verifier`` is reused, with its
certificate and chain caches warm, as in the router. The baseline: ``cryptography``'s RSA-2048
PKCS#1 v1.5 SHA-256 verification of a 300-byte message, measured in the same run.

The output is a table, a per-step breakdown of one verification (each step timed on its own, as
the verifier performs it), optionally a cProfile listing, and, as the last line, one JSON object:
``{"verify_per_s": ..., "bare_rsa_per_s": ..., "ratio": ...}``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from adapters.files import JsonRegistry, load_certificates, load_crls, load_private_key
from adapters.pki.folder import DevPki
from exchange import cms, envelope, oids
from exchange.algorithms import HASHLIB_NAMES, scheme_of, signature_holds
from exchange.envelope import envelope_digest, parse_header
from exchange.policy import VerificationPolicy
from exchange.ports import FixedClock, Measured
from exchange.signing import SigningKey, sign_detached
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verifier
from schemas.header import AttachmentRef, Header

SENDER = "000.00.00.G22"
SUBJECT = (
    "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027, kế hoạch tài chính - ngân "
    "sách nhà nước 03 năm 2027-2029 và việc triển khai thực hiện các nhiệm vụ, giải pháp chủ yếu "
    "về phát triển kinh tế - xã hội, bảo đảm quốc phòng, an ninh, đẩy mạnh chuyển đổi số, cải "
    "cách hành chính và liên thông văn bản điện tử giữa các cơ quan nhà nước ở trung ương và địa "
    "phương; đề nghị các bộ, cơ quan ngang bộ, cơ quan thuộc Chính phủ, Ủy ban nhân dân các tỉnh, "
    "thành phố trực thuộc trung ương khẩn trương tổ chức thực hiện, báo cáo kết quả trước ngày 15 "
    "tháng 7 năm 2026 để tổng hợp, trình Thủ tướng Chính phủ xem xét, quyết định."
)


class AsDeclared:
    """Attachments exactly as the manifest says (the bench measures the verifier, not disks)."""

    def measure(self, ref: AttachmentRef) -> Measured:
        return Measured(ref.size, ref.sha256)


def recipients(count: int) -> list[str]:
    return [f"000.00.{i // 10:02d}.H{i % 10 + 10:02d}" for i in range(count)]


def typical_header(now: dt.datetime) -> bytes:
    body = {
        "version": 1,
        "message_id": "0b9d3f6e-8c1a-4e7b-9f2d-5a6c7e8f9a0b",
        "kind": "document",
        "sender": SENDER,
        "recipients": recipients(60),
        "created_at": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "document": {
            "number": "2491",
            "notation": "STC-BCTC",
            "type": "Công văn",
            "subject": SUBJECT,
            "promulgation_place": "Hà Nội",
            "promulgation_date": now.date().isoformat(),
            "signer": {"full_name": "Trần Văn Minh", "position": "Bộ trưởng", "competence": "KT."},
            "priority": "urgent",
            "steering_type": "directive",
        },
        "attachments": [
            {
                "name": f"phu-luc-{i:02d}-du-toan-ngan-sach.pdf",
                "media_type": "application/pdf",
                "size": 250_000 + 1_000 * i,
                "sha256": hashlib.sha256(f"attachment {i}".encode()).hexdigest(),
            }
            for i in range(8)
        ],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def registry_with_recipients(dev: DevPki, folder: Path) -> JsonRegistry:
    entries = json.loads(dev.registry.read_bytes())
    entries += [{"code": code, "name": code} for code in recipients(60)]
    path = folder / "registry-bench.json"
    path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    return JsonRegistry.load(path)


# The clock of every measurement: wall time by default; --cpu-time uses the process's CPU time,
# steadier on a shared machine (time spent descheduled does not count).
timer: Callable[[], float] = time.perf_counter


def rate(action: Callable[[], object], seconds: float, rounds: int) -> tuple[float, float]:
    """(median, best) calls per second over ``rounds`` rounds of about ``seconds`` each."""
    calls = 1
    while True:  # calibrate a batch that takes ~50 ms
        start = timer()
        for _ in range(calls):
            action()
        if timer() - start > 0.05:
            break
        calls *= 2
    rates = []
    for _ in range(rounds):
        done = 0
        start = timer()
        while (elapsed := timer() - start) < seconds / rounds:
            for _ in range(calls):
                action()
            done += calls
        rates.append(done / elapsed)
    return statistics.median(rates), max(rates)


def per_call_us(action: Callable[[], object], repeat: int = 2000) -> float:
    best = float("inf")
    for _ in range(5):
        start = timer()
        for _ in range(repeat):
            action()
        best = min(best, (timer() - start) / repeat)
    return best * 1e6


def main(argv: list[str]) -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    options.add_argument("--seconds", type=float, default=3.0, help="per measured rate")
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--profile", action="store_true", help="print a cProfile listing too")
    options.add_argument(
        "--cpu-time", action="store_true", help="measure process CPU time, not wall time"
    )
    args = options.parse_args(argv)
    global timer  # one switch for every measurement
    timer = time.process_time if args.cpu_time else time.perf_counter

    folder = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    dev = DevPki(folder / "pki")
    dev.init()
    now = dt.datetime.now(dt.UTC)
    cert_path, key_path = dev.seal(SENDER)
    seal = SigningKey(load_certificates(cert_path)[0], load_private_key(key_path))
    chain = load_certificates(dev.chain)
    header = typical_header(now)
    signature = sign_detached(header, [seal], chain=chain, signing_time=now)
    trust = TrustStore(
        load_certificates(dev.trust_anchors), [c for p in dev.crls for c in load_crls(p)]
    )
    clock = FixedClock(now + dt.timedelta(seconds=1))
    verifier = Verifier(trust, registry_with_recipients(dev, folder), clock, VerificationPolicy())
    attachments = AsDeclared()
    verdict = verifier.verify(header, signature, attachments)
    if not isinstance(verdict, Accepted):
        raise SystemExit(f"the typical envelope is not accepted: {verdict}")

    def verify() -> object:
        return verifier.verify(header, signature, attachments)

    # The bare baseline: RSA-2048 PKCS#1 v1.5 SHA-256 over a 300-byte message.
    key = load_private_key(key_path)
    assert isinstance(key, rsa.RSAPrivateKey)
    message = bytes(range(256)) + bytes(44)
    bare_signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public = key.public_key()

    def bare() -> None:
        public.verify(bare_signature, message, padding.PKCS1v15(), hashes.SHA256())

    verify_median, verify_best = rate(verify, args.seconds, args.rounds)
    bare_median, bare_best = rate(bare, args.seconds, args.rounds)
    ratio = verify_median / bare_median

    # Per-step breakdown: each step of one verification, timed on its own as the verifier does it.
    signed = cms.parse_signed_data(signature)
    info = signed.signer_infos[0]
    certs = [verifier.certificates.get(d) for d in signed.certificates]
    signer_cert = next(c for c in certs if not c.is_ca)
    intermediates = [c for c in certs if c.is_ca]
    scheme = scheme_of(info.digest_algorithm, info.signature_algorithm)
    assert info.signed_attrs is not None
    signed_attrs = info.signed_attrs
    limits = verifier.policy.limits
    at = clock.now()
    parsed = Header.model_validate_json(header)
    registry = verifier.registry
    assert registry is not None
    # (name, action, part of the total?) - indented rows split the row above them; the rows
    # after "the rest" split what the verifier does besides the named steps.
    steps: list[tuple[str, Callable[[], object], bool]] = [
        ("header parse (parse_header)", lambda: parse_header(header, limits), True),
        (
            "  of which Header.model_validate_json",
            lambda: Header.model_validate_json(header),
            False,
        ),
    ]
    # Private details of exchange.envelope, measured while they exist (others may change them).
    key_end = getattr(envelope, "_KEY_END", None)
    keys_in = getattr(envelope, "_keys_in", None)
    if key_end is not None and keys_in is not None:
        steps += [
            ("  of which _KEY_END.findall (key count)", lambda: key_end.findall(header), False),
            ("  of which _keys_in(header model)", lambda: keys_in(parsed), False),
        ]
    steps += [
        ("CMS parse (cms.parse_signed_data)", lambda: cms.parse_signed_data(signature), True),
        (
            "certificate cache lookups",
            lambda: [verifier.certificates.get(d) for d in signed.certificates],
            True,
        ),
        (
            "signed attributes (only_value + decode)",
            lambda: (
                cms.decode_oid_value(info.only_value(oids.ATTR_CONTENT_TYPE) or b""),
                cms.decode_octets_value(info.only_value(oids.ATTR_MESSAGE_DIGEST) or b""),
                cms.decode_time_value(info.only_value(oids.ATTR_SIGNING_TIME) or b""),
            ),
            True,
        ),
        (
            "algorithms (scheme_of)",
            lambda: scheme_of(info.digest_algorithm, info.signature_algorithm),
            True,
        ),
        (
            "digest of the header (SHA-256, ~4 KiB)",
            lambda: hashlib.new(HASHLIB_NAMES[scheme.digest], header).digest(),
            True,
        ),
        (
            "RSA verify of the signed attributes",
            lambda: signature_holds(
                scheme, signer_cert.cert.public_key(), info.signature, signed_attrs
            ),
            True,
        ),
        (
            "chain cache lookup (TrustStore.judge, warm)",
            lambda: trust.judge(signer_cert, intermediates, at=at, now=at),
            True,
        ),
        (
            "envelope digest (SHA-256 of header + signature)",
            lambda: envelope_digest(header, signature),
            True,
        ),
    ]
    inside_rest: list[tuple[str, Callable[[], object]]] = [
        (
            "  of which 60 recipient registry lookups",
            lambda: [registry.agency(code) for code in parsed.recipients],
        ),
        (
            "  of which issuer.rfc4514_string() (seal summary)",
            lambda: signer_cert.cert.issuer.rfc4514_string(),
        ),
        (
            "  of which attachment checks (8, as declared)",
            lambda: verifier._check_attachments(parsed, attachments),
        ),
    ]
    measured = [(name, per_call_us(action), counts) for name, action, counts in steps]
    measured_rest = [(name, per_call_us(action)) for name, action in inside_rest]
    total_us = per_call_us(verify, repeat=300)  # best of 5, as the steps: comparable
    counted = sum(us for _, us, counts in measured if counts)

    def row(name: str, per_s: float) -> None:
        print(f"{name:<52}{per_s:>14,.0f}{1e6 / per_s:>12.1f}")

    python = sys.version.split()[0]
    print(f"lienthong verify benchmark ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    print(f"header {len(header)} bytes, signature {len(signature)} bytes, python {python}")
    print(f"clock: {'process CPU time' if args.cpu_time else 'wall time'}")
    print()
    print(f"{'measure':<52}{'per second':>14}{'µs each':>12}")
    print(f"{'-' * 52}{'-' * 14}{'-' * 12}")
    row("Verifier.verify, typical envelope (median)", verify_median)
    row("Verifier.verify, typical envelope (best round)", verify_best)
    row("bare RSA-2048 PKCS#1 v1.5 verify, 300 B (median)", bare_median)
    row("bare RSA-2048 PKCS#1 v1.5 verify, 300 B (best)", bare_best)
    print(f"{'ratio verify / bare RSA (medians; target >= 0.5)':<52}{ratio:>14.3f}")
    print()
    print(f"{'step of one verification':<52}{'µs':>10}{'share':>9}")
    print(f"{'-' * 52}{'-' * 10}{'-' * 9}")
    for name, us, _ in measured:
        print(f"{name:<52}{us:>10.1f}{us / total_us:>9.1%}")
    rest = total_us - counted
    print(
        f"{'the rest (verifier glue, registry, summaries)':<52}{rest:>10.1f}{rest / total_us:>9.1%}"
    )
    for name, us in measured_rest:
        print(f"{name:<52}{us:>10.1f}{us / total_us:>9.1%}")
    print(f"{'total (one verification, best of 5 x 300)':<52}{total_us:>10.1f}{1:>9.0%}")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(2000):
            verify()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print()
        print("cProfile, 2000 verifications, by own time:")
        print(out.getvalue())

    print(
        json.dumps(
            {
                "verify_per_s": round(verify_median, 1),
                "bare_rsa_per_s": round(bare_median, 1),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
