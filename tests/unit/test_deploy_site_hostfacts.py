"""Probing a host for the data plane, and the choices made from what it has."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.deploy.site.hostfacts import HostFacts, choose_datapath, choose_virt_type, probe
from dockyard.errors import ConfigError


def fake_host(tmp_path: Path, *, module: str = "none", kvm: bool = False, flags: str = "fpu sse2") -> Path:
    """A folder shaped like a host's /: sys/module, lib/modules, dev/kvm, proc/cpuinfo."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    (root / "dev").mkdir()
    if kvm:
        # A character device cannot be made without privileges: /dev/null is one.
        (root / "dev/kvm").symlink_to("/dev/null")
    if module == "loaded":
        (root / "sys/module/openvswitch").mkdir(parents=True)
    if module == "on disk":
        folder = root / "lib/modules" / os.uname().release / "kernel/net/openvswitch"
        folder.mkdir(parents=True)
        (folder / "openvswitch.ko.xz").write_bytes(b"")
    return root


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
