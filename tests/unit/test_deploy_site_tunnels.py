"""The tunnel network in the inventory (tunnel_address, tunnel_interface), the
decisions made from it (dockyard/deploy/site/tunnels.py) and the prechecks'
verdict on a site whose agents' tunnels could not leave their hosts."""

from __future__ import annotations

import pytest

from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.ops import prechecks
from dockyard.deploy.site import loader
from dockyard.deploy.site.loader import ALL_IN_ONE_HOST, Globals, Host, load_inventory
from dockyard.deploy.site.tunnels import TUNNEL_BRIDGE, tunnel_bridge, untunnelled
from dockyard.errors import ConfigError

from .deploy_fixtures import fake_engine, make_site, quiet, remote, set_globals, site_of, write_inventory

H1 = {"address": "192.0.2.11"}
H2 = {"address": "192.0.2.12"}


def inventory(tmp_path, hosts: dict):
    write_inventory(tmp_path, hosts)
    return load_inventory(tmp_path, Globals()).hosts


def inventory_error(tmp_path, hosts: dict) -> ConfigError:
    write_inventory(tmp_path, hosts)
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path, Globals())
    assert err.value.path == str(tmp_path / "inventory.yml")
    return err.value


# -- the inventory ----------------------------------------------------------------------------

def test_without_tunnel_keys_a_host_tunnels_from_its_address(tmp_path):
    h = inventory(tmp_path, {"h1": H1})["h1"]
    assert (h.tunnel_address, h.tunnel_prefixlen, h.tunnel_interface) == ("192.0.2.11", None, "")


def test_the_tunnel_keys_are_read(tmp_path):
    hosts = inventory(tmp_path, {
        "h1": {**H1, "tunnel_address": "10.114.0.11/24", "tunnel_interface": "eth1"},
        "h2": {**H2, "tunnel_address": "10.114.0.12"},          # the operator's own address: no prefix needed
    })
    assert (hosts["h1"].tunnel_address, hosts["h1"].tunnel_prefixlen, hosts["h1"].tunnel_interface) == \
        ("10.114.0.11", 24, "eth1")
    assert (hosts["h2"].tunnel_address, hosts["h2"].tunnel_prefixlen, hosts["h2"].tunnel_interface) == \
        ("10.114.0.12", None, "")
    assert hosts["h1"].address == "192.0.2.11"                   # the host's own address is untouched


def test_localhost_keeps_its_tunnel_keys_with_the_machines_name(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "machine_hostname", lambda path=None: "node7")
    write_inventory(tmp_path, {ALL_IN_ONE_HOST: {"address": "192.0.2.11", "tunnel_address": "10.114.0.11/24",
                                                 "tunnel_interface": "eth1"}})
    h = load_inventory(tmp_path, Globals()).hosts[ALL_IN_ONE_HOST]
    assert h.hostname == "node7"
    assert (h.tunnel_address, h.tunnel_prefixlen, h.tunnel_interface) == ("10.114.0.11", 24, "eth1")


@pytest.mark.parametrize("h1, key, words", [
    ({**H1, "tunnel_address": "10.114.0"}, "hosts.h1.tunnel_address", ["IPv4 address", "10.114.0.11/24"]),
    ({**H1, "tunnel_address": "10.114.0.11/33"}, "hosts.h1.tunnel_address", ["prefix length"]),
    ({**H1, "tunnel_address": "10.114.0.11/x"}, "hosts.h1.tunnel_address", ["prefix length"]),
    ({**H1, "tunnel_address": "fd00::1"}, "hosts.h1.tunnel_address", ["IPv4"]),
    ({**H1, "tunnel_interface": "eth 1"}, "hosts.h1.tunnel_interface", ["interface name"]),
    ({**H1, "tunnel_interface": "a-name-longer-than-15"}, "hosts.h1.tunnel_interface", ["15"]),
    ({**H1, "tunnel_interface": "eth1;reboot"}, "hosts.h1.tunnel_interface", ["interface name"]),
    ({**H1, "tunnel_interface": TUNNEL_BRIDGE}, "hosts.h1.tunnel_interface", ["Open vSwitch", "e.g. eth1"]),
    ({**H1, "tunnel_interface": "br-int"}, "hosts.h1.tunnel_interface", ["Open vSwitch"]),
    ({**H1, "tunnel_adress": "10.114.0.11/24"}, "hosts.h1.tunnel_adress", []),
    # With a NIC, dockyard puts the address on br-tunnel: it must be given, with its prefix...
    ({**H1, "tunnel_interface": "eth1"}, "hosts.h1.tunnel_address", ["needs a tunnel_address", "br-tunnel"]),
    ({**H1, "tunnel_interface": "eth1", "tunnel_address": "10.114.0.11"}, "hosts.h1.tunnel_address",
     ["prefix length", "10.114.0.11/24"]),
    # ...not the host's own address (it would be on two interfaces)...
    ({**H1, "tunnel_interface": "eth1", "tunnel_address": "192.0.2.11/24"}, "hosts.h1.tunnel_address",
     ["must not be the host's address"]),
    # ...and one that reaches other hosts through the bridge.
    ({**H1, "tunnel_interface": "eth1", "tunnel_address": "10.114.0.11/32"}, "hosts.h1.tunnel_address", ["/32"]),
    ({**H1, "tunnel_interface": "eth1", "tunnel_address": "10.114.0.0/24"}, "hosts.h1.tunnel_address",
     ["network's own"]),
    ({**H1, "tunnel_interface": "eth1", "tunnel_address": "10.114.0.255/24"}, "hosts.h1.tunnel_address",
     ["broadcast"]),
])
def test_bad_tunnel_keys_are_refused_naming_file_and_key(tmp_path, h1, key, words):
    err = inventory_error(tmp_path, {"h1": h1})
    assert err.key == key, err
    for word in words:
        assert word in str(err)


def test_two_hosts_may_not_tunnel_from_one_address(tmp_path):
    same = {"tunnel_address": "10.114.0.11/24", "tunnel_interface": "eth1"}
    err = inventory_error(tmp_path, {"h1": {**H1, **same}, "h2": {**H2, **same}})
    assert err.key == "hosts.h2.tunnel_address" and "'h1'" in str(err)
    # A tunnel address that is another host's address: said where it was written.
    err = inventory_error(tmp_path, {"h1": {**H1, "tunnel_address": "192.0.2.12"}, "h2": H2})
    assert err.key == "hosts.h1.tunnel_address" and "'h2'" in str(err)


# -- the decisions ------------------------------------------------------------------------------

def host(name: str, interface: str = "") -> Host:
    return Host(name, "192.0.2.1", tunnel_interface=interface)


def test_only_the_userspace_datapath_with_a_nic_gets_the_bridge():
    assert tunnel_bridge(host("h1", "eth1"), "netdev") == TUNNEL_BRIDGE == "br-tunnel"
    assert tunnel_bridge(host("h1", "eth1"), "system") == ""       # the kernel routes the tunnels itself
    assert tunnel_bridge(host("h1"), "netdev") == ""               # no address is moved that was not given


def test_untunnelled_hosts_are_netdev_hosts_without_a_nic_among_several():
    hosts = [host("a", "eth1"), host("b"), host("c")]
    assert [h.name for h in untunnelled(hosts, {"a": "netdev", "b": "netdev", "c": "system"})] == ["b"]
    assert untunnelled([host("b")], {"b": "netdev"}) == []         # one host tunnels to no one


# -- prechecks ----------------------------------------------------------------------------------

@pytest.fixture
def cloud_on_two_hosts(tmp_path):
    """The default services on two remote hosts: the agent on both (network h1,
    compute h1 and h2); remote hosts get the userspace datapath (not probed)."""
    config_dir = make_site(tmp_path)
    hosts = {"h1": remote("192.0.2.11"), "h2": remote("192.0.2.12")}
    write_inventory(config_dir, hosts, {"control": ["h1"], "network": ["h1"], "compute": ["h1", "h2"]})
    return config_dir, hosts


def tunnel_checks(config_dir, tmp_path):
    site, catalogue = site_of(config_dir)
    return prechecks._tunnels(site, catalogue, catalogue.closure(site.globals.enabled_services), tmp_path)


def test_prechecks_fail_for_each_agent_host_that_cannot_tunnel(cloud_on_two_hosts, tmp_path):
    config_dir, hosts = cloud_on_two_hosts
    checks = tunnel_checks(config_dir, tmp_path)
    assert [(c.name, c.status) for c in checks] == [("tunnels", "FAIL"), ("tunnels", "FAIL")]
    assert f"{config_dir / 'inventory.yml'}: hosts.h1.tunnel_interface: host h1" in checks[0].message
    assert "hosts.h2.tunnel_interface: host h2" in checks[1].message
    assert "netdev" in checks[1].message and "hosts.h2.tunnel_address" in checks[1].advice
    # Told where its tunnels leave from, each passes.
    hosts["h1"].update(tunnel_address="10.114.0.11/24", tunnel_interface="eth1")
    hosts["h2"].update(tunnel_address="10.114.0.12/24", tunnel_interface="eth1")
    write_inventory(config_dir, hosts, {"control": ["h1"], "network": ["h1"], "compute": ["h1", "h2"]})
    checks = tunnel_checks(config_dir, tmp_path)
    assert [(c.status, c.message) for c in checks] == [
        ("ok", "VXLAN between h1 from 10.114.0.11 on br-tunnel (eth1), h2 from 10.114.0.12 on br-tunnel (eth1)")]


def test_prechecks_say_nothing_of_tunnels_with_one_agent_host(cloud_on_two_hosts, tmp_path):
    config_dir, hosts = cloud_on_two_hosts
    write_inventory(config_dir, hosts, {"control": ["h1", "h2"], "network": ["h1"], "compute": ["h1"]})
    assert tunnel_checks(config_dir, tmp_path) == []


def test_with_the_kernel_datapath_a_nic_is_not_needed_and_is_said_unused(cloud_on_two_hosts, tmp_path):
    config_dir, hosts = cloud_on_two_hosts
    set_globals(config_dir, services={"openvswitch": {"datapath": "system"}})
    assert [c.status for c in tunnel_checks(config_dir, tmp_path)] == ["ok"]
    hosts["h2"].update(tunnel_address="10.114.0.12/24", tunnel_interface="eth1")
    write_inventory(config_dir, hosts, {"control": ["h1"], "network": ["h1"], "compute": ["h1", "h2"]})
    checks = tunnel_checks(config_dir, tmp_path)
    assert [c.status for c in checks] == ["WARN"] and "host h2: tunnel_interface eth1 is not used" in checks[0].message


def test_the_prechecks_command_fails_on_it(cloud_on_two_hosts):
    config_dir, _ = cloud_on_two_hosts
    engines = SiteEngines({"h1": fake_engine(), "h2": fake_engine()})
    checks = api.prechecks(config_dir, engine=engines, say=quiet)
    assert {(c.name, c.status) for c in checks if c.name == "tunnels"} == {("tunnels", "FAIL")}
    assert prechecks.failed(checks)
