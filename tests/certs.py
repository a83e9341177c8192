"""Certificates for the TLS tests, made with openssl in a temporary folder: a CA, a server
certificate for 127.0.0.1 and a client certificate signed by it, and a second CA that signed
nothing (to be refused)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=empfast test {name}")


def make_signed(folder: Path, name: str, subject: str, extensions: str | None = None) -> None:
    openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject)
    extra: list[str] = []
    if extensions is not None:
        (folder / f"{name}.ext").write_text(extensions)
        extra = ["-extfile", f"{name}.ext"]
    openssl(folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra)


def make_certificates(folder: Path) -> Certificates:
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_signed(folder, "server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    make_signed(folder, "client", "/CN=empfast-client")
    return Certificates(folder / "ca.crt", folder / "server.crt", folder / "server.key",
                        folder / "client.crt", folder / "client.key", folder / "other-ca.crt")
