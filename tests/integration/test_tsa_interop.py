"""Time-stamping with OpenSSL as the independent implementation, through the real doors.

- lienthong's TSA (``lienthong tsa serve`` as a process, and ``POST /v1/tsa`` of the API) answers
  ``openssl ts -query`` requests with replies that ``openssl ts -verify`` accepts, and keeps its
  serial numbers across a restart.
- OpenSSL acting as the TSA (``openssl ts -reply`` behind a small HTTP server) stamps envelopes
  that ``lienthong sign --tsa`` makes and ``lienthong verify`` accepts; with a TSA hierarchy made
  entirely by openssl, ``--tsa-trust-anchors`` is what makes it trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.serialization import Encoding

from adapters import bootstrap
from adapters.db import migrate
from adapters.db.engine import create_engine
from adapters.http.app import build_api, create_app
from adapters.pki.folder import write_pem, write_private_key
from adapters.settings import Settings
from adapters.tsa.protocol import MEDIA_QUERY, MEDIA_REPLY, PkiStatus, parse_response
from adapters.tsa.serials import DbSerials
from exchange.errors import Rejected
from exchange.reasons import Reason
from exchange.timestamps import TimestampVerifier, parse_token
from tests.helpers import G22, H37, Pki, header_bytes
from tests.opensslca import EXTENSIONS, Issued, OpensslCa, openssl
from tests.services import free_port, postgres_database
from tests.timestamping import tsa_certificate

pytestmark = pytest.mark.openssl

LIENTHONG = Path(sys.executable).with_name("lienthong")
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "200"}


def lienthong(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(LIENTHONG), *map(str, args)], capture_output=True, env=ENV, check=False, text=True
    )
    if check:
        assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the TSA exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"the TSA did not start: {log.read_text(errors='replace')}")


@dataclass
class TsaProcess:
    """``lienthong tsa serve`` in a subprocess on a free port."""

    pki: Pki
    data_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/tsa"

    def start(self) -> None:
        self.port = free_port()
        cert, key = self.pki.dev.tsa
        log = self.data_dir / f"tsa-{self.port}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    str(LIENTHONG), "tsa", "serve", "--cert", str(cert), "--key", str(key),
                    "--chain", str(self.pki.dev.chain), "--port", str(self.port),
                    "--data-dir", str(self.data_dir),
                ],
                stdout=out, stderr=subprocess.STDOUT, env=ENV,
            )  # fmt: skip
        _wait_until_up(f"http://127.0.0.1:{self.port}/healthz", self.process, log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


@pytest.fixture(scope="module")
def tsa_process(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaProcess]:
    server = TsaProcess(pki, tmp_path_factory.mktemp("tsa-data"))
    server.start()
    yield server
    server.stop()


def _post(url: str, query: bytes, media: str = MEDIA_QUERY) -> httpx.Response:
    return httpx.post(url, content=query, headers={"content-type": media}, timeout=10)


def _openssl_query(folder: Path, data: bytes, *options: str) -> Path:
    source = folder / "data.bin"
    source.write_bytes(data)
    query = folder / "query.tsq"
    openssl("ts", "-query", "-data", source, *options, "-out", query)
    return query


def _openssl_ts_verify(pki: Pki, reply: Path, query: Path, *extra: str | Path) -> str:
    out = openssl(
        "ts", "-verify", "-in", reply, "-queryfile", query, "-CAfile", pki.dev.trust_anchors,
        "-untrusted", pki.dev.chain, *extra,
    )  # fmt: skip
    return out.decode()


# --- lienthong's TSA, checked by openssl ---------------------------------------------------------


def test_openssl_ts_verify_accepts_replies_of_lienthong_tsa_serve(
    pki: Pki, tsa_process: TsaProcess, tmp_path: Path
) -> None:
    query = _openssl_query(tmp_path, b"Quyet dinh 2491/QD-TTg", "-sha256", "-cert")
    reply = _post(tsa_process.url, query.read_bytes())
    assert reply.status_code == 200
    assert reply.headers["content-type"] == MEDIA_REPLY
    answer = tmp_path / "reply.tsr"
    answer.write_bytes(reply.content)
    assert "Verification: OK" in _openssl_ts_verify(pki, answer, query)
    text = openssl("ts", "-reply", "-in", answer, "-text").decode()
    assert "Status: Granted." in text
    assert "Policy OID: 2.25.274714777772919336427624714104386832178.1" in text
    assert "Accuracy: 0x01 seconds" in text


def test_openssl_verifies_a_sha512_query_without_cert_req_against_supplied_certs(
    pki: Pki, tsa_process: TsaProcess, tmp_path: Path
) -> None:
    query = _openssl_query(tmp_path, b"payload", "-sha512", "-no_nonce")
    answer = tmp_path / "reply.tsr"
    answer.write_bytes(_post(tsa_process.url, query.read_bytes()).content)
    token = parse_response(answer.read_bytes()).token
    assert token is not None
    assert parse_token(token).signed.certificates == []  # certReq was not set
    untrusted = tmp_path / "tsa-and-chain.pem"
    untrusted.write_bytes(pki.dev.tsa[0].read_bytes() + pki.dev.chain.read_bytes())
    out = openssl(
        "ts", "-verify", "-in", answer, "-queryfile", query, "-CAfile", pki.dev.trust_anchors,
        "-untrusted", untrusted,
    )  # fmt: skip
    assert "Verification: OK" in out.decode()


@pytest.mark.parametrize(
    ("options", "status", "fragment"),
    [
        (("-sha1", "-cert"), 200, "unrecognized or unsupported algorithm"),
        (("-sha256", "-tspolicy", "1.2.3.4"), 200, "requested TSA policy is not supported"),
        (("-md5",), 200, "unrecognized or unsupported algorithm"),
    ],
    ids=["sha1", "unknown-policy", "md5"],
)
def test_lienthong_tsa_rejects_what_it_does_not_serve_in_a_way_openssl_reads(
    tsa_process: TsaProcess, tmp_path: Path, options: tuple[str, ...], status: int, fragment: str
) -> None:
    query = _openssl_query(tmp_path, b"payload", *options)
    reply = _post(tsa_process.url, query.read_bytes())
    assert reply.status_code == status
    answer = tmp_path / "reply.tsr"
    answer.write_bytes(reply.content)
    text = openssl("ts", "-reply", "-in", answer, "-text").decode()
    assert "Status: Rejected." in text
    assert fragment in text


@pytest.mark.parametrize(
    ("body", "media", "status"),
    [(b"\x30\x82\xff", MEDIA_QUERY, 200), (b"hello", "text/plain", 415), (b"", MEDIA_QUERY, 200)],
    ids=["bad-der", "wrong-media-type", "empty"],
)
def test_lienthong_tsa_never_answers_500(
    tsa_process: TsaProcess, body: bytes, media: str, status: int
) -> None:
    reply = _post(tsa_process.url, body, media)
    assert reply.status_code == status
    assert parse_response(reply.content).status == PkiStatus.REJECTION


def test_serial_numbers_continue_after_a_restart(
    pki: Pki, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = TsaProcess(pki, tmp_path_factory.mktemp("restart"))
    query = _openssl_query(tmp_path, b"payload", "-sha256")
    serials = []
    for _ in range(2):
        server.start()
        try:
            for _ in range(3):
                token = parse_response(_post(server.url, query.read_bytes()).content).token
                assert token is not None
                serials.append(parse_token(token).info.serial)
        finally:
            server.stop()
    # Each start reserves a block of 256 on disk before stamping: the second run continues
    # after the first run's whole block, never inside it.
    assert serials == [1, 2, 3, 257, 258, 259]
    state = json.loads((server.data_dir / "tsa" / "serials.json").read_text())
    assert list(state.values()) == [513]


def test_lienthong_sign_with_its_own_tsa_makes_a_cades_t_envelope(
    pki: Pki, tsa_process: TsaProcess, tmp_path: Path
) -> None:
    header = tmp_path / "header.json"
    header.write_bytes(header_bytes())
    signature = tmp_path / "header.json.p7s"
    seal, seal_key = pki.dev.seal(G22)
    leader, leader_key = pki.dev.leader(G22)
    lienthong(
        "sign", "--header", header, "--cert", seal, "--key", seal_key, "--chain", pki.dev.chain,
        "--signer-cert", leader, "--signer-key", leader_key, "--tsa", tsa_process.url,
        "--out", signature,
    )  # fmt: skip
    crls = [arg for path in pki.dev.crls for arg in ("--crl", str(path))]
    verified = lienthong(
        "verify", "--header", header, "--signature", signature, "--trust-anchors",
        pki.dev.trust_anchors, *crls, "--require-timestamp", "--json",
    )  # fmt: skip
    verdict = json.loads(verified.stdout)
    assert verdict["verdict"] == "accepted"
    assert verdict["time_source"] == "timestamp"
    assert verdict["seal"]["tsa"] == "CN=lienthong Development TSA,O=lienthong development PKI,C=VN"
    assert verdict["personal_signers"][0]["timestamp"] is not None
    # The unsigned attributes do not disturb OpenSSL's CMS verification.
    openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", signature, "-content", header,
        "-CAfile", pki.dev.trust_anchors, "-certfile", pki.dev.chain, "-purpose", "any",
        "-out", os.devnull,
    )  # fmt: skip
    # Unstamped, the same header is refused when tokens are required.
    bare = tmp_path / "bare.p7s"
    lienthong(
        "sign", "--header", header, "--cert", seal, "--key", seal_key, "--chain", pki.dev.chain,
        "--out", bare,
    )  # fmt: skip
    refused = lienthong(
        "verify", "--header", header, "--signature", bare, "--trust-anchors",
        pki.dev.trust_anchors, *crls, "--require-timestamp", check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout.startswith("REJECTED  timestamp_required: ")


def test_lienthong_sign_reports_a_refusing_tsa(pki: Pki, tmp_path: Path) -> None:
    header = tmp_path / "header.json"
    header.write_bytes(header_bytes())
    seal, seal_key = pki.dev.seal(G22)
    done = lienthong(
        "sign", "--header", header, "--cert", seal, "--key", seal_key,
        "--tsa", f"http://127.0.0.1:{free_port()}/v1/tsa", "--out", tmp_path / "s.p7s",
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unreachable" in done.stderr
    assert "Traceback" not in done.stderr


# --- the API's TSA (POST /v1/tsa) ---------------------------------------------------------------


def test_the_api_serves_the_tsa_with_serials_in_the_database(pki: Pki, tmp_path: Path) -> None:
    settings = Settings(
        pki_dir=pki.root, data_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path}/bus.db"
    )
    bus = bootstrap.build(settings, upgrade=True)
    app = create_app(build_api(bus))
    query = _openssl_query(tmp_path, b"payload", "-sha256", "-cert")

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bus.test") as client:
            return await client.post(
                "/v1/tsa", content=query.read_bytes(), headers={"content-type": MEDIA_QUERY}
            )

    reply = asyncio.run(post())
    assert reply.status_code == 200
    answer = tmp_path / "reply.tsr"
    answer.write_bytes(reply.content)
    assert "Verification: OK" in _openssl_ts_verify(pki, answer, query)
    with bus.engine.connect() as conn:
        stored = conn.execute(sa.text("select next_serial from tsa_serials")).scalar_one()
    token = parse_response(reply.content).token
    assert token is not None
    assert parse_token(token).info.serial < stored
    # The bus's verifier judges tokens of its own TSA (TSA anchors = trust anchors).
    assert bus.timestamps is not None
    bus.timestamps.verify_token(token, b"payload", now=dt.datetime.now(dt.UTC))
    bus.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_database_serials_are_unique_across_concurrent_tsa_processes(
    kind: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'bus.db'}"
            if kind == "sqlite"
            else stack.enter_context(postgres_database())
        )
        engine = create_engine(url)
        stack.callback(engine.dispose)
        migrate.upgrade(engine)
        # Two API processes share the row: each holds its own DbSerials.
        sources = [DbSerials(engine, "tsa", block=8), DbSerials(engine, "tsa", block=8)]
        issued: list[int] = []
        lock = threading.Lock()

        def work(source: DbSerials) -> None:
            got = [source.next_serial() for _ in range(100)]
            with lock:
                issued.extend(got)

        threads = [threading.Thread(target=work, args=(sources[i % 2],)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(issued) == 600
        assert len(set(issued)) == 600
        restarted = DbSerials(engine, "tsa", block=8).next_serial()
        assert restarted > max(issued)


# --- OpenSSL as the TSA -------------------------------------------------------------------------

TSA_CONFIG = """\
[tsa]
default_tsa = tsa_config

[tsa_config]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = {cert}
certs = {chain}
signer_key = {key}
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha1, sha256, sha384, sha512
accuracy = secs:1, millisecs:500
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess}
"""


@dataclass(frozen=True)
class OpensslTsa:
    config: Path
    url: str
    cert: Path


class _Handler(http.server.BaseHTTPRequestHandler):
    config: Path

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        query = self.rfile.read(length)
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder) / "q.tsq", Path(folder) / "r.tsr"
            source.write_bytes(query)
            openssl("ts", "-reply", "-config", self.config, "-queryfile", source, "-out", target)
            body = target.read_bytes()
        self.send_response(200)
        self.send_header("content-type", MEDIA_REPLY)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def openssl_tsa(folder: Path, cert: Path, key: Path, chain: Path, ess: str) -> Iterator[OpensslTsa]:
    """``openssl ts -reply`` behind an HTTP server (http.server in a thread)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "serial").write_text("01\n")
    config = folder / "tsa.cnf"
    config.write_text(TSA_CONFIG.format(dir=folder, cert=cert, key=key, chain=chain, ess=ess))
    handler = type("Handler", (_Handler,), {"config": config})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield OpensslTsa(config, f"http://127.0.0.1:{server.server_address[1]}/", cert)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def openssl_tsa_cert(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Issued:
    """A TSA certificate of the development PKI, for OpenSSL to stamp with."""
    folder = tmp_path_factory.mktemp("openssl-tsa-cert")
    signer = tsa_certificate(pki)
    issued = Issued(folder / "tsa.pem", folder / "tsa.key")
    write_pem(issued.cert, signer.certificate)
    write_private_key(issued.key, signer.private_key)  # type: ignore[arg-type]
    return issued


@pytest.mark.parametrize(
    "ess", ["sha256", "sha1"], ids=["signingCertificateV2", "signingCertificate"]
)
def test_token_from_openssl_as_the_tsa_embedded_by_lienthong_sign_verifies(
    pki: Pki, openssl_tsa_cert: Issued, tmp_path: Path, ess: str
) -> None:
    header = tmp_path / "header.json"
    header.write_bytes(header_bytes(recipients=[H37]))
    signature = tmp_path / "header.json.p7s"
    seal, seal_key = pki.dev.seal(G22)
    crls = [arg for path in pki.dev.crls for arg in ("--crl", str(path))]
    with openssl_tsa(
        tmp_path / "tsa", openssl_tsa_cert.cert, openssl_tsa_cert.key, pki.dev.chain, ess
    ) as tsa:
        lienthong(
            "sign", "--header", header, "--cert", seal, "--key", seal_key,
            "--chain", pki.dev.chain, "--tsa", tsa.url, "--out", signature,
        )  # fmt: skip
    verified = lienthong(
        "verify", "--header", header, "--signature", signature, "--trust-anchors",
        pki.dev.trust_anchors, *crls, "--registry", pki.dev.registry, "--require-timestamp",
        "--json",
    )  # fmt: skip
    verdict = json.loads(verified.stdout)
    assert verdict["verdict"] == "accepted", verdict
    assert verdict["time_source"] == "timestamp"
    assert verdict["seal"]["tsa"] == "CN=lienthong Test TSA,O=lienthong development PKI,C=VN"
    gen_time = dt.datetime.fromisoformat(verdict["trusted_time"])
    assert abs(gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=2)


def test_sha1_token_from_openssl_is_imprint_mismatch(
    pki: Pki, openssl_tsa_cert: Issued, tmp_path: Path
) -> None:
    with openssl_tsa(
        tmp_path / "tsa", openssl_tsa_cert.cert, openssl_tsa_cert.key, pki.dev.chain, "sha256"
    ) as tsa:
        query = _openssl_query(tmp_path, b"payload", "-sha1", "-cert")
        reply = parse_response(_post(tsa.url, query.read_bytes()).content)
    assert reply.token is not None
    judge = TimestampVerifier(pki.anchors(), pki.crls())
    with pytest.raises(Rejected) as caught:
        judge.verify_token(reply.token, b"payload", now=dt.datetime.now(dt.UTC))
    assert caught.value.reason is Reason.TIMESTAMP_IMPRINT_MISMATCH
    assert "SHA-1" in caught.value.detail


@pytest.fixture(scope="module")
def openssl_hierarchy(tmp_path_factory: pytest.TempPathFactory) -> tuple[OpensslCa, Issued]:
    """A TSA hierarchy made entirely by openssl, separate from the signers' CAs."""
    ca = OpensslCa.create(tmp_path_factory.mktemp("openssl-tsa-ca"))
    ca.extensions.write_text(
        EXTENSIONS + "\n[tsa]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, nonRepudiation\n"
        "extendedKeyUsage = critical, timeStamping\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
    )
    return ca, ca.issue("tsa", "/C=VN/O=Ban Cơ yếu Chính phủ (openssl)/CN=openssl TSA", "tsa")


def test_tsa_of_another_hierarchy_is_trusted_through_tsa_trust_anchors(
    pki: Pki, openssl_hierarchy: tuple[OpensslCa, Issued], tmp_path: Path
) -> None:
    ca, tsa_cert = openssl_hierarchy
    header = tmp_path / "header.json"
    header.write_bytes(header_bytes())
    signature = tmp_path / "header.json.p7s"
    seal, seal_key = pki.dev.seal(G22)
    with openssl_tsa(
        tmp_path / "tsa", tsa_cert.cert, tsa_cert.key, ca.intermediate.issued.cert, "sha256"
    ) as tsa:
        lienthong(
            "sign", "--header", header, "--cert", seal, "--key", seal_key,
            "--chain", pki.dev.chain, "--tsa", tsa.url, "--out", signature,
        )  # fmt: skip
    crls = [arg for path in pki.dev.crls for arg in ("--crl", str(path))]
    base: list[str | Path] = [
        "verify", "--header", header, "--signature", signature,
        "--trust-anchors", pki.dev.trust_anchors, *crls,
    ]  # fmt: skip
    untrusted = lienthong(*base, check=False)
    assert untrusted.returncode == 1
    assert untrusted.stdout.startswith("REJECTED  timestamp_untrusted: "), untrusted.stdout
    tsa_crls = [arg for path in ca.crls() for arg in ("--crl", str(path))]
    trusted = lienthong(*base, *tsa_crls, "--tsa-trust-anchors", ca.root.issued.cert)
    assert trusted.stdout.startswith("ACCEPTED"), trusted.stdout
    assert "time-stamped" in trusted.stdout
    assert "openssl TSA" in trusted.stdout
    # Without the TSA hierarchy's CRLs its chain is judged only when revocation is optional.
    no_crls = lienthong(*base, "--tsa-trust-anchors", ca.root.issued.cert, check=False)
    assert no_crls.stdout.startswith("REJECTED  timestamp_untrusted: "), no_crls.stdout
    assert "crl_missing" in no_crls.stdout
    optional = lienthong(
        *base, "--tsa-trust-anchors", ca.root.issued.cert, "--tsa-revocation", "if_available"
    )
    assert optional.stdout.startswith("ACCEPTED"), optional.stdout


def test_dev_pki_tsa_files_are_usable_by_openssl_ts(pki: Pki, tmp_path: Path) -> None:
    # The development PKI's own TSA certificate and key, given to OpenSSL as-is.
    cert, key = pki.dev.tsa
    with openssl_tsa(tmp_path / "tsa", cert, key, pki.dev.chain, "sha256") as tsa:
        query = _openssl_query(tmp_path, b"payload", "-sha256", "-cert")
        reply = tmp_path / "reply.tsr"
        reply.write_bytes(_post(tsa.url, query.read_bytes()).content)
    assert "Verification: OK" in _openssl_ts_verify(pki, reply, query)
    token = parse_response(reply.read_bytes()).token
    assert token is not None
    verified = TimestampVerifier(pki.anchors(), pki.crls()).verify_token(
        token, b"payload", now=dt.datetime.now(dt.UTC)
    )
    assert verified.info.accuracy == dt.timedelta(seconds=1, milliseconds=500)
    assert verified.info.ordering
    assert verified.tsa.cert.public_bytes(Encoding.PEM) == cert.read_bytes()
