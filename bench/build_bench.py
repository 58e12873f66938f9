"""Build benchmarks: cold build, warm rebuild, image sizes, parallel speed-up.

Cold builds use their own namespace (`dockyardbench`) and `--no-cache`, so they
start from debootstrap and share nothing with the site's images; the speed-up is
measured on a profile (default `infra`: base, openstack-base and the
infrastructure images) built once with one worker and once with `--threads`.
Sizes come from the catalogue as built under the default namespace.

    python3 bench/build_bench.py [--profile infra] [--threads 2] [--skip-cold]
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
    parser.add_argument("--profile", default="infra")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-cold", action="store_true", help="only warm rebuild and sizes")
    args = parser.parse_args()
    figures: dict = {"benchmark": "build", "machine": platform.node(), "cpus": os.cpu_count()}

    warm, report = build("--work-dir", "/var/tmp/dockyard-bench/build")
    figures["warm_rebuild_all_s"] = round(warm, 1)
    figures["warm_counts"] = report["counts"]
    figures["sizes"] = {row["image"]: row["size"] for row in report["images"]}
    figures["distinct_bytes"] = report["distinct_bytes"]
    print(f"warm rebuild of the whole catalogue: {warm:.1f}s ({report['counts']})")
    for name, size in sorted(figures["sizes"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<28} {size / 1e6:8.1f} MB")
    print(f"  {'distinct bytes of the set':<28} {report['distinct_bytes'] / 1e6:8.1f} MB")

    if not args.skip_cold:
        common = ["--profile", args.profile, "--namespace", "dockyardbench", "--no-cache", "--rebuild-rootfs",
                  "--work-dir", "/var/tmp/dockyard-bench/cold"]
        one, _ = build(*common, "--threads", "1")
        many, cold_report = build(*common, "--threads", str(args.threads))
        figures.update({"cold_profile": args.profile, "cold_1_worker_s": round(one, 1),
                        f"cold_{args.threads}_workers_s": round(many, 1),
                        "parallel_speedup": round(one / many, 2),
                        "cold_images": len(cold_report["images"])})
        print(f"cold build of profile {args.profile} ({len(cold_report['images'])} images, debootstrap included): "
              f"1 worker {one:.1f}s, {args.threads} workers {many:.1f}s, speed-up {one / many:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "build.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
