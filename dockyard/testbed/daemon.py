"""Each host's Docker daemon: start, wait until it answers, stop, clean up.

A host's processes are found by the network namespace they live in (dockerd,
its containerd, the shims, fuse-overlayfs, the containers themselves): that is
the set ``down`` ends, by PID, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import docker.tls

from dockyard.deploy.files import write_atomic

from .net import TestbedError
from .plan import Host

CGROUP_ROOT = Path("/sys/fs/cgroup")
POLL = 0.2            # seconds between two looks at something we wait for
# The hosts run this machine's dockerd (20.10, API 1.41); a fixed version spares
# the SDK its /version request while the client is being made, before
# ``trust_env`` can be switched off.
API_VERSION = "1.41"


def _ns_id(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(netns_path: Path) -> list[int]:
    """Every process whose network namespace is the one bound at ``netns_path``."""
    want = _ns_id(netns_path)
    if want is None:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_id(f"/proc/{entry}/ns/net") == want:
            out.append(int(entry))
    return sorted(out)


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def dockerd_pid(host: Host) -> int | None:
    """The host's running dockerd: the PID in its pidfile, alive, a dockerd, in its namespace."""
    try:
        pid = int(host.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _exe(pid).endswith("/dockerd"):
        return None
    if _ns_id(f"/proc/{pid}/ns/net") != _ns_id(host.netns_path):
        return None
    return pid


def tls_config(host: Host) -> docker.tls.TLSConfig:
    client = host.layout.client_dir
    return docker.tls.TLSConfig(client_cert=(str(client / "cert.pem"), str(client / "key.pem")),
                                ca_cert=str(client / "ca.pem"), verify=True)


def client(host: Host, timeout: int = 60) -> docker.DockerClient:
    """A Docker SDK client for the host's engine, over TCP with the testbed's client certificate.

    ``trust_env`` off: requests would otherwise let ``REQUESTS_CA_BUNDLE`` replace
    the testbed's CA (every TLS call then fails to verify) and route the calls
    through any ``HTTPS_PROXY``; testbed traffic stays between its namespaces.
    """
    c = docker.DockerClient(base_url=host.engine_url, tls=tls_config(host), timeout=timeout,
                            version=API_VERSION)
    c.api.trust_env = False
    return c


def answers(host: Host, timeout: int = 3) -> bool:
    try:
        c = client(host, timeout=timeout)
        try:
            return bool(c.ping())
        finally:
            c.close()
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def write_config(host: Host) -> bool:
    """The daemon's config file; True when it changed (a running daemon must restart)."""
    text = host.daemon_config_text()
    try:
        if host.config_file.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    write_atomic(host.config_file, text, mode=0o644, dir_mode=0o700)
    return True


def start(host: Host) -> subprocess.Popen:
    """Start the host's daemon (the caller knows none runs: see :func:`dockerd_pid`)."""
    host.data_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A pidfile left by a killed daemon makes dockerd refuse to start while the
    # old PID is still a zombie or has been reused.
    host.pidfile.unlink(missing_ok=True)
    log = open(host.log_file, "ab")  # noqa: SIM115 - handed to the daemon, closed here after
    try:
        return subprocess.Popen(host.launch_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    finally:
        log.close()


def _log_tail(host: Host, lines: int = 15) -> str:
    try:
        return "\n".join(host.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(hosts: list[Host], procs: dict[str, subprocess.Popen], timeout: float) -> None:
    """Poll every engine over TLS until it answers ``ping``; fail early when a daemon
    we started exits, and when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    waiting = list(hosts)
    while waiting:
        for host in list(waiting):
            proc = procs.get(host.name)
            if proc is not None and proc.poll() is not None:
                raise TestbedError(f"dockerd of {host.name} exited {proc.returncode}; "
                                   f"its log ({host.log_file}) ends:\n{_log_tail(host)}")
            if answers(host):
                waiting.remove(host)
        if waiting:
            if time.monotonic() > deadline:
                names = ", ".join(h.name for h in waiting)
                raise TestbedError(f"no answer from {names} within {timeout:.0f} s; "
                                   f"{waiting[0].log_file} ends:\n{_log_tail(waiting[0])}")
            time.sleep(POLL)


def _alive(pid: int) -> bool:
    """Running: present and not a zombie (a zombie is gone for us; its parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL)
        alive = [p for p in alive if _alive(p)]
    return alive


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def remove_containers(host: Host) -> int:
    """Remove every container of the host, killed rather than stopped (a testbed's
    containers hold nothing worth a grace period)."""
    c = docker.DockerClient(base_url=host.socket_url, timeout=30, version=API_VERSION)
    c.api.trust_env = False
    try:
        found = c.api.containers(all=True, quiet=True)
        for entry in found:
            try:
                c.api.remove_container(entry["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
        return len(found)
    finally:
        c.close()


def stop(host: Host, timeout: float = 20) -> list[str]:
    """End the host's daemon (its containers removed first, through its socket),
    then every process left in the host's namespace."""
    changes = []
    pid = dockerd_pid(host)
    if pid is not None:
        try:
            removed = remove_containers(host)
            if removed:
                changes.append(f"{removed} container(s) of {host.name} removed")
        except Exception:  # noqa: BLE001 - an engine that does not answer is ended anyway
            pass
        _signal([pid], signal.SIGTERM)
        if _wait_gone([pid], timeout):
            _signal([pid], signal.SIGKILL)
        changes.append(f"dockerd of {host.name} stopped (pid {pid})")
    left = pids_in_netns(host.netns_path)
    if left:
        _signal(left, signal.SIGKILL)
        still = _wait_gone(left, 10)
        if still:
            raise TestbedError(f"processes of {host.name} do not end: {still}")
        changes.append(f"{len(left)} leftover process(es) of {host.name} ended")
    return changes


def remove_cgroups(host: Host) -> list[str]:
    """The cgroups the host's containers had (``cgroup-parent``), deepest first."""
    removed = 0
    for controller in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        top = controller / host.cgroup_parent.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
                removed += 1
            except OSError as exc:
                raise TestbedError(f"cannot remove cgroup {dirpath}: {exc}") from exc
    return [f"{removed} cgroup folder(s) of {host.name} removed"] if removed else []
