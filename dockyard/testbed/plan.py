"""The testbed's pure part: names, the address plan, paths, command lines.

Nothing here touches the machine, so every decision can be unit-tested.

Topology (one machine, several "hosts")::

    root namespace (tests, dockyard)            namespace dyk-net (the switch)
      dyk-root 10.113.0.1/24  <--veth-->  root --+
                                                 br0 (Linux bridge)
      namespace dyk-h1: eth0 10.113.0.11 <--veth-->  h1 --+
      namespace dyk-h2: eth0 10.113.0.12 <--veth-->  h2 --+

      namespace dyk-h1: eth1 (no address) <--veth-->  t1 --+
      namespace dyk-h2: eth1 (no address) <--veth-->  t2 --+
                                                 br1 (Linux bridge: the tunnel network)

The bridge lives in a namespace of its own rather than in the root one: the root
namespace here filters bridged frames through iptables (br_netfilter is loaded)
and the machine's Docker Engine sets its FORWARD policy to DROP, so host-to-host
frames on a root bridge would be dropped unless the machine's firewall were
edited. In ``dyk-net`` the firewall is empty, and the root namespace keeps only
one interface of the testbed (``dyk-root``), reached by plain INPUT/OUTPUT.
No namespace of the testbed has a default route: its traffic stays on the /24.

The second link, ``eth1``, is each host's tunnel network (VXLAN between the
hosts' Open vSwitch): a separate /24 on a bridge of its own, which the root
namespace is not on. The testbed leaves ``eth1`` without an address: with the
userspace datapath the host's tunnel address belongs on an Open vSwitch bridge
that holds ``eth1`` as its port (``br-tunnel``, made by the openvswitch
service), and the same address on ``eth1`` too would give the kernel two routes
to the tunnel network. The address a host is meant to use there is planned
here (:attr:`Host.tunnel_address`), for the inventory. The control link
``eth0`` (the engine's port, the control plane) stays out of Open vSwitch, so a
restart of ``ovs-vswitchd`` never cuts a host off.
"""

from __future__ import annotations

from dockyard.errors import EXIT_INVALID, DockyardError

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

PREFIX = "dyk"
DEFAULT_SUBNET = "10.113.0.0/24"
DEFAULT_TUNNEL_SUBNET = "10.114.0.0/24"
DEFAULT_STATE_DIR = Path("/var/lib/dockyard-testbed")
DEFAULT_STORAGE_DRIVER = "fuse-overlayfs"
ENGINE_PORT = 2376
# Host i gets address .(HOST_OFFSET + i); .1 is the root namespace's.
HOST_OFFSET = 10

SWITCH_NETNS = f"{PREFIX}-net"
BRIDGE = "br0"                    # inside SWITCH_NETNS
ROOT_LINK = f"{PREFIX}-root"      # in the root namespace
ROOT_PORT = "root"                # its peer, a port of BRIDGE
HOST_LINK = "eth0"                # inside each host's namespace
TUNNEL_BRIDGE = "br1"             # inside SWITCH_NETNS: the tunnel network
TUNNEL_LINK = "eth1"              # inside each host's namespace, on TUNNEL_BRIDGE
NETNS_DIR = Path("/run/netns")
EXEC_ROOT = "/run/docker"         # inside the host's private /run


class PlanError(DockyardError, ValueError):
    """An impossible request (too many hosts, a bad subnet, an unknown host name)."""

    exit_code = EXIT_INVALID


@dataclass(frozen=True)
class Subnet:
    network: ipaddress.IPv4Network

    @classmethod
    def parse(cls, text: str) -> "Subnet":
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            raise PlanError(f"bad testbed subnet {text!r}: {exc}") from exc
        if net.prefixlen != 24:
            raise PlanError(f"the testbed subnet must be a /24, not /{net.prefixlen}")
        if not net.is_private:
            raise PlanError(f"the testbed subnet {net} is not a private range")
        return cls(net)

    @property
    def max_hosts(self) -> int:
        return self.network.num_addresses - 2 - HOST_OFFSET

    @property
    def root_address(self) -> str:
        return str(self.network.network_address + 1)

    def host_address(self, index: int) -> str:
        if not 1 <= index <= self.max_hosts:
            raise PlanError(f"host index {index} outside 1..{self.max_hosts}")
        return str(self.network.network_address + HOST_OFFSET + index)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


@dataclass(frozen=True)
class HostLink:
    """One of a host's links: a veth pair, ``name`` in the host's namespace and
    ``port`` in the switch's, on ``bridge``. ``address`` (with ``prefixlen``) is
    put on ``name``; None leaves the link without one."""

    name: str
    port: str
    bridge: str
    mac: str
    address: str | None
    prefixlen: int


def host_name(index: int) -> str:
    return f"{PREFIX}-h{index}"


_NAME = re.compile(rf"^(?:{PREFIX}-)?h?(\d+)$")


def parse_host(text: str) -> int:
    """``dyk-h2``, ``h2`` and ``2`` all name host 2."""
    m = _NAME.match(text.strip())
    if not m or int(m.group(1)) < 1:
        raise PlanError(f"unknown testbed host {text!r} (expected {PREFIX}-h<N>, h<N> or <N>)")
    return int(m.group(1))


@dataclass(frozen=True)
class Layout:
    """Where the testbed keeps its files. Everything lives under ``state_dir``."""

    state_dir: Path = DEFAULT_STATE_DIR

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca-key.pem"

    @property
    def client_dir(self) -> Path:
        """A ``DOCKER_CERT_PATH``: ``ca.pem``, ``cert.pem``, ``key.pem``."""
        return self.tls_dir / "client"

    @property
    def hosts_dir(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def netns_marker(self) -> Path:
        """Present when the testbed created /run/netns (so ``down`` may remove it)."""
        return self.state_dir / "created-run-netns"


def _mac(prefix: str, index: int) -> str:
    return f"{prefix}:{index >> 8:02x}:{index & 0xff:02x}"


@dataclass(frozen=True)
class Host:
    index: int
    subnet: Subnet
    layout: Layout
    storage_driver: str = DEFAULT_STORAGE_DRIVER
    tunnel_subnet: Subnet = Subnet.parse(DEFAULT_TUNNEL_SUBNET)

    @property
    def name(self) -> str:
        return host_name(self.index)

    @property
    def netns(self) -> str:
        return self.name

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def switch_port(self) -> str:
        """The host's veth end in the switch namespace."""
        return f"h{self.index}"

    @property
    def address(self) -> str:
        return self.subnet.host_address(self.index)

    @property
    def mac(self) -> str:
        """A fixed, locally administered MAC for the host's ``eth0``: a link made
        again (after a killed run) keeps it, so no neighbour still holds a stale
        one (that costs half a minute of silence before ARP asks again)."""
        return _mac("02:64:79:6b", self.index)

    @property
    def tunnel_port(self) -> str:
        """The host's ``eth1`` peer in the switch namespace."""
        return f"t{self.index}"

    @property
    def tunnel_address(self) -> str:
        """The address the host is meant to use on the tunnel network: the
        inventory's ``tunnel_address`` (with the prefix), put on ``br-tunnel`` by
        the openvswitch service, not on ``eth1`` by the testbed."""
        return self.tunnel_subnet.host_address(self.index)

    @property
    def tunnel_mac(self) -> str:
        """Fixed, as :attr:`mac`, and distinct from every ``eth0``'s: Open vSwitch
        gives ``br-tunnel`` the MAC of its port, the peers keep it in their caches."""
        return _mac("02:64:79:74", self.index)

    @property
    def links(self) -> list[HostLink]:
        """The host's links, as ``up`` makes them: the control link with the
        host's address, the tunnel link bare."""
        return [HostLink(HOST_LINK, self.switch_port, BRIDGE, self.mac, self.address, self.subnet.prefixlen),
                HostLink(TUNNEL_LINK, self.tunnel_port, TUNNEL_BRIDGE, self.tunnel_mac, None,
                         self.tunnel_subnet.prefixlen)]

    @property
    def engine_url(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.name}"

    # -- files -----------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.layout.hosts_dir / self.name

    @property
    def data_root(self) -> Path:
        return self.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.dir / "daemon.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "dockerd.log"

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def socket_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "cert.pem"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "key.pem"

    # -- what runs -------------------------------------------------------------
    def daemon_config(self) -> dict:
        """The engine's policy (its identity and reachability are on the command line)."""
        return {
            "storage-driver": self.storage_driver,
            "bridge": "none",
            "iptables": False,
            "ip-masq": False,
            "ip-forward": False,
            "userland-proxy": False,
            "cgroup-parent": self.cgroup_parent,
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "2"},
            "shutdown-timeout": 5,
            "live-restore": False,
        }

    def daemon_config_text(self) -> str:
        return json.dumps(self.daemon_config(), indent=2, sort_keys=True) + "\n"

    def dockerd_argv(self) -> list[str]:
        return [
            "dockerd",
            "--config-file", str(self.config_file),
            "--data-root", str(self.data_root),
            "--exec-root", EXEC_ROOT,
            "--pidfile", str(self.pidfile),
            "--host", self.socket_url,
            "--host", self.engine_url,
            "--tlsverify",
            "--tlscacert", str(self.layout.ca_cert),
            "--tlscert", str(self.server_cert),
            "--tlskey", str(self.server_key),
        ]

    def launch_argv(self) -> list[str]:
        """The whole command line: enter the network namespace, make a mount and a
        UTS namespace, prepare them (:data:`IN_NAMESPACE_SCRIPT`), exec dockerd.

        ``nsenter --net`` rather than ``ip netns exec``: the latter remounts /sys,
        which hides the cgroup mounts dockerd needs. ``unshare`` without
        ``--fork`` and the script's ``exec`` keep one PID from here to dockerd.
        """
        return [
            "nsenter", f"--net={self.netns_path}", "--",
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "/bin/sh", "-ec", IN_NAMESPACE_SCRIPT, "testbed-host", self.name,
            *self.dockerd_argv(),
        ]


# Run as ``sh -ec SCRIPT testbed-host NAME dockerd ARGS...`` inside the host's
# fresh (private) mount namespace.
IN_NAMESPACE_SCRIPT = r"""
name="$1"; shift
hostname "$name"
# Copies of the machine's mounts under /run and of its engine's data would pin
# the machine's namespaces and FUSE mounts for as long as this host lives: drop
# them here (lazily, deepest first; the machine's own mounts are untouched).
awk '{print $5}' /proc/self/mountinfo \
  | grep -E '^(/run|/var/lib/docker)(/|$)' | sort -r \
  | while read -r m; do umount -l "$m" 2>/dev/null || true; done
# A private /run: this engine's runtime state (and its own containerd) cannot
# meet the machine's.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m testbed-run /run
# /run/netns shared, for agents that bind it with shared propagation.
mkdir -p /run/netns /run/lock
mount --bind /run/netns /run/netns
mount --make-shared /run/netns
exec "$@"
"""


def check_subnets(subnet: Subnet, tunnel_subnet: Subnet) -> None:
    """The tunnel network must be a network of its own: on the control one, each
    host would have two links to one /24."""
    if subnet.network.overlaps(tunnel_subnet.network):
        raise PlanError(f"the tunnel subnet {tunnel_subnet.network} overlaps the testbed subnet "
                        f"{subnet.network}: choose another (--tunnel-subnet)")


def plan_hosts(count: int, subnet: Subnet, layout: Layout,
               storage_driver: str = DEFAULT_STORAGE_DRIVER,
               tunnel_subnet: Subnet | None = None) -> list[Host]:
    tunnel_subnet = tunnel_subnet or Subnet.parse(DEFAULT_TUNNEL_SUBNET)
    check_subnets(subnet, tunnel_subnet)
    if count < 1:
        raise PlanError("a testbed has at least one host")
    if count > subnet.max_hosts:
        raise PlanError(f"{count} hosts do not fit in {subnet.network} (at most {subnet.max_hosts})")
    return [Host(i, subnet, layout, storage_driver, tunnel_subnet) for i in range(1, count + 1)]


def docker_env(host: Host) -> dict[str, str]:
    """The environment that points the docker CLI and ``docker.from_env()`` at a host."""
    return {
        "DOCKER_HOST": host.engine_url,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(host.layout.client_dir),
    }
