"""The wanted state of a site, as plain data.

The service catalogue and the operator's configuration are turned into a
:class:`WantedState` (``dockyard.deploy.wanted.builder``); the planner compares it with the
observed state and returns a plan; the executor applies the plan. Nothing in this
module talks to an engine or touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.engine.driver import ContainerSpec, FileCopy


def unit_key(name: str, host: str, multi_host: bool) -> str:
    """How a plan names a container, job, volume or shared mount: its engine name
    on a single-host site (``keystone``), with its host on a site of several
    (``nova_compute@cmp1``): names are per engine, and one plan covers every host."""
    return f"{name}@{host}" if multi_host else name


@dataclass(frozen=True)
class WantedVolume:
    name: str
    host: str
    service: str


@dataclass(frozen=True)
class WantedFile:
    """A file dockyard renders on a host (config files, config.json)."""

    path: str                 # absolute path on the host
    content: bytes
    host: str
    service: str
    mode: int = 0o600
    unit: str = ""            # the container or job whose config folder holds it


@dataclass(frozen=True)
class WantedJob:
    """A one-shot bootstrap container (create database, db sync, register endpoints).

    It runs once per ``hash``; the hash covers its image id, command, environment and
    config, so a new image (upgrade) or a changed config runs it again. Every job is
    written to be idempotent, so a run killed after the job but before its record was
    kept only repeats harmless work.
    """

    name: str
    host: str
    service: str
    spec: ContainerSpec
    hash: str
    after: tuple[str, ...] = ()     # names of jobs/containers that must be done/healthy first
    # After a change of a secret it reads, the units that make that secret true
    # where it is checked (another service's registration, RabbitMQ): a
    # deploy's order; an upgrade, which moves services in an order of its own
    # and changes no secret, leaves it out.
    secret_after: tuple[str, ...] = ()
    files: tuple[str, ...] = ()     # host paths of WantedFiles it reads
    timeout: float = 900.0
    copy_in: tuple[FileCopy, ...] = field(default=(), repr=False)   # its config, on a remote engine


@dataclass(frozen=True)
class WantedContainer:
    """A long-running service container. ``spec.labels[dockyard.labels.LABEL_HASH]`` is ``hash``."""

    host: str
    service: str
    spec: ContainerSpec
    hash: str
    after: tuple[str, ...] = ()     # names of jobs/containers that must be done/healthy first
    # After a change of a secret it reads, the units that make that secret true
    # where it is checked (another service's registration, RabbitMQ): a
    # deploy's order; an upgrade, which moves services in an order of its own
    # and changes no secret, leaves it out.
    secret_after: tuple[str, ...] = ()
    files: tuple[str, ...] = ()     # host paths of WantedFiles it reads
    volumes: tuple[str, ...] = ()   # named volumes it mounts
    health_timeout: float = 300.0
    ports: tuple[int, ...] = ()     # TCP ports it listens on at its host's address
    address: str = ""               # the host address it binds
    # On a remote engine the config folder is not bind-mounted from this machine's
    # disk: these files are put into the created container before it starts.
    copy_in: tuple[FileCopy, ...] = field(default=(), repr=False)
    remote: bool = False            # its host's engine is remote (ports are not checked from here)
    # The id its image reference resolves to (on its host's engine, or in the
    # site's registry); "" when unknown (images not resolved, or missing).
    image_id: str = ""
    # The Debian packages (names or patterns) its running process is made of:
    # a rebuild of its image that changes none of them keeps it running
    # (dockyard.deploy.plan.inplace).
    restart_packages: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class WantedSharedMount:
    """A host folder that containers bind with shared propagation (/run/netns:
    network namespaces made in one container are seen by the host and the
    others). The engine refuses such a bind unless the folder is a shared mount
    on the host, which it is not after a boot on hosts without systemd; ``spec``
    is the one-shot container that makes it one (idempotent, quick)."""

    path: str
    host: str
    service: str
    spec: ContainerSpec


@dataclass(frozen=True)
class WantedImage:
    """An image a host must hold under ``ref`` (the name its containers use):
    exactly ``id``, pulled from the site's registry as ``source``
    (``registry/namespace/name@sha256:...``, by digest: the bytes that were built)."""

    ref: str
    host: str
    id: str
    source: str


@dataclass
class WantedState:
    images: list[WantedImage] = field(default_factory=list)     # only when the site has a registry
    serial: dict[str, int] = field(default_factory=dict)        # service -> hosts changed at a time
    shared_mounts: list[WantedSharedMount] = field(default_factory=list)
    volumes: list[WantedVolume] = field(default_factory=list)
    files: list[WantedFile] = field(default_factory=list)
    jobs: list[WantedJob] = field(default_factory=list)
    containers: list[WantedContainer] = field(default_factory=list)
    _volume_index: set[tuple[str, str]] = field(default_factory=set, repr=False, compare=False)

    def add_volume(self, name: str, host: str, service: str) -> None:
        """A named volume on a host, once however many units mount it. The index
        keeps this linear in the site's size (a scan of ``volumes`` made building
        the wanted state of 1000 hosts quadratic: bench/planner_scale.py)."""
        if len(self._volume_index) != len(self.volumes):       # appended to directly
            self._volume_index = {(v.name, v.host) for v in self.volumes}
        if (name, host) not in self._volume_index:
            self._volume_index.add((name, host))
            self.volumes.append(WantedVolume(name, host, service))

    def units(self) -> list[WantedJob | WantedContainer]:
        """The jobs, then the containers."""
        return [*self.jobs, *self.containers]

    def services(self) -> set[str]:
        return {c.service for c in self.containers} | {j.service for j in self.jobs}

    def hosts(self) -> set[str]:
        """Every host something is wanted on."""
        return ({c.host for c in self.containers} | {j.host for j in self.jobs} | {v.host for v in self.volumes}
                | {m.host for m in self.shared_mounts})
