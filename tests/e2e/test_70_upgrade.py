"""A release upgrade, end to end: the session's all-in-one moved from 2025.1 to 2026.1.

One story on the cloud ``dockyard up`` made, after everything else has used it
(conftest runs this module last; only one site runs on an engine, so it is the
same site, not a second one):

1. the next release's images are built (``dockyard build --release 2026.1``,
   the images this site runs: cached where they are built already);
2. data is made on 2025.1: a project and a user who gets a token, an image of
   known bytes, a network and subnet, a server answering on a floating IP;
3. globals.yml names 2026.1; ``dockyard upgrade --dry-run`` prints the moves in
   order (the infrastructure first, keystone before every API that calls it,
   the dashboard last), each service's steps (expand, migrate, contract...),
   glance staying on 2025.1, and changes nothing;
4. ``dockyard upgrade`` is SIGKILLed right after keystone's ``migrate`` step
   and run again: the second run resumes, does none of the steps the first
   recorded, and ends with exit 0; each step ran once over the two runs;
5. the versions moved: every container on 2026.1's image (glance on 2025.1's),
   dpkg inside them says the versions their image lists, the OpenStack
   packages newer than before; the APIs' version discovery still answers;
6. the data is intact: project, user (a token), the image's bytes, network and
   subnet, the old server (started again where libvirt's move stopped it:
   docs/upgrades.md) answering on its floating IP; a new server boots and answers;
7. the probe's figures, kept as the runs went (``runs``: the killed one, partial,
   and the resumed one), cover every API, none of which was down the whole
   time; they are printed and kept in bench/results/upgrade_story.json;
8. a second ``dockyard upgrade`` does nothing, nor does a ``dockyard deploy``;
9. what the story made in the cloud is deleted. The site stays on 2026.1 (its
   globals.yml says so); the session's end destroys it, as always.

Every wait polls with a deadline; none sleeps to synchronise.
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

from dockyard.deploy import api
from dockyard.deploy.execute.timeline import load_timeline, timeline_path
from dockyard.deploy.ops.availability import figures_path
from dockyard.deploy.ops.probe import APIS
from dockyard.deploy.upgrade import load_record
from dockyard.deploy.wanted.builder import site_id
from dockyard.image.packages import MANIFEST, parse_manifest
from dockyard.labels import LABEL_JOB, LABEL_RELEASE, LABEL_SERVICE, LABEL_SITE
from dockyard.releases import load_releases

from .client import container_facts, openstack, openstack_json
from .conftest import CONFIG_DIR, REPO, WORK, changed_nothing, dockyard
from .guests import active, answers_ping, boot, console, fixed_address, poll, ssh

OLD, NEW = "2025.1", "2026.1"
RESULTS = REPO / "bench" / "results" / "upgrade_story.json"
BUILD_TIMEOUT = 3 * 3600                   # a cold build of a release's images on a busy 2-core machine
UPGRADE_TIMEOUT = 3600                     # each run of `dockyard upgrade`
# The executor's progress line of an action that succeeded (executor.Outcome.line:
# "  ok      upgrade:keystone:migrate    12.3s"); the step's action id is
# upgrade:<service>:<step> (plan/upgrade.py). By then its one-shot is recorded
# done (jobs.json) and the timeline has its end.
KILL_AFTER = "upgrade:keystone:migrate"    # keystone's schema expanded and migrated, its old code still serving
# The steps done when keystone's migrate is: the infrastructure's and keystone's
# first three. Every later step waits for keystone's new containers.
DONE_BEFORE_KILL = {"upgrade:mariadb:post", "upgrade:rabbitmq:prepare", "upgrade:keystone:check",
                    "upgrade:keystone:expand", KILL_AFTER}
INFRASTRUCTURE = ("mariadb", "rabbitmq", "memcached")

PROJECT, USER, USER_PASSWORD = "upgrade-project", "upgrade-user", "upgrade-user-pw-70"
IMAGE, NETWORK, SUBNET, SUBNET_RANGE = "upgrade-bytes", "upgrade-net", "upgrade-subnet", "10.98.0.0/24"
OLD_SERVER, NEW_SERVER = "up-old", "up-new"

# Container -> the Debian package that says which version it runs.
PACKAGE_OF = {
    "mariadb": "mariadb-server", "rabbitmq": "rabbitmq-server", "memcached": "memcached",
    "keystone": "keystone", "glance_api": "glance-api", "placement_api": "placement-api",
    "nova_api": "nova-api", "nova_conductor": "nova-conductor", "nova_scheduler": "nova-scheduler",
    "nova_compute": "nova-compute", "nova_libvirt": "libvirt-daemon-system", "neutron_api": "neutron-api",
    "neutron_rpc_server": "neutron-rpc-server",
    "neutron_openvswitch_agent": "neutron-openvswitch-agent", "openvswitch_vswitchd": "openvswitch-switch",
    "horizon": "openstack-dashboard",
}
# The OpenStack series moves between trixie and forky (keystone 27 -> 30, nova
# 31 -> 33, neutron -> 28, placement -> 15: docs/upgrades.md): these packages
# must be newer. The others (MariaDB, RabbitMQ, memcached, libvirt, Open vSwitch,
# the dashboard) need only be what their new image lists; their versions are kept.
SERIES_MOVED = {"keystone", "placement-api", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute",
                "neutron-api", "neutron-rpc-server", "neutron-openvswitch-agent"}


# -- the site, as dockyard reads it ------------------------------------------------------

def load_site():
    """(site, service catalogue) of the session's site, as the commands load them."""
    return api.load(CONFIG_DIR, need_passwords=False)


def state_dir() -> Path:
    return load_site()[0].state_dir


def enabled_services() -> list[str]:
    site, catalogue = load_site()
    return catalogue.closure(site.globals.enabled_services)


def held_back() -> dict[str, str]:
    """Services 2026.1 keeps on an older release (images/releases.yml): glance."""
    return dict(load_releases().by_name[NEW].services)


def set_release(story: dict, release: str) -> None:
    """globals.yml's `release`, its other lines (and comments) kept; the text it
    had is kept in the story."""
    path = CONFIG_DIR / "globals.yml"
    text = story.setdefault("globals_text", path.read_text())
    line = f'release: "{release}"'
    if re.search(r"^release:", text, re.M):
        text = re.sub(r"^release:.*$", line, text, count=1, flags=re.M)
    else:
        text = text.rstrip("\n") + f"\n{line}\n"
    path.write_text(text)
    assert (yaml.safe_load(path.read_text()) or {}).get("release") == release


def site_containers(engine) -> list:
    """The site's service containers (one-shot jobs left out)."""
    return [c for c in engine.containers(label=f"{LABEL_SITE}={site_id(load_site()[0])}")
            if c.labels.get(LABEL_JOB) != "true"]


def needs(story: dict, *keys: str) -> None:
    """Fail at once (rather than in some later call) when an earlier step of the story did not finish."""
    missing = [k for k in keys if k not in story]
    if missing:
        pytest.fail(f"an earlier step of the upgrade story did not finish (no {', '.join(missing)})")


# -- the cloud, as a user sees it ----------------------------------------------------------

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


def floating_ip_for(story: dict, server: str) -> str:
    fip = openstack_json("floating", "ip", "create", "public")["floating_ip_address"]
    story.setdefault("fips", []).append(fip)
    openstack("server", "add", "floating", "ip", server, fip)
    return fip


def answers_as(fip: str, name: str, timeout: float = 300) -> str:
    """The guest behind ``fip`` answers ping, then SSH with its own hostname; its boot id."""
    poll(f"ping {fip}", lambda: answers_ping(fip), timeout=timeout, on_timeout=lambda: console(name)[-3000:])
    poll(f"ssh {fip} says {name}", lambda: ssh(fip, "hostname").stdout.strip() == name, timeout=timeout,
         on_timeout=lambda: console(name)[-3000:])
    return ssh(fip, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def cloud_settled() -> None:
    """Every compute service up and every network agent alive (they report in
    on their own schedule after their containers are new)."""
    poll("every compute service up", lambda: (s := openstack_json("compute", "service", "list")) and
         all(x["State"] == "up" for x in s), timeout=600, every=5)
    poll("every network agent alive", lambda: (a := openstack_json("network", "agent", "list")) and
         all(x["Alive"] in (True, ":-)") for x in a), timeout=600, every=5)


def remove_story_data(story: dict) -> list[str]:
    """Delete what the story made in the cloud, whatever of it is there (servers
    first, their floating IPs, then the rest); what it deleted."""
    gone = []
    for name in (OLD_SERVER, NEW_SERVER):
        if openstack("server", "show", name, check=False).returncode == 0:
            openstack("server", "delete", "--wait", name)
            gone.append(f"server {name}")
    for fip in story.get("fips", []):
        if openstack("floating", "ip", "show", fip, check=False).returncode == 0:
            openstack("floating", "ip", "delete", fip)
            gone.append(f"floating ip {fip}")
    for kind, name in (("image", IMAGE), ("subnet", SUBNET), ("network", NETWORK), ("user", USER),
                       ("project", PROJECT)):
        if openstack(kind, "show", name, check=False).returncode == 0:
            openstack(kind, "delete", name)
            gone.append(f"{kind} {name}")
    return gone


# -- versions ------------------------------------------------------------------------------

def versions_by_service(rows: list[dict]) -> dict[str, list[list]]:
    """`openstack versions show` rows: service type -> its [version, status, min, max] entries."""
    out: dict[str, list[list]] = {}
    for row in rows:
        out.setdefault(row["Service Type"], []).append(
            [row["Version"], row["Status"], row["Min Microversion"], row["Max Microversion"]])
    return {service: sorted(entries, key=str) for service, entries in out.items()}


def microversion(text) -> tuple[int, ...]:
    """"2.100" -> (2, 100); none -> ()."""
    return tuple(int(part) for part in str(text).split(".")) if re.fullmatch(r"\d+(\.\d+)*", str(text or "")) \
        else ()


def installed_version(container: str, package: str) -> str:
    """What dpkg says inside the running container."""
    result = docker.from_env().containers.get(container).exec_run(["dpkg-query", "-W", "-f=${Version}", package])
    assert result.exit_code == 0, (container, package, result.output)
    return result.output.decode().strip()


def running_packages(engine) -> dict[str, str]:
    """Package -> the version dpkg reports in its container, for the containers the site has."""
    names = {c.name for c in site_containers(engine)}
    return {package: installed_version(name, package) for name, package in PACKAGE_OF.items() if name in names}


def image_manifest(engine, ref: str) -> dict[str, str]:
    """The packages an image lists (name -> version), as `dockyard images diff` reads them."""
    return parse_manifest(engine.read_file(ref, MANIFEST).decode(errors="replace"))


# -- the upgrade's output and records --------------------------------------------------------

MOVE_LINE = re.compile(r"^  (?P<n>\d+)\. (?P<service>[\w-]+): (?P<source>\S+) -> (?P<target>\S+)"
                       r"(?: \((?P<versions>[^)]*)\))?; steps: (?P<steps>.+)$", re.M)


def planned_moves(dry_run: str) -> list[dict]:
    """The dry run's numbered moves (UpgradePlan.render), in order."""
    moves = []
    for m in MOVE_LINE.finditer(dry_run):
        steps = [] if m["steps"] == "new containers only" else m["steps"].split(", ")
        moves.append({"n": int(m["n"]), "service": m["service"], "source": m["source"], "target": m["target"],
                      "versions": m["versions"], "steps": steps})
    return moves


def run_id(output: str) -> str:
    found = re.search(r"^dockyard: upgrade run (\S+) on ", output, re.M)
    assert found, output[-3000:]
    return found[1]


def timeline_of(run: str) -> list[dict]:
    return load_timeline(timeline_path(state_dir(), run))


def steps_ended_ok(run: str) -> list[str]:
    """The upgrade steps the run's timeline records as succeeded, in order."""
    return [e["action"] for e in timeline_of(run)
            if e.get("event") == "end" and e.get("kind") == "upgrade_step" and e.get("result") == "ok"]


def steps_started(run: str) -> set[str]:
    return {e["action"] for e in timeline_of(run) if e.get("event") == "start" and e.get("kind") == "upgrade_step"}


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)                        # end of output


def upgrade_killed_after(action: str, timeout: float) -> str:
    """Run `dockyard upgrade`, read its output line by line, and SIGKILL it (its
    whole process group) as soon as a line says ``action`` succeeded; its output
    so far. Bounded: no such line within ``timeout``, or the command ending
    first, fails (and a command still running is killed all the same)."""
    done = re.compile(rf"^  ok +{re.escape(action)}(?: |$)")
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "upgrade", "--config-dir", str(CONFIG_DIR)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            start_new_session=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no `ok {action}` within {timeout:.0f} s:\n{''.join(seen[-80:])}") from None
            if line is None:
                proc.wait(timeout=60)
                raise AssertionError(f"dockyard upgrade exited {proc.returncode} before {action} succeeded:\n"
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


# -- the story ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """What the ordered tests below share. At the module's end, whatever the story
    made in the cloud and did not delete itself is deleted; globals.yml is put
    back only if no upgrade was started (the site still runs 2025.1): once one
    has, it says what the site runs, and the session's end destroys the site."""
    state: dict = {"folder": tmp_path_factory.mktemp("upgrade")}
    yield state
    if "cleaned" not in state and "data" in state:
        try:
            print("\nupgrade story, left behind and deleted:", remove_story_data(state))
        except Exception as exc:   # noqa: BLE001 - a clean-up must not hide the failure that led here
            print(f"\nupgrade story: clean-up failed: {exc}")
    if "globals_text" in state and not load_record(state_dir()):
        (CONFIG_DIR / "globals.yml").write_text(state["globals_text"])


@pytest.mark.timeout(BUILD_TIMEOUT + 600)
def test_1_the_next_releases_images_are_built(story, cloud, engine):
    # The images this site runs (its services', jobs' and steps' images, the
    # toolbox) and their parents. The build itself leaves out what 2026.1 does
    # not build: the images only glance uses (it stays on 2025.1) and the guest
    # image (pinned to 2025.1). Images built already are cached, in seconds.
    site, catalogue = load_site()
    enabled = catalogue.closure(site.globals.enabled_services)
    images = set(catalogue.images(enabled))
    held = set(held_back())
    assert held == {"glance"}, held
    held_only = images - set(catalogue.images([s for s in enabled if s not in held]))
    assert held_only == {"glance-api"}, held_only

    t0 = time.monotonic()
    proc = dockyard("build", "--release", NEW, "--format", "json", "--work-dir", str(WORK / "build"),
                    *(f"^{re.escape(name)}$" for name in sorted(images)), timeout=BUILD_TIMEOUT)
    report = json.loads(proc.stdout)
    assert report["ok"], proc.stdout[-3000:]
    built = {i["image"]: i for i in report["images"]}
    assert images - held_only <= set(built), sorted(images - held_only - set(built))
    assert not {"glance-api", "glance-base", "guest-image"} & set(built), sorted(built)
    assert all(i["ref"].endswith(f":{NEW}") for i in built.values()), [i["ref"] for i in built.values()]
    story["build"] = {"seconds": round(time.monotonic() - t0, 1), "counts": report["counts"]}
    print("\nupgrade: build of", NEW, json.dumps(story["build"]))


def test_2_data_is_made_on_the_old_release(story, demo, engine):
    needs(story, "build")
    folder: Path = story["folder"]
    # The site runs 2025.1 everywhere.
    containers = site_containers(engine)
    assert containers and {c.labels.get(LABEL_RELEASE) for c in containers} == {OLD}, \
        sorted((c.name, c.labels.get(LABEL_RELEASE)) for c in containers)
    story["versions_before"] = versions_by_service(openstack_json("versions", "show"))
    story["packages_before"] = running_packages(engine)
    story["data"] = True                   # from here on, the module's end deletes what is made

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
    fip = floating_ip_for(story, OLD_SERVER)
    boot_id = answers_as(fip, OLD_SERVER)
    assert boot_id
    story["old_server"] = {"id": openstack_json("server", "show", OLD_SERVER)["id"],
                           "fixed": fixed_address(OLD_SERVER), "fip": fip, "boot_id": boot_id}


def test_3_the_dry_run_prints_the_order_and_changes_nothing(story, cloud, engine):
    needs(story, "old_server")
    # On 2025.1, as globals.yml says today, there is nothing to upgrade.
    before_switch = dockyard("upgrade", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout
    assert re.search(r"^nothing to upgrade: ", before_switch, re.M), before_switch[-2000:]
    assert "upgrade, in this order:" not in before_switch, before_switch[-2000:]

    # The session's operator-chosen database password (conftest) holds a ' and a
    # \, which mariadb-upgrade cannot pass on: with it, the upgrade is refused
    # before anything changes; the operator sets another and deploys first.
    # (After test_60's rotation, as in the whole suite, it is generated already.)
    passwords_file = CONFIG_DIR / "passwords.yml"
    passwords = yaml.safe_load(passwords_file.read_text())
    if any(ch in passwords["database_password"] for ch in ("'", "\\")):
        set_release(story, NEW)
        refused = dockyard("upgrade", "--dry-run", "--config-dir", str(CONFIG_DIR), check=False)
        assert refused.returncode == 2 and "database_password" in refused.stderr + refused.stdout, refused
        set_release(story, OLD)
        dockyard("genpwd", "--rotate", "database_password", "--config-dir", str(CONFIG_DIR))
        dockyard("deploy", "--config-dir", str(CONFIG_DIR))

    # The release is chosen in globals.yml (docs/upgrades.md).
    set_release(story, NEW)
    records = state_dir()
    before = container_facts(engine)
    jobs_before = (records / "jobs.json").read_bytes()
    runs_before = set((records / "timeline").glob("*.jsonl"))
    assert not load_record(records)

    out = dockyard("upgrade", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout
    moves = planned_moves(out)
    order = [m["service"] for m in moves]
    held = held_back()
    assert [m["n"] for m in moves] == list(range(1, len(moves) + 1)), out[:3000]
    assert set(order) == set(enabled_services()) - set(held), out[:3000]
    assert all((m["source"], m["target"]) == (OLD, NEW) for m in moves), moves
    for service, release in held.items():
        assert f"  stays: {service} on {release}" in out, out[:3000]
    # In order: the infrastructure first; keystone before every API (they all
    # authenticate through it); each service after those it depends on; the
    # computes after nova and the agents; the dashboard last.
    at = {service: i for i, service in enumerate(order)}
    assert set(order[:3]) == set(INFRASTRUCTURE), order
    assert all(at["keystone"] < at[s] for s in ("placement", "nova", "neutron", "neutron-agents", "nova-compute",
                                                 "horizon")), order
    _, catalogue = load_site()
    for service in order:
        deps = set(catalogue.closure([service])) - {service}
        assert all(at[d] < at[service] for d in deps & set(at)), (service, deps, order)
    assert at["nova"] < at["nova-compute"] and at["neutron-agents"] < at["nova-compute"], order
    assert order[-1] == "horizon", order
    # Each service's steps, as its upgrade block lists them; the main package's
    # versions in the two images.
    steps = {m["service"]: m["steps"] for m in moves}
    for service in order:
        spec = catalogue.services[service].spec.upgrade
        assert steps[service] == ([s for s, _ in spec.steps()] if spec else []), (service, steps[service])
    assert steps["keystone"] == ["check", "expand", "migrate", "contract"], steps
    assert steps["neutron"] == ["expand", "contract"], steps
    assert all(m["versions"] for m in moves if m["service"] in ("keystone", "nova", "neutron", "placement")), moves
    # The plan, action by action: the expand and contract one-shots of the new release.
    for service, command in (("keystone", "keystone-manage db_sync --expand"),
                             ("keystone", "keystone-manage db_sync --contract"),
                             ("neutron", "upgrade --expand"), ("neutron", "upgrade --contract")):
        assert re.search(rf"^\s+upgrade_step\s+{service}_upgrade_\w+\s+{re.escape(OLD)} -> {re.escape(NEW)}: "
                         rf".*{re.escape(command)}", out, re.M), (service, command, out[-4000:])
    assert out.index("db_sync --expand") < out.index("db_sync --migrate") < out.index("db_sync --contract")
    found = re.search(r"^(\d+) changes planned \(dry run: nothing done\)$", out, re.M)
    assert found and int(found[1]) > 0, out[-2000:]

    # Nothing changed: the same containers, no upgrade record, no run, no job recorded.
    assert container_facts(engine) == before
    assert not load_record(records)
    assert (records / "jobs.json").read_bytes() == jobs_before
    assert set((records / "timeline").glob("*.jsonl")) == runs_before
    story["moves"] = moves


@pytest.mark.timeout(2 * UPGRADE_TIMEOUT + 600)
def test_4_an_upgrade_killed_after_keystones_migrate_completes_when_run_again(story, cloud, engine):
    needs(story, "moves")
    records = state_dir()
    t0 = time.monotonic()
    killed = upgrade_killed_after(KILL_AFTER, UPGRADE_TIMEOUT)
    story["killed_run_s"] = round(time.monotonic() - t0, 1)
    first_run = run_id(killed)
    record = load_record(records)
    assert record["complete"] is False and record["started_by"] == first_run, record
    assert record["from"]["keystone"] == OLD and record["to"]["keystone"] == NEW, record
    # The killed run's probe figures, as it last wrote them: partial, one run.
    figures = json.loads(figures_path(records).read_text())
    assert figures["partial"] is True and figures["upgrade"] == first_run, figures
    assert [r["run"] for r in figures["runs"]] == [first_run] and figures["runs"][0]["partial"] is True, figures
    first = steps_ended_ok(first_run)
    assert set(first) == DONE_BEFORE_KILL and len(first) == len(DONE_BEFORE_KILL), first
    after_kill = container_facts(engine)

    t1 = time.monotonic()
    resumed = dockyard("upgrade", "--config-dir", str(CONFIG_DIR), timeout=UPGRADE_TIMEOUT)   # exit 0, or it raises
    story["resumed_run_s"] = round(time.monotonic() - t1, 1)
    story["upgrade_wall_s"] = round(time.monotonic() - t0, 1)
    out = resumed.stdout
    story["resumed_output"] = out
    assert "resuming the upgrade a previous run started" in out, out[-3000:]
    assert re.search(r"^\d+ changes, 0 failed, 0 skipped in [0-9.]+s$", out, re.M), out[-3000:]
    second_run = run_id(out)
    assert second_run != first_run
    story["runs"] = [first_run, second_run]

    # The record: the upgrade complete, every moving service from 2025.1 to 2026.1,
    # named by its first run.
    moved = [m["service"] for m in story["moves"]]
    record = load_record(records)
    assert record["complete"] is True and record["started_by"] == first_run, record
    assert record["from"] == {s: OLD for s in moved} and record["to"] == {s: NEW for s in moved}, record
    # The resumed run did none of the steps the killed one had done; over the
    # two runs, every step of the plan succeeded exactly once.
    assert not steps_started(second_run) & set(first), sorted(steps_started(second_run) & set(first))
    second = steps_ended_ok(second_run)
    planned = [f"upgrade:{m['service']}:{step}" for m in story["moves"] for step in m["steps"]]
    assert Counter(first + second) == Counter(planned), (first, second, planned)
    assert "upgrade:keystone:contract" in second, second
    # The infrastructure the killed run had moved was left as it was.
    now = container_facts(engine)
    assert {n: now.get(n) for n in INFRASTRUCTURE} == {n: after_kill[n] for n in INFRASTRUCTURE}
    story["upgraded"] = True


def test_5_the_versions_moved_and_glance_stayed(story, cloud, engine):
    needs(story, "upgraded")
    held = held_back()
    containers = site_containers(engine)
    for c in containers:
        release = held.get(c.labels.get(LABEL_SERVICE, ""), NEW)
        assert c.running, (c.name, c.status)
        assert c.labels.get(LABEL_RELEASE) == release and c.image.endswith(f":{release}"), (c.name, c.image)
    assert {c.name for c in containers} >= set(PACKAGE_OF), sorted(set(PACKAGE_OF) - {c.name for c in containers})

    # dpkg inside each container says what its image lists; the OpenStack series
    # moved; glance's package is the one it ran before.
    refs = {c.name: c.image for c in containers}
    before, after = story["packages_before"], running_packages(engine)
    for name, package in PACKAGE_OF.items():
        assert after[package] == image_manifest(engine, refs[name])[package], (name, package, after[package])
    assert refs["glance_api"].endswith(f":{OLD}") and after["glance-api"] == before["glance-api"], \
        (refs["glance_api"], before["glance-api"], after["glance-api"])
    not_moved = {p: before[p] for p in SERIES_MOVED if after[p] == before[p]}
    assert not not_moved, f"still the 2025.1 versions: {not_moved}"
    story["packages"] = {p: [before[p], after[p]] for p in sorted(after)}

    # What the APIs themselves say: each answers its version discovery as
    # before; compute's microversions did not go back; glance's is the same.
    versions_before = story["versions_before"]
    versions_after = poll("every API's version discovery answering as before",
                          lambda: (v := versions_by_service(openstack_json("versions", "show")))
                          and set(versions_before) <= set(v) and v, timeout=300, every=5)
    assert versions_after["image"] == versions_before["image"], (versions_before["image"], versions_after["image"])
    top = [max(microversion(v[3]) for v in side["compute"]) for side in (versions_before, versions_after)]
    assert top[1] >= top[0] > (), (versions_before["compute"], versions_after["compute"])
    story["api_versions"] = {"before": versions_before, "after": versions_after}
    print("\nupgrade: packages (before -> after):", json.dumps(story["packages"]))
    print("upgrade: compute versions", versions_before["compute"], "->", versions_after["compute"])


@pytest.mark.timeout(2 * 3600)           # the agents settling, the old guest brought back, a new one booted
def test_6_the_data_is_intact_and_servers_boot(story, demo):
    needs(story, "upgraded")
    cloud_settled()
    assert openstack_json("project", "show", PROJECT)["name"] == PROJECT
    assert openstack_json("user", "show", USER)["name"] == USER
    token = token_as(USER, USER_PASSWORD, PROJECT)
    assert token.returncode == 0, token.stderr
    image = openstack_json("image", "show", IMAGE)
    assert image["id"] == story["image_id"] and image["status"] == "active", image
    back = story["folder"] / "back.raw"
    openstack("image", "save", "--file", str(back), IMAGE)
    assert sha256_of(back) == story["image_sha256"]
    assert openstack_json("network", "show", NETWORK)["id"] == story["network_id"]
    assert openstack_json("subnet", "show", SUBNET)["cidr"] == SUBNET_RANGE

    # The old server: its record and addresses are there. Its guest ran in the
    # old libvirt container, which the upgrade replaced (docs/upgrades.md,
    # "Guests and libvirt"): unless it answers as it is, it is started again
    # (or hard rebooted, where nova still believes it runs) and boots on the
    # new release's QEMU, on the same disk and addresses.
    old = story["old_server"]
    server = openstack_json("server", "show", OLD_SERVER)
    assert server["id"] == old["id"] and fixed_address(OLD_SERVER) == old["fixed"], server
    try:
        poll(f"{OLD_SERVER} answering as it is", lambda: answers_ping(old["fip"]), timeout=90)
        story["old_server_after"] = "answered as it was"
    except AssertionError:
        server = poll(f"{OLD_SERVER} with no task under way",
                      lambda: (s := openstack_json("server", "show", OLD_SERVER)).get("OS-EXT-STS:task_state")
                      in (None, "", "None") and s, timeout=600, every=5)
        if server["status"] == "SHUTOFF":
            openstack("server", "start", OLD_SERVER)
            story["old_server_after"] = "started again (nova saw it shut off)"
        else:
            openstack("server", "reboot", "--hard", OLD_SERVER)
            story["old_server_after"] = f"hard rebooted (nova saw it {server['status']})"
    poll(f"{OLD_SERVER} ACTIVE", lambda: active(OLD_SERVER))
    boot_id = answers_as(old["fip"], OLD_SERVER, timeout=600)
    story["old_server_kept_running"] = boot_id == old["boot_id"]
    print(f"\nupgrade: {OLD_SERVER} {story['old_server_after']}; the same boot: {boot_id == old['boot_id']}")

    # A new server boots on the new release and answers on a floating IP; the
    # two reach each other on their network.
    t0 = time.monotonic()
    new = boot(NEW_SERVER)
    fip = floating_ip_for(story, NEW_SERVER)
    answers_as(fip, NEW_SERVER)
    story["new_server"] = {"boot_to_sshd_console_s": new["sshd_s"], "boot_to_ssh_s": round(time.monotonic() - t0, 1)}
    reach = ssh(fip, f"ping -c 2 -W 3 {old['fixed']}")
    assert reach.returncode == 0 and "2 packets received" in reach.stdout, reach.stdout + reach.stderr
    story["data_intact"] = True


def test_7_the_probes_figures_are_printed_and_kept(story, cloud):
    needs(story, "upgraded")
    first_run, second_run = story["runs"]
    report = json.loads(figures_path(state_dir()).read_text())
    out = story["resumed_output"]
    # One upgrade, named by its first run; both runs, the killed one partial.
    assert report["upgrade"] == first_run and report["partial"] is False, {k: report[k] for k in ("upgrade", "partial")}
    assert [(r["run"], r["partial"]) for r in report["runs"]] == [(first_run, True), (second_run, False)], \
        report["runs"]
    assert set(APIS) == {"identity", "image", "network", "compute", "placement"}
    for run in report["runs"]:
        assert set(run["apis"]) == set(APIS) and all(f["polls"] > 0 for f in run["apis"].values()), run
    # Every API polled and answering at least once over the upgrade; none
    # unavailable for the whole of it, nor all of them at once.
    assert set(report["apis"]) == set(APIS), report["apis"]
    wall = report["wall_s"]
    assert wall > 0, report
    for api_name, figures in report["apis"].items():
        assert 0 <= figures["failed"] < figures["polls"], (api_name, figures)
        assert figures["unavailable_s"] < wall and figures["longest_outage_s"] < wall, (api_name, figures, wall)
    assert report["all_down_s"] < wall, report
    # The resumed run printed the same figures: the two runs added up.
    assert "availability during the upgrade's 2 runs" in out, out[-3000:]
    for api_name, figures in report["apis"].items():
        line = rf"^  {re.escape(api_name)}\s+unavailable\s+{figures['unavailable_s']:.1f} s in {figures['outages']} "
        assert re.search(line, out, re.M), (api_name, figures, out[-2000:])
    assert f"every API down at once: {report['all_down_s']:.1f} s" in out, out[-2000:]
    # Each time every API was down, the report says what the upgrade was doing.
    told = re.findall(r"^    (\d+\.\d) s from \d\d:\d\d:\d\d, (?:during (.+)|while no action.*)$", out, re.M)
    assert len(told) == len(report["all_down_at"]), (told, report["all_down_at"])
    assert round(sum(float(s) for s, _ in told), 1) == pytest.approx(report["all_down_s"], abs=0.1 * len(told) + 0.1)

    results = {
        "measured": time.strftime("%Y-%m-%d"),
        "from": OLD, "to": NEW,
        "build": story.get("build"),
        "upgrade_wall_s": story["upgrade_wall_s"],          # from the first run's start to the second's end
        "killed_after": KILL_AFTER, "killed_run_s": story["killed_run_s"], "resumed_run_s": story["resumed_run_s"],
        # The probe's figures: both runs' added up (the seconds between the kill
        # and the second run, and the killed run's last second, polled by nobody).
        "probe": {
            "wall_s": wall,
            "unavailable_s": {a: f["unavailable_s"] for a, f in report["apis"].items()},
            "longest_outage_s": {a: f["longest_outage_s"] for a, f in report["apis"].items()},
            "outages": {a: f["outages"] for a, f in report["apis"].items()},
            "all_down_s": report["all_down_s"],
            "all_down_during": [{"s": float(s), "actions": actions.split(", ") if actions else []}
                                for s, actions in told],
            "runs": [{"partial": r["partial"], "wall_s": r["wall_s"], "all_down_s": r["all_down_s"],
                      "unavailable_s": {a: f["unavailable_s"] for a, f in r["apis"].items()}}
                     for r in report["runs"]],
        },
        "moves": [f"{m['service']} {m['source']} -> {m['target']}" + (f" ({m['versions']})" if m["versions"] else "")
                  for m in story["moves"]],
        "packages": story.get("packages", {}),
        "old_server_after": story.get("old_server_after"),
        "new_server": story.get("new_server"),
    }
    print("\nupgrade figures:", json.dumps(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def test_8_a_second_upgrade_and_a_deploy_do_nothing(story, cloud, engine):
    needs(story, "upgraded")
    records = state_dir()
    before = container_facts(engine)
    runs_before = set((records / "timeline").glob("*.jsonl"))
    out = dockyard("upgrade", "--config-dir", str(CONFIG_DIR)).stdout
    assert re.search(r"^nothing to upgrade: every service runs the release globals.yml names", out, re.M), \
        out[-2000:]
    assert f"glance on {OLD}" in out and f"keystone on {NEW}" in out, out[-2000:]
    assert container_facts(engine) == before
    assert set((records / "timeline").glob("*.jsonl")) == runs_before
    # And the site is converged on its new releases: a deploy changes nothing.
    deploy = dockyard("deploy", "--config-dir", str(CONFIG_DIR)).stdout
    assert changed_nothing(deploy), deploy[-3000:]
    assert container_facts(engine) == before


def test_9_what_the_story_made_is_deleted(story, cloud):
    needs(story, "data")
    gone = remove_story_data(story)
    story["cleaned"] = True
    print("\nupgrade story: deleted", gone)
    assert not {s["Name"] for s in openstack_json("server", "list")} & {OLD_SERVER, NEW_SERVER}
    assert not set(story.get("fips", [])) & {f["Floating IP Address"] for f in openstack_json("floating", "ip", "list")}
    for kind, name in (("image", IMAGE), ("network", NETWORK), ("user", USER), ("project", PROJECT)):
        assert openstack(kind, "show", name, check=False).returncode != 0, (kind, name)
    # The cloud, on its new release, still answers the admin.
    assert openstack_json("token", "issue")["id"]
