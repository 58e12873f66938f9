"""``up``, ``down``, ``status`` and ``load``: the testbed as a whole.

``up N`` converges on hosts 1..N (more hosts are added, hosts beyond N are left
alone), ``down`` removes hosts (all by default) and, with the last one, the
switch, the certificates and the state folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from dockyard.deploy.files import write_atomic

from . import daemon, net, tls
from .net import TestbedError
from .plan import (
    DEFAULT_STORAGE_DRIVER,
    DEFAULT_SUBNET,
    DEFAULT_TUNNEL_SUBNET,
    NETNS_DIR,
    PREFIX,
    SWITCH_NETNS,
    Host,
    Layout,
    Subnet,
    plan_hosts,
)

SETTINGS = "testbed.json"
_HOST_DIR = re.compile(rf"^{PREFIX}-h(\d+)$")


@dataclass
class Testbed:
    __test__ = False  # not a pytest class, whatever its name

    layout: Layout = field(default_factory=Layout)
    subnet: Subnet | None = None             # None: the one in use, else the default
    storage_driver: str | None = None
    tunnel_subnet: Subnet | None = None      # None: the one in use, else the default

    # -- settings ----------------------------------------------------------------
    def _settings_path(self) -> Path:
        return self.layout.state_dir / SETTINGS

    def _saved(self) -> dict:
        try:
            return json.loads(self._settings_path().read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _resolve(self) -> tuple[Subnet, str, Subnet]:
        saved = self._saved()
        subnet = self.subnet or Subnet.parse(saved.get("subnet", DEFAULT_SUBNET))
        driver = self.storage_driver or saved.get("storage_driver", DEFAULT_STORAGE_DRIVER)
        tunnel = self.tunnel_subnet or Subnet.parse(saved.get("tunnel_subnet", DEFAULT_TUNNEL_SUBNET))
        # A testbed made before the tunnel network existed saved no tunnel subnet:
        # its hosts have no eth1 yet, so any subnet may be chosen for them.
        if saved and self.existing() and (str(subnet.network) != saved.get("subnet")
                                          or driver != saved.get("storage_driver")
                                          or saved.get("tunnel_subnet", str(tunnel.network)) != str(tunnel.network)):
            raise TestbedError(f"the testbed runs with subnet {saved.get('subnet')}, tunnel subnet "
                               f"{saved.get('tunnel_subnet', 'none')} and storage driver "
                               f"{saved.get('storage_driver')}: run down first to change them")
        return subnet, driver, tunnel

    def host(self, index: int) -> Host:
        subnet, driver, tunnel = self._resolve()
        return Host(index, subnet, self.layout, driver, tunnel)

    def existing(self) -> list[int]:
        """Hosts with anything left of them: a state folder or a namespace."""
        found = set()
        names = net.netns_names()
        try:
            names += os.listdir(self.layout.hosts_dir)
        except FileNotFoundError:
            pass
        for name in names:
            m = _HOST_DIR.match(name)
            if m:
                found.add(int(m.group(1)))
        return sorted(found)

    @contextmanager
    def _locked(self):
        self.layout.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.layout.lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- up ----------------------------------------------------------------------
    def up(self, count: int, timeout: float = 90) -> tuple[list[Host], list[str]]:
        with self._locked():
            subnet, driver, tunnel = self._resolve()
            hosts = plan_hosts(count, subnet, self.layout, driver, tunnel)
            changes: list[str] = []
            settings = json.dumps({"subnet": str(subnet.network), "storage_driver": driver,
                                   "tunnel_subnet": str(tunnel.network)}, indent=2, sort_keys=True) + "\n"
            if not self._settings_path().exists() or self._settings_path().read_text() != settings:
                write_atomic(self._settings_path(), settings)
            conflicts = net.conflicting_routes(subnet)
            if conflicts:
                raise TestbedError(f"the testbed subnet {subnet.network} overlaps routes of this "
                                   f"machine: {', '.join(conflicts)} (choose another with --subnet)")
            if not NETNS_DIR.exists() and not self.layout.netns_marker.exists():
                write_atomic(self.layout.netns_marker, "created by the testbed's first up\n")
            changes += net.ensure_switch(subnet)
            ca, changed = tls.ensure_ca(self.layout)
            if changed:
                changes.append("testbed CA made")
            if tls.ensure_client(self.layout, ca):
                changes.append("client certificate made")
            procs = {}
            for host in hosts:
                changes += net.ensure_host_net(host)
                restart = tls.ensure_server(host, ca)
                if restart:
                    changes.append(f"server certificate of {host.name} made")
                if daemon.write_config(host):
                    changes.append(f"daemon config of {host.name} written")
                    restart = True
                running = daemon.dockerd_pid(host) is not None
                if running and not restart:
                    continue
                changes += daemon.stop(host)      # a changed config, or leftovers of a killed run
                procs[host.name] = daemon.start(host)
                changes.append(f"dockerd of {host.name} started (pid {procs[host.name].pid})")
            daemon.wait_ready(hosts, procs, timeout)
            return hosts, changes

    # -- down --------------------------------------------------------------------
    def down(self, indexes: list[int] | None = None) -> list[str]:
        if not self.layout.state_dir.exists() and not self.existing() and not net.netns_exists(SWITCH_NETNS):
            return []
        with self._locked():
            subnet, driver, tunnel = self._resolve()
            present = self.existing()
            targets = present if indexes is None else [i for i in indexes if i in present]
            changes: list[str] = []
            hosts = [Host(i, subnet, self.layout, driver, tunnel) for i in sorted(targets, reverse=True)]
            # The daemons end side by side (each waits on its own processes).
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
                for done in pool.map(daemon.stop, hosts):
                    changes += done
            for host in hosts:
                changes += daemon.remove_cgroups(host)
                changes += net.delete_host_net(host)
                changes += _unmount_under(host.dir)
                if host.dir.exists():
                    shutil.rmtree(host.dir)
                    changes.append(f"state of {host.name} removed")
            if self.existing():
                return changes
            changes += net.delete_switch()
            created_run_netns = self.layout.netns_marker.exists()
            changes += _unmount_under(self.layout.state_dir)
            shutil.rmtree(self.layout.state_dir)
            changes.append(f"{self.layout.state_dir} removed")
        if created_run_netns and NETNS_DIR.is_dir() and not os.listdir(NETNS_DIR):
            if str(NETNS_DIR) in net.mount_points():
                net.run(["umount", str(NETNS_DIR)])
            NETNS_DIR.rmdir()
            changes.append(f"{NETNS_DIR} removed (the testbed made it)")
        return changes

    # -- status ------------------------------------------------------------------
    def status(self) -> list[dict]:
        rows = []
        for index in self.existing():
            host = self.host(index)
            row = {"host": host.name, "address": host.address, "tunnel_address": host.tunnel_address,
                   "engine": host.engine_url,
                   "namespace": net.netns_exists(host.netns), "pid": daemon.dockerd_pid(host),
                   "answers": False, "containers": None, "images": None}
            if row["pid"]:
                try:
                    c = daemon.client(host, timeout=5)
                    info = c.info()
                    row.update(answers=True, containers=info.get("ContainersRunning"),
                               images=info.get("Images"))
                    c.close()
                except Exception:  # noqa: BLE001 - shown as not answering
                    pass
            rows.append(row)
        return rows

    # -- images ------------------------------------------------------------------
    def load_image(self, ref: str, indexes: list[int] | None = None,
                   source_url: str = "unix:///var/run/docker.sock") -> list[str]:
        """Copy ``ref`` from the machine's engine (only read) into testbed hosts that
        lack it: ``docker save`` streamed into ``docker load`` through the SDK."""
        source = docker.DockerClient(base_url=source_url, timeout=600)
        try:
            try:
                want = source.api.inspect_image(ref)["Id"]
            except docker.errors.NotFound:
                raise TestbedError(f"image {ref} is not on the engine at {source_url}") from None
            changes = []
            for index in indexes or self.existing():
                host = self.host(index)
                target = daemon.client(host, timeout=600)
                try:
                    try:
                        if target.api.inspect_image(ref)["Id"] == want:
                            continue
                    except docker.errors.NotFound:
                        pass
                    started = time.monotonic()
                    for _ in target.api.load_image(source.api.get_image(ref)):
                        pass
                    if target.api.inspect_image(ref)["Id"] != want:
                        raise TestbedError(f"{ref} loaded into {host.name} has another id")
                    changes.append(f"{ref} loaded into {host.name} in {time.monotonic() - started:.1f} s")
                finally:
                    target.close()
            return changes
        finally:
            source.close()


def _unmount_under(folder: Path) -> list[str]:
    """Unmount anything mounted under ``folder`` in this namespace (there should be
    nothing: the hosts' mounts live in their own namespaces), so removing the
    folder never reaches through a mount."""
    prefix = str(folder.resolve())
    points = [p for p in net.mount_points() if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(points, reverse=True):
        net.run(["umount", "-l", point])
    return [f"{len(points)} stray mount(s) under {prefix} removed"] if points else []
