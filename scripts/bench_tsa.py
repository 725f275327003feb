"""Time-stamping costs on this machine.

1. Tokens per second ``lienthong tsa serve`` answers over HTTP, with several concurrent clients
   (each a thread with its own keep-alive connection, posting SHA-256 queries).
2. The verification cost a token adds per envelope: the same envelope (seal + leader, RSA-2048,
   a ~4 KiB header) verified by one warm ``Verifier`` with and without tokens, in the same run;
   and the cost of ``TimestampVerifier.verify_token`` alone (plus rfc3161-client's, if installed,
   for comparison).

    .venv/bin/python scripts/bench_tsa.py [--seconds 5] [--clients 1 4 16] [--envelopes 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.files import load_certificates, load_crls, load_private_key  # noqa: E402
from adapters.pki.folder import DevPki  # noqa: E402
from adapters.tsa.authority import TimeStampAuthority  # noqa: E402
from adapters.tsa.protocol import (  # noqa: E402
    MEDIA_QUERY,
    encode_request,
    parse_response,
)
from exchange.ports import Measured, SystemClock  # noqa: E402
from exchange.signing import SigningKey, sign_detached  # noqa: E402
from exchange.timestamps import TimestampVerifier  # noqa: E402
from exchange.trust import TrustStore  # noqa: E402
from exchange.verification import Accepted, Verifier  # noqa: E402
from schemas.header import AttachmentRef  # noqa: E402

LIENTHONG = Path(sys.executable).with_name("lienthong")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(dev: DevPki, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cert, key = dev.tsa
    process = subprocess.Popen(
        [
            str(LIENTHONG), "tsa", "serve", "--cert", str(cert), "--key", str(key),
            "--chain", str(dev.chain), "--port", str(port), "--data-dir", str(data_dir),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url + "/v1/tsa"
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("the TSA did not start")


def throughput(url: str, clients: int, seconds: float) -> tuple[float, float]:
    """(tokens per second, median latency in ms) with ``clients`` concurrent clients."""
    counts = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds
    failures: list[str] = []

    def client(index: int) -> None:
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < stop:
                query = encode_request(secrets.token_bytes(32), nonce=secrets.randbits(64))
                started = time.perf_counter()
                reply = http.post(url, content=query, headers={"content-type": MEDIA_QUERY})
                latencies[index].append(time.perf_counter() - started)
                if not parse_response(reply.content).granted:
                    failures.append(reply.content.hex()[:80])
                    return
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    begun = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - begun
    if failures:
        raise SystemExit(f"the TSA refused a query: {failures[0]}")
    median = statistics.median(x for lat in latencies for x in lat) * 1000
    return sum(counts) / elapsed, median


class LocalTimestamper:
    def __init__(self, tsa: TimeStampAuthority) -> None:
        self.tsa = tsa

    def timestamp(self, signature_value: bytes) -> bytes:
        query = encode_request(hashlib.sha256(signature_value).digest(), nonce=1)
        token = parse_response(self.tsa.respond(query)).token
        assert token is not None
        return token


def per_call(function: object, count: int) -> float:
    """Median of 5 runs of ``count`` calls, in microseconds per call."""
    assert callable(function)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            function()
        runs.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(runs)


def verification_cost(dev: DevPki, count: int) -> None:
    anchors = load_certificates(dev.trust_anchors)
    chain = load_certificates(dev.chain)
    crls = [c for path in dev.crls for c in load_crls(path)]
    cert, key = dev.tsa
    tsa = TimeStampAuthority(
        load_certificates(cert)[0],
        load_private_key(key),
        serials=_Counter(),
        clock=SystemClock(),
        chain=chain,
    )
    signers = []
    for kind in ("seal", "leader"):
        c, k = getattr(dev, kind)("000.00.00.G22")
        signers.append(SigningKey(load_certificates(c)[0], load_private_key(k)))
    header = (
        b'{"version":1,"message_id":"0b6a4f0e-7d0a-4c43-9a53-6a1f7f8f6b10","kind":"document",'
        b'"sender":"000.00.00.G22","recipients":["000.00.00.H37"],"created_at":"'
        + dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
        + b'","document":{"number":"2491","notation":"STC-BCTC","type":"Cong van","subject":"'
        + b"x" * 1900
        + b'","promulgation_place":"Ha Noi","promulgation_date":"2026-01-01","signer":null,'
        b'"priority":"normal","steering_type":"normal","due_date":null},"attachments":['
        + b",".join(
            b'{"name":"phu-luc-%d.pdf","media_type":"application/pdf","size":%d,"sha256":"%s"}'
            % (i, len(b"%d" % i), hashlib.sha256(b"%d" % i).hexdigest().encode())
            for i in range(16)
        )
        + b"]}"
    )
    bare = sign_detached(header, signers, chain=chain)
    stamped = sign_detached(header, signers, chain=chain, timestamper=LocalTimestamper(tsa))
    trust = TrustStore(anchors, crls)
    judge = TimestampVerifier(trust)
    verifier = Verifier(trust, None, SystemClock(), timestamps=judge)
    files = {f"phu-luc-{i}.pdf": str(i).encode() for i in range(16)}
    attachments = _Attachments(files)
    for signature in (bare, stamped):
        verdict = verifier.verify(header, signature, attachments)
        assert isinstance(verdict, Accepted), verdict
    without = per_call(lambda: verifier.verify(header, bare, attachments), count)
    with_tokens = per_call(lambda: verifier.verify(header, stamped, attachments), count)
    token = LocalTimestamper(tsa).timestamp(b"signature value")
    now = dt.datetime.now(dt.UTC)
    one_token = per_call(lambda: judge.verify_token(token, b"signature value", now=now), count)
    print(
        f"envelope: {len(header)} B header, seal + leader (RSA-2048), chain cached, warm verifier"
    )
    print(f"  verify without tokens : {without:8.0f} us/envelope")
    print(f"  verify with 2 tokens  : {with_tokens:8.0f} us/envelope")
    print(
        f"  added by the tokens   : {with_tokens - without:8.0f} us/envelope "
        f"({(with_tokens - without) / 2:.0f} us per token)"
    )
    print(f"  verify_token alone    : {one_token:8.0f} us/token (RSA-2048 TSA, chain cached)")
    try:
        import rfc3161_client
    except ImportError:
        return
    response = tsa.respond(encode_request(hashlib.sha256(b"signature value").digest()))
    built = rfc3161_client.VerifierBuilder(roots=anchors, intermediates=chain).build()

    def theirs() -> None:
        built.verify_message(rfc3161_client.decode_timestamp_response(response), b"signature value")

    print(f"  rfc3161-client        : {per_call(theirs, max(count // 10, 50)):8.0f} us/token "
          "(decode + verify, no revocation)")  # fmt: skip


class _Attachments:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def measure(self, ref: AttachmentRef) -> Measured | None:
        content = self.files.get(ref.name)
        if content is None:
            return None
        return Measured(len(content), hashlib.sha256(content).hexdigest())


class _Counter:
    def __init__(self) -> None:
        self.value = 0

    def next_serial(self) -> int:
        self.value += 1
        return self.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--envelopes", type=int, default=2000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as folder:
        dev = DevPki(Path(folder) / "pki")
        dev.init()
        process, url = serve(dev, Path(folder) / "data")
        try:
            print(f"lienthong tsa serve (one uvicorn process, RSA-2048 TSA key) at {url}")
            for clients in args.clients:
                rate, median = throughput(url, clients, args.seconds)
                print(
                    f"  {clients:3d} concurrent clients: {rate:7.0f} tokens/s "
                    f"(median latency {median:.1f} ms)"
                )
        finally:
            process.terminate()
            process.wait(timeout=15)
        verification_cost(dev, args.envelopes)


if __name__ == "__main__":
    main()
