"""The engine driver interface.

Everything dockyard does to a container engine goes through :class:`Engine`.
The Docker implementation talks to the engine API with the Docker SDK (the
Docker Engine is the only engine dockyard is tested with).
Unit tests use :class:`dockyard.engine.fake.FakeEngine`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from dockyard.errors import EngineUnavailable

LogSink = Callable[[str], None]

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def brief(exc: BaseException) -> str:
    """Why an engine did not answer, in a few words (``Connection refused``) when
    the error says so among the layers of requests' and urllib3's wording."""
    if isinstance(exc, EngineUnavailable):
        return exc.reason
    text = str(exc) or type(exc).__name__
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip().rstrip(".")
    if "timed out" in text.lower():
        return "timed out"
    return text


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int                      # bytes, as the engine reports it
    layers: tuple[str, ...] = ()   # rootfs layer digests, for distinct-bytes accounting
    digests: tuple[str, ...] = ()  # ``repository@sha256:...`` it was pushed as or pulled by (RepoDigests)


@dataclass(frozen=True)
class Healthcheck:
    """The engine's own health check of a container. The engine runs it every
    ``interval`` for ``docker ps`` and ``dockyard status``; a deploy waiting on
    a container runs the same test itself, every second (health_wait.py), so
    the interval can be long: each check is an exec. The defaults are the
    catalogue's (``HealthSpec``)."""

    test: tuple[str, ...]          # ("CMD", program, args...) | ("CMD-SHELL", "command") | ("NONE",)
    interval: float = 30.0         # seconds
    timeout: float = 10.0
    retries: int = 3
    start_period: float = 300.0    # failures in this time after a start do not count


# The paths under /proc the engine makes read-only by default (its own list);
# a spec with writable_proc_sys keeps all but /proc/sys.
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Bind propagation modes the engine accepts. "shared" lets mounts made inside the
# container (a network namespace under /run/netns) be seen by the host and by
# every other container that binds the same folder.
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True)
class Mount:
    source: str                    # a host path (absolute) or a named volume
    target: str
    read_only: bool = False
    propagation: str | None = None  # bind mounts only; None: the engine's default (rprivate)

    @property
    def is_volume(self) -> bool:
        return not self.source.startswith("/")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that defines a container. Its hash is stored as a label."""

    name: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None    # None: the image's own (dockyard-start)
    environment: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = "host"
    pid_mode: str | None = None
    user: str | None = None
    cap_add: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    restart_policy: str = "unless-stopped"
    tmpfs: tuple[str, ...] = ()
    # No `privileged`: a container gets the capabilities, devices and security
    # options it needs, named, and nothing more.
    devices: tuple[str, ...] = ()          # host device paths, e.g. /dev/net/tun
    security_opt: tuple[str, ...] = ()     # e.g. apparmor=unconfined
    writable_proc_sys: bool = False        # /proc/sys not read-only (the rest of /proc as usual)


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    image_id: str
    image: str                     # the reference it was created from
    labels: dict[str, str]
    status: str                    # created | running | exited | paused | restarting | dead
    health: str | None             # starting | healthy | unhealthy | None when no healthcheck
    started_at: str = ""
    exit_code: int | None = None
    healthcheck: Healthcheck | None = None     # the health check the engine has for it (its test, timeout)

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class FileCopy:
    """A file put into a created container before it starts (``Engine.copy_in``):
    how a remote engine gets a container's configuration, with no file on its
    host's disk that dockyard would have to reach."""

    path: str                      # absolute, in the container
    content: bytes = field(repr=False)
    mode: int = 0o600


@dataclass(frozen=True)
class JobResult:
    exit_code: int
    logs: str


@dataclass(frozen=True)
class ExecResult:
    """A command run in a running container (``Engine.exec_in``)."""

    exit_code: int | None          # None: it did not finish within its timeout
    output: str                    # stdout and stderr, interleaved


class HealthTimeout(Exception):
    """A container did not become healthy in time."""


class ContainerDied(Exception):
    """A container exited while it was awaited."""


class Engine(Protocol):
    """What dockyard needs from a container engine. Nothing more."""

    # -- images --------------------------------------------------------------
    def ping(self) -> None: ...
    def image(self, ref: str) -> ImageInfo | None: ...
    def images(self, label: str | None = None) -> list[ImageInfo]: ...
    def build(
        self,
        context: Path,
        tag: str,
        labels: dict[str, str],
        *,
        nocache: bool = False,
        log: LogSink | None = None,
    ) -> str: ...
    def import_rootfs(self, tarball: Path, tag: str, labels: dict[str, str]) -> str: ...
    def tag(self, ref: str, new_ref: str) -> None: ...
    def tags(self) -> dict[str, str]:
        """Every tag the engine holds -> its image id, in one call (no inspect per image)."""
        ...
    def push(self, ref: str, log: LogSink | None = None) -> str:
        """Push ``ref`` (``registry/namespace/name:tag``) to its registry; returns the
        manifest digest the registry stored it under (``sha256:...``)."""
        ...
    def pull(self, ref: str, log: LogSink | None = None) -> None:
        """Pull ``ref`` from its registry; ``registry/namespace/name@sha256:...`` pulls
        exactly that manifest (no tag is made: :meth:`tag` it)."""
        ...
    def read_file(self, image: str, path: str) -> bytes: ...
    def copy_file(self, image: str, path: str, dest: Path) -> int:
        """Copy the regular file ``path`` of ``image`` to ``dest`` (created or
        truncated; not atomic: callers write a temporary name and rename), without
        starting a container, streamed rather than held in memory. Returns its
        size in bytes. Raises :class:`dockyard.errors.EngineError` when the file is
        missing or not a regular file."""
        ...

    # -- containers ----------------------------------------------------------
    def containers(self, label: str | None = None) -> list[ContainerState]: ...
    def container(self, name: str) -> ContainerState | None: ...
    def create(self, spec: ContainerSpec) -> str: ...
    def start(self, name: str) -> None: ...
    def stop(self, name: str, timeout: int = 10) -> None: ...
    def restart(self, name: str, timeout: int = 10) -> None: ...
    def remove(self, name: str) -> None: ...
    def logs(self, name: str, tail: int = 50) -> str: ...
    def copy_in(self, name: str, files: tuple[FileCopy, ...]) -> None:
        """Put ``files`` (owned by root, each with its mode) into the container
        ``name``, created and not yet started; their folders must exist in the image."""
        ...
    def run_job(self, spec: ContainerSpec, timeout: float = 600, files: tuple[FileCopy, ...] = ()) -> JobResult:
        """Run a one-shot container to completion (``files`` copied in before it starts)."""
        ...
    def exec_in(self, name: str, command: tuple[str, ...], timeout: float) -> ExecResult:
        """Run ``command`` in the running container ``name`` (as its user, with its
        environment, as the engine runs its health check), at most ``timeout``
        seconds. Raises :class:`dockyard.errors.EngineError` when it cannot run
        (the container is not running, or gone)."""
        ...
    def wait_healthy(self, name: str, timeout: float) -> ContainerState:
        """Block until the container's health check passes (or it is running, when
        it has none): its own test, run about every second (health_wait.py).
        Raises :class:`HealthTimeout` (naming what the check last said) or
        :class:`ContainerDied`."""
        ...

    # -- volumes -------------------------------------------------------------
    def volumes(self, label: str | None = None) -> list[VolumeInfo]: ...
    def create_volume(self, name: str, labels: dict[str, str]) -> None: ...
    def remove_volume(self, name: str) -> None: ...
