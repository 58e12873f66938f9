"""A release upgrade of the running cloud: 2025.1 to 2026.1, killed half-way and
finished by the next run, with the data made before it intact and usable after.

The last story of the session: it runs on the cloud ``dockyard up`` made (and the
data plane and demo before it), builds the next release's images (cached once
built), names the new release in globals.yml and runs ``dockyard upgrade`` as an
operator would. While it runs, the upgrade's own probe polls every API; its
figures are printed and kept beside the other stories' in bench/results.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .client import openstack, openstack_json
from .conftest import CONFIG_DIR, REPO, dockyard
from .guests import active, boot, console, poll

RESULTS = REPO / "bench" / "results" / "upgrade_story.json"
STATE = CONFIG_DIR / "state"
NEXT = "2026.1"
# Which package says each service's version, and the container it is read in.
PACKAGES = {"keystone": "keystone", "nova_api": "nova-common", "neutron_server": "neutron-common",
            "placement_api": "placement-common"}
HELD_BACK = {"glance"}        # not in the next release's suite: stays on 2025.1 (images/releases.yml)


def package_version(container: str, package: str) -> str:
    proc = subprocess.run(["docker", "exec", container, "dpkg-query", "-W", "-f", "${Version}", package],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def releases_running(engine) -> dict[str, set[str]]:
    """service -> the releases its containers run (their dockyard.release label)."""
    out: dict[str, set[str]] = {}
    for c in engine.containers(label="dockyard.managed=true"):
        service = c.labels.get("dockyard.service")
        if service and c.labels.get("dockyard.release"):
            out.setdefault(service, set()).add(c.labels["dockyard.release"])
    return out


@pytest.fixture(scope="module")
def next_release(cloud):
    """The next release's images of the cloud's services, built from its suite
    (cached once built); the guest image is not a release's."""
    dockyard("build", "--release", NEXT, *(f"--profile={p}" for p in ("infra", "core", "compute", "network")),
             "--format", "json", timeout=5400)


@pytest.fixture(scope="module")
def before(cloud, demo, next_release, engine, tmp_path_factory):
    """Data a user made on 2025.1, and what the cloud ran."""
    folder = tmp_path_factory.mktemp("upgrade")
    payload = os.urandom(2 * 1024 * 1024 + 3)
    (folder / "image.raw").write_bytes(payload)
    password = secrets.token_urlsafe(16)
    openstack("project", "create", "upgrade-proj")
    openstack("user", "create", "--project", "upgrade-proj", "--password", password, "upgrade-user")
    openstack("role", "add", "--user", "upgrade-user", "--project", "upgrade-proj", "member")
    openstack("image", "create", "--file", str(folder / "image.raw"), "--disk-format", "raw",
              "--container-format", "bare", "upgrade-image")
    openstack("network", "create", "upgrade-net")
    openstack("subnet", "create", "--network", "upgrade-net", "--subnet-range", "10.9.0.0/24", "upgrade-subnet")
    boot("up-1")
    return {
        "payload": payload, "password": password, "folder": folder,
        "packages": {c: package_version(c, p) for c, p in PACKAGES.items()},
        "releases": releases_running(engine),
        "compute_max": openstack_json("versions", "show", "--service", "compute", "--status", "CURRENT"),
    }


@pytest.fixture(scope="module")
def upgraded(before):
    """``release: 2026.1`` in globals.yml; an upgrade SIGKILLed once keystone's
    schema has moved; the next run finishes it."""
    globals_file = CONFIG_DIR / "globals.yml"
    data = yaml.safe_load(globals_file.read_text()) or {}
    globals_file.write_text(yaml.safe_dump({**data, "release": NEXT}))

    dry = dockyard("upgrade", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout
    killed_after = None
    t0 = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "dockyard", "upgrade", "--config-dir", str(CONFIG_DIR)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first: list[str] = []
    try:
        for line in run.stdout:            # ends when the process does
            first.append(line)
            if re.match(r"^\s+ok\s+upgrade:keystone:migrate\b", line):
                killed_after = line.split()[1]
                run.send_signal(signal.SIGKILL)
                break
    finally:
        if run.poll() is None and killed_after is None:
            run.kill()
        run.wait(timeout=60)
    assert killed_after, "the upgrade ended before keystone's migrate step:\n" + "".join(first)[-6000:]
    resumed = dockyard("upgrade", "--config-dir", str(CONFIG_DIR), timeout=3600)
    wall = round(time.monotonic() - t0, 1)
    return {"dry": dry, "first": "".join(first), "resumed": resumed.stdout, "wall_s": wall}


def test_the_dry_run_names_every_move_and_step(upgraded):
    dry = upgraded["dry"]
    assert re.search(r"keystone: 2025\.1 -> 2026\.1", dry), dry
    for step in ("upgrade:keystone:check", "upgrade:keystone:expand", "upgrade:keystone:contract",
                 "upgrade:nova:check", "upgrade:neutron:expand", "upgrade:placement:check"):
        assert step in dry, step
    assert "stays: glance on 2025.1" in dry
    assert not re.search(r"^\s+\d+\. glance:", dry, re.M)


def test_a_killed_upgrade_is_finished_by_the_next_run(upgraded):
    assert "resuming the upgrade a previous run started" in upgraded["resumed"]
    # What the killed run did (it was killed after keystone's migrate) is not done again.
    assert re.search(r"^\s+ok\s+upgrade:keystone:expand\b", upgraded["first"], re.M)
    assert not re.search(r"^\s+ok\s+upgrade:keystone:(check|expand|migrate)\b", upgraded["resumed"], re.M)
    assert json.loads((STATE / "upgrade.json").read_text())["complete"] is True


def test_every_service_moved_but_the_one_held_back(upgraded, before, engine):
    now = releases_running(engine)
    for service, releases in now.items():
        expected = {"2025.1"} if service in HELD_BACK else {NEXT}
        assert releases == expected, (service, releases)
    for container, package in PACKAGES.items():
        old, new = before["packages"][container], package_version(container, package)
        assert new != old, (container, package, old)
    after = openstack_json("versions", "show", "--service", "compute", "--status", "CURRENT")
    old_max = before["compute_max"][0]["Max Microversion"]
    new_max = after[0]["Max Microversion"]
    assert tuple(map(int, new_max.split("."))) >= tuple(map(int, old_max.split("."))), (old_max, new_max)


def test_the_data_made_before_is_there_and_usable(upgraded, before):
    token = openstack("--os-username", "upgrade-user", "--os-password", before["password"],
                      "--os-project-name", "upgrade-proj", "token", "issue", "-f", "json")
    assert json.loads(token.stdout)["id"]
    back = before["folder"] / "back.raw"
    openstack("image", "save", "--file", str(back), "upgrade-image")
    assert back.read_bytes() == before["payload"]
    subnet = openstack_json("subnet", "show", "upgrade-subnet")
    assert subnet["cidr"] == "10.9.0.0/24"
    # The server made before is still nova's; libvirt moved to the new release
    # (its guests stopped with its old container: docs/upgrades.md), so it is
    # started again and boots from its own disk.
    server = openstack_json("server", "show", "up-1")
    seen = console("up-1").count("dockyard-guest: sshd")
    if server["status"] == "ACTIVE":
        openstack("server", "reboot", "--hard", "up-1")
    else:
        openstack("server", "start", "up-1")
    poll("up-1 ACTIVE after the upgrade", lambda: active("up-1"))
    poll("up-1's sshd again", lambda: console("up-1").count("dockyard-guest: sshd") > seen)


def test_a_new_server_boots_on_the_new_release(upgraded):
    figures = boot("up-2")
    for name in ("up-1", "up-2"):
        openstack("server", "delete", "--wait", name)
    upgraded["new_server_sshd_s"] = figures["sshd_s"]


def test_the_probe_measured_every_api_and_a_second_upgrade_is_a_no_op(upgraded):
    assert "availability during the run" in upgraded["resumed"]
    report = json.loads((STATE / "upgrade-availability.json").read_text())
    assert set(report["apis"]) == {"identity", "image", "network", "compute", "placement"}
    for name, figures in report["apis"].items():
        assert figures["polls"] > 10, (name, figures)
        assert figures["unavailable_s"] < report["wall_s"], (name, figures)   # it answered at some point
    again = dockyard("upgrade", "--config-dir", str(CONFIG_DIR)).stdout
    assert again.startswith("nothing to upgrade"), again
    assert re.search(r"^0 changes planned", dockyard("deploy", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout,
                     re.M)
    figures = {"measured": time.strftime("%Y-%m-%d"), "upgrade_wall_s_with_kill": upgraded["wall_s"],
               "resumed_run_wall_s": report["wall_s"], "all_down_s": report["all_down_s"],
               "unavailable_s": {k: v["unavailable_s"] for k, v in report["apis"].items()},
               "longest_outage_s": {k: v["longest_outage_s"] for k, v in report["apis"].items()},
               "new_server_sshd_s": upgraded.get("new_server_sshd_s")}
    print("\nupgrade figures:", json.dumps(figures))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    Path(RESULTS).chmod(0o644)
