"""Prechecks of the data plane: the datapath and virt type chosen, and why."""

from __future__ import annotations

from dockyard.deploy.ops.prechecks import FAIL, OK, WARN, _data_plane
from dockyard.deploy.site.loader import load_site
from dockyard.deploy.wanted.catalogue import load_services

from .deploy_fixtures import fake_host, make_site, set_globals


def checks_for(tmp_path, services: dict | None = None, **host):
    site_dir = make_site(tmp_path)
    if services:
        set_globals(site_dir, services=services)
    catalogue = load_services()
    site = load_site(site_dir, set(catalogue.services), [])
    root = fake_host(tmp_path, **host)
    (root / "dev/net").mkdir(parents=True)
    (root / "dev/net/tun").write_text("")
    return {c.name: c for c in _data_plane(site, catalogue, catalogue.closure(site.globals.enabled_services), root)}


def test_a_host_without_module_or_kvm_gets_netdev_and_emulation_with_the_reasons(tmp_path):
    checks = checks_for(tmp_path)
    assert checks["datapath"].status == OK
    assert checks["datapath"].message.startswith("netdev (userspace), because the kernel")
    assert checks["virt type"].status == WARN and "qemu (QEMU emulation), because /dev/kvm is missing" in \
        checks["virt type"].message


def test_a_host_with_module_and_kvm_gets_the_kernel_datapath_and_kvm(tmp_path):
    checks = checks_for(tmp_path, module="loaded", kvm=True, flags="fpu svm")
    assert checks["datapath"].message.startswith("system (the kernel's), because the openvswitch kernel module")
    assert checks["virt type"].status == OK and checks["virt type"].message.startswith("kvm (hardware")


def test_a_setting_in_globals_is_said_and_a_bad_one_fails(tmp_path):
    checks = checks_for(tmp_path, {"nova-compute": {"virt_type": "qemu"}})
    assert checks["virt type"].status == OK and "set in globals.yml" in checks["virt type"].message
    bad = checks_for(tmp_path / "bad", {"openvswitch": {"datapath": "dpdk"}})
    assert bad["data plane"].status == FAIL and "services.openvswitch.datapath" in bad["data plane"].message


def test_a_missing_tun_device_fails(tmp_path):
    site_dir = make_site(tmp_path)
    catalogue = load_services()
    site = load_site(site_dir, set(catalogue.services), [])
    checks = {c.name: c for c in _data_plane(site, catalogue, catalogue.closure(site.globals.enabled_services),
                                             fake_host(tmp_path))}
    assert checks["tun"].status == FAIL and "modprobe tun" in checks["tun"].advice


def test_the_all_in_one_says_the_name_openstack_will_know_it_by(tmp_path, machine_hostname):
    checks = checks_for(tmp_path)
    assert checks["host name"].status == OK
    assert checks["host name"].message.startswith(f"{machine_hostname}: this machine's name, as libvirt reports it")
