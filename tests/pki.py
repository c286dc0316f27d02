"""Test certificates made with the openssl command line: a root CA, leaf certificates, an unrelated CA."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(name: str, cn: str, ca: str, cwd: Path, san: str | None = None) -> None:
    """`name`.key/.crt signed by `ca` (in `cwd`), with an optional subjectAltName (e.g. "IP:127.0.0.1")."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}", cwd=cwd)  # fmt: skip
    ext = ["-extfile", f"{name}.ext"] if san else []
    if san:
        (cwd / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=cwd)  # fmt: skip


def make_pki(directory: Path, leaves: dict[str, str] | None = None) -> Path:
    """ca.crt and other-ca.crt (self-signed), server.crt for 127.0.0.1, plus `leaves` {name: CN} by ca."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-days", "2", "-subj", f"/CN={ca}", cwd=directory)  # fmt: skip
    issue("server", "server", "ca", directory, san="IP:127.0.0.1")
    for name, cn in (leaves or {}).items():
        issue(name, cn, "ca", directory)
    return directory
