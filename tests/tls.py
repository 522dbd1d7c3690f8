"""Certificates for TLS tests, made by ``openssl``: a CA that signs the brokers'
certificates (for ``localhost`` / 127.0.0.1) and a client certificate, and a
second CA that signed nothing of ours (a broker "from another CA")."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path  # the brokers' certificate
    key: Path
    client_cert: Path  # signed by ``ca``, for mutual TLS
    client_key: Path
    other_ca: Path  # a CA that did not sign the brokers' certificate


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _issue(
    directory: Path, name: str, ca: Path, ca_key: Path, extensions: str
) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    request, ext = directory / f"{name}.csr", directory / f"{name}.cnf"
    ext.write_text(extensions)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    ca, ca_key = _ca(directory, "gramlink-test-ca")
    other_ca, _ = _ca(directory, "someone-else")
    cert, key = _issue(
        directory, "localhost", ca, ca_key, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    client_cert, client_key = _issue(
        directory, "gramlink-client", ca, ca_key, "extendedKeyUsage=clientAuth\n"
    )
    return Pki(ca, cert, key, client_cert, client_key, other_ca)
