"""A CA hierarchy made entirely by the ``openssl`` command, the independent implementation.

``OpensslCa.create(folder)`` writes, with ``openssl req``, ``openssl x509 -req`` and ``openssl ca``
only (lienthong's code makes none of it): a root CA, an intermediate CA under it, leaf
certificates whose subjects carry ``organizationIdentifier`` (2.5.4.97) and whose extensions are
given by an extension file, and CRLs made by ``openssl ca -gencrl``. Every call is a fixed argument
list, never a shell.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

OPENSSL = "openssl"

# One configuration holds the extension sections of every profile; ``openssl ca`` reads the CA
# part (its own database and CRL number) from a per-CA copy made by ``_ca_config``.
EXTENSIONS = """\
[req]
distinguished_name = req_dn
string_mask = utf8only
utf8 = yes

[req_dn]

[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[seal]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = 1.3.6.1.5.5.7.3.36, emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 0.4.0.194112.1.1

[personal]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = 1.3.6.1.5.5.7.3.36, emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 0.4.0.194112.1.0

[crl_ext]
authorityKeyIdentifier = keyid:always
"""

CA_SECTION = """\
[ca]
default_ca = this_ca

[this_ca]
database = {database}
crlnumber = {crlnumber}
default_md = sha256
default_crl_days = 30
crl_extensions = crl_ext
"""


def openssl(*args: str | Path) -> bytes:
    """Run ``openssl`` with these arguments; return stdout, or fail with stderr in the message."""
    done = openssl_status(*args)
    if done.returncode != 0:
        command = " ".join(map(str, args))
        raise AssertionError(
            f"openssl {command} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
        )
    return done.stdout


def openssl_status(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """Run ``openssl`` and return the completed process whatever its exit status."""
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=False)


@dataclass(frozen=True)
class Issued:
    """A certificate and its unencrypted private key, both PEM files."""

    cert: Path
    key: Path

    def signer_args(self) -> list[str]:
        return ["-signer", str(self.cert), "-inkey", str(self.key)]


@dataclass
class CaDir:
    """One CA: its certificate and key, and the ``openssl ca`` database it keeps CRLs with."""

    folder: Path
    issued: Issued
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        database = self.folder / "index.txt"
        database.touch()
        crlnumber = self.folder / "crlnumber"
        crlnumber.write_text("01\n")
        self.config = self.folder / "ca.cnf"
        self.config.write_text(
            CA_SECTION.format(database=database, crlnumber=crlnumber) + "\n" + EXTENSIONS
        )

    def _ca_args(self) -> list[str | Path]:
        return ["-config", self.config, "-cert", self.issued.cert, "-keyfile", self.issued.key]

    def gencrl(self, out: Path) -> Path:
        openssl("ca", "-gencrl", *self._ca_args(), "-out", out)
        return out

    def revoke(self, cert: Path, reason: str = "keyCompromise") -> None:
        openssl("ca", "-revoke", cert, "-crl_reason", reason, *self._ca_args())


@dataclass
class OpensslCa:
    """Root → intermediate, made by openssl, able to issue leaves and CRLs."""

    folder: Path
    root: CaDir
    intermediate: CaDir

    @property
    def extensions(self) -> Path:
        return self.folder / "extensions.cnf"

    @classmethod
    def create(cls, folder: Path) -> OpensslCa:
        folder.mkdir(parents=True, exist_ok=True)
        extensions = folder / "extensions.cnf"
        extensions.write_text(EXTENSIONS)
        root = Issued(folder / "root.pem", folder / "root.key")
        # A self-signed root whose extensions are the [root] section of the same file.
        openssl(
            "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
            "-utf8", "-subj", "/C=VN/O=Ban Cơ yếu Chính phủ (openssl)/CN=openssl Root CA G1",
            "-config", extensions, "-extensions", "root",
            "-keyout", root.key, "-out", root.cert,
        )  # fmt: skip
        root_ca = CaDir(folder / "root-ca", root)
        intermediate = issue(
            root,
            folder / "intermediate",
            "/C=VN/O=Ban Cơ yếu Chính phủ (openssl)/CN=openssl Issuing CA G1",
            "intermediate",
            extensions,
            days=1825,
        )
        return cls(folder, root_ca, CaDir(folder / "intermediate-ca", intermediate))

    def issue(self, name: str, subject: str, profile: str) -> Issued:
        return issue(
            self.intermediate.issued, self.folder / name, subject, profile, self.extensions
        )

    def crls(self, suffix: str = "") -> list[Path]:
        """Fresh CRLs of both CAs, by ``openssl ca -gencrl``."""
        return [
            self.root.gencrl(self.folder / f"root{suffix}.crl.pem"),
            self.intermediate.gencrl(self.folder / f"intermediate{suffix}.crl.pem"),
        ]


def issue(
    issuer: Issued,
    stem: Path,
    subject: str,
    profile: str,
    extensions: Path,
    *,
    days: int = 730,
) -> Issued:
    """``openssl req -new`` a key and CSR, then ``openssl x509 -req -CA`` with an extension file."""
    issued = Issued(stem.with_suffix(".pem"), stem.with_suffix(".key"))
    csr = stem.with_suffix(".csr")
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-utf8", "-subj", subject,
        "-config", extensions, "-keyout", issued.key, "-out", csr,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
        "-set_serial", f"0x{secrets.randbits(120) | 1 << 119:x}", "-days", str(days),
        "-sha256", "-extfile", extensions, "-extensions", profile, "-out", issued.cert,
    )  # fmt: skip
    return issued
