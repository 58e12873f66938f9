"""The tunnel network: where the Open vSwitch agent's VXLAN tunnels leave a host.

The agent sends tunnel traffic from ``local_ip``, the host's ``tunnel_address``
(inventory.yml; the host's address unless set). With the kernel datapath the
kernel routes it, from wherever that address is. With the userspace datapath
(``netdev``) Open vSwitch routes it itself and sends it only out of one of its
own bridges that holds the address: so on such a host with a
``tunnel_interface``, the openvswitch service makes :data:`TUNNEL_BRIDGE`, a
netdev bridge with that NIC as its port and the tunnel address on the bridge's
own port (services/templates/openvswitch/tunnel-bridge.j2).

Pure decisions, for the templates (:func:`tunnel_bridge`) and the prechecks
(:func:`untunnelled`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loader import Host

TUNNEL_BRIDGE = "br-tunnel"


def tunnel_bridge(host: Host, datapath: str) -> str:
    """The bridge the openvswitch service makes on ``host`` for its tunnel
    network, or "" for none: only the userspace datapath needs one, and only a
    host that names its tunnel NIC gets one (dockyard never moves an address it
    was not given)."""
    return TUNNEL_BRIDGE if datapath == "netdev" and host.tunnel_interface else ""


def untunnelled(agent_hosts: list[Host], datapaths: dict[str, str]) -> list[Host]:
    """Of the hosts that run the Open vSwitch agent, those whose tunnels to the
    others cannot leave: the userspace datapath and no ``tunnel_interface``.
    None when one host runs the agent (it tunnels to no one)."""
    if len({h.name for h in agent_hosts}) < 2:
        return []
    return [h for h in agent_hosts if datapaths.get(h.name) == "netdev" and not h.tunnel_interface]
