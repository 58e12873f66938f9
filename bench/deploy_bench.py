"""Deploy benchmarks on the real engine, with the images already built.

Prints and writes (bench/results/deploy.json):
  - fresh all-in-one deploy wall time, the critical path computed from the same
    run's timeline (the longest chain of dependent actions, each at its measured
    duration), and their ratio: the aim is close to 1.0;
  - no-op re-deploy time of the whole command (best of 3), and where the time
    of one goes: loading and rendering, observing the engine, planning;
  - side by side, on the same images: `dockyard deploy` versus the compose tool
    (`up -d`, then every health check passing) on the file from
    `dockyard export compose`, fresh and no-op.

The compose tool is Compose v2 (`up -d --wait`): `docker compose` when the
engine's client has it, otherwise Debian trixie's docker-compose package,
fetched once into the bench folder with a private apt list (see
`compose_tool.py`; nothing is installed on the host). Where neither can be had
it falls back to docker-compose v1, which has no `--wait`: the benchmark then
waits for the health checks itself, as a deploy does (running each check every
second). Compose's own waits (`service_healthy`, `--wait`) follow the engine's
checks, 30 s apart since dockyard stopped checking every 2 s. The compose fresh
time includes `dockyard genconfig` and creating the external volumes, which its
file needs and `dockyard deploy` does itself.

It destroys and re-creates its own site (`--config-dir`, default
/var/tmp/dockyard-bench/site) and its volumes: run it on a machine with no other
dockyard site in use.

    python3 bench/deploy_bench.py [--config-dir DIR] [--skip-compose]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from dockyard.deploy import api
from dockyard.deploy.plan.observe import observe
from dockyard.deploy.plan.planner import make_plan
from dockyard.deploy.execute.timeline import critical_path, durations, load_timeline
from dockyard.deploy.wanted.builder import site_id
from dockyard.engine import connect


RESULTS = Path(__file__).parent / "results"
COMPOSE_PROJECT = "dockyardbench"


def run(*cmd: str) -> float:
    """Run a command to success; its wall time in seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def dockyard(config_dir: Path, *args: str) -> float:
    return run(sys.executable, "-m", "dockyard", *args, "--config-dir", str(config_dir))


def latest_timeline(config_dir: Path) -> Path:
    return max((config_dir / "state" / "timeline").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)


def fresh_site(config_dir: Path) -> None:
    """No container, volume, generated file or record of the bench site left."""
    if (config_dir / "globals.yml").exists():
        subprocess.run([sys.executable, "-m", "dockyard", "destroy", "--yes", "--include-volumes",
                        "--config-dir", str(config_dir)], capture_output=True)
        for sub in ("state", "generated"):
            shutil.rmtree(config_dir / sub, ignore_errors=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    if not (config_dir / "globals.yml").exists():
        (config_dir / "globals.yml").write_text("{}\n")
    dockyard(config_dir, "genpwd")


def noop_breakdown(config_dir: Path, profile: bool = False) -> dict:
    """One no-op deploy's phases, in this process, as ``dockyard deploy`` runs
    them (every host of the inventory observed): where a converged run spends
    its time. ``profile``: also the functions that took longest (cumulative),
    as ``profile`` lines."""
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    t0 = time.perf_counter()
    prepared = api.prepare(config_dir)
    t1 = time.perf_counter()
    site = prepared.site
    observed = observe(prepared.engines(), prepared.wanted, site.state_dir, site_id(site),
                       hosts=list(site.inventory.hosts), unreachable=prepared.unreachable)
    t2 = time.perf_counter()
    plan = make_plan(prepared.wanted, observed)
    t3 = time.perf_counter()
    if profiler:
        profiler.disable()
    if plan.changes():
        sys.exit(f"the site is not converged: {plan.changes()} changes planned")
    figures: dict = {"load_and_render_s": round(t1 - t0, 3), "observe_engine_s": round(t2 - t1, 3),
                     "plan_s": round(t3 - t2, 3), "hosts": len(site.inventory.hosts),
                     "containers": len(prepared.wanted.containers), "jobs": len(prepared.wanted.jobs),
                     "files": len(prepared.wanted.files)}
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        figures["profile"] = out.getvalue().splitlines()
    return figures


def wait_all_healthy(engine, names: list[str], timeout: float = 900) -> None:
    """What `up --wait` does: every service with a health check healthy (one-shot
    jobs are done once compose returns: their dependants waited for them)."""
    for name in names:
        state = engine.container(name)
        if state is None:
            sys.exit(f"compose did not create {name}")
        if state.status == "exited":
            continue
        engine.wait_healthy(name, timeout)


def dockyard_figures(site: Path, figures: dict) -> None:
    fresh_site(site)
    figures["fresh_deploy_s"] = round(dockyard(site, "deploy"), 1)
    events = load_timeline(latest_timeline(site))
    seconds, chain = critical_path(events)
    took = durations(events)
    figures["actions"] = len(took)
    figures["sum_of_action_times_s"] = round(sum(took.values()), 1)
    figures["critical_path_s"] = round(seconds, 1)
    figures["critical_path"] = [f"{a} {took[a]:.1f}s" for a in chain]
    figures["wall_over_critical_path"] = round(figures["fresh_deploy_s"] / seconds, 2)
    print(f"fresh deploy          {figures['fresh_deploy_s']:7.1f} s  ({len(took)} actions, "
          f"{figures['sum_of_action_times_s']} s of action time in all)")
    print(f"critical path         {figures['critical_path_s']:7.1f} s  ({len(chain)} actions in a chain)")
    for step in figures["critical_path"]:
        print(f"    {step}")
    print(f"wall / critical path  {figures['wall_over_critical_path']:7.2f}")

    noop = [dockyard(site, "deploy") for _ in range(3)]
    figures["noop_deploy_s"] = round(min(noop), 2)
    figures["noop_breakdown"] = noop_breakdown(site)
    b = figures["noop_breakdown"]
    print(f"no-op re-deploy       {figures['noop_deploy_s']:7.2f} s  (whole command, best of 3; in it: "
          f"load+render {b['load_and_render_s']} s, observe the engine {b['observe_engine_s']} s, "
          f"plan {b['plan_s']} s for {b['containers']} containers, {b['jobs']} jobs, {b['files']} files)")


def compose_figures(site: Path, engine, figures: dict) -> None:
    compose_file = site.parent / "compose.yml"
    dockyard(site, "export", "compose", "-o", str(compose_file))
    fresh_site(site)
    doc = yaml.safe_load(compose_file.read_text())
    # Beside this script (bench/ is the script's folder on sys.path); imported
    # here so the tests can import noop_breakdown from the package.
    from compose_tool import find_compose

    tool = find_compose(site.parent)
    figures["compose_tool"] = tool.version
    compose = [*tool.command, "-p", COMPOSE_PROJECT, "-f", str(compose_file)]
    up = [*compose, "up", "-d", *(["--wait"] if tool.has_wait else [])]

    def up_and_healthy() -> None:
        run(*up)
        if not tool.has_wait:
            wait_all_healthy(engine, list(doc["services"]))

    t0 = time.perf_counter()
    dockyard(site, "genconfig")
    for name, volume in doc.get("volumes", {}).items():
        if volume.get("external"):
            run("docker", "volume", "create", "--label", "dockyard.managed=true", name)
    up_and_healthy()
    figures["compose_fresh_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    up_and_healthy()
    figures["compose_noop_s"] = round(time.perf_counter() - t0, 2)
    run(*compose, "down")
    print(f"compose tool          {tool.version} ({' '.join(up[len(compose):])})")
    print(f"compose fresh         {figures['compose_fresh_s']:7.1f} s  (dockyard {figures['fresh_deploy_s']} s)")
    print(f"compose no-op         {figures['compose_noop_s']:7.2f} s  (dockyard {figures['noop_deploy_s']} s; "
          f"compose runs every one-shot job again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, default=Path("/var/tmp/dockyard-bench/site"))
    parser.add_argument("--skip-compose", action="store_true")
    args = parser.parse_args()
    site = args.config_dir.resolve()
    engine = connect()
    figures: dict = {"benchmark": "deploy", "machine": platform.node(), "cpus": os.cpu_count(),
                     "engine": subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                              capture_output=True, text=True).stdout.strip()}
    try:
        dockyard_figures(site, figures)
        if not args.skip_compose:
            compose_figures(site, engine, figures)
    finally:
        fresh_site(site)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
