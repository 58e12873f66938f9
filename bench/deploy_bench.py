"""Deploy benchmarks on the real engine, with the images already built.

Prints and writes (bench/results/deploy.json):
  - fresh all-in-one deploy wall time, the critical path computed from the same
    run's timeline, and their ratio (the aim is close to 1.0);
  - no-op re-deploy time;
  - side by side, on the same images: `dockyard deploy` versus `docker-compose up -d`
    (plus waiting until every healthcheck passes) on the file from
    `dockyard export compose`, fresh and no-op.

It destroys and re-creates its own site (`--config-dir`, default
/var/tmp/dockyard-bench/site) and its volumes: run it on a machine with no other
dockyard site in use.

    python3 bench/deploy_bench.py [--config-dir DIR] [--skip-compose]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dockyard.deploy.timeline import critical_path, load_timeline
from dockyard.engine import connect

RESULTS = Path(__file__).parent / "results"


def dockyard(config_dir: Path, *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dockyard", *args, "--config-dir", str(config_dir)],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"dockyard {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def latest_timeline(config_dir: Path) -> Path:
    return max((config_dir / "state" / "timeline").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)


def wait_all_healthy(engine, names: list[str]) -> None:
    for name in names:
        state = engine.container(name)
        if state and state.status == "exited":
            continue  # a one-shot job
        engine.wait_healthy(name, 600)


def fresh_site(config_dir: Path) -> None:
    if config_dir.exists():
        subprocess.run([sys.executable, "-m", "dockyard", "destroy", "--yes", "--include-volumes",
                        "--config-dir", str(config_dir)], capture_output=True)
        for sub in ("state", "generated"):
            shutil.rmtree(config_dir / sub, ignore_errors=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "globals.yml").exists() or (config_dir / "globals.yml").write_text("{}\n")
    dockyard(config_dir, "genpwd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, default=Path("/var/tmp/dockyard-bench/site"))
    parser.add_argument("--skip-compose", action="store_true")
    args = parser.parse_args()
    site = args.config_dir
    engine = connect()
    figures: dict = {"benchmark": "deploy", "machine": platform.node(),
                     "cpus": __import__("os").cpu_count()}

    fresh_site(site)
    figures["fresh_deploy_s"] = round(dockyard(site, "deploy"), 1)
    seconds, chain = critical_path(load_timeline(latest_timeline(site)))
    figures["critical_path_s"] = round(seconds, 1)
    figures["critical_path"] = chain
    figures["wall_over_critical_path"] = round(figures["fresh_deploy_s"] / seconds, 2)
    print(f"fresh deploy        {figures['fresh_deploy_s']:7.1f}s")
    print(f"critical path       {figures['critical_path_s']:7.1f}s  ({len(chain)} actions: {' -> '.join(chain[:3])} ...)")
    print(f"wall / critical     {figures['wall_over_critical_path']:7.2f}")
    noop = [dockyard(site, "deploy") for _ in range(3)]
    figures["noop_deploy_s"] = round(min(noop), 2)
    print(f"no-op re-deploy     {figures['noop_deploy_s']:7.2f}s (best of 3, whole command)")

    if not args.skip_compose:
        compose_file = site / "compose.yml"
        dockyard(site, "export", "compose", "-o", str(compose_file))
        fresh_site(site)
        doc = __import__("yaml").safe_load(compose_file.read_text())
        for volume in doc.get("volumes", {}):
            engine.create_volume(volume, {"dockyard.managed": "true"})
        # The generated config folders are the same inputs dockyard uses.
        subprocess.run([sys.executable, "-m", "dockyard", "deploy", "--dry-run", "--config-dir", str(site)],
                       capture_output=True)
        from dockyard.deploy import api
        from dockyard.deploy.executor import write_atomic
        for f in api.prepare(site).wanted.files:
            write_atomic(Path(f.path), f.content, f.mode)
        compose = ["docker-compose", "-p", "dockyardbench", "-f", str(compose_file)]
        t0 = time.perf_counter()
        subprocess.run([*compose, "up", "-d"], check=True, capture_output=True)
        wait_all_healthy(engine, list(doc["services"]))
        figures["compose_fresh_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        subprocess.run([*compose, "up", "-d"], check=True, capture_output=True)
        wait_all_healthy(engine, list(doc["services"]))
        figures["compose_noop_s"] = round(time.perf_counter() - t0, 2)
        subprocess.run([*compose, "down"], capture_output=True)
        print(f"compose fresh       {figures['compose_fresh_s']:7.1f}s   (dockyard {figures['fresh_deploy_s']}s)")
        print(f"compose no-op       {figures['compose_noop_s']:7.2f}s   (dockyard {figures['noop_deploy_s']}s)")
    fresh_site(site)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deploy.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
