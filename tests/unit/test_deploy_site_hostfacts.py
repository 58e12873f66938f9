"""Probing a host for the data plane, and the choices made from what it has."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dockyard.deploy.site.hostfacts import HostFacts, choose_datapath, choose_virt_type, machine_hostname, probe
from dockyard.errors import ConfigError

from .deploy_fixtures import fake_host


def test_a_kernel_without_the_module_and_no_kvm(tmp_path):
    facts = probe(fake_host(tmp_path))
    assert not facts.openvswitch_module and "has no openvswitch module" in facts.openvswitch_evidence
    assert not facts.kvm_usable and "/dev/kvm is missing" in facts.kvm_evidence
    assert choose_datapath({}, facts).value == "netdev"
    assert choose_virt_type({}, facts).value == "qemu"


def test_a_module_on_disk_but_not_loaded_is_not_used_and_the_advice_says_how(tmp_path):
    facts = probe(fake_host(tmp_path, module="on disk"))
    assert not facts.openvswitch_module and "modprobe openvswitch" in facts.openvswitch_evidence
    assert choose_datapath({}, facts).value == "netdev"


def test_a_loaded_module_and_a_cpu_with_vmx(tmp_path):
    facts = probe(fake_host(tmp_path, module="loaded", kvm=True, flags="fpu vmx sse2"))
    assert facts.openvswitch_module and facts.kvm_usable
    assert choose_datapath({}, facts) .value == "system"
    assert (choose_virt_type({}, facts).value, choose_virt_type({}, facts).why) == ("kvm", facts.kvm_evidence)


def test_dev_kvm_without_vmx_or_svm_is_not_usable(tmp_path):
    # As on this project's machines: the device is there, guests cannot run on it.
    facts = probe(fake_host(tmp_path, kvm=True, flags="fpu sse2 hypervisor"))
    assert not facts.kvm_usable and "no vmx/svm" in facts.kvm_evidence
    choice = choose_virt_type({}, facts)
    assert choice.value == "qemu" and choice.why == facts.kvm_evidence


@pytest.mark.parametrize("options, expected", [({"datapath": "system"}, "system"), ({"datapath": "netdev"}, "netdev"),
                                               ({"datapath": "auto"}, "netdev")])
def test_the_operator_setting_wins_over_auto(options, expected):
    facts = HostFacts(False, "no module", False, "no kvm")
    choice = choose_datapath(options, facts)
    assert choice.value == expected
    assert choice.why == ("set in globals.yml" if options["datapath"] != "auto" else "no module")


def test_a_bad_setting_names_the_key():
    with pytest.raises(ConfigError) as exc:
        choose_datapath({"datapath": "dpdk"}, HostFacts(False, "", False, ""), Path("/site/globals.yml"))
    assert exc.value.key == "services.openvswitch.datapath" and exc.value.path == "/site/globals.yml"
    assert "auto, system, netdev" in str(exc.value)


# -- the machine's name, as libvirt reports it ------------------------------------------------

def _resolver(canonical: str | None, asked: list[str]):
    def getaddrinfo(name, port, family, type_, proto, flags):
        asked.append(name)
        assert flags & socket.AI_CANONNAME
        if canonical is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, canonical, ("192.0.2.7", 0))]
    return getaddrinfo


@pytest.mark.parametrize("hostname, canonical, expected, looked_up", [
    ("node7", "node7.lab.example.org", "node7.lab.example.org", True),     # a short name: its canonical form
    ("node7", "node7", "node7", True),
    ("node7", "localhost", "node7", True),                    # resolved back to localhost: the short name
    ("node7", "localhost.localdomain", "node7", True),
    ("node7", "", "node7", True),                             # no canonical name given
    ("node7", None, "node7", True),                           # not resolvable: the short name
    ("node7.lab.example.org", "other.example.org", "node7.lab.example.org", False),   # a dot: as it is
    ("localhost", "elsewhere", "localhost", False),
    ("localhost-7", "elsewhere", "localhost-7", False),
])
def test_the_machine_name_is_libvirts_hypervisor_name(hostname, canonical, expected, looked_up):
    asked: list[str] = []
    assert machine_hostname(gethostname=lambda: hostname, getaddrinfo=_resolver(canonical, asked)) == expected
    assert asked == ([hostname] if looked_up else [])


@pytest.mark.parametrize("hostname", ["bad name", "semi;colon", "new\nline", "-dash", ""])
def test_a_machine_name_that_cannot_go_into_a_config_file_is_refused(hostname):
    with pytest.raises(ConfigError) as exc:
        machine_hostname(Path("/etc/dockyard/inventory.yml"), gethostname=lambda: hostname,
                         getaddrinfo=_resolver(None, []))
    assert exc.value.path == "/etc/dockyard/inventory.yml" and exc.value.key == "hosts"
    assert "name the host in inventory.yml" in str(exc.value)
