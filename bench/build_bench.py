"""Build benchmarks: cold build, warm rebuild, image sizes, parallel speed-up.

Cold builds use `--no-cache --rebuild-rootfs`, so they start from debootstrap
and reuse no layer. A profile (default `all`, the whole catalogue) is built
once per worker count of `--workers` (default 1 and the core count), and the
speed-up over one worker is printed. They go to `--cold-namespace` (default
`dockyardbench`, apart from the site's images); with `--cold-namespace
dockyard` the last cold build leaves the catalogue built where a site uses it,
which is how a fresh machine gets its images and its cold figures in one pass.
The warm rebuild of the whole catalogue under the default namespace runs last
and reports the image sizes.

    python3 bench/build_bench.py [--profile all] [--workers 1,2] [--cold-namespace NS] [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def build(*args: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dockyard", "build", "--format", "json", *args],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"dockyard build {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="all")
    parser.add_argument("--cold-namespace", default="dockyardbench")
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, os.cpu_count() or 2],
                        help="worker counts of the cold builds, in order (default: 1,<cores>)")
    parser.add_argument("--skip-cold", action="store_true", help="only warm rebuild and sizes")
    args = parser.parse_args()
    figures: dict = {"benchmark": "build", "machine": platform.node(), "cpus": os.cpu_count()}

    if not args.skip_cold:
        common = ["--profile", args.profile, "--namespace", args.cold_namespace, "--no-cache", "--rebuild-rootfs",
                  "--work-dir", "/var/tmp/dockyard-bench/cold"]
        figures["cold_profile"] = args.profile
        times: dict[int, float] = {}
        for workers in args.workers:
            times[workers], cold_report = build(*common, "--threads", str(workers))
            figures[f"cold_{workers}_workers_s"] = round(times[workers], 1)
            figures["cold_images"] = len(cold_report["images"])
            print(f"cold build of profile {args.profile} ({len(cold_report['images'])} images, debootstrap "
                  f"included), {workers} workers: {times[workers]:.1f}s", flush=True)
        if 1 in times:
            for workers, seconds in times.items():
                if workers != 1:
                    figures[f"speedup_{workers}_workers"] = round(times[1] / seconds, 2)
                    print(f"speed-up with {workers} workers: {times[1] / seconds:.2f}x")
    warm, report = build("--work-dir", "/var/tmp/dockyard-bench/build")
    figures["warm_rebuild_all_s"] = round(warm, 1)
    figures["warm_counts"] = report["counts"]
    figures["sizes"] = {row["image"]: row["size"] for row in report["images"]}
    figures["distinct_bytes"] = report["distinct_bytes"]
    print(f"warm rebuild of the whole catalogue: {warm:.1f}s ({report['counts']})")
    for name, size in sorted(figures["sizes"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {size / 1e6:8.1f} MB")
    print(f"  {'distinct bytes of the set':<28} {report['distinct_bytes'] / 1e6:8.1f} MB")

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "build.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
