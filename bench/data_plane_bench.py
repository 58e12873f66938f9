#!/usr/bin/env python3
"""How long a server takes to boot and answer, on a cloud `dockyard up` made.

Runs `dockyard demo` (idempotent), then boots ``--servers`` guests one after the
other with python-openstackclient, each with a floating IP, and measures for each:

- create to ACTIVE (nova, neutron port binding, libvirt);
- create to the guest's ``sshd up`` console line (the guest's own boot, DHCP and
  metadata included);
- create to a command answered over SSH on its floating IP, from the namespace
  ``dockyard-external`` (the provider network's far side).

Prints the figures and writes them to ``bench/results/data_plane.json``. The
servers and floating IPs are deleted afterwards. Traffic goes only from that
namespace to the guests' addresses. Every wait is bounded.

    python3 bench/data_plane_bench.py --config-dir /etc/dockyard --servers 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "dockyard-external"


def openstack(config_dir: Path, *args: str) -> str:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(config_dir / "clouds.yaml"), "OS_CLOUD": "dockyard"}
    proc = subprocess.run(["openstack", *args], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"openstack {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def until(what: str, check, timeout: float = 600, every: float = 1.0) -> float:
    """Seconds until ``check()`` is true; bounded."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        tried = time.monotonic()
        if check():
            return time.monotonic()
        time.sleep(max(0.0, every - (time.monotonic() - tried)))
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def boot(config_dir: Path, name: str) -> dict:
    key = config_dir / "demo" / "id_ed25519"
    t0 = time.monotonic()
    openstack(config_dir, "server", "create", "--image", "dockyard-guest", "--flavor", "m1.tiny", "--network",
              "demo-net", "--security-group", "demo", "--key-name", "demo", name)
    active = until(f"{name} ACTIVE", lambda: json.loads(openstack(
        config_dir, "server", "show", name, "-f", "json"))["status"] == "ACTIVE")
    fip = json.loads(openstack(config_dir, "floating", "ip", "create", "public", "-f", "json"))["floating_ip_address"]
    openstack(config_dir, "server", "add", "floating", "ip", name, fip)
    sshd = until(f"{name} sshd", lambda: "dockyard-guest: sshd up" in openstack(
        config_dir, "console", "log", "show", name), every=2.0)
    ssh = ["ip", "netns", "exec", NAMESPACE, "ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o",
           "LogLevel=ERROR", f"root@{fip}", "hostname"]
    answered = until(f"{name} over SSH", lambda: subprocess.run(ssh, capture_output=True, text=True,
                                                                 timeout=30).stdout.strip() == name)
    return {"server": name, "floating_ip": fip, "active_s": round(active - t0, 1),
            "sshd_console_s": round(sshd - t0, 1), "ssh_answer_s": round(answered - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, default=Path(os.environ.get("DOCKYARD_CONFIG_DIR", "/etc/dockyard")))
    parser.add_argument("--servers", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "dockyard", "demo", "--config-dir", str(args.config_dir)], check=True,
                   capture_output=True)
    runs = []
    try:
        for i in range(args.servers):
            runs.append(boot(args.config_dir, f"bench-{i + 1}"))
            print(json.dumps(runs[-1]))
    finally:
        for run in runs:
            openstack(args.config_dir, "server", "delete", "--wait", run["server"])
            openstack(args.config_dir, "floating", "ip", "delete", run["floating_ip"])
    summary = {key: statistics.median(r[key] for r in runs) for key in ("active_s", "sshd_console_s", "ssh_answer_s")}
    print("median of", len(runs), "servers:", json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_plane.json").write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), "runs": runs,
                                                         "median": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
