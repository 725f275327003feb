"""`make demo` and `make run`: a development bus on this machine, and a scripted exchange.

    python scripts/demo.py demo    fresh workspace in .demo/, API + router, three agencies
                                   exchange documents; forged and replayed envelopes are
                                   rejected; traces printed; everything stopped at the end
    python scripts/demo.py serve   the same workspace (kept if present), API + router until Ctrl-C

Only RabbitMQ must be running (SQLite is the embedded database). The workspace holds a development
PKI (``lienthong pki init``), the SQLite database and the blobs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from adapters.amqp.publisher import redact
from adapters.client import ApiError, BusClient
from adapters.files import JsonRegistry, load_certificates, load_crls, load_private_key
from adapters.pki.folder import BUS_CODE, DevPki
from exchange.ports import Measured, SystemClock
from exchange.signing import SigningKey, sign_detached
from exchange.trust import TrustStore
from exchange.verification import Accepted, Verifier
from schemas.header import AttachmentRef

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = ROOT / ".demo"
LIENTHONG = str(Path(sys.executable).with_name("lienthong"))
G22, H37, H37_FINANCE = "000.00.00.G22", "000.00.00.H37", "000.00.01.H37"


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n\033[1m== {text}\033[0m")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.update(
        {
            "LIENTHONG_DATA_DIR": str(WORKSPACE / "var"),
            "LIENTHONG_PKI_DIR": str(WORKSPACE / "pki"),
            "LIENTHONG_API_PORT": str(port),
            "LIENTHONG_AMQP_URL": os.environ.get(
                "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
            ),
            "LIENTHONG_EXCHANGE_PREFIX": os.environ.get(
                "LIENTHONG_EXCHANGE_PREFIX", "lienthong-dev"
            ),
        }
    )
    return env


def check_broker(url: str) -> None:
    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means: no broker to talk to
        say(
            f"lienthong: cannot reach RabbitMQ at {redact(url)} ({type(exc).__name__}).\n"
            "  Start one on this machine:  rabbitmq-server -detached\n"
            "  or with Docker:             docker compose up -d rabbitmq\n"
            "  or point LIENTHONG_AMQP_URL at yours."
        )
        raise SystemExit(3) from None


def run(env: dict[str, str], *args: str | Path) -> str:
    done = subprocess.run([LIENTHONG, *map(str, args)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"lienthong {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def setup(env: dict[str, str], *, fresh: bool) -> DevPki:
    if fresh and WORKSPACE.exists():
        shutil.rmtree(WORKSPACE)
    pki = DevPki(WORKSPACE / "pki")
    if not pki.exists():
        say(run(env, "pki", "init", pki.root).rstrip())
    else:
        run(env, "pki", "crl", pki.root)  # keep the development CRLs fresh
    run(env, "db", "upgrade")
    say(run(env, "agency", "import-pki", pki.root).rstrip())
    return pki


@contextlib.contextmanager
def processes(env: dict[str, str]) -> Iterator[None]:
    logs = WORKSPACE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("api", "router"):
            with (logs / f"{name}.log").open("ab") as handle:
                started.append(
                    subprocess.Popen(
                        [LIENTHONG, name], env=env, stdout=handle, stderr=subprocess.STDOUT
                    )
                )
        url = f"http://127.0.0.1:{env['LIENTHONG_API_PORT']}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                raise SystemExit(f"the bus did not start; see {logs}")
            time.sleep(0.2)
        say(f"API on {url} (logs in {logs}); router consuming")
        yield
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF (valid, if plain) carrying ``text``."""
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class Agency:
    def __init__(self, pki: DevPki, code: str, url: str) -> None:
        self.code = code
        seal_cert, seal_key = pki.seal(code)
        leader_cert, leader_key = pki.leader(code)
        self.seal = SigningKey(load_certificates(seal_cert)[0], load_private_key(seal_key))
        self.leader = SigningKey(load_certificates(leader_cert)[0], load_private_key(leader_key))
        self.chain = load_certificates(pki.chain)
        self.client = BusClient.from_files(url, seal_cert, seal_key)

    def sign(self, header: bytes, *, personal: bool = True) -> bytes:
        signers = [self.seal, self.leader] if personal else [self.seal]
        return sign_detached(header, signers, chain=self.chain)


def header(sender: str, recipients: list[str], subject: str, **extra: Any) -> dict[str, Any]:
    now = time.gmtime()
    return {
        "version": 1,
        "message_id": str(uuid.uuid4()),
        "kind": "document",
        "sender": sender,
        "recipients": recipients,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
        "document": {
            "number": "2491",
            "notation": "VPCP-KTTH",
            "type": "Công văn",
            "subject": subject,
            "promulgation_place": "Hà Nội",
            "promulgation_date": time.strftime("%Y-%m-%d", now),
            "signer": {
                "full_name": "Trần Văn Minh",
                "position": "Bộ trưởng, Chủ nhiệm",
                "competence": "KT.",
            },
            "priority": "urgent",
            "steering_type": "directive",
        },
        **extra,
    }


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def wait_state(client: BusClient, message_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            return client.message_state(message_id)
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def local_verifier(pki: DevPki) -> Verifier:
    """What a receiving agency runs itself: the same verifier, with its own copy of the trust."""
    trust = TrustStore(
        load_certificates(pki.trust_anchors), [c for p in pki.crls for c in load_crls(p)]
    )
    return Verifier(trust, JsonRegistry.load(pki.registry), SystemClock())


def show_trace(env: dict[str, str], subject: str) -> None:
    say(run(env, "trace", subject).rstrip())


def demo() -> None:
    port = free_port()
    env = environment(port)
    check_broker(env["LIENTHONG_AMQP_URL"])
    step("Setting up: development PKI, SQLite database, registry of three agencies")
    pki = setup(env, fresh=True)
    with processes(env):
        url = f"http://127.0.0.1:{port}"
        gov, province, finance = (Agency(pki, code, url) for code in (G22, H37, H37_FINANCE))
        verifier = local_verifier(pki)

        step("Văn phòng Chính phủ sends a signed dispatch with a PDF to two agencies of H37")
        pdf = tiny_pdf("Cong van 2491/VPCP-KTTH - Du toan ngan sach nha nuoc nam 2027")
        attachment = {
            "name": "cong-van-2491.pdf",
            "media_type": "application/pdf",
            "size": len(pdf),
            "sha256": hashlib.sha256(pdf).hexdigest(),
        }
        doc = encode(
            header(
                G22,
                [H37, H37_FINANCE],
                "Về việc hướng dẫn xây dựng dự toán ngân sách nhà nước năm 2027",
                attachments=[attachment],
            )
        )
        signature = gov.sign(doc)
        queued = gov.client.submit(doc, signature, {"cong-van-2491.pdf": pdf})
        message_id = queued["message_id"]
        state = wait_state(gov.client, message_id)
        say(
            f"message {message_id}: {state['state']}; delivered to "
            + ", ".join(r["recipient"] for r in state["recipients"])
        )

        step("The recipients pull their inboxes, check the signatures themselves, and acknowledge")
        for agency in (province, finance):
            item = agency.client.read(message_id)
            verdict = verifier.verify(
                base64.b64decode(item["header"]),
                base64.b64decode(item["signature"]),
                _Blobs(agency.client, item),
            )
            assert isinstance(verdict, Accepted), verdict
            signers = "; ".join(
                f"{s['name']}" + (f" ({s['title']})" if s["title"] else "") for s in item["signers"]
            )
            size = item["attachments"][0]["size"]
            say(f"{agency.code}: “{item['subject']}” signed by {signers}")
            say(f"{agency.code}: signatures verified locally; PDF of {size} bytes matches")
            agency.client.ack(message_id)
            say(f"{agency.code}: acknowledged")

        step("Ủy ban nhân dân tỉnh H37 answers with a signed status: 05 processing")
        status = encode(
            {
                "version": 1,
                "message_id": str(uuid.uuid4()),
                "kind": "status",
                "sender": H37,
                "recipients": [G22],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "status": {
                    "for_message_id": message_id,
                    "code": "05",
                    "description": "Đã giao Sở Tài chính chủ trì xử lý",
                },
            }
        )
        province.client.submit(status, province.sign(status, personal=False))
        deadline = time.monotonic() + 30
        while (
            not (statuses := gov.client.message_state(message_id)["statuses"])
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        say(
            "Văn phòng Chính phủ sees: "
            + ", ".join(f"{s['sender']} → {s['code']}" for s in statuses)
        )

        step("A forged envelope: the subject is changed after signing")
        forged_doc = encode(header(G22, [H37], "Về việc phân bổ ngân sách (bản gốc)"))
        forged_sig = gov.sign(forged_doc)
        forged_doc = forged_doc.replace("bản gốc".encode(), "bản sửa".encode())
        forged_id = json.loads(forged_doc)["message_id"]
        gov.client.submit(forged_doc, forged_sig)
        verdict = wait_state(gov.client, forged_id)
        say(f"message {forged_id}: {verdict['state']} — {verdict['reason']}: {verdict['detail']}")

        step("A replay: the first message id again, with other bytes")
        replayed = json.loads(doc)
        replayed["document"]["subject"] = "Về việc hủy dự toán ngân sách nhà nước năm 2027"
        replayed_doc = encode(replayed)
        gov.client.submit(replayed_doc, gov.sign(replayed_doc), {"cong-van-2491.pdf": pdf})
        deadline = time.monotonic() + 30
        while "[replay]" not in (trail := run(env, "trace", message_id)):
            if time.monotonic() > deadline:
                raise SystemExit("the replay was not traced in time")
            time.sleep(0.1)
        say(next(line.strip() for line in trail.splitlines() if "[replay]" in line))
        notices = [i for i in gov.client.inbox()["items"] if i["sender"] == BUS_CODE]
        say(f"Văn phòng Chính phủ's inbox: {len(notices)} rejection notice(s), signed by the bus")

        step("Traces")
        for subject in (message_id, forged_id):
            show_trace(env, subject)
        for agency in (gov, province, finance):
            agency.client.close()
    step("Done: the bus is stopped. `make run` keeps one serving.")


class _Blobs:
    """Attachments of a pulled message, fetched from the bus for local verification."""

    def __init__(self, client: BusClient, item: dict[str, Any]) -> None:
        self.client = client
        self.links = {a["name"]: a for a in item["attachments"]}

    def measure(self, ref: AttachmentRef) -> Measured | None:
        link = self.links.get(ref.name)
        if link is None:
            return None
        content = self.client.blob(link["sha256"])
        return Measured(len(content), hashlib.sha256(content).hexdigest())


def serve() -> None:
    env = environment(int(os.environ.get("LIENTHONG_API_PORT", "8470")))
    check_broker(env["LIENTHONG_AMQP_URL"])
    setup(env, fresh=False)
    say(f"serving: API http://127.0.0.1:{env['LIENTHONG_API_PORT']} and a router; Ctrl-C stops")
    os.execve(LIENTHONG, [LIENTHONG, "run"], env)  # noqa: S606 - replaces this process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["demo", "serve"])
    args = parser.parse_args()
    demo() if args.command == "demo" else serve()


if __name__ == "__main__":
    main()
