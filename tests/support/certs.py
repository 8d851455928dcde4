"""Certificates made by the test run with openssl: CAs, a server's and a client's. Nothing
here is checked in; each lives in the test's own temporary directory."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.pem"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key"

    def issue(self, name: str, *, server: bool,
              names: str = "IP:127.0.0.1, DNS:localhost") -> Issued:
        """A certificate signed by this CA: a server's for `names` (subjectAltName), or a
        client's."""
        out = Issued(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            + (f"extendedKeyUsage = serverAuth\nsubjectAltName = {names}\n"
               if server else "extendedKeyUsage = clientAuth\n"))
        csr = self.directory / f"{name}.csr"
        _openssl("req", *_KEY, "-keyout", str(out.key), "-out", str(csr),
                 "-subj", f"/CN={name}", cwd=self.directory)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey",
                 str(self.key), "-CAcreateserial", "-out", str(out.cert), "-days", "2",
                 "-extfile", str(extensions), cwd=self.directory)
        return out


def make_authority(directory: Path, name: str) -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority(directory, name)
    _openssl("req", "-x509", *_KEY, "-keyout", str(authority.key), "-out",
             str(authority.cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return authority


@dataclass(frozen=True)
class Pki:
    """What a TLS platform's tests use: the servers' CA and certificate, the CA of the
    workers' client certificates and one of them, and a CA nobody trusts with a client
    certificate of its own."""

    ca: Authority
    server: Issued
    worker_ca: Authority
    worker: Issued
    rogue_ca: Authority
    rogue_worker: Issued

    def server_env(self) -> dict[str, str]:
        """A platform's environment for TLS on both listeners, trusted by its own clients."""
        return {"SLUICE_TLS_CERT_FILE": str(self.server.cert),
                "SLUICE_TLS_KEY_FILE": str(self.server.key),
                "SLUICE_TLS_CA_FILE": str(self.ca.cert)}


def make_pki(directory: Path) -> Pki:
    ca, worker_ca, rogue_ca = (make_authority(directory, name)
                               for name in ("sluice-ca", "worker-ca", "rogue-ca"))
    return Pki(ca, ca.issue("server", server=True), worker_ca,
               worker_ca.issue("worker", server=False), rogue_ca,
               rogue_ca.issue("rogue-worker", server=False))
