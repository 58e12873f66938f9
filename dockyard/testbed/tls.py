"""The testbed's certificates: one CA, a server certificate per host, one client.

Made with the ``cryptography`` library (ECDSA P-256: quick to make, accepted by
Docker Engine 20.10 and by the Docker SDK). Keys are written 0600 in 0700
folders, through dockyard's atomic writer. A certificate is made again only when
it is missing, not signed by the testbed's CA, about to expire, or no longer
names the host's address: a second ``up`` rewrites nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.deploy.files import write_atomic

from .plan import Host, Layout

VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=7)
CA_NAME = "dockyard testbed CA"
CLIENT_NAME = "dockyard-testbed-client"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard testbed"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY))


def make_ca() -> tuple[bytes, bytes]:
    key = _key()
    cert = (_builder(CA_NAME, _name(CA_NAME), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _cert_pem(cert), _key_pem(key)


def _leaf(ca_cert_pem: bytes, ca_key_pem: bytes, cn: str, usage, sans: list | None) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):      # make_ca's keys are
        raise ValueError("the CA key is not an elliptic-curve key")
    key = _key()
    builder = (_builder(cn, ca_cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=True, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)


def make_server(ca_cert_pem: bytes, ca_key_pem: bytes, name: str, address: str) -> tuple[bytes, bytes]:
    sans = [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName(name)]
    return _leaf(ca_cert_pem, ca_key_pem, name, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def make_client(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[bytes, bytes]:
    return _leaf(ca_cert_pem, ca_key_pem, CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, None)


def is_current(cert_pem: bytes, ca_cert_pem: bytes, address: str | None = None) -> bool:
    """Signed by this CA, valid for a while yet, and (for a server) naming ``address``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
        public, algorithm = ca.public_key(), cert.signature_hash_algorithm
        if not isinstance(public, ec.EllipticCurvePublicKey) or algorithm is None:
            return False                # not made by make_ca
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except (ValueError, InvalidSignature, TypeError):
        return False
    if cert.issuer != ca.subject or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    if address is not None:
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        if ipaddress.ip_address(address) not in sans.get_values_for_type(x509.IPAddress):
            return False
    return True


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
