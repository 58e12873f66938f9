"""Planner scale: plan time for 1, 10, 100 and 1000 hosts of ~40 containers each.

The planner is a pure function, so this runs with synthetic wanted and observed
states (no engine). Two cases per size: a fresh site (everything to create) and a
converged site (nothing to do, the no-op re-deploy path).

    python3 bench/planner_scale.py [--sizes 1,10,100,1000] [--out bench/results/planner_scale.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from dockyard.deploy.wanted.hashing import spec_hashes
from dockyard.labels import LABEL_HASH
from dockyard.deploy.wanted.model import WantedContainer, WantedFile, WantedState, WantedVolume, unit_key
from dockyard.deploy.plan.observe import ObservedState
from dockyard.deploy.plan.planner import make_plan
from dockyard.engine.driver import ContainerSpec, ContainerState, Healthcheck, Mount

PER_HOST = 40


def synthetic(hosts: int) -> tuple[WantedState, ObservedState]:
    wanted = WantedState()
    observed = ObservedState()
    for h in range(hosts):
        host = f"host{h:04d}"
        previous: tuple[str, ...] = ()
        for i in range(PER_HOST):
            name = f"{host}_svc{i:02d}"
            content = f"[DEFAULT]\nname = {name}\n".encode()
            path = f"/etc/dockyard/generated/{name}/svc.conf"
            spec = ContainerSpec(name=name, image="dockyard/x:1", environment={"A": "1"},
                                 mounts=(Mount(f"vol_{name}", "/var/lib/x"),),
                                 healthcheck=Healthcheck(("CMD", "true")) if i % 4 == 0 else None)
            labels = spec_hashes(spec, {path: content}, "sha256:x", key=b"bench-site-key")
            spec = ContainerSpec(**{**spec.__dict__, "labels": labels})
            after = previous if i % 5 else ()
            wanted.containers.append(WantedContainer(host, f"svc{i % 12}", spec, labels[LABEL_HASH], after,
                                                     (path,), (f"vol_{name}",)))
            wanted.files.append(WantedFile(path, content, host, f"svc{i % 12}", unit=name))
            wanted.volumes.append(WantedVolume(f"vol_{name}", host, f"svc{i % 12}"))
            key = unit_key(name, host, hosts > 1)
            observed.containers[key] = ContainerState(name, name, "sha256:x", "dockyard/x:1", dict(labels),
                                                      "running", "healthy" if spec.healthcheck else None)
            observed.files[path] = content
            observed.volumes.add(unit_key(f"vol_{name}", host, hosts > 1))
            previous = (name,)
    return wanted, observed


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "planner_scale.json")
    args = parser.parse_args()
    rows = []
    for hosts in (int(s) for s in args.sizes.split(",")):
        wanted, observed = synthetic(hosts)
        repeat = 5 if hosts < 1000 else 2
        fresh = timed(lambda: make_plan(wanted, ObservedState()), repeat)  # noqa: B023 (called here, at once)
        noop = timed(lambda: make_plan(wanted, observed), repeat)          # noqa: B023
        assert make_plan(wanted, observed).is_empty()
        rows.append({"hosts": hosts, "containers": hosts * PER_HOST, "fresh_plan_s": round(fresh, 4),
                     "noop_plan_s": round(noop, 4),
                     "fresh_us_per_container": round(fresh / (hosts * PER_HOST) * 1e6, 1)})
        print(f"{hosts:>5} hosts {hosts * PER_HOST:>6} containers  fresh plan {fresh:8.4f}s  "
              f"no-op plan {noop:8.4f}s  ({rows[-1]['fresh_us_per_container']} us/container)")
    # Per step: how much more time per container than the step before (1.0 = linear).
    # Tiny sites fit in the CPU caches, so compare neighbouring sizes, not 1 with 1000.
    steps = []
    for a, b in zip(rows, rows[1:]):
        ratio = b["fresh_us_per_container"] / a["fresh_us_per_container"]
        steps.append({"from": a["hosts"], "to": b["hosts"], "per_container_ratio": round(ratio, 2)})
        print(f"{a['hosts']:>5} -> {b['hosts']:<5} hosts: time per container x{ratio:.2f} (1.0 = linear)")
    growth = steps[-1]["per_container_ratio"] if steps else 1.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "planner_scale", "machine": platform.node(),
                                    "cpus": __import__("os").cpu_count(), "rows": rows,
                                    "steps": steps, "last_step_vs_linear": growth}, indent=2))


if __name__ == "__main__":
    main()
