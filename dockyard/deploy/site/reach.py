"""The site's one-address services, which every host must reach.

``internal_address`` is one address: keystone's URLs, every endpoint, the
services' ``auth_url``, neutron's ``nova_metadata_host``, Horizon and
clouds.yaml all name it, and every host's services call it. On a site of
several hosts it must therefore be where the control plane listens: the address
of a host in the control group (there is no virtual address in front of several
control hosts yet). A loopback address is reached only on the machine that has
it, so it cannot be that address while another host is elsewhere.

The site's registry (``registry.address``, by default ``internal_address``) is
pulled from by every host's engine: the same holds for it.

A single-host site (the all-in-one included) is not checked: its services and
its one host share the machine, whatever the addresses.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from dockyard.errors import ConfigError

if TYPE_CHECKING:                      # the loader imports this module
    from .loader import Globals, Host, Inventory


def _loopback(address: str) -> bool:
    return ipaddress.IPv4Address(address).is_loopback


def _beyond(address: str, hosts: Iterable[Host]) -> list[str]:
    """The hosts that cannot reach ``address`` when it is a loopback one: those
    whose own address is not (they are another machine, or another network
    namespace). Every host on loopback means every host is on this machine's
    network: they reach it."""
    if not _loopback(address):
        return []
    return [h.name for h in hosts if not _loopback(h.address)]


def check_shared_addresses(globals_path: Path, g: Globals, inventory: Inventory) -> None:
    """Refuse (ConfigError, exit 2, naming globals.yml and the key) a site of
    several hosts whose internal address is not a control host's, or whose
    internal or registry address is a loopback one that some host cannot reach."""
    hosts = list(inventory.hosts.values())
    if len(hosts) < 2:
        return
    control = inventory.hosts_in("control")
    if g.internal_address not in {h.address for h in control}:
        listed = ", ".join(f"{h.name} {h.address}" for h in control)
        raise ConfigError(f"{g.internal_address} is not the address of a control host: on a site of several hosts "
                          f"every host calls the API services at this one address, so set it to a host's of the "
                          f"control group ({listed})", path=globals_path, key="internal_address")
    far = _beyond(g.internal_address, hosts)
    if far:
        raise ConfigError(f"{g.internal_address} is a loopback address, which hosts {', '.join(far)} cannot reach: "
                          f"give the control host an address they reach (inventory.yml) and set internal_address "
                          f"to it", path=globals_path, key="internal_address")
    if g.registry is not None:
        address = g.registry.address or g.internal_address
        far = _beyond(address, hosts)
        if far:
            raise ConfigError(f"the registry's address {address} is a loopback address, which hosts "
                              f"{', '.join(far)} cannot pull from: set registry.address to an address of the "
                              f"deployment host that every host reaches", path=globals_path, key="registry.address")
