"""The operator's configuration folder: globals.yml, inventory.yml, passwords.yml.

Loaded and validated completely before anything runs, and only read: an error
changes nothing. Every error is a ConfigError naming the file and the dotted key
at fault (``hosts.ctl1.address``, ``enabled_services[2]``).

The INI overrides under ``config/`` are found by :mod:`dockyard.deploy.site.overrides`
and merged by :mod:`dockyard.deploy.site.ini`; passwords live in
:mod:`dockyard.deploy.site.passwords`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Iterable
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from dockyard.datafiles import StrictModel, read_mapping, read_model, validation_error
from dockyard.errors import ConfigError
from dockyard.reference import check_namespace, check_registry, check_tag, image_ref
from dockyard.releases import load_releases

from .hostfacts import machine_hostname
from .overrides import OVERRIDES_DIR
from .passwords import DEFAULT_PASSWORD_NAMES, PASSWORDS_FILE, load_passwords
from .reach import check_shared_addresses
from .tunnels import TUNNEL_BRIDGE

DEFAULT_CONFIG_DIR = Path("/etc/dockyard")
CONFIG_DIR_ENV = "DOCKYARD_CONFIG_DIR"
GLOBALS_FILE = "globals.yml"
INVENTORY_FILE = "inventory.yml"
# The all-in-one cloud: the control plane, and the network and compute hosts'
# services that let it run servers.
DEFAULT_SERVICES = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova", "neutron",
                    "horizon", "openvswitch", "neutron-agents", "nova-compute"]
REQUIRED_GROUPS = ("control", "network", "compute")
GROUPS = REQUIRED_GROUPS
ALL_IN_ONE_HOST = "localhost"

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
# Host names become path parts (config/<host>/) and label values.
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
# Written unquoted into INI files, clouds.yaml and admin-openrc.sh.
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
# A Linux interface name (at most 15 characters), of the characters a shell word
# may hold unquoted: it is written into the openvswitch service's start script.
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
# The bridges Open vSwitch holds on a host, and the loopback: none is the NIC
# of a tunnel network.
_NOT_AN_INTERFACE = (TUNNEL_BRIDGE, "br-int", "br-tun", "lo")


def config_dir_from(value: str | os.PathLike | None) -> Path:
    """``--config-dir`` if given, else ``$DOCKYARD_CONFIG_DIR``, else /etc/dockyard."""
    return Path(value or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        hint = " (IPv6 is not supported yet)" if ":" in value else ""
        raise ValueError(f"must be an IPv4 address, e.g. 192.0.2.10{hint}") from None
    return value


def _tunnel_address(value: str) -> str:
    """``A.B.C.D`` or ``A.B.C.D/N``; kept as written (the prefix, when given, is
    read by :func:`tunnel_parts`)."""
    address, slash, prefix = value.partition("/")
    try:
        ipaddress.IPv4Address(address)
        if slash:
            if not prefix.isdigit() or not 0 < int(prefix) <= 32:
                raise ValueError
    except ValueError:
        raise ValueError("must be an IPv4 address, with the tunnel network's prefix length where dockyard puts "
                         "it on an interface: e.g. 10.114.0.11/24") from None
    return value


def tunnel_parts(value: str) -> tuple[str, int | None]:
    """``10.114.0.11/24`` -> ``("10.114.0.11", 24)``; no prefix: None."""
    address, _, prefix = value.partition("/")
    return address, int(prefix) if prefix else None


def _interface(value: str) -> str:
    if not _INTERFACE.fullmatch(value):
        raise ValueError("not a network interface name (1 to 15 letters, digits, '_', '.', '-', e.g. eth1)")
    if value in _NOT_AN_INTERFACE:
        raise ValueError(f"{value} is not the host's interface but one Open vSwitch holds (br-tunnel, br-int, "
                         f"br-tun) or the loopback: name the NIC of the tunnel network, e.g. eth1")
    return value


def _matching(pattern: re.Pattern, what: str):
    def check(value: str | None) -> str | None:
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"not a valid {what}")
        return value
    return check


def _external(value: str | None) -> str | None:
    # Only ever written into URLs, so a DNS name does as well as an address.
    if value is None:
        return None
    try:
        return _ipv4(value)
    except ValueError:
        if _HOSTNAME.fullmatch(value) and not value.replace(".", "").isdigit():
            return value
        raise ValueError("must be an IPv4 address or a DNS name") from None


def _engine_kind(value: str) -> str:
    # Podman's Docker-compatible API is not tested, and Debian's podman could not
    # start containers where dockyard is developed (docs/configuration.md): refuse
    # it rather than pretend.
    if value == "podman":
        raise ValueError("podman is not supported: dockyard is tested with the Docker Engine only "
                         "(docs/configuration.md, `engine`, says why); use docker")
    if value != "docker":
        raise ValueError(f"must be docker, got {value!r}")
    return value


def _release_text(value: Any) -> Any:
    # YAML reads 2025.10 as the number 2025.1: refuse rather than guess.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'write the release as a quoted string ("{value}"): YAML reads it as a number')
    return value


def _known(release: str) -> str:
    known = load_releases().names
    if release not in known:
        raise ValueError(f"unknown release {release!r} (known: {', '.join(known)}; images/releases.yml)")
    return release


IPv4 = Annotated[str, AfterValidator(_ipv4)]
TunnelAddress = Annotated[str, AfterValidator(_tunnel_address)]
Interface = Annotated[str, AfterValidator(_interface)]
EngineKind = Annotated[str, AfterValidator(_engine_kind)]
Address = Annotated[str | None, AfterValidator(_external)]
# The engines' reference grammar (dockyard.reference): what the engine would
# refuse later, refused here with the key named.
Namespace = Annotated[str, AfterValidator(check_namespace)]
Tag = Annotated[str, AfterValidator(check_tag)]
Registry = Annotated[str | None, AfterValidator(check_registry)]
Region = Annotated[str, AfterValidator(_matching(_REGION, "region name (letters, digits, _ . -)"))]


class RegistrySettings(StrictModel):
    """``registry:`` in globals.yml: the site's own registry (``dockyard registry``),
    through which images reach the hosts. Present (even empty): build --push pushes
    to it and deploy pulls from it, by digest."""

    address: IPv4 | None = None                   # None: the internal address
    # 4000, not the distribution registry's usual 5000: keystone listens there.
    port: int = Field(default=4000, ge=1, le=65535, strict=True)


class Globals(StrictModel):
    """``globals.yml``. Every key is optional; the defaults make an all-in-one cloud."""

    enabled_services: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVICES))
    internal_address: IPv4 = "127.0.0.1"
    external_address: Address = None              # None in the file: the internal address (set below)
    image_namespace: Namespace = "dockyard"
    image_tag: Tag = "2025.1"
    image_registry: Registry = None
    registry: RegistrySettings | None = None
    engine: EngineKind = "docker"
    region: Region = "RegionOne"
    generated_dir: Path | None = None             # None: <config_dir>/generated
    state_dir: Path | None = None                 # None: <config_dir>/state
    parallelism: int = Field(default=4, ge=1, le=64, strict=True)
    health_timeout: float = Field(default=300.0, gt=0, strict=True)
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The OpenStack release the site runs (images/releases.yml; None: its `current`),
    # and services kept on another one. `image_tag`, when given (and not another
    # release's own tag), is the tag of `release`; otherwise each release's images
    # carry that release's tag.
    release: str | None = None
    service_releases: dict[str, str] = Field(default_factory=dict)

    @field_validator("release", mode="before")
    @classmethod
    def _release_is_text(cls, value: Any) -> Any:
        return _release_text(value)

    @field_validator("service_releases", mode="before")
    @classmethod
    def _releases_are_text(cls, value: Any) -> Any:
        return {k: _release_text(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("release")
    @classmethod
    def _known_release(cls, value: str | None) -> str | None:
        return value if value is None else _known(value)

    @field_validator("service_releases")
    @classmethod
    def _known_releases(cls, value: dict[str, str]) -> dict[str, str]:
        return {service: _known(release) for service, release in value.items()}

    @field_validator("generated_dir", "state_dir", mode="before")
    @classmethod
    def _folder(cls, value):
        # Path("") is ".", the configuration folder itself: never what was meant.
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty: leave the key out (or comment it) for the default")
        return value

    @model_validator(mode="after")
    def _external_defaults_to_internal(self) -> Globals:
        if self.external_address is None:
            object.__setattr__(self, "external_address", self.internal_address)
        if self.release is not None:
            # image_tag is this release's tag when given, unless it is another
            # release's own tag: the value written for the release the site ran
            # before (`dockyard up` writes it), which must not hold it back.
            releases = load_releases()
            others = {r.tag for r in releases.by_name.values() if r.name != self.release}
            if "image_tag" not in self.model_fields_set or self.image_tag in others:
                object.__setattr__(self, "image_tag", releases.by_name[self.release].tag)
        return self

    @property
    def registry_address(self) -> str | None:
        """``host:port`` of the site's registry, or None when the site has none."""
        if self.registry is None:
            return None
        return f"{self.registry.address or self.internal_address}:{self.registry.port}"

    def image_ref(self, image: str, tag: str | None = None) -> str:
        return image_ref(self.image_namespace, image, tag or self.image_tag, self.image_registry)

    # -- releases ---------------------------------------------------------------
    @property
    def site_release(self) -> str:
        return self.release or load_releases().current

    def service_release(self, service: str) -> str:
        """The release a service runs: its own entry in `service_releases`, else
        the site's, less services that release leaves behind (images/releases.yml)."""
        return self.service_releases.get(service) or load_releases().service_release(self.site_release, service)

    def release_tag(self, release: str) -> str:
        return self.image_tag if release == self.site_release else load_releases().by_name[release].tag

    def service_tag(self, service: str) -> str:
        return self.release_tag(self.service_release(service))


class _TlsModel(StrictModel):
    ca: str
    cert: str
    key: str


class _HostModel(StrictModel):
    address: IPv4
    engine: str | None = None          # None: the local engine (globals.yml's `engine`)
    tls: _TlsModel | None = None
    # The address the Open vSwitch agent's tunnels (VXLAN) use, and the NIC of
    # that network, which the openvswitch service makes a port of br-tunnel
    # (userspace datapath). None: the host's address, and no NIC of dockyard's.
    tunnel_address: TunnelAddress | None = None
    tunnel_interface: Interface | None = None


class _InventoryModel(StrictModel):
    hosts: dict[str, _HostModel]
    groups: dict[str, list[str]]


@dataclass(frozen=True)
class EngineTls:
    """Client certificate files for a ``tcp://`` engine (absolute paths)."""

    ca: str
    cert: str
    key: str

    def files(self) -> tuple[str, str, str]:
        return self.ca, self.cert, self.key


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    engine: str = ""                   # the engine's URL; "" for the local engine
    tls: EngineTls | None = None
    # What its OpenStack services call it (nova's and neutron's `host`, the
    # hypervisor's name): the inventory name, except for the all-in-one's
    # `localhost`, which is the machine's own name. "" means the inventory name.
    hostname: str = ""
    # The tunnel network (inventory.yml's tunnel_address, tunnel_interface):
    # the address the Open vSwitch agent's tunnels use ("": the host's
    # address), its prefix length (None: not given), and the NIC the
    # openvswitch service makes a port of br-tunnel ("": none).
    tunnel_address: str = ""
    tunnel_prefixlen: int | None = None
    tunnel_interface: str = ""

    def __post_init__(self) -> None:
        if not self.hostname:
            object.__setattr__(self, "hostname", self.name)
        if not self.tunnel_address:
            object.__setattr__(self, "tunnel_address", self.address)

    @property
    def remote(self) -> bool:
        """Its engine runs elsewhere: bind mounts of this machine's files cannot
        reach it, so its containers get their configuration copied in."""
        return self.engine.startswith(("tcp://", "ssh://"))

    @property
    def engine_label(self) -> str:
        """The engine as an operator reads it in messages."""
        return self.engine or "the local engine"


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def hosts_in(self, group: str) -> list[Host]:
        """The group's hosts in the order the inventory lists them ([] for a group it lacks)."""
        return [self.hosts[name] for name in self.groups.get(group, [])]

    @classmethod
    def all_in_one(cls, address: str, hostname: str = "") -> Inventory:
        host = Host(ALL_IN_ONE_HOST, address, hostname=hostname)
        return cls({host.name: host}, {group: [host.name] for group in REQUIRED_GROUPS})


@dataclass(frozen=True)
class Site:
    config_dir: Path
    globals: Globals
    inventory: Inventory
    passwords: dict[str, str] = field(repr=False)   # repr=False: a logged Site shows no secret

    @property
    def generated_dir(self) -> Path:
        return Path(self.globals.generated_dir or Path(self.config_dir) / "generated")

    @property
    def state_dir(self) -> Path:
        return Path(self.globals.state_dir or Path(self.config_dir) / "state")

    @property
    def external_address(self) -> str:
        return self.globals.external_address or self.globals.internal_address


def _unknown_service(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown service {name!r} ({hint}known: {', '.join(sorted(known))})"


# -- loading --------------------------------------------------------------------------------

def load_globals(config_dir: Path, known_services: set[str]) -> Globals:
    """``globals.yml`` (absent or empty: every default), with the folders resolved
    against ``config_dir``."""
    config_dir = Path(config_dir)
    path = config_dir / GLOBALS_FILE
    g = read_model(path, Globals, missing_ok=True)
    seen: set[str] = set()
    for i, name in enumerate(g.enabled_services):
        if name not in known_services:
            raise ConfigError(_unknown_service(name, known_services), path=path, key=f"enabled_services[{i}]")
        if name in seen:
            raise ConfigError(f"{name!r} is listed twice", path=path, key=f"enabled_services[{i}]")
        seen.add(name)
    for name in g.services:
        if name not in known_services:
            raise ConfigError(_unknown_service(name, known_services), path=path, key=f"services.{name}")
    for name in g.service_releases:
        if name not in known_services:
            raise ConfigError(_unknown_service(name, known_services), path=path, key=f"service_releases.{name}")
    # Relative folders are relative to the configuration folder, not to wherever
    # dockyard happens to be run from.
    # Absolute, too: they become bind-mount sources, and a relative one would be
    # taken for a volume name.
    base = config_dir.absolute()
    folders = {"generated_dir": base / (g.generated_dir or "generated"), "state_dir": base / (g.state_dir or "state")}
    for key, folder in folders.items():
        _check_folder(folder, path, key)
    return g.model_copy(update=folders)


def _check_folder(folder: Path, path: Path, key: str) -> None:
    """A folder dockyard will create and write in: neither a file nor under one."""
    for place in (folder, *folder.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                where = "is a file" if place == folder else f"is under {place}, which is a file"
                raise ConfigError(f"{folder} {where}, not a folder", path=path, key=key)
            return


def load_inventory(config_dir: Path, g: Globals, known_services: Iterable[str] = ()) -> Inventory:
    """``inventory.yml``; absent or empty, one host ``localhost`` at the internal
    address in every group (all-in-one), known to OpenStack by this machine's name."""
    path = Path(config_dir) / INVENTORY_FILE
    data = read_mapping(path)
    if not data:
        return Inventory.all_in_one(g.internal_address, machine_hostname(path))
    try:
        model = _InventoryModel.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, path, _InventoryModel) from None
    if not model.hosts:
        raise ConfigError("no hosts: list at least one, e.g. `hosts: {ctl1: {address: 192.0.2.11}}`",
                          path=path, key="hosts")
    services = set(known_services)
    addresses: dict[str, str] = {}
    for name, host in model.hosts.items():
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError("host names are letters, digits, '.', '_' and '-' (they name override folders "
                              "and container labels)", path=path, key=f"hosts.{name}")
        if name in services:
            raise ConfigError(f"a host may not be named like a service: config/{name}/ would mean both the "
                              f"host's and the service's overrides", path=path, key=f"hosts.{name}")
        if host.address in addresses:
            raise ConfigError(f"host {addresses[host.address]!r} has the same address: two hosts on one "
                              f"engine would run containers of the same names", path=path, key=f"hosts.{name}.address")
        addresses[host.address] = name
    engines = {name: _engine(path, name, host) for name, host in model.hosts.items()}
    tunnels = _tunnels(path, model.hosts)
    for group in REQUIRED_GROUPS:
        if not model.groups.get(group):
            state = "is empty" if group in model.groups else "is missing"
            raise ConfigError(f"group {group!r} {state}: groups control, network and compute each need at "
                              f"least one host", path=path, key=f"groups.{group}")
    for group, members in model.groups.items():
        seen: set[str] = set()
        for i, member in enumerate(members):
            if member not in model.hosts:
                raise ConfigError(f"host {member!r} is not defined under hosts "
                                  f"(defined: {', '.join(model.hosts)})", path=path, key=f"groups.{group}[{i}]")
            if member in seen:
                raise ConfigError(f"host {member!r} is listed twice", path=path, key=f"groups.{group}[{i}]")
            seen.add(member)
    hosts = {name: Host(name, h.address, *engines[name], **tunnels[name]) for name, h in model.hosts.items()}
    # "localhost" names no machine to OpenStack: on the local engine it is this one.
    if ALL_IN_ONE_HOST in hosts and not hosts[ALL_IN_ONE_HOST].remote:
        hosts[ALL_IN_ONE_HOST] = replace(hosts[ALL_IN_ONE_HOST], hostname=machine_hostname(path))
    return Inventory(hosts, {group: list(members) for group, members in model.groups.items()})


def _tunnels(path: Path, hosts: dict[str, _HostModel]) -> dict[str, dict]:
    """Each host's tunnel settings, checked: with a ``tunnel_interface``,
    dockyard puts ``tunnel_address`` on the bridge br-tunnel, so it must be
    given, with the prefix that makes the other hosts reachable through that
    bridge, and must not be the host's address (which stays where it is); no
    two hosts tunnel from one address."""
    out: dict[str, dict] = {}
    seen: dict[str, str] = {}
    # Hosts that tunnel from their own address first: a clash is then said at
    # the tunnel_address an operator wrote.
    for name, host in sorted(hosts.items(), key=lambda item: item[1].tunnel_address is not None):
        key = f"hosts.{name}.tunnel_address"
        address, prefix = tunnel_parts(host.tunnel_address) if host.tunnel_address else (host.address, None)
        if host.tunnel_interface:
            example = f"e.g. {address if host.tunnel_address else '10.114.0.11'}/24"
            if not host.tunnel_address:
                raise ConfigError(f"tunnel_interface {host.tunnel_interface} needs a tunnel_address of its own, "
                                  f"with the tunnel network's prefix length ({example}): dockyard puts it on the "
                                  f"Open vSwitch bridge {TUNNEL_BRIDGE}", path=path, key=key)
            if prefix is None:
                raise ConfigError(f"with tunnel_interface, give the tunnel network's prefix length ({example}): "
                                  f"the other hosts are reached through {TUNNEL_BRIDGE} on that network",
                                  path=path, key=key)
            if address == host.address:
                raise ConfigError(f"with tunnel_interface, the tunnel address must not be the host's address: "
                                  f"dockyard puts it on {TUNNEL_BRIDGE}, and it would be on two interfaces",
                                  path=path, key=key)
            network = ipaddress.IPv4Interface(f"{address}/{prefix}").network
            if prefix == 32 or (prefix <= 30 and address in (str(network.network_address),
                                                             str(network.broadcast_address))):
                raise ConfigError(f"{address}/{prefix} is no host's address on a network with other hosts "
                                  f"(a /32, or the network's own or broadcast address)", path=path, key=key)
        if address in seen:
            raise ConfigError(f"host {seen[address]!r} tunnels from {address} too: each host needs a tunnel "
                              f"address of its own", path=path, key=key)
        seen[address] = name
        out[name] = {"tunnel_address": address, "tunnel_prefixlen": prefix,
                     "tunnel_interface": host.tunnel_interface or ""}
    return out


_ENGINE_SCHEMES = ("unix", "tcp", "ssh")


def _engine(path: Path, name: str, host: _HostModel) -> tuple[str, EngineTls | None]:
    """A host's ``engine`` URL and ``tls`` files, checked: the scheme, a port for
    tcp, TLS client certificates for tcp (and only there), the files present.
    Relative certificate paths are relative to the configuration folder."""
    key = f"hosts.{name}.engine"
    url = host.engine
    if url is None:
        if host.tls is not None:
            raise ConfigError("tls needs an engine: tcp://ADDRESS:2376", path=path, key=f"hosts.{name}.tls")
        return "", None
    parts = urlsplit(url)
    if parts.scheme not in _ENGINE_SCHEMES:
        raise ConfigError("must be unix:///path/to/docker.sock, tcp://ADDRESS:PORT (with tls) or "
                          "ssh://[USER@]HOST", path=path, key=key)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("not a valid port", path=path, key=key) from None
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError("a unix socket URL has three slashes and an absolute path: "
                              "unix:///var/run/docker.sock", path=path, key=key)
    elif not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"expected {parts.scheme}://HOST{':PORT' if parts.scheme == 'tcp' else ''}, nothing after",
                          path=path, key=key)
    if parts.scheme == "tcp":
        if port is None:
            raise ConfigError("a tcp engine needs its port: tcp://ADDRESS:2376", path=path, key=key)
        if host.tls is None:
            raise ConfigError("an engine over tcp needs TLS client certificates (anyone reaching an unprotected "
                              "engine port is root on that host): add tls: {ca: ..., cert: ..., key: ...}",
                              path=path, key=f"hosts.{name}.tls")
    elif host.tls is not None:
        raise ConfigError(f"tls is for tcp:// engines only, not {parts.scheme}://", path=path, key=f"hosts.{name}.tls")
    tls = None
    if host.tls is not None:
        files = {}
        for field_name in ("ca", "cert", "key"):
            file = Path(path).parent / Path(getattr(host.tls, field_name)).expanduser()
            if not file.is_file():
                raise ConfigError(f"file not found: {file}", path=path, key=f"hosts.{name}.tls.{field_name}")
            files[field_name] = str(file.absolute())
        tls = EngineTls(**files)
    return url.rstrip("/") if parts.scheme != "unix" else url, tls


def load_site(config_dir: Path, known_services: set[str], required_passwords: Iterable[str] | None = None) -> Site:
    """The whole site, validated. ``known_services``: the service catalogue's names;
    ``required_passwords``: the names that must have a value (None: the default
    list in :mod:`dockyard.deploy.site.passwords`; ``[]``: none)."""
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError("configuration folder not found (run `dockyard up` or `dockyard genpwd` to create it)",
                          path=config_dir)
    g = load_globals(config_dir, known_services)
    inventory = load_inventory(config_dir, g, known_services)
    check_shared_addresses(config_dir / GLOBALS_FILE, g, inventory)
    required = DEFAULT_PASSWORD_NAMES if required_passwords is None else required_passwords
    passwords = load_passwords(config_dir / PASSWORDS_FILE, required)
    return Site(config_dir, g, inventory, passwords)


# -- a fresh machine -------------------------------------------------------------------------

_DEFAULT_GLOBALS = """\
# dockyard site configuration: an all-in-one cloud on this machine.
# Every key is optional; the values below are the defaults.
# Reference: docs/configuration.md

# Services to deploy (the services they depend on come along).
enabled_services: [{enabled_services}]

# Services listen and talk on this address (IPv4). With several hosts in
# inventory.yml: the address of a host in the control group.
internal_address: {internal_address}
# Address (or DNS name) in public endpoints, clouds.yaml and Horizon's URL.
# Default: the internal address.
# external_address: 192.0.2.10

# Images: <registry>/<namespace>/<image>:<tag>, as `dockyard build` tags them.
image_namespace: {image_namespace}
image_tag: "{image_tag}"
# image_registry: 192.0.2.1:5000
# The site's own registry (`dockyard registry up`, on this machine): images reach
# the other hosts through it, pulled by digest. Default address: internal_address.
# registry: {{address: 192.0.2.1, port: 4000}}

# The OpenStack release to run (images/releases.yml; default: its current one),
# and services kept on another release. `dockyard upgrade` moves a running
# site to what these say. With image_tag unset, each release's own tag is used.
# release: "2025.1"
# service_releases: {{glance: "2025.1"}}

# The container engine: docker (the only one dockyard is tested with).
engine: {engine}
region: {region}

# Rendered container configuration, and dockyard's own state (lock, timeline,
# job records). Relative paths are relative to this folder.
# generated_dir: generated
# state_dir: state

# Actions run at once, and seconds a container may take to become healthy.
parallelism: {parallelism}
health_timeout: {health_timeout}

# Per-service options, read by the service's templates, e.g.:
# services:
#   nova: {{workers: 2}}
#   openvswitch: {{datapath: auto}}       # auto, system (kernel module) or netdev (userspace)
#   nova-compute: {{virt_type: auto}}     # auto, kvm or qemu (emulation)
# `dockyard prechecks` says what auto chooses on this host, and why.
services: {{}}
"""


def default_globals_text() -> str:
    d = Globals()
    return _DEFAULT_GLOBALS.format(
        enabled_services=", ".join(d.enabled_services), internal_address=d.internal_address,
        image_namespace=d.image_namespace, image_tag=d.image_tag, engine=d.engine, region=d.region,
        parallelism=d.parallelism, health_timeout=f"{d.health_timeout:g}")


def write_defaults(config_dir: Path) -> list[Path]:
    """Make ``config_dir`` an all-in-one site: a commented ``globals.yml`` and the
    ``config/`` folder for overrides. Never overwrites a file; returns the files
    it wrote."""
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / OVERRIDES_DIR).mkdir(exist_ok=True)
    path = config_dir / GLOBALS_FILE
    try:
        with open(path, "x", encoding="utf-8") as fh:   # "x": a file that appeared meanwhile is kept
            fh.write(default_globals_text())
    except FileExistsError:
        return []
    return [path]
