"""br-tunnel: what the openvswitch service renders for a host's tunnel network,
and what its start script does, run by /bin/sh against stand-ins for ip,
ethtool and ovs-vsctl that keep their state in a file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from dockyard.deploy.wanted.builder import wanted_state
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.deploy.site.hostfacts import HostFacts

from .deploy_fixtures import full_engine, set_globals, site_of, write_inventory

CATALOGUE = load_services()
NETDEV = HostFacts(False, "no module", False, "no vmx")
SYSTEM = HostFacts(True, "module loaded", False, "no vmx")
# ovs-vswitchd's command before the tunnel network existed: hosts without a
# tunnel bridge must keep it to the letter (a changed command recreates the switch).
PLAIN_COMMAND = ("sh -c 'ovs-vsctl --no-wait init && exec ovs-vswitchd unix:/run/openvswitch/db.sock --mlockall "
                 "--pidfile=/run/openvswitch/ovs-vswitchd.pid -vconsole:info -vsyslog:off -vfile:off'")
SCRIPT = "/usr/local/bin/dockyard-tunnel-bridge"


def two_hosts(site_dir, h1: dict | None = None) -> None:
    """h1 (network and compute) and h2 (compute), on this machine's engines."""
    write_inventory(site_dir, {"h1": {"address": "127.0.0.97", "engine": "unix:///run/h1.sock", **(h1 or {})},
                               "h2": {"address": "127.0.0.96", "engine": "unix:///run/h2.sock"}},
                    {"control": ["h1"], "network": ["h1"], "compute": ["h1", "h2"]})
    set_globals(site_dir, enabled_services=["openvswitch", "neutron-agents"])


def rendered(site_dir, facts=NETDEV):
    """host -> unit -> file name -> text, and host -> unit -> its hash."""
    site, catalogue = site_of(site_dir, CATALOGUE)
    state = wanted_state(site, catalogue, full_engine(), facts={h: facts for h in site.inventory.hosts}).state
    files: dict = {}
    for f in state.files:
        host, unit, name = f.path.rsplit("/", 3)[-3:]
        files.setdefault(host, {}).setdefault(unit, {})[name] = f.content.decode()
    return files, {(c.host, c.name): c.hash for c in state.containers}


TUNNEL = {"tunnel_address": "10.114.0.11/24", "tunnel_interface": "eth1"}


def test_the_agent_tunnels_from_the_tunnel_address(site_dir):
    two_hosts(site_dir, TUNNEL)
    files, _ = rendered(site_dir)
    assert "local_ip = 10.114.0.11\n" in files["h1"]["neutron_openvswitch_agent"]["openvswitch_agent.ini"]
    assert "local_ip = 127.0.0.96\n" in files["h2"]["neutron_openvswitch_agent"]["openvswitch_agent.ini"]


def test_the_switch_makes_the_bridge_only_where_it_is_wanted(site_dir):
    two_hosts(site_dir, TUNNEL)
    files, _ = rendered(site_dir)
    h1 = json.loads(files["h1"]["openvswitch_vswitchd"]["config.json"])
    assert h1["command"].startswith(f"sh -c 'ovs-vsctl --no-wait init && {SCRIPT} && exec ovs-vswitchd ")
    assert h1["config_files"] == [{"source": "/var/lib/dockyard/config_files/tunnel-bridge.dockyard-tunnel-bridge",
                                   "dest": SCRIPT, "owner": "root", "perm": "0700"}]
    script = files["h1"]["openvswitch_vswitchd"]["tunnel-bridge.dockyard-tunnel-bridge"]
    assert script.startswith("#!/bin/sh\n")
    assert "bridge=br-tunnel\nnic=eth1\ncidr=10.114.0.11/24\n" in script
    # h2 names no tunnel NIC: its switch is exactly what it was.
    h2 = json.loads(files["h2"]["openvswitch_vswitchd"]["config.json"])
    assert h2 == {"command": PLAIN_COMMAND, "config_files": []}
    assert set(files["h2"]["openvswitch_vswitchd"]) == {"config.json"}


def test_a_host_without_a_tunnel_bridge_keeps_its_switch_unchanged(site_dir):
    two_hosts(site_dir)
    _, before = rendered(site_dir)
    two_hosts(site_dir, TUNNEL)
    _, after = rendered(site_dir)
    assert after[("h2", "openvswitch_vswitchd")] == before[("h2", "openvswitch_vswitchd")]
    assert after[("h1", "openvswitch_vswitchd")] != before[("h1", "openvswitch_vswitchd")]


def test_the_kernel_datapath_gets_no_bridge(site_dir):
    two_hosts(site_dir, TUNNEL)
    files, _ = rendered(site_dir, SYSTEM)
    assert json.loads(files["h1"]["openvswitch_vswitchd"]["config.json"]) == {"command": PLAIN_COMMAND,
                                                                             "config_files": []}
    # The agent still tunnels from the tunnel address (the kernel routes it).
    assert "local_ip = 10.114.0.11\n" in files["h1"]["neutron_openvswitch_agent"]["openvswitch_agent.ini"]


def test_the_all_in_one_switch_is_unchanged(site_dir):
    files, _ = rendered(site_dir)
    (unit,) = files.values()
    assert json.loads(unit["openvswitch_vswitchd"]["config.json"]) == {"command": PLAIN_COMMAND, "config_files": []}


def test_destroy_removes_the_bridge_too(site_dir):
    from dockyard.deploy.ops import hostnet

    site, _ = site_of(site_dir, CATALOGUE)
    assert "br-tunnel" in hostnet.bridges(site)


# -- the script, run -----------------------------------------------------------------------------

STUB = r'''#!PYTHON
"""A stand-in for ip, ethtool and ovs-vsctl: the calls the script makes, and
just enough state (in $STUB_STATE) to answer what it asks."""
import json, os, sys
path = os.environ["STUB_STATE"]
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(path) as fh:
    st = json.load(fh)
st["calls"].append([name, *args])
links, out, rc = st["links"], "", 0
if name == "ip":
    if args[:2] == ["link", "show"]:
        rc = 0 if args[-1] in links else 1
    elif args[:2] == ["link", "set"]:
        links[args[3]]["up"] = True
    elif args[:2] == ["tuntap", "add"]:
        links[args[3]] = {"driver": "tun", "up": False, "addrs": []}
    elif args[:4] == ["-4", "-o", "addr", "show"]:
        dev = args[-1]
        out = "".join(f"9: {dev}    inet {a} brd 10.114.0.255 scope global {dev}\\       valid_lft forever\n"
                      for a in links[dev]["addrs"])
    elif args[:2] == ["addr", "del"]:
        links[args[-1]]["addrs"].remove(args[2])
    elif args[:2] == ["addr", "replace"]:
        if args[2] not in links[args[-1]]["addrs"]:
            links[args[-1]]["addrs"].append(args[2])
    else:
        sys.exit(f"stub ip: {args} not understood")
elif name == "ethtool":
    if args[0] == "-i":
        out = f"driver: {links[args[1]]['driver']}\nversion: 1.0\n"
    elif args[0] == "-K":
        links[args[1]]["tx"] = args[3]
elif name == "ovs-vsctl":
    words = [a for a in args if not a.startswith("--")]
    if words[0] == "list-ports":
        out = "".join(p + "\n" for p in st["ports"])
    elif words[0] == "add-port":
        if words[2] not in st["ports"]:
            st["ports"].append(words[2])
    elif words[0] == "del-port":
        st["ports"].remove(words[2])
with open(path, "w") as fh:
    json.dump(st, fh)
sys.stdout.write(out)
sys.exit(rc)
'''


@pytest.fixture
def script(site_dir, tmp_path):
    """Run the rendered script for h1 (eth1, 10.114.0.11/24) with the stand-ins
    and a state; returns (exit code, stderr, the state after)."""
    two_hosts(site_dir, TUNNEL)
    files, _ = rendered(site_dir)
    path = tmp_path / "dockyard-tunnel-bridge"
    path.write_text(files["h1"]["openvswitch_vswitchd"]["tunnel-bridge.dockyard-tunnel-bridge"])
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ip", "ethtool", "ovs-vsctl"):
        (tools / tool).write_text(STUB.replace("PYTHON", f"{sys.executable} -S"))   # -S: starts sooner
        (tools / tool).chmod(0o755)
    state = tmp_path / "state.json"

    def run(links: dict, ports: list[str]) -> tuple[int, str, dict]:
        state.write_text(json.dumps({"links": links, "ports": ports, "calls": []}))
        env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "STUB_STATE": str(state)}
        # communicate() returns once every holder of the pipes has closed them:
        # the detached part of the script too, so its work is done by then.
        proc = subprocess.run(["/bin/sh", str(path)], env=env, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stderr, json.loads(state.read_text())

    return run


def calls(state: dict) -> list[str]:
    return [" ".join(c) for c in state["calls"]]


def test_a_first_start_makes_the_port_the_address_and_the_bridge_in_that_order(script):
    code, err, st = script({"eth1": {"driver": "veth", "up": False, "addrs": []}}, [])
    assert code == 0, err
    assert st["links"]["br-tunnel"] == {"driver": "tun", "up": True, "addrs": ["10.114.0.11/24"]}
    assert st["links"]["eth1"]["up"] and st["links"]["eth1"]["tx"] == "off"       # a veth: no partial checksums
    assert st["ports"] == ["eth1"]
    c = calls(st)
    made = c.index("ip tuntap add dev br-tunnel mode tap")
    address = c.index("ip addr replace 10.114.0.11/24 dev br-tunnel")
    bridge = c.index("ovs-vsctl --no-wait --may-exist add-br br-tunnel -- set bridge br-tunnel datapath_type=netdev")
    assert made < address < bridge < c.index("ovs-vsctl --no-wait --may-exist add-port br-tunnel eth1")
    # Then, detached: wait for the switch to apply a change (no --no-wait), put the address again.
    waits = [i for i, call in enumerate(c) if call.startswith("ovs-vsctl --timeout=120 set bridge br-tunnel ")]
    assert len(waits) == 1 and waits[0] > bridge
    assert re.fullmatch(r"ovs-vsctl --timeout=120 set bridge br-tunnel external_ids:dockyard-started=[0-9a-f-]{36}",
                        c[waits[0]])
    assert c[waits[0] + 1:] == ["ip addr replace 10.114.0.11/24 dev br-tunnel", "ip link set dev br-tunnel up"]
    assert "br-tunnel up with 10.114.0.11/24, eth1 its port" in err


def test_a_restart_keeps_what_is_right_and_drops_what_the_inventory_no_longer_says(script):
    code, err, st = script({"eth1": {"driver": "e1000", "up": True, "addrs": []},
                            "br-tunnel": {"driver": "tun", "up": False, "addrs": ["10.114.0.99/24", "10.114.0.11/24"]}},
                           ["eth9", "eth1"])
    assert code == 0, err
    c = calls(st)
    assert not [x for x in c if x.startswith("ip tuntap")]            # the tap left by the last switch is reused
    assert "ip addr del 10.114.0.99/24 dev br-tunnel" in c
    assert "ovs-vsctl --no-wait del-port br-tunnel eth9" in c
    assert st["links"]["br-tunnel"]["addrs"] == ["10.114.0.11/24"] and st["ports"] == ["eth1"]
    assert "tx" not in st["links"]["eth1"]                            # not a veth: its offloads are its own


def test_a_missing_nic_stops_the_switch_with_a_reason(script):
    code, err, st = script({}, [])
    assert code == 1
    assert "no interface eth1 on this host (inventory.yml: tunnel_interface)" in err
    assert not [x for x in calls(st) if x.startswith("ovs-vsctl")]


def test_two_starts_ask_the_switch_for_two_distinct_changes(script):
    nic = {"eth1": {"driver": "veth", "up": False, "addrs": []}}
    _, _, first = script(nic, [])
    _, _, second = script(nic, [])
    mark = [x.rsplit("=", 1)[1] for st in (first, second) for x in calls(st) if "dockyard-started=" in x]
    assert len(mark) == 2 and mark[0] != mark[1]
