"""Planner scale: the real pipeline's wanted state and plans for sites of 1, 10, 100 and 1000 hosts.

Each size is a real site in a temporary folder: the default ``globals.yml`` (as
``dockyard up`` writes it), passwords made as ``dockyard genpwd`` makes them, and an
``inventory.yml`` of one control host ``ctl`` (groups control and network) and
N-1 compute hosts ``cmp0001``... (group compute); a site of one host has it in
every group (the all-in-one). Every host names its own engine over TCP with TLS,
as on the testbed, and each is a fake engine (``dockyard.engine.fake``) holding
every image of the catalogue, so nothing runs, and nothing is asked of the
machine's engine. The real catalogue (``services/``) and the real builder give
the real host-qualified names (``create:nova_compute@cmp0042``).

Measured per size:

- build: ``api.prepare``, what every deploy does first: load and validate the
  site and the catalogue, ask each host's engine for its images, render every
  file (best of ``--repeat``);
- fresh plan: ``make_plan`` against what ``observe()`` sees on the empty engines;
- no-op plan: ``make_plan`` against a converged site. The converged state comes
  the real way: ``api.deploy`` runs the real executor once against the fake
  engines, then ``observe()`` reads them (containers, labels, volumes, the jobs
  record) as a re-deploy would. Cheap enough to do at every size; the time of
  that deploy is not a figure (the fake engine does nothing).

Each time is the best of the repeats, as wall time and as this process's CPU
time: on a shared machine the wall time holds the other processes' turns, the
CPU time much less so, and the growth against linear is read from it. The
planner's figures are for the planner alone; observing real engines over the
network is not part of them. A no-op plan that is not empty stops the run (it
would be a figure for a plan that does something). Figures only, no timed
assertions; the load average is printed with them.

    python3 bench/planner_scale.py [--sizes 1,10,100,1000] [--repeat 3] [--out bench/results/planner_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dockyard.cli.passwords import password_names
from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.plan.observe import ObservedState, observe
from dockyard.deploy.plan.planner import make_plan
from dockyard.deploy.site.loader import write_defaults
from dockyard.deploy.site.passwords import PASSWORDS_FILE, generate_passwords
from dockyard.deploy.wanted.builder import site_id
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.engine.fake import FakeEngine

CONTROL = "ctl"
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


def host_names(hosts: int) -> list[str]:
    return [CONTROL, *(f"cmp{i:04d}" for i in range(1, hosts))]


def address(i: int) -> str:
    """The i-th host's address, in a private /16 (room for 65 000 hosts)."""
    n = i + 1
    return f"10.20.{n // 256}.{n % 256}"


def engine_url(i: int) -> str:
    return f"tcp://{address(i)}:2376"


def write_site(folder: Path, hosts: int) -> Path:
    """A site of ``hosts`` hosts in ``folder`` (made); returns its config folder."""
    config_dir = Path(folder) / "site"
    write_defaults(config_dir)
    globals_path = config_dir / "globals.yml"
    # The services' shared address is the control host's, as on a real multi-host site.
    globals_path.write_text(globals_path.read_text().replace("internal_address: 127.0.0.1",
                                                             f"internal_address: {address(0)}"))
    generate_passwords(config_dir / PASSWORDS_FILE, password_names())      # what `dockyard genpwd` does
    # The loader wants the client certificate files present; nothing connects
    # with them (every engine is a fake), so they hold no key.
    (config_dir / "tls").mkdir()
    for name in TLS_FILES:
        (config_dir / "tls" / name).write_text("bench: not a certificate\n")
    names = host_names(hosts)
    inventory = {
        "hosts": {name: {"address": address(i), "engine": engine_url(i),
                         "tls": {key: f"tls/{key}.pem" for key in ("ca", "cert", "key")}}
                  for i, name in enumerate(names)},
        "groups": {"control": [CONTROL], "network": [CONTROL], "compute": names[1:] or [CONTROL]},
    }
    (config_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return config_dir


def fake_engines(hosts: int) -> SiteEngines:
    """One fake engine per host, each holding every image of the catalogue (as built and pulled)."""
    catalogue = load_services()
    refs = [f"dockyard/{image}:2025.1" for image in catalogue.images(sorted(catalogue.services))]
    by_host, urls = {}, {}
    for i, name in enumerate(host_names(hosts)):
        engine = FakeEngine(engine_url(i))
        for ref in refs:
            engine.add_image(ref)
        by_host[name], urls[name] = engine, engine_url(i)
    return SiteEngines(by_host, urls=urls)


def quiet(_line: str) -> None:
    pass


@dataclass
class Bench:
    """A site on disk and its engines, and the pipeline's steps on them."""

    config_dir: Path
    engines: SiteEngines

    def prepare(self) -> api.Prepared:
        return api.prepare(self.config_dir, self.engines)

    def observed(self, prepared: api.Prepared) -> ObservedState:
        site = prepared.site
        return observe(self.engines, prepared.wanted, site.state_dir, site_id(site), hosts=list(site.inventory.hosts))

    def converge(self) -> None:
        """Deploy with the real executor on the fake engines; the run must succeed."""
        result = api.deploy(self.config_dir, engine=self.engines, say=quiet)
        if not result.ok:
            failed = [o.line() for o in result.outcomes if o.result != "ok"][:5]
            raise SystemExit(f"the deploy on the fake engines failed: {failed}")


def make_bench(folder: Path, hosts: int) -> Bench:
    return Bench(write_site(folder, hosts), fake_engines(hosts))


@dataclass
class Timing:
    wall: float        # seconds, best of the repeats
    cpu: float         # this process's CPU seconds, best of the repeats: what a busy machine's waits leave out


def timed(fn, repeat: int) -> tuple[Timing, object]:
    """Best wall and CPU time of ``repeat`` calls, and the last call's result."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return Timing(wall, cpu), result


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(hosts: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dockyard-planner-bench-") as folder:
        bench = make_bench(Path(folder), hosts)
        build, prepared = timed(bench.prepare, repeat)
        wanted = prepared.wanted
        fresh_observed = bench.observed(prepared)
        fresh_t, fresh = timed(lambda: make_plan(wanted, fresh_observed), repeat)
        bench.converge()
        converged = bench.observed(prepared)
        noop_t, noop = timed(lambda: make_plan(wanted, converged), repeat)
    if not noop.is_empty():
        raise SystemExit(f"{hosts} hosts: the no-op plan is not empty: {[a.id for a in noop.actions][:5]}")
    last = host_names(hosts)[-1]
    actions = len(fresh.actions)
    return {"hosts": hosts, "containers": len(wanted.containers), "jobs": len(wanted.jobs),
            "fresh_actions": actions, "noop_actions": len(noop.actions),
            "example_id": next((a.id for a in fresh.actions if a.host == last and a.target == "nova_compute"
                                and a.kind == "create"), ""),
            "build_s": round(build.wall, 4), "build_cpu_s": round(build.cpu, 4),
            "fresh_plan_s": round(fresh_t.wall, 4), "fresh_plan_cpu_s": round(fresh_t.cpu, 4),
            "noop_plan_s": round(noop_t.wall, 4), "noop_plan_cpu_s": round(noop_t.cpu, 4),
            "fresh_cpu_us_per_action": round(fresh_t.cpu / actions * 1e6, 1),
            "load_average": load(),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="host counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each timed step")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "planner_scale.json")
    args = parser.parse_args()
    cpus = os.cpu_count()
    print(f"{platform.node()}: {cpus} cpus, load average {load()} (1, 5, 15 min) at the start")
    print("seconds: wall (CPU of this process), best of the repeats")
    rows = []
    print(f"{'hosts':>5} {'containers':>10} {'jobs':>4} {'actions':>7} {'build':>16} {'fresh plan':>16} "
          f"{'no-op plan':>16}  load average, example id")
    for hosts in (int(s) for s in args.sizes.split(",")):
        row = measure(hosts, args.repeat)
        rows.append(row)
        print(f"{hosts:>5} {row['containers']:>10} {row['jobs']:>4} {row['fresh_actions']:>7} "
              f"{row['build_s']:>7.3f} ({row['build_cpu_s']:>6.3f}) "
              f"{row['fresh_plan_s']:>7.4f} ({row['fresh_plan_cpu_s']:>6.4f}) "
              f"{row['noop_plan_s']:>7.4f} ({row['noop_plan_cpu_s']:>6.4f})  "
              f"{row['load_average']}, {row['example_id']}", flush=True)
    # Per step: how much more CPU time per action than the step before (1.0 =
    # linear). CPU time, not wall: on a shared machine the wall time is mostly
    # the others' work. Per action, not per container: the jobs (and their
    # actions) are the control host's, as many at 1000 hosts as at 1. Tiny sites
    # fit in the CPU caches, so compare neighbouring sizes, not 1 with 1000.
    steps = []
    for a, b in zip(rows, rows[1:]):
        ratio = b["fresh_cpu_us_per_action"] / a["fresh_cpu_us_per_action"]
        steps.append({"from": a["hosts"], "to": b["hosts"], "per_action_ratio": round(ratio, 2)})
        print(f"{a['hosts']:>5} -> {b['hosts']:<5} hosts: fresh plan CPU time per action x{ratio:.2f} (1.0 = linear)")
    growth = steps[-1]["per_action_ratio"] if steps else 1.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "planner_scale", "date": time.strftime("%Y-%m-%d"),
                                    "machine": platform.node(), "cpus": cpus, "load_average_end": load(),
                                    "rows": rows, "steps": steps, "last_step_vs_linear": growth}, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
