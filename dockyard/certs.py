"""Certificates: a CA and the server and client certificates it signs.

Made with the ``cryptography`` library, ECDSA P-256 (quick to make, accepted by
Docker Engine 20.10, the registry and the Docker SDK). Used by the testbed (its
engines' TLS) and by the site's registry (its HTTPS).
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=7)
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
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dockyard"),
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


def make_ca(name: str) -> tuple[bytes, bytes]:
    """A CA certificate and its key (PEM), named ``name``."""
    key = _key()
    cert = (_builder(name, _name(name), key.public_key())
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
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        # make_ca's keys are ECDSA; a CA of another kind is not one is_current accepts either.
        raise ValueError(f"the CA's key is {type(ca_key).__name__}, not an ECDSA key as make_ca makes")
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
        ca_key, algorithm = ca.public_key(), cert.signature_hash_algorithm
        if not isinstance(ca_key, ec.EllipticCurvePublicKey) or algorithm is None:
            return False                               # not ECDSA with a hash: not signed as make_ca's CAs sign
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
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
