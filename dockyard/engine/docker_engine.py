"""The Docker Engine driver, on the Docker SDK for Python.

Every call of the :class:`~dockyard.engine.driver.Engine` interface goes through
:func:`_boundary`: what the SDK, requests and urllib3 raise stops here and
becomes :class:`EngineUnavailable` (the engine did not answer: exit 4, or the
failing action named) or :class:`EngineError` (it answered with an error), so no
caller sees a library's exception, and no operator a traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import shutil
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable, Concatenate, ParamSpec, TypeVar

import docker
import docker.errors
import docker.tls
import requests.exceptions
import urllib3.exceptions
from docker.types import Healthcheck as SdkHealthcheck
from docker.types import Mount as SdkMount

from dockyard.errors import DockyardError, EngineError, EngineUnavailable

from . import health_wait
from .driver import (
    DEFAULT_READONLY_PATHS,
    ContainerSpec,
    ContainerState,
    ExecResult,
    FileCopy,
    Healthcheck,
    ImageInfo,
    JobResult,
    LogSink,
    VolumeInfo,
    brief,
)

_NS = 1_000_000_000
# The API version spoken to an engine named by URL (an inventory host's): pinned,
# so making the client asks nothing of the engine (an unreachable host fails on
# its first real call, not here) and every engine from Docker 20.10 on answers.
PINNED_API_VERSION = "1.41"
PING_TIMEOUT = 10       # seconds a named engine has to answer a ping


# What an engine that is not there (stopped, its socket gone, a host off) makes
# the client raise: no answer came. An answer with an error status is an APIError.
_UNANSWERED = (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
               requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _reason(exc: BaseException) -> str:
    """Why no answer came, in a few words: the innermost socket error's own
    (``Connection refused``, ``No such file or directory``) when there is one."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 12:
        current = stack.pop()
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if isinstance(current, ConnectionError) and str(current):
            return str(current)                 # http.client's "Remote end closed connection without response"
        if isinstance(current, (TimeoutError, requests.exceptions.Timeout, urllib3.exceptions.TimeoutError)):
            return "timed out"
        stack += [a for a in current.args if isinstance(a, BaseException)]
        stack += [e for e in (current.__cause__, current.__context__) if e is not None and e not in seen]
    return brief(exc)


def _unanswered(exc: BaseException) -> bool:
    """Did no answer come, here or in what caused it (the SDK wraps a refused
    connection in a DockerException when it asks the API version)?"""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 6:
        if isinstance(current, docker.errors.APIError):
            return False
        if isinstance(current, _UNANSWERED):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


P = ParamSpec("P")
R = TypeVar("R")


def _boundary(method: Callable[Concatenate[DockerEngine, P], R]) -> Callable[Concatenate[DockerEngine, P], R]:
    """An engine call whose failures leave as the project's own errors."""

    @functools.wraps(method)
    def call(self: DockerEngine, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except DockyardError:
            raise                                       # ours already (a nested call, a clear message)
        except docker.errors.DockerException as exc:
            if _unanswered(exc):
                raise self._unavailable(exc) from exc
            if isinstance(exc, docker.errors.APIError):
                raise EngineError(f"the container engine{self._where()} refused it: {_explanation(exc)}") from exc
            raise EngineError(f"the container engine{self._where()}: {exc}") from exc
        except _UNANSWERED as exc:
            raise self._unavailable(exc) from exc
    return call


def _tmpfs(entries: tuple[str, ...]) -> dict[str, str] | None:
    """``/run:size=64m`` entries as the engine's path -> options (what the SDK
    makes of a list of them)."""
    out = {}
    for entry in entries:
        path, _, options = entry.partition(":")
        out[path] = options
    return out or None


def _explanation(exc: docker.errors.APIError) -> str:
    text = str(exc.explanation or exc)
    return f"{text} (HTTP {exc.status_code})" if exc.status_code else text


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (the engine's archive
    stream), so :mod:`tarfile` can read it as a stream."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class DockerEngine:
    def __init__(self, base_url: str | None = None, timeout: int = 600,
                 tls: tuple[str, str, str] | None = None):
        """``base_url`` None: the engine of the environment (``DOCKER_HOST``, else
        the local socket). Given (``unix://``, ``tcp://`` with ``tls`` = (ca, cert,
        key), ``ssh://`` through the ssh command): the API version is pinned and
        the environment is ignored: ``requests`` would let ``REQUESTS_CA_BUNDLE``
        replace the CA and route the calls through a proxy."""
        self.base_url = base_url or ""
        try:
            if base_url:
                kwargs: dict = {}
                if tls is not None:
                    ca, cert, key = (str(p) for p in tls)
                    kwargs["tls"] = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
                if base_url.startswith("ssh://"):
                    if importlib.util.find_spec("paramiko") is None:
                        # The SDK's ssh transport imports it even to run the ssh command.
                        raise EngineUnavailable(f"an engine at {base_url} needs the paramiko package (the Docker SDK's "
                                          f"ssh transport): pip install 'dockyard[ssh]'")
                    kwargs["use_ssh_client"] = True
                self.client = docker.DockerClient(base_url=base_url, timeout=timeout, version=PINNED_API_VERSION,
                                                  **kwargs)
                self.client.api.trust_env = False
            else:
                self.client = docker.from_env(timeout=timeout)
        except docker.errors.DockerException as exc:
            raise self._unavailable(exc) from exc
        self.api = self.client.api

    def _where(self) -> str:
        return f" at {self.base_url}" if self.base_url else ""

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        reason = _reason(exc)
        return EngineUnavailable(f"cannot reach the container engine{self._where()}: {reason}", reason)

    # -- images ----------------------------------------------------------------
    @_boundary
    def ping(self) -> None:
        try:
            if self.base_url:
                # A named engine may sit behind a host that is off: no refusal ever
                # comes, and the client's timeout (minutes, for long calls) would
                # hold every command. The ping alone gets a short one.
                response = self.api.get(f"{self.api.base_url}/_ping", timeout=PING_TIMEOUT)
                response.raise_for_status()
            else:
                self.api.ping()
        except Exception as exc:  # the SDK raises several unrelated types here; any means no engine
            raise self._unavailable(exc) from exc

    @staticmethod
    def _image_info(attrs: dict) -> ImageInfo:
        config = attrs.get("Config") or {}
        return ImageInfo(
            id=attrs["Id"],
            tags=tuple(attrs.get("RepoTags") or ()),
            labels=dict(config.get("Labels") or attrs.get("Labels") or {}),
            size=int(attrs.get("Size") or 0),
            layers=tuple((attrs.get("RootFS") or {}).get("Layers") or ()),
            digests=tuple(attrs.get("RepoDigests") or ()),
        )

    @_boundary
    def image(self, ref: str) -> ImageInfo | None:
        try:
            return self._image_info(self.api.inspect_image(ref))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.NotFound:
            return None

    @_boundary
    def images(self, label: str | None = None) -> list[ImageInfo]:
        filters = {"label": label} if label else None
        out = []
        for summary in self.api.images(filters=filters):
            try:
                out.append(self._image_info(self.api.inspect_image(summary["Id"])))
            except docker.errors.NotFound:
                continue
        return out

    @_boundary
    def build(self, context: Path, tag: str, labels: dict[str, str], *, nocache: bool = False,
              log: LogSink | None = None) -> str:
        image_id = None
        error = None
        stream = self.api.build(path=str(context), tag=tag, labels=labels, nocache=nocache,
                                rm=True, forcerm=True, decode=True, pull=False)
        for chunk in stream:
            if "stream" in chunk and log:
                text = chunk["stream"].rstrip("\n")
                if text:
                    log(text)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                error = chunk["error"].strip()
                if log:
                    log(f"ERROR: {error}")
        if error:
            raise EngineError(f"build of {tag} failed: {error}")
        info = self.image(tag)
        if info is None:
            raise EngineError(f"build of {tag} produced no image")
        return image_id or info.id

    @_boundary
    def import_rootfs(self, tarball: Path, tag: str, labels: dict[str, str]) -> str:
        repository, _, version = tag.rpartition(":")
        changes = [f'LABEL "{k}"="{v}"' for k, v in labels.items()]
        changes.append('CMD ["/bin/bash"]')
        with open(tarball, "rb") as fh:
            self.api.import_image_from_data(fh.read(), repository=repository, tag=version, changes=changes)
        info = self.image(tag)
        if info is None:
            raise EngineError(f"import of {tag} produced no image")
        return info.id

    @_boundary
    def tag(self, ref: str, new_ref: str) -> None:
        repository, version = self._split(new_ref)
        self.api.tag(ref, repository, version or "latest")

    @_boundary
    def tags(self) -> dict[str, str]:
        out = {}
        for summary in self.api.images():
            for tag in summary.get("RepoTags") or ():
                if tag != "<none>:<none>":
                    out[tag] = summary["Id"]
        return out

    @staticmethod
    def _split(ref: str) -> tuple[str, str | None]:
        """(repository, tag) of ``host:port/path:tag``: the tag is after the last
        colon only when no slash follows it (the port's colon is not a tag's)."""
        repository, sep, tag = ref.rpartition(":")
        if not sep or "/" in tag:
            return ref, None
        return repository, tag

    @_boundary
    def push(self, ref: str, log: LogSink | None = None) -> str:
        repository, version = self._split(ref)
        digest = ""
        try:
            for chunk in self.api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"push of {ref} failed: {chunk['error']}")
                aux = chunk.get("aux") or {}
                if aux.get("Digest"):
                    digest = aux["Digest"]
                if log and "status" in chunk:
                    log(chunk["status"] + (f" {chunk['id']}" if chunk.get("id") else ""))
        except docker.errors.APIError as exc:
            raise EngineError(f"push of {ref} failed: {exc.explanation or exc}") from exc
        if not digest:
            raise EngineError(f"push of {ref}: the engine reported no digest")
        return digest

    @_boundary
    def pull(self, ref: str, log: LogSink | None = None) -> None:
        try:
            for chunk in self.api.pull(ref, stream=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"pull of {ref} failed: {chunk['error']}")
                if log and "status" in chunk:
                    log(chunk["status"] + (f" {chunk['id']}" if chunk.get("id") else ""))
        except docker.errors.APIError as exc:
            raise EngineError(f"pull of {ref} failed: {exc.explanation or exc}") from exc

    @_boundary
    def read_file(self, image: str, path: str) -> bytes:
        """Read one file from an image without starting a container."""
        container = self.api.create_container(image, command=["true"])
        try:
            stream, _ = self.api.get_archive(container["Id"], path)
            buf = io.BytesIO(b"".join(stream))
            with tarfile.open(fileobj=buf) as tar:
                member = tar.next()
                if member is None:
                    raise EngineError(f"{path} is empty in {image}")
                fh = tar.extractfile(member)
                return fh.read() if fh else b""
        except docker.errors.NotFound as exc:
            raise EngineError(f"{path} not found in image {image}") from exc
        finally:
            self.api.remove_container(container["Id"], force=True)

    @_boundary
    def copy_file(self, image: str, path: str, dest: Path) -> int:
        """Stream one regular file out of an image (a created, never started
        container; removed afterwards) into ``dest``."""
        container = self.api.create_container(image, command=["true"])
        try:
            stream, _ = self.api.get_archive(container["Id"], path, chunk_size=1 << 20)
            with tarfile.open(fileobj=_ChunkReader(stream), mode="r|") as tar:
                member = tar.next()
                if member is None or not member.isfile():
                    raise EngineError(f"{path} is not a regular file in image {image}")
                source = tar.extractfile(member)
                if source is None:          # a regular file always has its data; said in case it has not
                    raise EngineError(f"{path} has no data in image {image}")
                with open(dest, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                return member.size
        except docker.errors.NotFound as exc:
            raise EngineError(f"{path} not found in image {image}") from exc
        finally:
            self.api.remove_container(container["Id"], force=True)

    # -- containers --------------------------------------------------------------
    @staticmethod
    def _healthcheck(config: dict) -> Healthcheck | None:
        """The container's health check as the engine holds it (``Config.Healthcheck``,
        the image's merged in); a zero duration or count is the engine's default."""
        hc = config.get("Healthcheck") or {}
        test = tuple(hc.get("Test") or ())
        if not test:
            return None

        def seconds(key: str, default: float) -> float:
            return (hc.get(key) or 0) / _NS or default

        return Healthcheck(test=test, interval=seconds("Interval", 30.0), timeout=seconds("Timeout", 30.0),
                           retries=int(hc.get("Retries") or 3), start_period=seconds("StartPeriod", 0.0))

    @classmethod
    def _state(cls, attrs: dict) -> ContainerState:
        state = attrs.get("State") or {}
        config = attrs.get("Config") or {}
        health = (state.get("Health") or {}).get("Status")
        return ContainerState(
            id=attrs["Id"],
            name=attrs["Name"].lstrip("/"),
            image_id=attrs["Image"],
            image=config.get("Image", ""),
            labels=dict(config.get("Labels") or {}),
            status=state.get("Status", "unknown"),
            health=health,
            started_at=state.get("StartedAt", ""),
            exit_code=state.get("ExitCode"),
            healthcheck=cls._healthcheck(config),
        )

    @_boundary
    def containers(self, label: str | None = None) -> list[ContainerState]:
        filters = {"label": label} if label else None
        out = []
        for summary in self.api.containers(all=True, filters=filters):
            try:
                out.append(self._state(self.api.inspect_container(summary["Id"])))
            except docker.errors.NotFound:  # removed between list and inspect
                continue
        return out

    @_boundary
    def container(self, name: str) -> ContainerState | None:
        try:
            return self._state(self.api.inspect_container(name))
        except docker.errors.NotFound:
            return None

    def _create_kwargs(self, spec: ContainerSpec) -> dict:
        mounts = [
            SdkMount(target=m.target, source=m.source, type="volume" if m.is_volume else "bind",
                     read_only=m.read_only, propagation=m.propagation)
            for m in spec.mounts
        ]
        host_config = self.api.create_host_config(
            mounts=mounts,
            network_mode=spec.network_mode,
            pid_mode=spec.pid_mode,
            devices=[f"{d}:{d}:rwm" for d in spec.devices] or None,
            security_opt=list(spec.security_opt) or None,
            cap_add=list(spec.cap_add) or None,
            restart_policy={"Name": spec.restart_policy} if spec.restart_policy != "no" else None,
            tmpfs=_tmpfs(spec.tmpfs),
        )
        if spec.writable_proc_sys:
            host_config["ReadonlyPaths"] = [p for p in DEFAULT_READONLY_PATHS if p != "/proc/sys"]
        healthcheck = None
        if spec.healthcheck:
            hc = spec.healthcheck
            healthcheck = SdkHealthcheck(
                test=list(hc.test), interval=int(hc.interval * _NS), timeout=int(hc.timeout * _NS),
                retries=hc.retries, start_period=int(hc.start_period * _NS),
            )
        return dict(
            image=spec.image,
            command=list(spec.command) if spec.command else None,
            entrypoint=list(spec.entrypoint) if spec.entrypoint else None,
            environment=dict(spec.environment),
            labels=dict(spec.labels),
            name=spec.name,
            host_config=host_config,
            healthcheck=healthcheck,
            user=spec.user,
            detach=True,
        )

    @_boundary
    def create(self, spec: ContainerSpec) -> str:
        return self.api.create_container(**self._create_kwargs(spec))["Id"]

    @_boundary
    def start(self, name: str) -> None:
        self.api.start(name)

    @_boundary
    def stop(self, name: str, timeout: int = 10) -> None:
        self.api.stop(name, timeout=timeout)

    @_boundary
    def restart(self, name: str, timeout: int = 10) -> None:
        self.api.restart(name, timeout=timeout)

    @_boundary
    def remove(self, name: str) -> None:
        try:
            self.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass

    @_boundary
    def logs(self, name: str, tail: int = 50) -> str:
        try:
            return self.api.logs(name, tail=tail).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return ""

    @_boundary
    def copy_in(self, name: str, files: tuple[FileCopy, ...]) -> None:
        """One tar archive, extracted at / in the container: each file owned by
        root with its own mode (a secret is 0600 from its first byte)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in files:
                info = tarfile.TarInfo(f.path.lstrip("/"))
                info.size, info.mode, info.uid, info.gid = len(f.content), f.mode, 0, 0
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(f.content))
        if not self.api.put_archive(name, "/", buf.getvalue()):
            raise EngineError(f"copying the configuration into {name} failed")

    @_boundary
    def run_job(self, spec: ContainerSpec, timeout: float = 600, files: tuple[FileCopy, ...] = ()) -> JobResult:
        """Run a one-shot container to completion and return its exit code and logs."""
        self.remove(spec.name)
        self.create(spec)
        try:
            if files:
                self.copy_in(spec.name, files)
            self.api.start(spec.name)
            try:
                result = self.api.wait(spec.name, timeout=math.ceil(timeout))
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                # The engine answered the start, then held the wait open as long as
                # it was asked to: the job ran too long (the engine is not gone).
                if _reason(exc) != "timed out":
                    raise
                raise EngineError(f"{spec.name} did not finish within {timeout:.0f}s") from exc
            logs = self.api.logs(spec.name).decode("utf-8", "replace")
            return JobResult(exit_code=int(result.get("StatusCode", 1)), logs=logs)
        finally:
            self.remove(spec.name)

    @_boundary
    def exec_in(self, name: str, command: tuple[str, ...], timeout: float) -> ExecResult:
        """Run ``command`` in ``name`` and collect its output. The engine's attach
        stream has no timeout of its own (the SDK polls its socket without one),
        so the call runs in a thread of its own, awaited ``timeout`` seconds: a
        check that hangs is a failing check, and its thread is left to end when
        the engine closes the stream, as the engine's own health check leaves a
        hung probe."""
        exec_id = self.api.exec_create(name, list(command), stdout=True, stderr=True)["Id"]
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["output"] = self.api.exec_start(exec_id)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"dockyard-exec-{name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return ExecResult(None, f"no answer within {timeout:g}s")
        error = outcome.get("error")
        if isinstance(error, BaseException):
            raise error
        output = outcome.get("output")
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else ""
        code = self.api.exec_inspect(exec_id).get("ExitCode")
        return ExecResult(code if isinstance(code, int) else -1, text)     # no code said: not a pass

    @_boundary
    def wait_healthy(self, name: str, timeout: float) -> ContainerState:
        """Run the container's own health check about every second until it passes
        (health_wait.py): the engine's checks are 30 s apart, too slow to wait on."""
        return health_wait.wait_healthy(self, name, timeout)

    # -- volumes -----------------------------------------------------------------
    @_boundary
    def volumes(self, label: str | None = None) -> list[VolumeInfo]:
        filters = {"label": label} if label else None
        result = self.api.volumes(filters=filters) or {}
        return [VolumeInfo(name=v["Name"], labels=dict(v.get("Labels") or {}))
                for v in result.get("Volumes") or []]

    @_boundary
    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self.api.create_volume(name=name, labels=labels)

    @_boundary
    def remove_volume(self, name: str) -> None:
        try:
            self.api.remove_volume(name)
        except docker.errors.NotFound:
            pass
