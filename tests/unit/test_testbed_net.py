"""The testbed's links, made through a stand-in for ``ip``: what ``up`` makes
(the control link with its address, the tunnel link bare, each on its bridge),
that a second ``up`` changes nothing, that a half-made host is finished, and
that ``down`` leaves nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dockyard.testbed import net
from dockyard.testbed.plan import (
    BRIDGE,
    ROOT_LINK,
    SWITCH_NETNS,
    TUNNEL_BRIDGE,
    Layout,
    Subnet,
    plan_hosts,
)

SUBNET = Subnet.parse("10.113.0.0/24")
READS = (["-j", "addr", "show"],)


class FakeIp:
    """iproute2 as the testbed uses it, over dicts: namespace (None: the root
    one) -> link name -> ``ip -j addr`` entry. A veth's two ends know each other,
    and deleting one end (or its namespace) deletes both, as the kernel does."""

    def __init__(self, netns_dir: Path):
        self.netns_dir = netns_dir
        self.ns: dict[str | None, dict[str, dict]] = {None: {"lo": self._link("lo", "00:00:00:00:00:00")}}
        self.calls: list[tuple[str | None, list[str]]] = []

    @staticmethod
    def _link(name: str, mac: str, peer: tuple | None = None) -> dict:
        return {"ifname": name, "flags": [], "addr_info": [], "address": mac, "peer": peer}

    def writes(self) -> list[tuple[str | None, list[str]]]:
        return [c for c in self.calls if c[1] not in READS]

    def __call__(self, argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        assert argv[0] == "ip"
        args, netns = argv[1:], None
        if args[0] == "-n":
            netns, args = args[1], args[2:]
        self.calls.append((netns, args))
        if netns not in self.ns:
            return self._done(argv, 1, check, f'Cannot open network namespace "{netns}"')
        if args == ["-j", "addr", "show"]:
            entries = [{k: v for k, v in link.items() if k != "peer" and v is not None}
                       for link in self.ns[netns].values()]
            return subprocess.CompletedProcess(argv, 0, json.dumps(entries), "")
        links = self.ns[netns]
        match args:
            case ["netns", "add", name]:
                self.ns[name] = {"lo": self._link("lo", "00:00:00:00:00:00")}
                (self.netns_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (self.netns_dir / name).touch()
            case ["netns", "delete", name]:
                for link in list(self.ns.pop(name).values()):
                    self._drop_peer(link)
                (self.netns_dir / name).unlink()
            case ["link", "add", name, "type", "bridge"]:
                links[name] = self._link(name, "02:00:00:00:00:00")
            case ["link", "add", "name", port, "netns", port_ns, "type", "veth",
                  "peer", "name", peer, "address", mac, "netns", peer_ns]:
                self._veth(port, port_ns, "02:00:00:00:00:01", peer, peer_ns, mac)
            case ["link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns]:
                self._veth(name, netns, "02:00:00:00:00:02", peer, peer_ns, "02:00:00:00:00:03")
            case ["link", "set", name, "up"]:
                self._up(links[name])
            case ["link", "set", name, "master", bridge, "up"]:
                assert bridge in links, f"no bridge {bridge} in {netns}"
                links[name]["master"] = bridge
                self._up(links[name])
            case ["addr", "replace", cidr, "dev", name]:
                local, prefix = cidr.split("/")
                links[name]["addr_info"] = [a for a in links[name]["addr_info"] if a["local"] != local]
                links[name]["addr_info"].append({"local": local, "prefixlen": int(prefix)})
            case ["link", "delete", name]:
                self._drop_peer(links.pop(name))
            case _:
                raise AssertionError(f"ip {' '.join(args)}: not understood by the fake")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def _veth(self, name, name_ns, mac, peer, peer_ns, peer_mac):
        for ns, link in ((name_ns, name), (peer_ns, peer)):
            assert link not in self.ns[ns], f"{link} exists in {ns}: the kernel refuses"
        self.ns[name_ns][name] = self._link(name, mac, (peer_ns, peer))
        self.ns[peer_ns][peer] = self._link(peer, peer_mac, (name_ns, name))

    def _drop_peer(self, link: dict) -> None:
        if link.get("peer"):
            ns, name = link["peer"]
            self.ns.get(ns, {}).pop(name, None)

    @staticmethod
    def _up(link: dict) -> None:
        if "UP" not in link["flags"]:
            link["flags"].append("UP")

    @staticmethod
    def _done(argv, code, check, err):
        if check:
            raise net.TestbedError(f"{' '.join(argv)} exited {code}: {err}")
        return subprocess.CompletedProcess(argv, code, "", err)


@pytest.fixture
def ip(tmp_path, monkeypatch) -> FakeIp:
    fake = FakeIp(tmp_path / "netns")
    monkeypatch.setattr(net, "run", fake)
    monkeypatch.setattr(net, "NETNS_DIR", fake.netns_dir)
    monkeypatch.setattr(net, "netns_exists", lambda name: name in fake.ns)
    return fake


def up(hosts) -> list[str]:
    changes = net.ensure_switch(SUBNET)
    for host in hosts:
        changes += net.ensure_host_net(host)
    return changes


HOSTS = plan_hosts(2, SUBNET, Layout(Path("/srv/tb")))


def test_up_makes_both_links_of_every_host(ip):
    changes = up(HOSTS)
    assert f"bridge {TUNNEL_BRIDGE} in {SWITCH_NETNS} created" in changes
    assert "link dyk-h2:eth1 created" in changes
    switch = ip.ns[SWITCH_NETNS]
    assert "UP" in switch[BRIDGE]["flags"] and "UP" in switch[TUNNEL_BRIDGE]["flags"]
    for host in HOSTS:
        mine = ip.ns[host.netns]
        assert mine["eth0"]["addr_info"] == [{"local": host.address, "prefixlen": 24}]
        assert mine["eth0"]["address"] == host.mac
        # The tunnel link: up, its fixed MAC, on the tunnel bridge, and bare.
        assert mine["eth1"]["addr_info"] == [] and "UP" in mine["eth1"]["flags"]
        assert mine["eth1"]["address"] == host.tunnel_mac
        assert switch[host.tunnel_port]["master"] == TUNNEL_BRIDGE and "UP" in switch[host.tunnel_port]["flags"]
        assert switch[host.switch_port]["master"] == BRIDGE
        assert mine["eth1"]["peer"] == (SWITCH_NETNS, host.tunnel_port)
        assert "UP" in mine["lo"]["flags"]
    # The root namespace is on the control network only.
    assert set(ip.ns[None]) == {"lo", ROOT_LINK}


def test_up_again_changes_nothing(ip):
    up(HOSTS)
    ip.calls.clear()
    assert up(HOSTS) == []
    assert ip.writes() == []


def test_what_a_deployment_puts_on_the_tunnel_link_is_left_alone(ip):
    up(HOSTS)
    # Open vSwitch holds eth1 as a port; its address is on br-tunnel, but an
    # operator's own address on eth1 must survive an up as well.
    ip.ns["dyk-h1"]["eth1"]["addr_info"].append({"local": "10.114.0.11", "prefixlen": 24})
    ip.ns["dyk-h1"]["eth1"]["flags"].append("PROMISC")
    ip.calls.clear()
    assert up(HOSTS) == [] and ip.writes() == []


def test_a_tunnel_link_lost_half_way_is_made_again(ip):
    up(HOSTS)
    del ip.ns["dyk-h2"]["eth1"]                 # as if the pair was being made when up was killed
    ip.ns[SWITCH_NETNS]["t2"]["peer"] = None
    ip.calls.clear()
    assert up(HOSTS) == ["link dyk-h2:eth1 created"]
    assert (SWITCH_NETNS, ["link", "delete", "t2"]) in ip.writes()       # the stale end first
    assert ip.ns[SWITCH_NETNS]["t2"]["master"] == TUNNEL_BRIDGE
    assert not [c for c in ip.writes() if c[0] == "dyk-h1" or {"h1", "t1"} & set(c[1])]      # host 1 untouched


def test_down_leaves_nothing(ip):
    up(HOSTS)
    changes = []
    for host in reversed(HOSTS):
        changes += net.delete_host_net(host)
    assert f"link {SWITCH_NETNS}:t2 deleted" in changes and f"link {SWITCH_NETNS}:h2 deleted" in changes
    assert set(ip.ns[SWITCH_NETNS]) == {"lo", BRIDGE, TUNNEL_BRIDGE, "root"}
    changes = net.delete_switch()
    assert changes == [f"link {ROOT_LINK} deleted", f"namespace {SWITCH_NETNS} deleted"]
    assert list(ip.ns) == [None] and set(ip.ns[None]) == {"lo"}
    assert not any(ip.netns_dir.iterdir())
    assert [net.delete_host_net(h) for h in HOSTS] == [[], []] and net.delete_switch() == []
