"""The testbed's certificates: one CA, a server per host, one client; made once."""

from __future__ import annotations

import ipaddress
import os
import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from dockyard.testbed import tls
from dockyard.testbed.plan import Layout, Subnet, plan_hosts


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def setup(tmp_path):
    layout = Layout(tmp_path / "tb")
    hosts = plan_hosts(2, Subnet.parse("10.113.0.0/24"), layout)
    ca, made = tls.ensure_ca(layout)
    assert made
    assert tls.ensure_client(layout, ca)
    assert all(tls.ensure_server(h, ca) for h in hosts)
    return layout, hosts, ca


def test_chain_names_and_usages(tmp_path):
    layout, hosts, ca = setup(tmp_path)
    server = x509.load_pem_x509_certificate(hosts[1].server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.113.0.12")]
    assert sans.get_values_for_type(x509.DNSName) == ["dyk-h2"]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client = x509.load_pem_x509_certificate((layout.client_dir / "cert.pem").read_bytes())
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (layout.client_dir / "ca.pem").read_bytes() == ca
    assert tls.is_current(hosts[0].server_cert.read_bytes(), ca, "10.113.0.11")
    assert not tls.is_current(hosts[0].server_cert.read_bytes(), ca, "10.113.0.12")


def test_keys_are_private(tmp_path):
    layout, hosts, _ = setup(tmp_path)
    for key in (layout.ca_key, layout.client_dir / "key.pem", hosts[0].server_key):
        assert mode(key) == 0o600
        assert mode(key.parent) == 0o700


def test_a_second_run_makes_nothing(tmp_path):
    layout, hosts, ca = setup(tmp_path)
    before = {p: p.read_bytes() for p in layout.state_dir.rglob("*.pem")}
    ca2, made = tls.ensure_ca(layout)
    assert (ca2, made) == (ca, False)
    assert not tls.ensure_client(layout, ca)
    assert not any(tls.ensure_server(h, ca) for h in hosts)
    assert {p: p.read_bytes() for p in layout.state_dir.rglob("*.pem")} == before


def test_a_new_ca_remakes_what_it_signs(tmp_path):
    layout, hosts, _ = setup(tmp_path)
    layout.ca_cert.unlink()
    ca, made = tls.ensure_ca(layout)
    assert made
    assert not tls.is_current(hosts[0].server_cert.read_bytes(), ca)
    assert tls.ensure_server(hosts[0], ca)
    assert tls.ensure_client(layout, ca)
    assert tls.is_current(hosts[0].server_cert.read_bytes(), ca, hosts[0].address)


def test_garbage_is_not_current(tmp_path):
    _, _, ca = setup(tmp_path)
    assert not tls.is_current(b"not a certificate", ca)
