"""The testbed's certificates: one CA, a server certificate per host, one client.

Made with the ``cryptography`` library (ECDSA P-256: quick to make, accepted by
Docker Engine 20.10 and by the Docker SDK). Keys are written 0600 in 0700
folders, through dockyard's atomic writer. A certificate is made again only when
it is missing, not signed by the testbed's CA, about to expire, or no longer
names the host's address: a second ``up`` rewrites nothing.
"""

from __future__ import annotations

from pathlib import Path

from dockyard.certs import CLIENT_NAME, is_current, make_ca as _make_ca, make_client, make_server  # noqa: F401
from dockyard.deploy.files import write_atomic

from .plan import Host, Layout

CA_NAME = "dockyard testbed CA"


def make_ca() -> tuple[bytes, bytes]:
    return _make_ca(CA_NAME)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_pair(cert_path: Path, key_path: Path, cert: bytes, key: bytes) -> None:
    # The key first: a pair is never a new certificate beside an old key for long.
    write_atomic(key_path, key, dir_mode=0o700)
    write_atomic(cert_path, cert, mode=0o644, dir_mode=0o700)


def ensure_ca(layout: Layout) -> tuple[bytes, bool]:
    """The CA certificate, made when missing or expiring. Returns (pem, changed)."""
    cert, key = _read(layout.ca_cert), _read(layout.ca_key)
    if cert and key and is_current(cert, cert):
        return cert, False
    cert, key = make_ca()
    _write_pair(layout.ca_cert, layout.ca_key, cert, key)
    return cert, True


def ensure_client(layout: Layout, ca_cert: bytes) -> bool:
    d = layout.client_dir
    cert, key, ca = _read(d / "cert.pem"), _read(d / "key.pem"), _read(d / "ca.pem")
    if cert and key and ca == ca_cert and is_current(cert, ca_cert):
        return False
    cert, key = make_client(ca_cert, layout.ca_key.read_bytes())
    _write_pair(d / "cert.pem", d / "key.pem", cert, key)
    write_atomic(d / "ca.pem", ca_cert, mode=0o644, dir_mode=0o700)
    return True


def ensure_server(host: Host, ca_cert: bytes) -> bool:
    cert, key = _read(host.server_cert), _read(host.server_key)
    if cert and key and is_current(cert, ca_cert, host.address):
        return False
    cert, key = make_server(ca_cert, host.layout.ca_key.read_bytes(), host.name, host.address)
    _write_pair(host.server_cert, host.server_key, cert, key)
    return True
