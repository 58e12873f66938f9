"""First steps on a new cloud: what `dockyard demo` sets up, idempotently, offline.

Like the reference deployers' "init-runonce", but each step looks before it
creates, so a second run changes nothing:

- the guest image (built from Debian packages by the image catalogue, never
  downloaded) uploaded to Glance as ``dockyard-guest``;
- flavors ``m1.tiny`` and ``m1.small``;
- a provider network ``public`` (flat, on the external bridge's physical network)
  with a subnet from globals (``services: {neutron-agents: {external_cidr,
  external_gateway, external_pool}}``, TEST-NET-3 by default), a tenant network
  ``demo-net`` with a subnet, and a router ``demo-router`` between them;
- a security group ``demo`` that lets ICMP and SSH in;
- a keypair ``demo`` whose private key stays in ``<config_dir>/demo/`` (0600);
- the far side of the provider network: a network namespace
  ``dockyard-external`` holding the provider gateway's address, wired into the
  external bridge by a veth pair, on the first host of the network group (the
  all-in-one's one host; on a site of several hosts, through that host's
  engine). It stands for the world outside the cloud: the floating IPs are
  reached from there (``ip netns exec dockyard-external ssh ...`` on that
  host), and nothing is routed to or from the host's own network.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dockyard.engine.driver import ContainerSpec, Engine, Mount
from dockyard.errors import ConfigError, DockyardError

from dockyard.deploy.files import write_atomic
from dockyard.deploy.site.loader import Host, Site
from dockyard.deploy.wanted.builder import site_id
from dockyard.labels import LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE

Say = Callable[[str], None]

IMAGE_NAME = "dockyard-guest"
KEYPAIR = "demo"
SECURITY_GROUP = "demo"
NETWORK, SUBNET, ROUTER = "demo-net", "demo-subnet", "demo-router"
PUBLIC, PUBLIC_SUBNET = "public", "public-subnet"
DEMO_CIDR = "10.0.0.0/24"
EXTERNAL_NAMESPACE = "dockyard-external"
# TEST-NET-3 (RFC 5737): an address range no real network uses, so the provider
# network of the all-in-one cannot collide with one the host already reaches.
FLAVORS = {"m1.tiny": (1, 256, 1), "m1.small": (1, 512, 2)}    # vCPUs, MiB, GiB


@dataclass(frozen=True)
class External:
    """The provider network's addresses."""

    cidr: str
    gateway: str
    pool: tuple[str, str]
    physical_network: str
    bridge: str

    @classmethod
    def of(cls, site: Site) -> External:
        options = agent_options(site)
        where = Path(site.config_dir) / "globals.yml"
        try:
            net = ipaddress.IPv4Network(options["external_cidr"])
            gateway = ipaddress.IPv4Address(options["external_gateway"] or str(net.network_address + 1))
            pool = options["external_pool"] or [str(net.network_address + 100), str(net.network_address + 199)]
            first, last = (ipaddress.IPv4Address(a) for a in pool)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid provider network address: {exc}", path=where,
                              key="services.neutron-agents") from None
        if not (gateway in net and first in net and last in net and first <= last):
            raise ConfigError(f"external_gateway and external_pool must lie in {net}", path=where,
                              key="services.neutron-agents")
        return cls(str(net), str(gateway), (str(first), str(last)), options["physical_network"],
                   options["external_bridge"])


def guest_image(site: Site) -> tuple[str, str]:
    """The guest image's reference on this site, and the release it is built
    from: the one images/releases.yml pins it to (``pinned_images``), whatever
    release the site runs. It is no release's: a site moved to another release
    keeps using the guest it has, never rebuilt from the new release's suite."""
    from dockyard.guestimage import GUEST_IMAGE
    from dockyard.releases import load_releases

    g = site.globals
    release = load_releases().image_release(GUEST_IMAGE, g.site_release)
    return g.image_ref(GUEST_IMAGE, g.release_tag(release)), release


def agent_options(site: Site) -> dict:
    """The Neutron agents' options as their templates see them: globals.yml's,
    checked, with the defaults services/neutron-agents.yml declares (the
    provider network, its bridge), so the demo and the clean-up agree with
    what the agents were given."""
    from dockyard.deploy.wanted.catalogue import load_services

    service = load_services().services["neutron-agents"]
    return service.options(site.globals.services.get("neutron-agents", {}), Path(site.config_dir) / "globals.yml")


@dataclass
class DemoResult:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    key_file: Path | None = None


def key_paths(site: Site) -> tuple[Path, Path]:
    folder = Path(site.config_dir) / "demo"
    return folder / "id_ed25519", folder / "id_ed25519.pub"


def ensure_keypair_files(site: Site) -> tuple[Path, str]:
    """The demo's SSH key: made once with ``secrets``-grade randomness by the
    cryptography library, the private half 0600, never printed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = key_paths(site)
    if not private.exists() or not public.exists():
        key = Ed25519PrivateKey.generate()
        write_atomic(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                serialization.NoEncryption()))
        write_atomic(public, key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                           serialization.PublicFormat.OpenSSH) + b" dockyard-demo\n",
                     mode=0o644)
    return private, public.read_text().strip()


def external_side_spec(site: Site, external: External) -> ContainerSpec:
    """A one-shot container that wires the stand-in for the outside world: a
    namespace with the provider gateway's address, a veth pair into the external
    bridge (its namespace end without transmit checksum offload: the userspace
    datapath does not complete partial checksums). Idempotent."""
    ns, outer, inner = EXTERNAL_NAMESPACE, "dyext-br", "dyext-ns"
    prefix = ipaddress.IPv4Network(external.cidr).prefixlen
    q = shlex.quote
    script = " && ".join([
        f"{{ [ -e /run/netns/{ns} ] || ip netns add {ns}; }}",
        f"{{ ip link show {outer} >/dev/null 2>&1 || ip link add {outer} type veth peer name {inner} netns {ns}; }}",
        f"ip netns exec {ns} ip link set lo up",
        f"ip netns exec {ns} ip addr replace {external.gateway}/{prefix} dev {inner}",
        f"ip netns exec {ns} ethtool -K {inner} tx off >/dev/null",
        f"ip netns exec {ns} ip link set {inner} up",
        f"ip link set {outer} up",
        f"ovs-vsctl --may-exist add-port {q(external.bridge)} {outer}",
    ])
    return ContainerSpec(
        name="dockyard_demo_external", image=site.globals.image_ref("openvswitch-vswitchd"),
        entrypoint=("sh", "-c"), command=(script,),
        mounts=(Mount("openvswitch_run", "/run/openvswitch"), Mount("/run/netns", "/run/netns", propagation="shared")),
        labels={LABEL_MANAGED: "true", LABEL_SERVICE: "demo", LABEL_SITE: site_id(site)},
        user="root", cap_add=("NET_ADMIN", "SYS_ADMIN"), security_opt=("apparmor=unconfined",), restart_policy="no")


def external_host(site: Site) -> Host:
    """Where the client namespace goes: the first host of the network group,
    whose external bridge carries the provider network (its L3 agent routes the
    floating IPs)."""
    return site.inventory.hosts_in("network")[0]


def _on_host(site: Site) -> str:
    """`` on host NAME`` on a site of several hosts, where it matters which; else ""."""
    return f" on host {external_host(site).name}" if len(site.inventory.hosts) > 1 else ""


def wire_external_side(site: Site, engine: Engine, external: External) -> None:
    """Run the wiring job on ``engine``: the engine of :func:`external_host`."""
    result = engine.run_job(external_side_spec(site, external), timeout=120)
    if result.exit_code != 0:
        raise DockyardError(f"wiring the namespace {EXTERNAL_NAMESPACE} to {external.bridge}{_on_host(site)} failed "
                            f"(exit code {result.exit_code}): {result.logs.strip()[-2000:]}")


class _Steps:
    """Each step finds, else creates; the result says which."""

    def __init__(self, conn, say: Say, result: DemoResult):
        self.conn = conn
        self.say = say
        self.result = result

    def ensure(self, what: str, find, create):
        found = find()
        if found is not None:
            self.result.present.append(what)
            self.say(f"  present  {what}")
            return found
        made = create()
        self.result.created.append(what)
        self.say(f"  created  {what}")
        return made


def _upload_image(conn, path: Path, checksum: str):
    return conn.image.create_image(
        name=IMAGE_NAME, filename=str(path), disk_format="qcow2", container_format="bare", visibility="public",
        properties={"hw_vif_model": "virtio", "dockyard_sha256": checksum}, wait=True, allow_duplicates=True)


def run(site: Site, conn, engine: Engine, guest: tuple[Path, str], say: Say) -> DemoResult:
    """Set the demo up on the cloud behind ``conn`` (openstacksdk). ``guest`` is
    the guest image file and its sha256; ``engine`` the engine of the first
    network host (:func:`external_host`), which wires the client namespace."""
    result = DemoResult()
    steps = _Steps(conn, say, result)
    external = External.of(site)
    guest_path, guest_sha = guest

    def current_image():
        for image in conn.image.images(name=IMAGE_NAME):
            if image.properties.get("dockyard_sha256") == guest_sha and image.status == "active":
                return image
        return None

    steps.ensure(f"image {IMAGE_NAME}", current_image, lambda: _upload_image(conn, guest_path, guest_sha))
    for name, (vcpus, ram, disk) in FLAVORS.items():
        steps.ensure(f"flavor {name}", lambda n=name: conn.compute.find_flavor(n, ignore_missing=True),
                     lambda n=name, v=vcpus, r=ram, d=disk: conn.compute.create_flavor(name=n, vcpus=v, ram=r, disk=d))
    public = steps.ensure(
        f"network {PUBLIC}", lambda: conn.network.find_network(PUBLIC),
        lambda: conn.network.create_network(name=PUBLIC, is_router_external=True, is_shared=False,
                                            provider_network_type="flat",
                                            provider_physical_network=external.physical_network))
    steps.ensure(
        f"subnet {PUBLIC_SUBNET} {external.cidr}", lambda: conn.network.find_subnet(PUBLIC_SUBNET),
        lambda: conn.network.create_subnet(name=PUBLIC_SUBNET, network_id=public.id, ip_version=4,
                                           cidr=external.cidr, gateway_ip=external.gateway, is_dhcp_enabled=False,
                                           allocation_pools=[{"start": external.pool[0], "end": external.pool[1]}]))
    net = steps.ensure(f"network {NETWORK}", lambda: conn.network.find_network(NETWORK),
                       lambda: conn.network.create_network(name=NETWORK))
    subnet = steps.ensure(
        f"subnet {SUBNET} {DEMO_CIDR}", lambda: conn.network.find_subnet(SUBNET),
        lambda: conn.network.create_subnet(name=SUBNET, network_id=net.id, ip_version=4, cidr=DEMO_CIDR))
    router = steps.ensure(
        f"router {ROUTER}", lambda: conn.network.find_router(ROUTER),
        lambda: conn.network.create_router(name=ROUTER, external_gateway_info={"network_id": public.id}))

    def router_port():
        ports = conn.network.ports(device_id=router.id, network_id=net.id)
        return next(iter(ports), None)

    steps.ensure(f"router {ROUTER} interface on {SUBNET}", router_port,
                 lambda: conn.network.add_interface_to_router(router, subnet_id=subnet.id))
    group = steps.ensure(f"security group {SECURITY_GROUP}",
                         lambda: conn.network.find_security_group(SECURITY_GROUP),
                         lambda: conn.network.create_security_group(
                             name=SECURITY_GROUP, description="dockyard demo: ICMP and SSH in"))
    for protocol, port in (("icmp", None), ("tcp", 22)):
        what = f"security group rule {protocol}" + (f" {port}" if port else "") + " in"

        def find_rule(p=protocol, n=port):
            for rule in conn.network.security_group_rules(security_group_id=group.id, direction="ingress"):
                if rule.protocol == p and rule.port_range_min == n and rule.ether_type == "IPv4":
                    return rule
            return None

        steps.ensure(what, find_rule, lambda p=protocol, n=port: conn.network.create_security_group_rule(
            security_group_id=group.id, direction="ingress", ether_type="IPv4", protocol=p,
            port_range_min=n, port_range_max=n, remote_ip_prefix="0.0.0.0/0"))
    private_key, public_key = ensure_keypair_files(site)
    result.key_file = private_key

    def find_keypair():
        keypair = conn.compute.find_keypair(KEYPAIR, ignore_missing=True)
        if keypair is not None and keypair.public_key.strip() != public_key:
            raise DockyardError(f"a keypair {KEYPAIR!r} exists with another public key than {private_key}.pub: "
                                f"delete it (openstack keypair delete {KEYPAIR}) and run dockyard demo again")
        return keypair

    steps.ensure(f"keypair {KEYPAIR}", find_keypair,
                 lambda: conn.compute.create_keypair(name=KEYPAIR, public_key=public_key))
    wire_external_side(site, engine, external)
    say(f"  wired    namespace {EXTERNAL_NAMESPACE} ({external.gateway}) into {external.bridge}{_on_host(site)}")
    return result


def next_steps(site: Site, result: DemoResult) -> list[str]:
    clouds = Path(site.config_dir) / "clouds.yaml"
    return [
        "Boot a server and reach it:",
        f"  export OS_CLIENT_CONFIG_FILE={clouds} OS_CLOUD=dockyard",
        f"  openstack server create --image {IMAGE_NAME} --flavor m1.tiny --network {NETWORK} "
        f"--security-group {SECURITY_GROUP} --key-name {KEYPAIR} --wait demo-1",
        f"  openstack floating ip create {PUBLIC}                    # note its address, FIP",
        "  openstack server add floating ip demo-1 FIP",
        *_where_the_namespace_is(site, result),
        f"  ip netns exec {EXTERNAL_NAMESPACE} ping -c 3 FIP",
        f"  ip netns exec {EXTERNAL_NAMESPACE} ssh -i {result.key_file} root@FIP hostname",
        "The guest's console: openstack console log show demo-1",
    ]


def _where_the_namespace_is(site: Site, result: DemoResult) -> list[str]:
    if len(site.inventory.hosts) == 1:
        return []
    host = external_host(site)
    return [f"  # on host {host.name} ({host.address}), where {EXTERNAL_NAMESPACE} is; the key is this "
            f"machine's {result.key_file} (copy it there)"]
