"""Namespaces, the bridges and the veths, through ``ip`` (iproute2).

Every ``ensure_*`` reads what exists first and returns the changes it made (an
empty list when there was nothing to do), so ``up`` can be run again, or after
being killed half-way, and only finishes what is missing.
"""

from __future__ import annotations

from dockyard.errors import DockyardError

import ipaddress
import json
import os
import subprocess

from .plan import (
    BRIDGE,
    NETNS_DIR,
    ROOT_LINK,
    ROOT_PORT,
    SWITCH_NETNS,
    TUNNEL_BRIDGE,
    Host,
    HostLink,
    Subnet,
)


class TestbedError(DockyardError, RuntimeError):
    """Something on the machine did not go as planned."""

    __test__ = False  # not a pytest class, whatever its name


def run(argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def links(netns: str | None) -> dict[str, dict]:
    """Every link of a namespace, by name, with its addresses (``ip -j addr``)."""
    proc = _ip(netns, "-j", "addr", "show", check=False)
    if proc.returncode != 0:
        return {}
    return {entry["ifname"]: entry for entry in json.loads(proc.stdout or "[]")}


def _has_addr(link: dict | None, address: str, prefixlen: int) -> bool:
    return any(a.get("local") == address and a.get("prefixlen") == prefixlen
               for a in (link or {}).get("addr_info", []))


def _is_up(link: dict | None) -> bool:
    return "UP" in (link or {}).get("flags", [])


def mount_points() -> set[str]:
    """This namespace's mount points (``os.path.ismount`` misses bind mounts of a
    folder of the same file system, as ``ip netns`` makes /run/netns)."""
    with open("/proc/self/mountinfo") as fh:
        return {line.split()[4].encode().decode("unicode_escape") for line in fh}


def netns_exists(name: str) -> bool:
    return str(NETNS_DIR / name) in mount_points()


def netns_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def ensure_netns(name: str) -> list[str]:
    if netns_exists(name):
        return []
    if (NETNS_DIR / name).exists():      # a file left by an ``ip netns add`` killed half-way
        _ip(None, "netns", "delete", name, check=False)
    _ip(None, "netns", "add", name)
    _ip(name, "link", "set", "lo", "up")
    return [f"namespace {name} created"]


def delete_netns(name: str) -> list[str]:
    if not (NETNS_DIR / name).exists():
        return []
    _ip(None, "netns", "delete", name)
    return [f"namespace {name} deleted"]


def conflicting_routes(subnet: Subnet) -> list[str]:
    """Routes of the root namespace that overlap the testbed's subnet, other than its own."""
    proc = _ip(None, "-j", "route", "show", "table", "all", check=False)
    return overlapping_routes(json.loads(proc.stdout or "[]"), subnet)


def overlapping_routes(routes: list[dict], subnet: Subnet) -> list[str]:
    """Of ``ip -j route`` entries, those whose destination overlaps ``subnet``
    (default routes, IPv6, local/broadcast entries and the testbed's own aside)."""
    out = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == ROOT_LINK or ":" in dst:
            continue
        if route.get("type") in ("local", "broadcast"):
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet.network):
            out.append(f"{dst} dev {route.get('dev')}")
    return out


def ensure_switch(subnet: Subnet) -> list[str]:
    """The switch namespace with its bridges (the control network's and the
    tunnel network's), and the root namespace's port on the first."""
    changes = ensure_netns(SWITCH_NETNS)
    inside = links(SWITCH_NETNS)
    for bridge in (BRIDGE, TUNNEL_BRIDGE):
        if bridge not in inside:
            _ip(SWITCH_NETNS, "link", "add", bridge, "type", "bridge")
            changes.append(f"bridge {bridge} in {SWITCH_NETNS} created")
        if not _is_up(inside.get(bridge)):
            _ip(SWITCH_NETNS, "link", "set", bridge, "up")
    root = links(None).get(ROOT_LINK)
    if root is None:
        if ROOT_PORT in inside:         # its pair went with the root end: start again
            _ip(SWITCH_NETNS, "link", "delete", ROOT_PORT)
        _ip(None, "link", "add", ROOT_LINK, "type", "veth", "peer", "name", ROOT_PORT,
            "netns", SWITCH_NETNS)
        changes.append(f"link {ROOT_LINK} created")
        inside = links(SWITCH_NETNS)
    port = inside.get(ROOT_PORT)
    if not port or port.get("master") != BRIDGE or not _is_up(port):
        _ip(SWITCH_NETNS, "link", "set", ROOT_PORT, "master", BRIDGE, "up")
    root = links(None).get(ROOT_LINK)
    if not _has_addr(root, subnet.root_address, subnet.prefixlen):
        _ip(None, "addr", "replace", f"{subnet.root_address}/{subnet.prefixlen}", "dev", ROOT_LINK)
        changes.append(f"address {subnet.root_address} on {ROOT_LINK}")
    if not _is_up(root):
        _ip(None, "link", "set", ROOT_LINK, "up")
    return changes


def delete_switch() -> list[str]:
    changes = []
    if ROOT_LINK in links(None):
        _ip(None, "link", "delete", ROOT_LINK)
        changes.append(f"link {ROOT_LINK} deleted")
    return changes + delete_netns(SWITCH_NETNS)


def ensure_host_net(host: Host) -> list[str]:
    """The host's namespace and its links (plan.Host.links): each a veth to its
    bridge, with its address where it has one. No default route: the host
    reaches the testbed's networks and nothing else."""
    changes = ensure_netns(host.netns)
    for link in host.links:
        changes += _ensure_link(host, link)
    if not _is_up(links(host.netns).get("lo")):
        _ip(host.netns, "link", "set", "lo", "up")
    return changes


def _ensure_link(host: Host, link: HostLink) -> list[str]:
    changes = []
    mine = links(host.netns)
    if link.name not in mine:
        if link.port in links(SWITCH_NETNS):        # its pair went with the host's end: start again
            _ip(SWITCH_NETNS, "link", "delete", link.port)
        _ip(None, "link", "add", "name", link.port, "netns", SWITCH_NETNS, "type", "veth",
            "peer", "name", link.name, "address", link.mac, "netns", host.netns)
        changes.append(f"link {host.netns}:{link.name} created")
        mine = links(host.netns)
    port = links(SWITCH_NETNS).get(link.port)
    if not port or port.get("master") != link.bridge or not _is_up(port):
        _ip(SWITCH_NETNS, "link", "set", link.port, "master", link.bridge, "up")
    # Only the planned address is ensured; nothing is taken away: a bare link
    # may carry what a deployment puts on it (its Open vSwitch port).
    if link.address and not _has_addr(mine.get(link.name), link.address, link.prefixlen):
        _ip(host.netns, "addr", "replace", f"{link.address}/{link.prefixlen}", "dev", link.name)
        changes.append(f"address {link.address} on {host.netns}:{link.name}")
    if not _is_up(mine.get(link.name)):
        _ip(host.netns, "link", "set", link.name, "up")
    return changes


def delete_host_net(host: Host) -> list[str]:
    changes = []
    inside = links(SWITCH_NETNS)
    for link in host.links:
        if link.port in inside:
            _ip(SWITCH_NETNS, "link", "delete", link.port)
            changes.append(f"link {SWITCH_NETNS}:{link.port} deleted")
    return changes + delete_netns(host.netns)
