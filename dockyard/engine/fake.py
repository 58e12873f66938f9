"""An in-memory engine for unit tests: no Docker needed.

It records every call in ``calls`` so tests can assert what was done, and can be
told to fail builds (``fail_builds``: image tag -> number of failures before success,
or -1 for always) or to leave containers unhealthy (``unhealthy``: the engine says
so and their health check fails). A container with a health check is healthy as
soon as it starts, unless named in ``starting`` (the engine's own check has not
run yet: it stays ``starting``, as for the first 30 s of a real one). What a
health check run through ``exec_in`` gives can be scripted (``exec_results``, and
``on_exec`` to act as it runs: a container that dies mid-wait). ``wait_healthy``
is the real wait (health_wait.py) on a clock of its own: a wait of minutes ends
at once, with no sleep. With ``down`` set, every engine call raises what the
real driver raises for an engine that is not running: :class:`EngineUnavailable`
(from a ``ConnectionRefusedError``).
Engines given one :class:`FakeRegistry` push to and pull from it, by digest, as
real engines do through a registry.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from dockyard.errors import EngineError, EngineUnavailable

from . import health_wait
from .driver import (
    ContainerSpec,
    ContainerState,
    ExecResult,
    FileCopy,
    ImageInfo,
    JobResult,
    LogSink,
    VolumeInfo,
)


def _matches(labels: dict[str, str], label: str | None) -> bool:
    if label is None:
        return True
    key, _, value = label.partition("=")
    if key not in labels:
        return False
    return not value or labels[key] == value


# The engine calls: what fails while the fake is ``down``.
_CALLS = frozenset({"ping", "image", "images", "build", "import_rootfs", "tag", "tags", "push", "pull", "read_file",
                    "copy_file",
                    "containers", "container", "create", "start", "stop", "restart", "remove", "logs", "copy_in",
                    "run_job", "exec_in", "wait_healthy", "volumes", "create_volume", "remove_volume"})


def _split(ref: str, address: str) -> tuple[str, str]:
    """(repository, tag or digest) of ``address/path:tag`` or ``address/path@sha256:...``;
    the repository is the path, as the registry knows it."""
    ref = ref.removeprefix(address + "/")
    if "@" in ref:
        repository, _, digest = ref.partition("@")
        return repository, digest
    repository, _, tag = ref.rpartition(":")
    return repository, tag


class FakeRegistry:
    """A registry in memory: repository -> tag -> manifest digest, and digest ->
    the image it holds. A manifest's digest depends on the image only, as a real
    one's does on its content. Also a :class:`dockyard.registry.client.ImageSource`."""

    def __init__(self, address: str = "registry.test:5000") -> None:
        self.address = address
        self.tags: dict[str, dict[str, str]] = {}
        self.manifests: dict[str, ImageInfo] = {}
        self.pushed: list[str] = []          # refs whose bytes were sent (not already there)
        self.pulled: list[str] = []

    @staticmethod
    def digest_of(info: ImageInfo) -> str:
        return "sha256:" + hashlib.sha256(b"manifest " + info.id.encode()).hexdigest()

    def lookup(self, repository: str, reference: str):
        """(manifest digest, image id) of ``repository`` at a tag, or None."""
        from dockyard.registry.client import RegistryImage

        digest = reference if reference.startswith("sha256:") else self.tags.get(repository, {}).get(reference)
        info = self.manifests.get(digest) if digest else None
        return RegistryImage(digest, info.id) if digest and info is not None else None


class FakeClock:
    """Time that passes only when slept: a health wait of minutes in no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeEngine:
    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        """Down: every engine call raises, as an engine that is not running
        does (instance attributes shadow the methods; none while it is up)."""
        self._down = bool(value)
        for name in _CALLS:
            if self._down:
                setattr(self, name, self._refuse)
            else:
                self.__dict__.pop(name, None)

    def _refuse(self, *args, **kwargs):
        cause = ConnectionRefusedError(111, "Connection refused")
        raise EngineUnavailable(f"cannot reach the container engine at {self.url}: Connection refused",
                                "Connection refused") from cause

    def __init__(self, url: str = "fake://", registry: FakeRegistry | None = None) -> None:
        self.url = url
        self.registry = registry
        self._down = False
        self.copied: dict[str, dict[str, tuple[bytes, int]]] = {}   # container -> path -> (content, mode)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.images_by_tag: dict[str, ImageInfo] = {}
        self.containers_by_name: dict[str, tuple[ContainerSpec, ContainerState]] = {}
        self.volumes_by_name: dict[str, VolumeInfo] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.calls: list[tuple] = []
        self.fail_builds: dict[str, int] = {}
        self.unhealthy: set[str] = set()
        self.starting: set[str] = set()          # the engine's own check has not reported yet
        # container -> what its execs give, in turn (the last one again and again)
        self.exec_results: dict[str, list[ExecResult]] = {}
        self.on_exec: Callable[[str, tuple[str, ...]], None] | None = None   # called as each exec runs
        self.job_results: dict[str, JobResult] = {}
        self.jobs_run: list[str] = []

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):012d}"

    def _record(self, *call) -> None:
        with self._lock:
            self.calls.append(call)

    # -- images ------------------------------------------------------------------
    def ping(self) -> None:
        return None

    def add_image(self, tag: str, labels: dict[str, str] | None = None, size: int = 1000) -> ImageInfo:
        info = ImageInfo(id="sha256:" + hashlib.sha256(tag.encode()).hexdigest(), tags=(tag,),
                         labels=dict(labels or {}), size=size, layers=(tag,))
        self.images_by_tag[tag] = info
        return info

    def image(self, ref: str) -> ImageInfo | None:
        if ref in self.images_by_tag:
            return self.images_by_tag[ref]
        for info in self.images_by_tag.values():
            if info.id == ref:
                return info
        return None

    def images(self, label: str | None = None) -> list[ImageInfo]:
        return [i for i in self.images_by_tag.values() if _matches(i.labels, label)]

    def build(self, context: Path, tag: str, labels: dict[str, str], *, nocache: bool = False,
              log: LogSink | None = None) -> str:
        self._record("build", tag)
        with self._lock:
            remaining = self.fail_builds.get(tag, 0)
            if remaining:
                if remaining > 0:
                    self.fail_builds[tag] = remaining - 1
                fail = True
            else:
                fail = False
        if log:
            log(f"fake build of {tag} from {context}")
        if fail:
            raise EngineError(f"build of {tag} failed: injected failure")
        dockerfile = (Path(context) / "Dockerfile")
        digest = hashlib.sha256((dockerfile.read_text() if dockerfile.exists() else tag).encode()).hexdigest()
        info = ImageInfo(id="sha256:" + digest, tags=(tag,), labels=dict(labels), size=1000, layers=(digest,))
        with self._lock:
            self.images_by_tag[tag] = info
        return info.id

    def import_rootfs(self, tarball: Path, tag: str, labels: dict[str, str]) -> str:
        self._record("import", tag)
        return self.add_image(tag, labels).id

    def tag(self, ref: str, new_ref: str) -> None:
        self._record("tag", ref, new_ref)
        info = self.image(ref)
        if info is None:
            raise EngineError(f"no such image {ref}")
        self.images_by_tag[new_ref] = replace(info, tags=info.tags + (new_ref,))

    def tags(self) -> dict[str, str]:
        return {tag: info.id for tag, info in self.images_by_tag.items() if "@" not in tag}

    def _registry(self, ref: str) -> FakeRegistry:
        if self.registry is None or not ref.startswith(self.registry.address + "/"):
            raise EngineError(f"{ref}: no such registry (fake engine {self.url})")
        return self.registry

    def push(self, ref: str, log: LogSink | None = None) -> str:
        self._record("push", ref)
        info = self.image(ref)
        if info is None:
            raise EngineError(f"push of {ref} failed: no such image")
        if self.registry is None:                   # nowhere to keep it: only its digest
            return FakeRegistry.digest_of(info)
        registry = self._registry(ref)
        repository, tag = _split(ref, registry.address)
        digest = registry.digest_of(info)
        with self._lock:
            if digest not in registry.manifests:
                registry.pushed.append(ref)
            registry.manifests[digest] = replace(info, tags=(), digests=())
            registry.tags.setdefault(repository, {})[tag] = digest
            entry = f"{registry.address}/{repository}@{digest}"
            if entry not in info.digests:
                info = replace(info, digests=info.digests + (entry,))
                for name, other in list(self.images_by_tag.items()):
                    if other.id == info.id:
                        self.images_by_tag[name] = replace(other, digests=info.digests)
        return digest

    def pull(self, ref: str, log: LogSink | None = None) -> None:
        self._record("pull", ref)
        registry = self._registry(ref)
        repository, reference = _split(ref, registry.address)
        found = registry.lookup(repository, reference)
        if found is None:
            raise EngineError(f"pull of {ref} failed: manifest unknown")
        with self._lock:
            registry.pulled.append(ref)
            info = registry.manifests[found.digest]
            entry = f"{registry.address}/{repository}@{found.digest}"
            # Pulled by digest: no tag, reachable by its id and by that digest.
            self.images_by_tag[entry] = replace(info, digests=(entry,))
            if not reference.startswith("sha256:"):
                self.images_by_tag[ref] = replace(info, tags=(ref,), digests=(entry,))

    def read_file(self, image: str, path: str) -> bytes:
        if self.image(image) is None:           # as the real engine, which makes a container of it to read
            raise EngineError(f"no such image: {image}")
        try:
            return self.files[(image, path)]
        except KeyError as exc:
            raise EngineError(f"{path} not found in image {image}") from exc

    def copy_file(self, image: str, path: str, dest: Path) -> int:
        self._record("copy_file", image, path, str(dest))
        data = self.read_file(image, path)
        Path(dest).write_bytes(data)
        return len(data)

    # -- containers -----------------------------------------------------------------
    def containers(self, label: str | None = None) -> list[ContainerState]:
        return [st for _, st in self.containers_by_name.values() if _matches(st.labels, label)]

    def container(self, name: str) -> ContainerState | None:
        entry = self.containers_by_name.get(name)
        return entry[1] if entry else None

    def spec(self, name: str) -> ContainerSpec:
        return self.containers_by_name[name][0]

    def create(self, spec: ContainerSpec) -> str:
        self._record("create", spec.name)
        if spec.name in self.containers_by_name:
            raise EngineError(f"container {spec.name} already exists")
        image = self.image(spec.image)
        if image is None:
            raise EngineError(f"no such image {spec.image}")
        for m in spec.mounts:
            if m.is_volume and m.source not in self.volumes_by_name:
                self.volumes_by_name[m.source] = VolumeInfo(m.source, {})
        state = ContainerState(id=self._next_id("c"), name=spec.name, image_id=image.id, image=spec.image,
                               labels=dict(spec.labels), status="created", health=None,
                               healthcheck=spec.healthcheck)
        self.containers_by_name[spec.name] = (spec, state)
        return state.id

    def _set(self, name: str, **changes) -> None:
        spec, state = self.containers_by_name[name]
        self.containers_by_name[name] = (spec, replace(state, **changes))

    def start(self, name: str) -> None:
        self._record("start", name)
        spec, _ = self.containers_by_name[name]
        health = None                       # no health check (or NONE): the engine reports none
        if spec.healthcheck and not health_wait.disabled(spec.healthcheck):
            health = "healthy"
            if name in self.starting:
                health = "starting"
            if name in self.unhealthy:
                health = "unhealthy"
        self._set(name, status="running", health=health, started_at=self._next_id("t"))

    def stop(self, name: str, timeout: int = 10) -> None:
        self._record("stop", name)
        self._set(name, status="exited", health=None, exit_code=0)

    def restart(self, name: str, timeout: int = 10) -> None:
        self._record("restart", name)
        self.start(name)

    def remove(self, name: str) -> None:
        self._record("remove", name)
        self.containers_by_name.pop(name, None)
        self.copied.pop(name, None)

    def logs(self, name: str, tail: int = 50) -> str:
        return f"fake logs of {name}\n"

    def copy_in(self, name: str, files: tuple[FileCopy, ...]) -> None:
        self._record("copy_in", name)
        if name not in self.containers_by_name:
            raise EngineError(f"no such container {name}")
        with self._lock:
            self.copied.setdefault(name, {}).update({f.path: (f.content, f.mode) for f in files})

    def run_job(self, spec: ContainerSpec, timeout: float = 600, files: tuple[FileCopy, ...] = ()) -> JobResult:
        self._record("job", spec.name)
        if self.image(spec.image) is None:
            raise EngineError(f"no such image {spec.image}")
        if files:
            with self._lock:
                self.copied[spec.name] = {f.path: (f.content, f.mode) for f in files}
        with self._lock:
            self.jobs_run.append(spec.name)
        return self.job_results.get(spec.name, JobResult(0, "ok\n"))

    def exec_in(self, name: str, command: tuple[str, ...], timeout: float) -> ExecResult:
        """The next of ``exec_results[name]``; without a script, a pass, or a
        failure for an ``unhealthy`` container. Refused, as by a real engine,
        when the container is not running (``on_exec`` may have stopped it)."""
        self._record("exec", name, tuple(command))
        if self.on_exec is not None:
            self.on_exec(name, tuple(command))
        state = self.container(name)
        if state is None:
            raise EngineError(f"no such container: {name}")
        if not state.running:
            raise EngineError(f"container {name} is not running")
        with self._lock:
            script = self.exec_results.get(name)
            if script:
                return script.pop(0) if len(script) > 1 else script[0]
        if name in self.unhealthy:
            return ExecResult(1, f"{name} is unhealthy (fake engine)\n")
        return ExecResult(0, "")

    def wait_healthy(self, name: str, timeout: float) -> ContainerState:
        self._record("wait", name)
        clock = FakeClock()
        return health_wait.wait_healthy(self, name, timeout, clock=clock, sleep=clock.sleep)

    # -- volumes ---------------------------------------------------------------------
    def volumes(self, label: str | None = None) -> list[VolumeInfo]:
        return [v for v in self.volumes_by_name.values() if _matches(v.labels, label)]

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self._record("create_volume", name)
        self.volumes_by_name[name] = VolumeInfo(name, dict(labels))

    def remove_volume(self, name: str) -> None:
        self._record("remove_volume", name)
        self.volumes_by_name.pop(name, None)
