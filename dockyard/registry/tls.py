"""The registry's HTTPS: a CA of the site's own, the registry's certificate,
and the engines' trust in it.

The CA and the certificate live in ``<state_dir>/registry/tls`` (keys 0600 in
0700 folders). A certificate is made again only when missing, not signed by the
CA, about to expire or not naming the registry's address. An engine trusts the
registry through ``/etc/docker/certs.d/<address:port>/ca.crt`` on its host, read
at every pull and push (no restart): on the deployment host dockyard writes it;
on other hosts the operator puts the same file there (docs/registry.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.certs import is_current, make_ca, make_server
from dockyard.deploy.files import write_atomic

CA_NAME = "dockyard registry CA"
CERTS_D = Path("/etc/docker/certs.d")     # where Docker Engine looks for a registry's CA


@dataclass(frozen=True)
class RegistryTls:
    folder: Path                          # <state_dir>/registry/tls

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"


def tls_of(state_dir: Path) -> RegistryTls:
    return RegistryTls(Path(state_dir) / "registry" / "tls")


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def ensure(tls: RegistryTls, address: str) -> bool:
    """The CA and a server certificate for ``address`` (an IPv4 address). Returns
    whether anything was made."""
    changed = False
    ca, ca_key = _read(tls.ca), _read(tls.ca_key)
    if not (ca and ca_key and is_current(ca, ca)):
        ca, ca_key = make_ca(CA_NAME)
        write_atomic(tls.ca_key, ca_key, dir_mode=0o700)
        write_atomic(tls.ca, ca, mode=0o644, dir_mode=0o700)
        changed = True
    cert, key = _read(tls.cert), _read(tls.key)
    if changed or not (cert and key and is_current(cert, ca, address)):
        cert, key = make_server(ca, ca_key, "dockyard-registry", address)
        write_atomic(tls.key, key, dir_mode=0o700)
        write_atomic(tls.cert, cert, mode=0o644, dir_mode=0o700)
        changed = True
    return changed


def trust_path(address: str, certs_d: Path = CERTS_D) -> Path:
    """Where an engine on this machine looks for the CA of the registry at ``address`` (host:port)."""
    return Path(certs_d) / address / "ca.crt"


def trust(tls: RegistryTls, address: str, certs_d: Path = CERTS_D) -> bool:
    """This machine's engine trusts the registry (for its pushes). Returns whether it was written."""
    path = trust_path(address, certs_d)
    ca = tls.ca.read_bytes()
    if _read(path) == ca:
        return False
    write_atomic(path, ca, mode=0o644, dir_mode=0o755)
    return True


def untrust(address: str, certs_d: Path = CERTS_D) -> bool:
    path = trust_path(address, certs_d)
    if not path.exists():
        return False
    path.unlink()
    try:
        path.parent.rmdir()
    except OSError:
        pass                              # something else of the operator's is there
    return True
