"""Is this host ready? Engine, ports, memory, kernel modules, with advice."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dockyard.engine import connect
from dockyard.errors import DockyardError

from .catalogue import load_services
from .model import LABEL_MANAGED
from .site import load_globals


def _mem_total_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def run_prechecks(config_dir: Path, say=print) -> list[str]:
    problems: list[str] = []
    services = load_services()
    g = load_globals(config_dir, set(services.services)) if config_dir.is_dir() else None
    enabled = services.closure(g.enabled_services if g else [])
    address = g.internal_address if g else "127.0.0.1"
    try:
        engine = connect(g.engine if g else "docker")
        engine.ping()
        say("ok    container engine reachable")
        ours = {c.name for c in engine.containers(label=f"{LABEL_MANAGED}=true")}
    except DockyardError as exc:
        problems.append(f"container engine: {exc}")
        say(f"FAIL  {problems[-1]} (is the Docker daemon running? is DOCKER_HOST right?)")
        ours = set()
    for name in enabled:
        for cname, c in services.services[name].spec.containers.items():
            if cname.replace("-", "_") in ours:
                continue
            for port in c.ports:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((address, port))
                except OSError:
                    problems.append(f"port {port} on {address} is in use ({cname} needs it)")
                    say(f"FAIL  {problems[-1]}: stop what holds it, or set internal_address")
                finally:
                    sock.close()
    mem = _mem_total_gib()
    if mem < 8:
        problems.append(f"memory {mem:.1f} GiB (8 GiB or more advised)")
        say(f"WARN  {problems[-1]}")
    else:
        say(f"ok    memory {mem:.1f} GiB")
    needs_ovs = any(services.services[n].spec.containers.get(c).group in ("network", "compute")
                    for n in enabled for c in services.services[n].spec.containers)
    if needs_ovs and not os.path.exists("/sys/module/openvswitch"):
        problems.append("kernel module openvswitch is not loaded")
        say(f"FAIL  {problems[-1]}: run `modprobe openvswitch`")
    say(f"{len(problems)} problems" if problems else "all prechecks passed")
    return problems
