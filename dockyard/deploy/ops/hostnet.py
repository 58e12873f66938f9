"""What the data plane leaves on a host's network, and taking it away on destroy.

The DHCP and L3 agents make network namespaces (``qdhcp-*``, ``qrouter-*``, and
``snat-*``/``fip-*`` for distributed routers) under the host's /run/netns, so
they outlive the agents' containers; ``dockyard demo`` makes
``dockyard-external``; Open vSwitch's userspace datapath makes a persistent tap
device for each bridge's own port (and the openvswitch service makes br-tunnel,
with the tunnel address on its tap, on hosts with a tunnel_interface). None of
that goes with the containers, so
``dockyard destroy`` removes it, through the engine (one-shot containers, as
everything dockyard does to a host), and only what these names say is ours:
the destroy plan's ``share_mount`` and ``clean_host_network`` actions.
"""

from __future__ import annotations

import shlex

from dockyard.deploy.plan.teardown import HostNetwork
from dockyard.deploy.site.loader import Site
from dockyard.deploy.site.tunnels import TUNNEL_BRIDGE
from dockyard.deploy.wanted.builder import share_mount_spec, site_id
from dockyard.engine.driver import ContainerSpec, Mount
from dockyard.labels import LABEL_JOB, LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE

from .demo import EXTERNAL_NAMESPACE, agent_options

NAMESPACE_PATTERNS = ("qrouter-*", "qdhcp-*", "snat-*", "fip-*", EXTERNAL_NAMESPACE)
TOOLS_IMAGE = "openvswitch-vswitchd"      # ip, ovs-vsctl; on every network and compute host


def bridges(site: Site) -> list[str]:
    # Deleting br-tunnel lets go of its port, the tunnel network's NIC: the NIC
    # stays, as it was before the deploy (its checksum offload aside).
    return ["br-int", "br-tun", str(agent_options(site)["external_bridge"]), TUNNEL_BRIDGE]


def cleanup_script(site: Site) -> str:
    patterns = " ".join(NAMESPACE_PATTERNS)
    names = " ".join(shlex.quote(b) for b in bridges(site))
    return "; ".join([
        # Deleting a namespace destroys its veth ends, and so their peers on the bridges.
        f"for ns in $(ip netns list | cut -d' ' -f1); do for p in {patterns}; do case $ns in $p) "
        f"ip netns delete $ns && echo namespace $ns removed; esac; done; done",
        # The bridges first through Open vSwitch while it runs (it removes their ports),
        # then any tap left behind by a switch that is gone already.
        f"for b in {names}; do ovs-vsctl --timeout=5 --if-exists del-br $b 2>/dev/null && echo bridge $b removed; "
        f"ip tuntap del dev $b mode tap 2>/dev/null; done",
        "exit 0",
    ])


def cleanup_spec(site: Site) -> ContainerSpec:
    labels = {LABEL_MANAGED: "true", LABEL_SERVICE: "neutron-agents", LABEL_SITE: site_id(site), LABEL_JOB: "true"}
    return ContainerSpec(
        name="dockyard_hostnet_cleanup", image=site.globals.image_ref(TOOLS_IMAGE),
        entrypoint=("sh", "-c"), command=(cleanup_script(site),), labels=labels, user="root",
        mounts=(Mount("openvswitch_run", "/run/openvswitch"), Mount("/run/netns", "/run/netns", propagation="shared")),
        cap_add=("NET_ADMIN", "SYS_ADMIN"), security_opt=("apparmor=unconfined",), restart_policy="no")


def host_network(site: Site) -> HostNetwork:
    """The cleanup as the destroy plan carries it (plan/teardown.py): /run/netns
    made a shared mount first (after a reboot it is not, and the cleanup binds it
    shared), then the cleanup; planned on a host whose engine has the tools image
    (where it is missing, no network or compute service ever ran)."""
    image = site.globals.image_ref(TOOLS_IMAGE)
    labels = {LABEL_MANAGED: "true", LABEL_SITE: site_id(site), LABEL_JOB: "true"}
    return HostNetwork(share=share_mount_spec("/run/netns", image, labels), clean=cleanup_spec(site), image=image)
