"""A release upgrade, end to end: the session's 2025.1 cloud moved to 2026.1.

One story on the cloud ``dockyard up`` made (after the data plane and the secret
rotations): the next release's images are built, data is made on 2025.1 (a
project, a user, an image with known bytes, a network, a server on a floating
IP), globals.yml names 2026.1, the dry run prints the order and changes nothing,
``dockyard upgrade`` is SIGKILLed right after keystone's ``migrate`` step and run
again to the end, and then: the versions moved (the API's own discovery, the
packages in the containers, as the images list them), glance stayed on 2025.1,
the data is all there, the old server boots again and a new one boots, the
probe's figures are printed and kept in bench/results/upgrade_story.json, and a
second upgrade does nothing.

The story leaves the site on 2026.1, which nothing after it could use: conftest
runs this module last, and once the release is set, the module's end destroys
the site (volumes too). Every wait polls with a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import docker
import pytest
import yaml

from dockyard.deploy.execute.timeline import load_timeline
from dockyard.deploy.site.loader import DEFAULT_SERVICES
from dockyard.image.packages import MANIFEST, parse_manifest
from dockyard.labels import LABEL_JOB, LABEL_RELEASE, LABEL_SERVICE, LABEL_SITE

from .client import container_facts, openstack, openstack_json
from .conftest import CONFIG_DIR, REPO, WORK, changed_nothing, dockyard
from .guests import active, answers_ping, boot, console, fixed_address, poll, ssh

OLD, NEW = "2025.1", "2026.1"
HELD_BACK = {"glance"}                     # images/releases.yml: glance is not in forky, it stays on 2025.1
RESULTS = REPO / "bench" / "results" / "upgrade_story.json"
BUILD_TIMEOUT = 3 * 3600                   # a cold build of the release's images on a busy 2-core machine
UPGRADE_TIMEOUT = 3600                     # each run of `dockyard upgrade`
KILL_AFTER = "upgrade:keystone:migrate"    # keystone's schema expanded and migrated, its old code still serving

PROJECT, USER, USER_PASSWORD = "upgrade-project", "upgrade-user", "upgrade-user-pw-70"
IMAGE, NETWORK, SUBNET, SUBNET_RANGE = "upgrade-bytes", "upgrade-net", "upgrade-subnet", "10.98.0.0/24"
OLD_SERVER, NEW_SERVER = "up-old", "up-new"

# Container -> the Debian package that says which release it runs.
PACKAGE_OF = {
    "mariadb": "mariadb-server", "rabbitmq": "rabbitmq-server", "memcached": "memcached",
    "keystone": "keystone", "glance_api": "glance-api", "placement_api": "placement-api",
    "nova_api": "nova-api", "nova_conductor": "nova-conductor", "nova_scheduler": "nova-scheduler",
    "nova_compute": "nova-compute", "nova_libvirt": "libvirt-daemon-system", "neutron_server": "neutron-server",
    "neutron_openvswitch_agent": "neutron-openvswitch-agent", "openvswitch_vswitchd": "openvswitch-switch",
    "horizon": "openstack-dashboard",
}
# Packages whose version differs between trixie (2025.1) and forky (2026.1): the
# OpenStack series, RabbitMQ 4.0 -> 4.3, Open vSwitch 3.5 -> 4.0 (docs/upgrades.md).
# MariaDB is 11.8 in both, and memcached's or libvirt's version may not have
# changed either: those are only checked to be what their new image lists.
MOVED = {"keystone", "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute",
         "neutron-server", "neutron-openvswitch-agent", "openstack-dashboard", "rabbitmq-server",
         "openvswitch-switch"}
# The services' images the all-in-one runs on 2026.1, and the toolbox its jobs run in.
SITE_IMAGES = {"mariadb-server", "rabbitmq", "memcached", "toolbox", "keystone", "placement-api", "nova-api",
               "nova-conductor", "nova-scheduler", "nova-novncproxy", "nova-compute", "nova-libvirt",
               "neutron-server", "neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
               "neutron-metadata-agent", "openvswitch-db-server", "openvswitch-vswitchd", "horizon"}


@pytest.fixture(scope="module")
def story(engine, tmp_path_factory):
    """What the ordered tests below share. Once globals.yml has been set to 2026.1,
    the module's end destroys the site (volumes too) and puts globals.yml back as
    the session wrote it: nothing of the upgraded site outlives the story. (The
    build needs no cloud: the fixture asks for none, so the build's time limit
    does not count a cloud's deployment.)"""
    state: dict = {"folder": tmp_path_factory.mktemp("upgrade")}
    yield state
    if "globals_text" in state:
        try:
            dockyard("destroy", "--yes", "--include-volumes", "--config-dir", str(CONFIG_DIR), timeout=1800)
        finally:
            (CONFIG_DIR / "globals.yml").write_text(state["globals_text"])


# -- helpers -----------------------------------------------------------------------------

def state_dir() -> Path:
    """<state_dir> of the site: globals.yml's `state_dir`, else <config_dir>/state."""
    data = yaml.safe_load((CONFIG_DIR / "globals.yml").read_text()) or {}
    return CONFIG_DIR / (data.get("state_dir") or "state")


def set_release(story: dict, release: str) -> None:
    """globals.yml's `release` (its other keys kept); the text it had is kept in
    the story, for the module's end."""
    path = CONFIG_DIR / "globals.yml"
    story.setdefault("globals_text", path.read_text())
    data = yaml.safe_load(story["globals_text"]) or {}
    data["release"] = release
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def token_as(user: str, password: str, project: str) -> subprocess.CompletedProcess:
    """openstack token issue as this user, from the environment only (no clouds.yaml)."""
    url = openstack_json("endpoint", "list", "--service", "identity", "--interface", "public")[0]["URL"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=url, OS_USERNAME=user, OS_PASSWORD=password, OS_PROJECT_NAME=project,
               OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3")
    return subprocess.run(["openstack", "token", "issue", "-f", "value", "-c", "id"], capture_output=True,
                          text=True, timeout=120, env=env)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def floating_ip_for(server: str) -> str:
    fip = openstack_json("floating", "ip", "create", "public")["floating_ip_address"]
    openstack("server", "add", "floating", "ip", server, fip)
    return fip


def answers_ssh_as(fip: str, name: str, timeout: float = 300) -> None:
    """The guest behind ``fip`` answers ping, then SSH with its own hostname."""
    poll(f"ping {fip}", lambda: answers_ping(fip), timeout=timeout, on_timeout=lambda: console(name)[-3000:])
    poll(f"ssh {fip} says {name}", lambda: ssh(fip, "hostname").stdout.strip() == name, timeout=timeout,
         on_timeout=lambda: console(name)[-3000:])


def microversion(text) -> tuple[int, ...]:
    """"2.100" -> (2, 100); none -> ()."""
    return tuple(int(part) for part in str(text).split(".")) if text and re.fullmatch(r"\d+(\.\d+)*", str(text)) \
        else ()


def versions_by_service(rows: list[dict]) -> dict[str, list[tuple]]:
    """`openstack versions show` rows: service type -> its (version, status, min, max) entries."""
    out: dict[str, list[tuple]] = {}
    for row in rows:
        out.setdefault(row["Service Type"], []).append(
            (row["Version"], row["Status"], row["Min Microversion"], row["Max Microversion"]))
    return {service: sorted(entries, key=str) for service, entries in out.items()}


def image_manifest(engine, ref: str) -> dict[str, str]:
    """The packages an image lists (name -> version), as `dockyard images diff` reads them."""
    return parse_manifest(engine.read_file(ref, MANIFEST).decode(errors="replace"))


def installed_version(container: str, package: str) -> str:
    """What dpkg says inside the running container."""
    result = docker.from_env().containers.get(container).exec_run(["dpkg-query", "-W", "-f=${Version}", package])
    assert result.exit_code == 0, (container, package, result.output)
    return result.output.decode().strip()


def with_tag(ref: str, tag: str) -> str:
    return f"{ref.rpartition(':')[0]}:{tag}"


def site_containers(engine) -> list:
    """This site's service containers (one-shot jobs left out)."""
    site = str(CONFIG_DIR.resolve())
    return [c for c in engine.containers(label=f"{LABEL_SITE}={site}") if c.labels.get(LABEL_JOB) != "true"]


MOVE_LINE = re.compile(r"^  \d+\. (?P<service>[\w-]+): (?P<source>\S+) -> (?P<target>\S+)"
                       r"(?: \((?P<versions>\S+ -> \S+)\))?; steps: (?P<steps>.+)$", re.M)


def planned_moves(dry_run: str) -> list[dict]:
    """The dry run's numbered moves, in order: service, releases, versions, steps."""
    moves = []
    for m in MOVE_LINE.finditer(dry_run):
        steps = [] if m["steps"] == "new containers only" else m["steps"].split(", ")
        moves.append({"service": m["service"], "source": m["source"], "target": m["target"],
                      "versions": m["versions"], "steps": steps})
    return moves


def run_id(output: str) -> str:
    found = re.search(r"^dockyard: upgrade run (\S+) on ", output, re.M)
    assert found, output[-3000:]
    return found[1]


def succeeded_steps(run: str) -> list[str]:
    """The upgrade steps the run's timeline records as succeeded, in order."""
    events = load_timeline(state_dir() / "timeline" / f"{run}.jsonl")
    return [e["action"] for e in events
            if e.get("event") == "end" and e.get("kind") == "upgrade_step" and e.get("result") == "ok"]


def pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)                        # end of output


def upgrade_killed_after(step: str, timeout: float) -> str:
    """Run `dockyard upgrade`, read its output line by line, and SIGKILL it (its
    process group) as soon as a line says ``step`` succeeded; its output so far.
    Bounded: no such line within ``timeout``, or the command ending first, fails
    (and a command still running is killed all the same)."""
    done = re.compile(rf"^\s+ok\s+{re.escape(step)}\s")
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "upgrade", "--config-dir", str(CONFIG_DIR)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(f"no `ok {step}` within {timeout:.0f} s:\n{''.join(seen[-80:])}") from None
            if line is None:
                proc.wait(timeout=60)
                raise AssertionError(f"dockyard upgrade exited {proc.returncode} before {step} succeeded:\n"
                                     f"{''.join(seen[-120:])}")
            seen.append(line)
            if done.match(line):
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        reader.join(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, "".join(seen[-40:]))
    return "".join(seen)


# -- the story ---------------------------------------------------------------------------

@pytest.mark.timeout(BUILD_TIMEOUT + 600)
def test_the_next_releases_images_build(story, engine):
    # The all-in-one's images: the core, compute and network profiles, and of
    # the infra profile the images the site runs (the registry's is no part of
    # the cloud). The guest image is no release's; glance-api is left out by the
    # release itself (held back). Cached images are reported in seconds.
    t0 = time.monotonic()
    proc = dockyard("build", "--release", NEW, "--format", "json", "--work-dir", str(WORK / "build"),
                    "--profile", "core", "--profile", "compute", "--profile", "network",
                    "^mariadb-server$", "^rabbitmq$", "^memcached$", "^toolbox$", timeout=BUILD_TIMEOUT)
    story["build_s"] = round(time.monotonic() - t0, 1)
    report = json.loads(proc.stdout)
    assert report["ok"], proc.stdout[-3000:]
    built = {i["image"]: i for i in report["images"]}
    assert SITE_IMAGES <= set(built), sorted(SITE_IMAGES - set(built))
    assert not {"glance-api", "glance-base", "guest-image", "registry"} & set(built)
    assert all(i["ref"].endswith(f":{NEW}") for i in built.values()), [i["ref"] for i in built.values()]
    story["build_counts"] = report["counts"]


def test_data_made_on_the_old_release(story, demo, engine):
    folder: Path = story["folder"]
    # The site runs 2025.1 everywhere, converged (the upgrade refuses otherwise).
    assert {c.labels.get(LABEL_RELEASE) for c in site_containers(engine)} == {OLD}
    story["versions_before"] = openstack_json("versions", "show")

    openstack("project", "create", PROJECT)
    openstack("user", "create", "--project", PROJECT, "--password", USER_PASSWORD, USER)
    openstack("role", "add", "--project", PROJECT, "--user", USER, "member")
    token = token_as(USER, USER_PASSWORD, PROJECT)
    assert token.returncode == 0, token.stderr

    payload = folder / "image.raw"
    payload.write_bytes(os.urandom(2 * 1024 * 1024 + 70))
    story["image_sha256"] = sha256_of(payload)
    openstack("image", "create", "--file", str(payload), "--disk-format", "raw", "--container-format", "bare", IMAGE)
    story["image_id"] = openstack_json("image", "show", IMAGE)["id"]

    openstack("network", "create", NETWORK)
    openstack("subnet", "create", "--network", NETWORK, "--subnet-range", SUBNET_RANGE, SUBNET)
    story["network_id"] = openstack_json("network", "show", NETWORK)["id"]

    boot(OLD_SERVER)
    fip = floating_ip_for(OLD_SERVER)
    answers_ssh_as(fip, OLD_SERVER)
    story["old_server"] = {"id": openstack_json("server", "show", OLD_SERVER)["id"],
                           "fixed": fixed_address(OLD_SERVER), "fip": fip}


def test_the_dry_run_prints_the_order_and_changes_nothing(story, cloud, engine):
    # The release is chosen in globals.yml (docs/upgrades.md); from here on the
    # site is asked to run 2026.1.
    set_release(story, NEW)
    before = container_facts(engine)
    records = state_dir()
    jobs_before = (records / "jobs.json").read_bytes()
    runs_before = set((records / "timeline").glob("*.jsonl"))

    out = dockyard("upgrade", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout
    moves = planned_moves(out)
    order = [m["service"] for m in moves]
    assert set(order) == set(DEFAULT_SERVICES) - HELD_BACK, out
    assert all((m["source"], m["target"]) == (OLD, NEW) for m in moves), moves
    assert f"stays: glance on {OLD}" in out, out
    at = {service: i for i, service in enumerate(order)}
    assert at["mariadb"] < at["keystone"] and at["rabbitmq"] < at["keystone"], order
    assert at["keystone"] < at["placement"] < at["nova"], order
    assert at["keystone"] < at["neutron"] < at["neutron-agents"], order
    assert at["nova"] < at["nova-compute"] and at["neutron-agents"] < at["nova-compute"], order
    assert order[-1] == "horizon", order
    steps = {m["service"]: m["steps"] for m in moves}
    assert steps["keystone"] == ["check", "expand", "migrate", "contract"], steps
    assert steps["mariadb"] == ["post"] and steps["rabbitmq"] == ["prepare"], steps
    assert re.search(r"^\d+ changes planned \(dry run: nothing done\)$", out, re.M), out[-2000:]
    assert not re.search(r"^0 changes planned", out, re.M)

    # Nothing changed: the same containers, no upgrade record, no run, no job recorded.
    assert container_facts(engine) == before
    assert not (records / "upgrade.json").exists()
    assert (records / "jobs.json").read_bytes() == jobs_before
    assert set((records / "timeline").glob("*.jsonl")) == runs_before
    story["moves"] = moves


@pytest.mark.timeout(2 * UPGRADE_TIMEOUT + 600)
def test_an_upgrade_killed_after_keystones_migrate_completes_when_run_again(story, cloud):
    t0 = time.monotonic()
    killed = upgrade_killed_after(KILL_AFTER, UPGRADE_TIMEOUT)
    story["killed_run_s"] = round(time.monotonic() - t0, 1)
    record = json.loads((state_dir() / "upgrade.json").read_text())
    assert record["complete"] is False and record["from"]["keystone"] == OLD and record["to"]["keystone"] == NEW

    t1 = time.monotonic()
    resumed = dockyard("upgrade", "--config-dir", str(CONFIG_DIR), timeout=UPGRADE_TIMEOUT)
    story["resumed_run_s"] = round(time.monotonic() - t1, 1)
    story["upgrade_wall_s"] = round(time.monotonic() - t0, 1)
    out = resumed.stdout
    story["resumed_output"] = out
    assert "resuming the upgrade a previous run started" in out, out[-3000:]
    assert re.search(r"^\d+ changes, 0 failed, 0 skipped in [0-9.]+s$", out, re.M), out[-3000:]

    # The record: the upgrade complete, every service from 2025.1 to 2026.1.
    record = json.loads((state_dir() / "upgrade.json").read_text())
    moved = {m["service"] for m in story["moves"]}
    assert record["complete"] is True
    assert record["from"] == {s: OLD for s in moved} and record["to"] == {s: NEW for s in moved}, record
    # The two runs' timelines: every step of the plan succeeded exactly once, the
    # ones up to keystone's migrate in the killed run, the rest in the second.
    first, second = succeeded_steps(run_id(killed)), succeeded_steps(run_id(out))
    planned = [f"upgrade:{m['service']}:{step}" for m in story["moves"] for step in m["steps"]]
    assert Counter(first + second) == Counter(planned), (first, second, planned)
    assert {"upgrade:mariadb:post", "upgrade:rabbitmq:prepare", "upgrade:keystone:check",
            "upgrade:keystone:expand", KILL_AFTER} <= set(first), first
    assert "upgrade:keystone:contract" in second, second


def test_the_versions_moved_and_glance_stayed(story, cloud, engine):
    containers = site_containers(engine)
    for c in containers:
        release = OLD if c.labels.get(LABEL_SERVICE) in HELD_BACK else NEW
        assert c.running, (c.name, c.status)
        assert c.labels.get(LABEL_RELEASE) == release and c.image.endswith(f":{release}"), (c.name, c.image)
    names = {c.name: c for c in containers}

    packages = {}
    for name, package in PACKAGE_OF.items():
        ref = names[name].image
        listed = image_manifest(engine, ref)[package]
        running = installed_version(name, package)
        assert running == listed, (name, package, running, listed)
        if name == "glance_api":
            assert ref.endswith(f":{OLD}"), ref
        elif package in MOVED:
            old = image_manifest(engine, with_tag(ref, OLD))[package]
            assert running != old, (name, package, running, old)
            packages[package] = [old, running]
        else:
            packages[package] = [image_manifest(engine, with_tag(ref, OLD)).get(package), running]
    story["packages"] = packages

    # What the APIs themselves say: every one answers its version discovery as
    # before; compute's microversions did not go back; glance (2025.1) is the same.
    before = versions_by_service(story["versions_before"])
    after = versions_by_service(openstack_json("versions", "show"))
    assert set(before) <= set(after), (before, after)
    assert after["image"] == before["image"], (before["image"], after["image"])
    top = [max(microversion(v[3]) for v in side["compute"]) for side in (before, after)]
    assert top[1] >= top[0] > (), (before["compute"], after["compute"])
    story["api_versions"] = {"before": before, "after": after}
    print("\nupgrade: packages (2025.1 -> running):", json.dumps(packages))
    print("upgrade: compute microversions", before["compute"], "->", after["compute"])


def test_the_data_is_intact_and_servers_boot(story, demo):
    # Compute services and network agents report in on the new release.
    poll("every compute service up", lambda: (s := openstack_json("compute", "service", "list")) and
         all(x["State"] == "up" for x in s), timeout=300, every=5)
    poll("every network agent alive", lambda: (a := openstack_json("network", "agent", "list")) and
         all(x["Alive"] in (True, ":-)") for x in a), timeout=300, every=5)

    assert openstack_json("project", "show", PROJECT)["name"] == PROJECT
    assert openstack_json("user", "show", USER)["name"] == USER
    token = token_as(USER, USER_PASSWORD, PROJECT)
    assert token.returncode == 0, token.stderr
    image = openstack_json("image", "show", IMAGE)
    assert image["id"] == story["image_id"] and image["status"] == "active"
    back = story["folder"] / "back.raw"
    openstack("image", "save", "--file", str(back), IMAGE)
    assert sha256_of(back) == story["image_sha256"]
    assert openstack_json("network", "show", NETWORK)["id"] == story["network_id"]
    assert openstack_json("subnet", "show", SUBNET)["cidr"] == SUBNET_RANGE

    # The old server: its record is there; its guest ended with the old libvirt
    # container (docs/upgrades.md, "Guests and libvirt"): started again (or hard
    # rebooted, where nova still believes it runs), it boots on the new release
    # and answers on its floating IP.
    old = story["old_server"]
    server = openstack_json("server", "show", OLD_SERVER)
    assert server["id"] == old["id"] and fixed_address(OLD_SERVER) == old["fixed"]
    server = poll(f"{OLD_SERVER} with no task under way",
                  lambda: (s := openstack_json("server", "show", OLD_SERVER)).get("OS-EXT-STS:task_state")
                  in (None, "", "None") and s, timeout=600, every=5)
    if server["status"] == "SHUTOFF":
        openstack("server", "start", OLD_SERVER)
    else:
        openstack("server", "reboot", "--hard", OLD_SERVER)
    poll(f"{OLD_SERVER} ACTIVE", lambda: active(OLD_SERVER))
    answers_ssh_as(old["fip"], OLD_SERVER, timeout=600)

    # A new server boots on the new release and answers on a floating IP.
    boot(NEW_SERVER)
    fip = floating_ip_for(NEW_SERVER)
    answers_ssh_as(fip, NEW_SERVER)

    # Deleting works too; the site is destroyed when the module ends anyway.
    for name in (OLD_SERVER, NEW_SERVER):
        openstack("server", "delete", "--wait", name)
    for address in (old["fip"], fip):
        openstack("floating", "ip", "delete", address)


def test_the_probes_figures_are_printed_and_kept(story, cloud):
    report = json.loads((state_dir() / "upgrade-availability.json").read_text())
    out = story["resumed_output"]
    assert set(report["apis"]) == {"identity", "image", "network", "compute", "placement"}, report
    for api, figures in report["apis"].items():
        # Polled, and answered at least once: the figures measure the cloud, not a broken probe.
        assert 0 <= figures["failed"] < figures["polls"], (api, figures)
        line = rf"^  {re.escape(api)}\s+unavailable\s+{figures['unavailable_s']:.1f} s in {figures['outages']} "
        assert re.search(line, out, re.M), (api, figures, out[-2000:])
    assert f"every API down at once: {report['all_down_s']:.1f} s" in out, out[-2000:]

    figures = {
        "measured": time.strftime("%Y-%m-%d"),
        "from": OLD, "to": NEW,
        "build_s": story["build_s"], "build_counts": story["build_counts"],
        "upgrade_wall_s": story["upgrade_wall_s"],
        "killed_run_s": story["killed_run_s"], "killed_after": KILL_AFTER,
        "resumed_run_s": story["resumed_run_s"],
        # The probe of a SIGKILLed run dies with it: these figures are the resumed
        # run's (keystone's new containers onwards), not mariadb's, rabbitmq's and
        # memcached's restarts, which the killed run made.
        "probe_covers": "the resumed run",
        "probe_wall_s": report["wall_s"],
        "unavailable_s": {api: f["unavailable_s"] for api, f in report["apis"].items()},
        "longest_outage_s": {api: f["longest_outage_s"] for api, f in report["apis"].items()},
        "all_down_s": report["all_down_s"],
        "moves": [f"{m['service']} {m['source']} -> {m['target']}" + (f" ({m['versions']})" if m["versions"] else "")
                  for m in story["moves"]],
        "packages": story.get("packages", {}),
    }
    print("\nupgrade figures:", json.dumps(figures))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


def test_a_second_upgrade_does_nothing(story, cloud, engine):
    before = container_facts(engine)
    runs_before = set((state_dir() / "timeline").glob("*.jsonl"))
    out = dockyard("upgrade", "--config-dir", str(CONFIG_DIR)).stdout
    assert "nothing to upgrade: every service runs the release globals.yml names" in out, out
    assert f"glance on {OLD}" in out, out
    assert container_facts(engine) == before
    assert set((state_dir() / "timeline").glob("*.jsonl")) == runs_before
    # And the site is converged on its new releases: a deploy changes nothing.
    deploy = dockyard("deploy", "--config-dir", str(CONFIG_DIR)).stdout
    assert changed_nothing(deploy), deploy[-3000:]
    assert container_facts(engine) == before
