"""The service catalogue: ``services/<name>.yml``, validated into typed models.

A service is data, not code: the containers it runs, the config files they read
(Jinja2 templates under ``services/templates/``), its named volumes, its bootstrap
jobs, its databases and keystone registration, and the services it depends on.
Everything is checked when the catalogue is loaded, including the references
between entries, so a typo fails with the file and key at fault before anything
is rendered, let alone run.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from dockyard import SOURCE_ROOT
from dockyard.datafiles import StrictModel, read_model
from dockyard.engine.driver import PROPAGATIONS
from dockyard.errors import ConfigError
from dockyard.deploy.site.passwords import HASH_KEY_NAME

DEFAULT_ROOT = SOURCE_ROOT / "services"
GROUPS = ("control", "network", "compute")
# The service `dockyard registry` runs on the deployment host; never a site's to deploy.
REGISTRY_SERVICE = "registry"
HEALTH_KINDS = ("port", "http", "socket", "process")
# Linux capabilities a container may be given, by name (capabilities(7)). Never
# ALL, and never privileged: each container names what it needs.
CAPABILITIES = frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "CHOWN",
    "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT",
    "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
})

# The services the generated units lean on: the databases job talks to the
# database service, the registration job to the identity service.
DATABASE_SERVICE = "mariadb"
IDENTITY_SERVICE = "keystone"
TOOLBOX_IMAGE = "toolbox"

NAME = r"^[a-z][a-z0-9-]*[a-z0-9]$"
# A Debian package name (policy 5.6.1: lower case letters, digits, + - .), or a
# shell-style pattern of them with * and ? ("libvirt-daemon*", "qemu-system-*").
PACKAGE_PATTERN = re.compile(r"[a-z0-9*?][a-z0-9+.*?-]*")
_PASSWORD_REFERENCE = re.compile(r"\bpasswords\b")


def unit_name(name: str) -> str:
    """A container's (or job's) name on the engine: the catalogue name with
    underscores, so it is also a valid hostname fragment and shell word."""
    return name.replace("-", "_")


class ConfigFile(StrictModel):
    template: str                     # path under services/templates/
    dest: str                         # where dockyard-start puts it in the container
    owner: str = "root"
    perm: str = Field(default="0600", pattern=r"^0?[0-7]{3}$")
    # The INI override name (config/<override>.conf, ...). Defaults to the file's
    # stem for .conf and .ini files; `false` for files that are not INI.
    override: str | Literal[False] | None = None
    # The template renders a mapping, file name -> content (YAML or JSON), and each
    # becomes one file in the folder ``dest`` (ending in "/"): for a set of files
    # whose names come from data (keystone's fernet keys, one per index).
    directory: bool = False

    @field_validator("dest")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path in the container")
        return value

    @model_validator(mode="after")
    def _directory(self):
        if self.directory and not self.dest.endswith("/"):
            raise ValueError("dest: a directory's dest is a folder: end it with '/'")
        if self.directory and self.override:
            raise ValueError("override: a directory's files are not INI files")
        return self

    @property
    def override_name(self) -> str | None:
        if self.override is False or self.directory:
            return None
        if self.override:
            return self.override
        dest = PurePosixPath(self.dest)
        return dest.stem if dest.suffix in (".conf", ".ini") else None


class VolumeMount(StrictModel):
    """``name:/path[:options]`` (a named volume) or ``/host/path:/path[:options]`` (a
    bind mount). Options, comma-separated: ``ro`` or ``rw``, and for a bind mount a
    propagation mode (``shared``: mounts made under it, such as the network
    namespaces under /run/netns, are seen by the host and the other containers)."""

    source: str
    target: str
    read_only: bool = False
    propagation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        if not isinstance(value, str):
            return value
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"expected 'volume:/path[:ro]' or '/host/path:/path[:ro,shared]', got {value!r}")
        out: dict[str, str | bool] = {"source": parts[0], "target": parts[1]}
        for option in (parts[2].split(",") if len(parts) == 3 else []):
            if option in ("ro", "rw"):
                out["read_only"] = option == "ro"
            elif option in PROPAGATIONS:
                out["propagation"] = option
            else:
                raise ValueError(f"unknown mount option {option!r} in {value!r} (expected ro, rw or one of "
                                 f"{', '.join(PROPAGATIONS)})")
        return out

    @field_validator("target")
    @classmethod
    def _target_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("the mount point must be an absolute path")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not value.startswith("/") and not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"{value!r} is neither an absolute host path nor a volume name ([a-z0-9_])")
        return value

    @model_validator(mode="after")
    def _propagation_on_binds(self):
        if self.propagation and self.is_volume:
            raise ValueError("a propagation mode applies to bind mounts (/host/path:/path:shared) only")
        return self

    @property
    def is_volume(self) -> bool:
        return not self.source.startswith("/")


class Permission(StrictModel):
    """A ``permissions`` entry of config.json: ownership fixed at start (e.g. on a
    fresh named volume)."""

    path: str
    owner: str
    perm: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$")
    recurse: bool = False
    exclude: list[str] = Field(default_factory=list)


class HealthSpec(StrictModel):
    """A container's health check, as the engine runs it. The engine checks every
    ``interval`` (each check an exec: 30 s keeps an idle cloud idle); a deploy
    does not wait for it, it runs the same test itself every second while it
    waits (engine/health_wait.py). Failures within ``start_period`` of a start
    do not count; after it, ``retries`` failures in a row make it unhealthy."""

    test: list[str]                   # arguments of dockyard-healthcheck (templated)
    interval: float = Field(default=30.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=1)
    start_period: float = Field(default=300.0, ge=0)

    @field_validator("test")
    @classmethod
    def _kind(cls, value: list[str]) -> list[str]:
        if len(value) < 2 or value[0] not in HEALTH_KINDS:
            raise ValueError(f"expected [{' | '.join(HEALTH_KINDS)}, argument, ...], got {value!r}")
        return value


def _package_pattern(value: str) -> str:
    if not PACKAGE_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is neither a Debian package name (a-z, 0-9, '+', '-', '.') nor a pattern of "
                         f"one with '*' and '?'")
    if not value.strip("*?"):
        raise ValueError(f"{value!r} matches every package: name the packages the process is made of")
    return value


PackagePattern = Annotated[str, AfterValidator(_package_pattern)]


def _groups(value):
    groups = [value] if isinstance(value, str) else value
    for group in groups:
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r} (expected one of {', '.join(GROUPS)})")
    return groups


class ContainerDef(StrictModel):
    image: str
    group: str | list[str] = "control"   # one container per host in the group(s)
    command: str                          # templated; goes into config.json, not the engine
    config: list[str] = Field(default_factory=list)       # names under the service's `config`
    volumes: list[VolumeMount] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)   # templated; never a secret
    permissions: list[Permission] = Field(default_factory=list)
    network: Literal["host", "none"] = "host"
    pid: Literal["host"] | None = None
    cap_add: list[str] = Field(default_factory=list)     # capability names, e.g. NET_ADMIN
    # Host devices, templated: an entry that renders empty is left out
    # ("{{ '/dev/kvm' if virt_type == 'kvm' }}").
    devices: list[str] = Field(default_factory=list)
    security_opt: list[str] = Field(default_factory=list)   # e.g. apparmor=unconfined
    # /proc/sys writable (the engine mounts it read-only): for containers that set
    # sysctls in network namespaces of their own making (the L3 agent).
    writable_proc_sys: bool = False
    tmpfs: list[str] = Field(default_factory=list)
    user: str | None = None               # config.json user, when not the image's own
    healthcheck: HealthSpec | None = None
    ports: list[int] = Field(default_factory=list)         # TCP ports it binds: checked free first
    after: list[str] = Field(default_factory=list)         # units of this or a dependency service
    # The secrets this container makes true where they are checked (RabbitMQ its
    # user's password): units of other services that read one wait for it, so a
    # changed secret reaches its checker before its users (docs/secrets.md).
    applies: list[str] = Field(default_factory=list)
    # The Debian packages its running process is made of (names or patterns).
    # When a rebuild of its image, of the same reference and release, changes
    # none of their versions and nothing else of it changed, a deploy keeps it
    # running rather than recreating it: the data plane (Open vSwitch, libvirt
    # and its guests) is not restarted for a rebuild of unrelated layers.
    restart_packages: list[PackagePattern] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _never_privileged(cls, value):
        if isinstance(value, dict) and "privileged" in value:
            raise ValueError("privileged containers are refused: name the capabilities (cap_add), devices "
                             "and security options (security_opt) the container needs instead")
        return value

    @field_validator("cap_add")
    @classmethod
    def _capabilities(cls, value: list[str]) -> list[str]:
        for cap in value:
            if cap not in CAPABILITIES:
                hint = " (drop the CAP_ prefix)" if cap.startswith("CAP_") else ""
                raise ValueError(f"unknown capability {cap!r}{hint}; expected names such as NET_ADMIN")
        return value

    @field_validator("group")
    @classmethod
    def _check_group(cls, value):
        return _groups(value)

    @field_validator("restart_packages")
    @classmethod
    def _package_patterns(cls, value: list[str]) -> list[str]:
        repeated = sorted({p for p in value if value.count(p) > 1})
        if repeated:
            raise ValueError(f"named twice: {', '.join(repeated)}")
        return value

    @property
    def groups(self) -> list[str]:
        return [self.group] if isinstance(self.group, str) else list(self.group)


class JobDef(StrictModel):
    name: str = Field(pattern=NAME)
    image: str
    group: str = "control"                # runs once, on the first host of the group
    bootstrap: bool = False               # run the image's bootstrap step (DOCKYARD_BOOTSTRAP=1)
    command: str | None = None
    config: list[str] = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    after: list[str] = Field(default_factory=list)
    timeout: float = Field(default=900.0, gt=0)
    applies: list[str] = Field(default_factory=list)      # as ContainerDef.applies

    @field_validator("group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        return _groups(value)[0]

    @model_validator(mode="after")
    def _one_way_to_run(self):
        if self.bootstrap == bool(self.command):
            raise ValueError("a job needs either `bootstrap: true` or a `command` (not both)")
        return self


class DatabaseDef(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    user: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    password: str                         # a name in passwords.yml


class EndpointSet(StrictModel):
    type: str
    port: int
    path: str = ""


class RegisterDef(StrictModel):
    user: str                             # the service's keystone user
    password: str                         # a name in passwords.yml
    services: dict[str, EndpointSet] = Field(default_factory=dict)   # service name -> endpoints


#: An upgrade's steps, in the order they run (docs/upgrades.md).
UPGRADE_STEPS = ("prepare", "check", "expand", "migrate", "post", "contract", "online_migrations")
#: The steps that run before the service's new containers start.
STEPS_BEFORE = ("prepare", "check", "expand", "migrate")


class UpgradeDef(StrictModel):
    """How the service moves from one release to the next (``dockyard upgrade``).

    Each step is a command run once, as a one-shot container of ``image`` with
    ``config`` and ``volumes``: ``prepare`` in the running release's image before
    anything changes (RabbitMQ's feature flags), the others in the new release's:
    ``check`` (the service's pre-upgrade check), ``expand`` and ``migrate`` (the
    schema, while the old code still serves), then the new containers and their
    health, ``post`` (right after them: MariaDB's own upgrade step), ``contract``
    and ``online_migrations`` once no old code runs: not the service's, nor that of
    the services in ``contract_after`` (nova's computes, neutron's agents)."""

    image: str
    config: list[str] = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    user: str | None = None
    prepare: str | None = None
    check: str | None = None
    expand: str | None = None
    migrate: str | None = None
    post: str | None = None
    contract: str | None = None
    online_migrations: str | None = None
    contract_after: list[str] = Field(default_factory=list)
    timeout: float = Field(default=1800.0, gt=0)

    def steps(self) -> list[tuple[str, str]]:
        """(step, command) of the steps it has, in order."""
        return [(step, getattr(self, step)) for step in UPGRADE_STEPS if getattr(self, step)]

    environment: dict[str, str] = Field(default_factory=dict)    # templated; never a secret

    # What `after` would name, for the checks shared with jobs.
    @property
    def after(self) -> list[str]:
        return []

class OptionDef(StrictModel):
    """A per-service option operators set under ``services: {<service>: {...}}``
    in globals.yml, read by the service's templates as ``options.<name>``."""

    type: Literal["integer", "string", "ipv4", "ipv4_network", "ipv4_list"]
    description: str
    default: Any = None                   # None: no value (the code that reads it computes one)
    choices: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None            # a regular expression the whole text must match

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _default_is_valid(self):
        if self.default is not None and self.problem(self.default):
            raise ValueError(f"default: {self.problem(self.default)}")
        return self

    def expected(self) -> str:
        if self.type == "integer":
            low = "" if self.minimum is None else f" from {self.minimum}"
            high = "" if self.maximum is None else f" to {self.maximum}"
            return f"an integer{low}{high}"
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return {"string": "text" + (f" matching {self.pattern}" if self.pattern else ""),
                "ipv4": "an IPv4 address", "ipv4_network": "an IPv4 network such as 203.0.113.0/24",
                "ipv4_list": "a list of IPv4 addresses"}[self.type]

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid, or None. Names the type YAML read, never the value."""
        ok = False
        if self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool) and \
                (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        elif self.type == "string":
            ok = isinstance(value, str) and (not self.choices or value in self.choices) and \
                (not self.pattern or re.fullmatch(self.pattern, value) is not None)
        elif self.type == "ipv4":
            ok = isinstance(value, str) and _parses(ipaddress.IPv4Address, value)
        elif self.type == "ipv4_network":
            ok = isinstance(value, str) and _parses(ipaddress.IPv4Network, value)
        elif self.type == "ipv4_list":
            ok = isinstance(value, list) and all(isinstance(v, str) and _parses(ipaddress.IPv4Address, v)
                                                 for v in value)
        if ok:
            return None
        kind = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
                dict: "a mapping"}.get(type(value), type(value).__name__)
        right_kind = {"integer": "a number", "ipv4_list": "a list"}.get(self.type, "text")
        if kind == right_kind:
            return f"must be {self.expected()}"
        return f"must be {self.expected()}, but YAML read {kind} here"


def _parses(kind, value: str) -> bool:
    try:
        kind(value)
        return True
    except ValueError:
        return False


class ServiceDef(StrictModel):
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)
    passwords: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    config: dict[str, ConfigFile] = Field(default_factory=dict)
    databases: list[DatabaseDef] = Field(default_factory=list)
    registration: RegisterDef | None = Field(default=None, alias="register")
    jobs: list[JobDef] = Field(default_factory=list)
    containers: dict[str, ContainerDef] = Field(default_factory=dict)
    upgrade: UpgradeDef | None = None
    # The options operators may set in globals.yml (services: {<name>: {...}}).
    options: dict[str, OptionDef] = Field(default_factory=dict)
    # A change to the service's containers rolls through its hosts this many at a
    # time, each batch healthy before the next (deploy --serial overrides it).
    serial: int | None = Field(default=None, ge=1)

    @field_validator("containers")
    @classmethod
    def _container_names(cls, value: dict) -> dict:
        for name in value:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"container name {name!r} must match {NAME}")
        return value


@dataclass(frozen=True)
class Service:
    name: str
    path: Path
    spec: ServiceDef

    @property
    def databases_job(self) -> str | None:
        return f"{self.name}-databases" if self.spec.databases else None

    @property
    def register_job(self) -> str | None:
        return f"{self.name}-register" if self.spec.registration else None

    def post_jobs(self) -> list[JobDef]:
        """Jobs that wait for one of the service's own containers (e.g. host
        discovery once nova-compute runs); the others run before the containers."""
        return [j for j in self.spec.jobs if any(a in self.spec.containers for a in j.after)]

    def pre_jobs(self) -> list[JobDef]:
        post = {j.name for j in self.post_jobs()}
        return [j for j in self.spec.jobs if j.name not in post]

    def unit_names(self) -> list[str]:
        """Every job and container this service makes, by catalogue name."""
        names = [n for n in (self.databases_job, self.register_job) if n]
        return names + [j.name for j in self.spec.jobs] + list(self.spec.containers)

    def passwords(self) -> list[str]:
        """Every password the service needs: declared, and implied by its databases
        (the root password to create them) and its registration (the admin's)."""
        spec = self.spec
        names = list(spec.passwords)
        if spec.databases:
            names += ["database_password", *(d.password for d in spec.databases)]
        if spec.registration:
            names += ["keystone_admin_password", spec.registration.password]
        return list(dict.fromkeys(names))

    def upgrade_unit(self, step: str) -> str:
        """The one-shot container of an upgrade step: ``keystone_upgrade_expand``."""
        return unit_name(f"{self.name}-upgrade-{step.replace('_', '-')}")

    def options(self, given: dict[str, Any], path: Path | str | None = None) -> dict[str, Any]:
        """The service's options as its templates see them: every declared one,
        set (``given``: its entry under ``services:`` in globals.yml, ``path``)
        or defaulted. An unknown or invalid one is a ConfigError naming the key."""
        declared = self.spec.options
        for name in given:
            if name not in declared:
                if not declared:
                    message = f"unknown option: {self.name} takes no options"
                else:
                    close = difflib.get_close_matches(name, list(declared), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    message = f"unknown option ({hint}options of {self.name}: {', '.join(declared)})"
                raise ConfigError(message, path=path, key=f"services.{self.name}.{name}")
        for name, value in given.items():
            problem = declared[name].problem(value) if value is not None else None    # null: the default
            if problem:
                raise ConfigError(problem, path=path, key=f"services.{self.name}.{name}")
        return {name: option.default if given.get(name) is None else given[name] for name, option in declared.items()}

    def images(self) -> set[str]:
        images = {c.image for c in self.spec.containers.values()} | {j.image for j in self.spec.jobs}
        if self.spec.upgrade:
            images.add(self.spec.upgrade.image)
        if self.spec.databases or self.spec.registration:
            images.add(TOOLBOX_IMAGE)
        return images


@dataclass(frozen=True)
class ServiceCatalogue:
    root: Path
    services: dict[str, Service]

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def closure(self, enabled: list[str]) -> list[str]:
        """Enabled services and their dependencies, dependencies first."""
        order: list[str] = []

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in trail:
                raise ConfigError(f"dependency cycle: {' -> '.join(trail + (name,))}",
                                  path=self.services[name].path, key="depends_on")
            for dep in self.services[name].spec.depends_on:
                visit(dep, trail + (name,))
            order.append(name)

        for name in enabled:
            if name not in self.services:
                raise ConfigError(f"unknown service {name!r} (known: {', '.join(sorted(self.services))})",
                                  key="enabled_services")
            visit(name, ())
        return order

    def check_options(self, options: dict[str, dict[str, Any]], path: Path | str | None = None
                      ) -> dict[str, dict[str, Any]]:
        """Every service's options (globals.yml's ``services:``) checked against
        its schema; service name -> its options, defaults filled in."""
        return {name: service.options(options.get(name, {}), path) for name, service in self.services.items()}

    def required_passwords(self, services: list[str]) -> list[str]:
        """What passwords.yml must hold for these services: their passwords, and
        the site's hash key (the labels of every container are keyed with it)."""
        names: list[str] = []
        for name in services:
            names += self.services[name].passwords()
        return list(dict.fromkeys([*names, HASH_KEY_NAME]))

    def all_passwords(self) -> list[str]:
        return self.required_passwords(sorted(self.services))

    def images(self, services: list[str]) -> list[str]:
        """The images the given services need (jobs included)."""
        images: set[str] = set()
        for name in services:
            images |= self.services[name].images()
        return sorted(images)

    def owner_of(self, unit: str) -> str | None:
        """The service that defines a unit (catalogue name, dashes or underscores)."""
        wanted = unit_name(unit)
        for service in self.services.values():
            if any(unit_name(n) == wanted for n in service.unit_names()):
                return service.name
        return None


# -- loading ----------------------------------------------------------------------

def load_services(root: Path | None = None) -> ServiceCatalogue:
    root = Path(root or DEFAULT_ROOT)
    services = {}
    for path in sorted(root.glob("*.yml")):
        if not re.fullmatch(NAME, path.stem):
            raise ConfigError(f"service file names must match {NAME}", path=path)
        spec = read_model(path, ServiceDef)
        services[path.stem] = Service(path.stem, path, spec)
    if not services:
        raise ConfigError("no service definitions found", path=root)
    catalogue = ServiceCatalogue(root, services)
    _check_references(catalogue)
    return catalogue


def _check_references(catalogue: ServiceCatalogue) -> None:
    """What one file's schema cannot see: names that point elsewhere."""
    services = catalogue.services
    seen_units: dict[str, Service] = {}
    for svc in services.values():
        for i, dep in enumerate(svc.spec.depends_on):
            if dep not in services:
                raise ConfigError(f"unknown service {dep!r}", path=svc.path, key=f"depends_on[{i}]")
        for name in svc.unit_names():
            other = seen_units.get(unit_name(name))
            if other is not None:
                raise ConfigError(f"unit name {name!r} is also used by {other.path.name}; container and job "
                                  f"names are global on an engine", path=svc.path, key=name)
            seen_units[unit_name(name)] = svc
    for svc in services.values():
        catalogue.closure([svc.name])          # raises on a dependency cycle
        _check_service(catalogue, svc)


def _check_service(catalogue: ServiceCatalogue, svc: Service) -> None:
    spec, path = svc.spec, svc.path
    reachable = set(catalogue.closure([svc.name]))
    units_in_reach = {unit_name(u) for name in reachable for u in catalogue.services[name].unit_names()}
    # A dependency's volume may be shared (e.g. the folder of Open vSwitch's socket).
    volumes_in_reach = {v for name in reachable for v in catalogue.services[name].spec.volumes}
    if spec.databases and DATABASE_SERVICE not in reachable - {svc.name}:
        raise ConfigError(f"a service with databases must depend on {DATABASE_SERVICE}", path=path, key="databases")
    if spec.registration and IDENTITY_SERVICE not in reachable - {svc.name}:
        raise ConfigError(f"a service registered in keystone must depend on {IDENTITY_SERVICE}", path=path,
                          key="register")
    for fname, f in spec.config.items():
        if not (catalogue.templates / f.template).is_file():
            raise ConfigError(f"template {f.template} not found under {catalogue.templates}", path=path,
                              key=f"config.{fname}.template")
    mounted: set[str] = set()
    units = [(f"containers.{n}", c) for n, c in spec.containers.items()] + \
            [(f"jobs[{i}]", j) for i, j in enumerate(spec.jobs)] + \
            ([("upgrade", spec.upgrade)] if spec.upgrade else [])
    for key, unit in units:
        for ref in unit.config:
            if ref not in spec.config:
                raise ConfigError(f"unknown config file {ref!r} (declared: {', '.join(spec.config) or 'none'})",
                                  path=path, key=f"{key}.config")
        for i, vol in enumerate(unit.volumes):
            if vol.is_volume:
                if vol.source not in volumes_in_reach:
                    raise ConfigError(f"volume {vol.source!r} is declared under `volumes` neither here nor in a "
                                      f"service this one depends on", path=path, key=f"{key}.volumes[{i}]")
                mounted.add(vol.source)
        for ref in unit.after:
            if unit_name(ref) not in units_in_reach:
                raise ConfigError(f"unknown unit {ref!r}: `after` names a job or container of this service "
                                  f"or of one it depends on", path=path, key=f"{key}.after")
        for i, name in enumerate(getattr(unit, "applies", ())):
            if name not in svc.passwords():
                raise ConfigError(f"unknown password {name!r}: `applies` names passwords the service uses",
                                  path=path, key=f"{key}.applies[{i}]")
        for var, value in unit.environment.items():
            if _PASSWORD_REFERENCE.search(value):
                raise ConfigError("secrets never go in the environment: put them in a config file",
                                  path=path, key=f"{key}.environment.{var}")
    for i, declared in enumerate(spec.volumes):
        if declared not in mounted:
            raise ConfigError(f"volume {declared!r} is declared but no container or job mounts it", path=path,
                              key=f"volumes[{i}]")
    if spec.upgrade:
        if not spec.upgrade.steps():
            raise ConfigError("an upgrade block needs at least one step (" + ", ".join(UPGRADE_STEPS) + ")",
                              path=path, key="upgrade")
        for i, other in enumerate(spec.upgrade.contract_after):
            if other not in catalogue.services or other == svc.name:
                raise ConfigError(f"unknown service {other!r}: contract_after names other services of the "
                                  f"catalogue", path=path, key=f"upgrade.contract_after[{i}]")
            if svc.name not in catalogue.closure([other]):
                raise ConfigError(f"{other!r} does not depend on {svc.name!r}: contract_after names services that "
                                  f"run with this one's code (its agents, its computes)", path=path,
                                  key=f"upgrade.contract_after[{i}]")
        if not (spec.upgrade.contract or spec.upgrade.online_migrations) and spec.upgrade.contract_after:
            raise ConfigError("contract_after without a contract or online_migrations step", path=path,
                              key="upgrade.contract_after")
    # Jobs that wait for one of the service's containers run after the containers,
    # so every job the containers wait for must come before them in the list.
    post_seen = False
    for i, job in enumerate(spec.jobs):
        is_post = any(a in spec.containers for a in job.after)
        if post_seen and not is_post:
            raise ConfigError("jobs that wait for one of this service's containers must come after the "
                              "other jobs", path=path, key=f"jobs[{i}]")
        post_seen = post_seen or is_post
