"""The operator's configuration folder: globals.yml, inventory.yml, passwords.yml.

Loaded and validated completely before anything runs; every error names the file
and the key.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockyard.build.config import load_yaml, validation_error
from dockyard.errors import ConfigError

DEFAULT_CONFIG_DIR = Path("/etc/dockyard")
DEFAULT_SERVICES = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova", "neutron",
                    "horizon"]
GROUPS = ("control", "network", "compute")


def config_dir_from(value: str | os.PathLike | None) -> Path:
    return Path(value or os.environ.get("DOCKYARD_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Globals(Strict):
    enabled_services: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVICES))
    internal_address: str = "127.0.0.1"
    external_address: str | None = None
    image_namespace: str = "dockyard"
    image_tag: str = "2025.1"
    image_registry: str | None = None
    engine: Literal["docker", "podman"] = "docker"
    region: str = "RegionOne"
    generated_dir: str | None = None
    state_dir: str | None = None
    parallelism: int = Field(default=4, ge=1)
    health_timeout: float = Field(default=300, gt=0)
    services: dict[str, dict] = Field(default_factory=dict)

    def image_ref(self, image: str) -> str:
        ref = f"{self.image_namespace}/{image}:{self.image_tag}"
        return f"{self.image_registry}/{ref}" if self.image_registry else ref


class HostModel(Strict):
    address: str


class InventoryModel(Strict):
    hosts: dict[str, HostModel]
    groups: dict[str, list[str]]


@dataclass(frozen=True)
class Host:
    name: str
    address: str


@dataclass(frozen=True)
class Inventory:
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def hosts_in(self, group: str) -> list[Host]:
        return [self.hosts[h] for h in self.groups.get(group, [])]


@dataclass(frozen=True)
class Site:
    config_dir: Path
    globals: Globals
    inventory: Inventory
    passwords: dict[str, str]

    @property
    def generated_dir(self) -> Path:
        return Path(self.globals.generated_dir or self.config_dir / "generated")

    @property
    def state_dir(self) -> Path:
        return Path(self.globals.state_dir or self.config_dir / "state")

    @property
    def external_address(self) -> str:
        return self.globals.external_address or self.globals.internal_address


def _mapping(path: Path) -> dict:
    if not path.exists():
        return {}
    data = load_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of keys to values", path=path)
    return data


def load_globals(config_dir: Path, known_services: set[str]) -> Globals:
    path = config_dir / "globals.yml"
    try:
        g = Globals.model_validate(_mapping(path))
    except ValidationError as exc:
        raise validation_error(exc, path) from None
    for i, name in enumerate(g.enabled_services):
        if name not in known_services:
            raise ConfigError(f"unknown service {name!r} (known: {', '.join(sorted(known_services))})",
                              path=path, key=f"enabled_services[{i}]")
    for name in g.services:
        if name not in known_services:
            raise ConfigError(f"unknown service {name!r}", path=path, key=f"services.{name}")
    return g


def load_inventory(config_dir: Path, g: Globals) -> Inventory:
    path = config_dir / "inventory.yml"
    if not path.exists():
        host = Host("localhost", g.internal_address)
        return Inventory({host.name: host}, {group: [host.name] for group in GROUPS})
    try:
        model = InventoryModel.model_validate(_mapping(path))
    except ValidationError as exc:
        raise validation_error(exc, path) from None
    for group in GROUPS:
        if not model.groups.get(group):
            raise ConfigError(f"group {group!r} is missing or empty", path=path, key=f"groups.{group}")
    for group, members in model.groups.items():
        for i, member in enumerate(members):
            if member not in model.hosts:
                raise ConfigError(f"host {member!r} is not defined under hosts", path=path,
                                  key=f"groups.{group}[{i}]")
    hosts = {name: Host(name, h.address) for name, h in model.hosts.items()}
    return Inventory(hosts, {g_: list(m) for g_, m in model.groups.items()})


def load_passwords(path: Path, required: list[str]) -> dict[str, str]:
    data = _mapping(path)
    for i, name in enumerate(required):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"password missing: run `dockyard genpwd --config-dir {path.parent}`",
                              path=path, key=name)
    return {k: str(v) for k, v in data.items()}


def load_site(config_dir: Path, known_services: set[str], required_passwords: list[str]) -> Site:
    if not config_dir.is_dir():
        raise ConfigError("configuration folder not found (run `dockyard up` or create it)", path=config_dir)
    g = load_globals(config_dir, known_services)
    inventory = load_inventory(config_dir, g)
    passwords = load_passwords(config_dir / "passwords.yml", required_passwords)
    return Site(config_dir, g, inventory, passwords)


# -- writing -------------------------------------------------------------------------

def write_private(path: Path, text: str) -> None:
    """Write a file atomically, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_password() -> str:
    # token_urlsafe gives [A-Za-z0-9_-]: safe in URLs, INI files and shell words.
    return secrets.token_urlsafe(24)


def generate_passwords(path: Path, names: list[str]) -> list[str]:
    """Add a strong random value for every missing name; never overwrite one."""
    existing = _mapping(path)
    added = [n for n in names if not existing.get(n)]
    if not added and path.exists():
        return []
    values = {**existing, **{n: new_password() for n in added}}
    header = "# dockyard passwords: generated by `dockyard genpwd`; keep this file private (mode 0600).\n"
    write_private(path, header + yaml.safe_dump(values, default_flow_style=False, sort_keys=True))
    return added


DEFAULT_GLOBALS = """\
# dockyard site configuration (all-in-one defaults). See docs/configuration.md.
enabled_services: [{services}]
internal_address: 127.0.0.1
# external_address: 127.0.0.1
image_namespace: dockyard
image_tag: "2025.1"
# image_registry: 127.0.0.1:5000
engine: docker
region: RegionOne
parallelism: 4
health_timeout: 300
# Per-service options, e.g.:
# services:
#   nova: {{workers: 2}}
"""


def write_defaults(config_dir: Path) -> list[Path]:
    """An all-in-one site for a fresh machine. Never overwrites a file."""
    written = []
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config").mkdir(exist_ok=True)
    path = config_dir / "globals.yml"
    if not path.exists():
        path.write_text(DEFAULT_GLOBALS.format(services=", ".join(DEFAULT_SERVICES)))
        written.append(path)
    return written
