"""A site across two real engines: the testbed's hosts, reached over TLS.

memcached is placed on both hosts (group control: [h1, h2]) and deployed by one
``dockyard deploy``; its configuration is copied into each container through
the engine API (nothing of it is on the hosts' disks). Then: a second deploy is
a no-op; h2's engine stopped while a change rolls out is reported with its
host, h1's part completes; h2's engine started again, the next deploy converges.

A second site, with a tiny service of a test catalogue, crosses hosts: a job on
h1 (checks the secret file copied into it: there, 0600, its own host's) and a
container on h2 after that job.

Needs root and the machine's ``dockyard/memcached:2025.1`` (only read, loaded
into the testbed). Only loopback and the testbed's /24 carry traffic. Under a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from dockyard.testbed import Testbed, client
from dockyard.testbed.daemon import API_VERSION, dockerd_pid

from .conftest import changed_nothing, dockyard, write_testbed_site

REPO = Path(__file__).resolve().parents[2]
IMAGE = "dockyard/memcached:2025.1"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root")


def tb_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dockyard.testbed", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"testbed {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def memcached_stats(address: str) -> str:
    """memcached's `stats`, over TCP from this namespace to the host's address."""
    return memcached_stats_on(address, 11211)


def memcached_stats_on(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


def containers_of(host) -> dict[str, dict]:
    c = client(host, timeout=20)
    try:
        return {x.name: x.attrs for x in c.containers.list(all=True)}
    finally:
        c.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    engine = docker.DockerClient(base_url="unix:///var/run/docker.sock", version=API_VERSION)
    try:
        engine.api.inspect_image(IMAGE)
    except docker.errors.NotFound:
        pytest.skip(f"{IMAGE} is not built yet on this machine's engine")
    finally:
        engine.close()
    tb_cli("down")
    tb_cli("up", "2")
    tb_cli("load", IMAGE)
    tb = Testbed()
    hosts = [tb.host(1), tb.host(2)]
    folder = tmp_path_factory.mktemp("multihost") / "site"
    folder.mkdir()
    write_testbed_site(folder, hosts)
    dockyard("genpwd", "--config-dir", str(folder))
    started = time.monotonic()
    first = dockyard("deploy", "--config-dir", str(folder), timeout=180)
    yield {"dir": folder, "hosts": hosts, "first": first, "first_seconds": time.monotonic() - started}
    dockyard("destroy", "--config-dir", str(folder), "--yes", check=False, timeout=120)
    tb_cli("down")


def test_one_deploy_brings_memcached_up_healthy_on_both_hosts(site):
    out = site["first"].stdout
    for host in ("h1", "h2"):
        assert f"ok      create:memcached@{host}" in out and f"ok      wait_healthy:memcached@{host}" in out
    assert "2 changes, 0 failed, 0 skipped" in out
    for host in site["hosts"]:
        attrs = containers_of(host)["memcached"]
        # The deploy ran the health check itself; the engine's own runs 30 s apart
        # and may not have reported yet.
        assert attrs["State"]["Status"] == "running" and attrs["State"]["Health"]["Status"] in ("starting", "healthy")
        assert attrs["Config"]["Healthcheck"]["Interval"] == 30 * 1_000_000_000
        # Its configuration was copied in, not bound from a disk: no bind mount of config at all.
        assert not [m for m in attrs["Mounts"] if m["Destination"] == "/var/lib/dockyard/config_files"]
        assert attrs["Config"]["Labels"]["dockyard.host"] == f"h{host.index}"
        assert "STAT pid" in memcached_stats(host.address)        # listening on its own host's address
    assert not (site["dir"] / "generated").exists()                # nothing of it on this machine's disk
    assert site["first_seconds"] < 60, site["first_seconds"]


def test_the_secret_config_is_private_in_the_container(site):
    c = client(site["hosts"][1])
    try:
        out = c.containers.get("memcached").exec_run(
            ["stat", "-c", "%a %U %n", "/var/lib/dockyard/config_files/config.json"]).output.decode()
    finally:
        c.close()
    assert out.split()[:2] == ["600", "root"], out


def test_status_and_dry_run_cover_both_hosts(site):
    rows = json.loads(dockyard("status", "--config-dir", str(site["dir"]), "--format", "json").stdout)
    assert {(r["container"], r["host"], r["state"], r["up_to_date"]) for r in rows} == \
        {("memcached", "h1", "running", True), ("memcached", "h2", "running", True)}
    checks = dockyard("prechecks", "--config-dir", str(site["dir"])).stdout
    assert "ok    container engine: host h1 (tcp://10.113.0.11:2376): reachable" in checks
    assert "ok    container engine: host h2 (tcp://10.113.0.12:2376): reachable" in checks


def test_a_second_deploy_changes_nothing(site):
    again = dockyard("deploy", "--config-dir", str(site["dir"]))
    assert changed_nothing(again.stdout), again.stdout


def test_an_engine_stopped_mid_run_is_reported_and_the_next_run_converges(site):
    h1, h2 = site["hosts"]
    config = site["dir"]
    globals_yml = yaml.safe_load((config / "globals.yml").read_text())
    globals_yml["services"] = {"memcached": {"memory_mb": 64}}
    (config / "globals.yml").write_text(yaml.safe_dump(globals_yml))
    before = {h.index: containers_of(h)["memcached"]["Id"] for h in (h1, h2)}
    # The run starts (both engines observed), then h2's engine is stopped under it.
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "deploy", "--config-dir", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    first_line = proc.stdout.readline()
    assert first_line.startswith("dockyard: run "), first_line + proc.stderr.read()
    os.kill(dockerd_pid(h2), signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    failed = [line for line in out.splitlines() if line.startswith("  FAILED")]
    assert failed and all("@h2" in line for line in failed), out
    assert "host h2" in out, out
    assert "ok      recreate:memcached@h1" in out and "ok      wait_healthy:memcached@h1" in out, out
    assert "  h1: 1 changes, 0 failed, 0 skipped" in out, out
    assert containers_of(h1)["memcached"]["Id"] != before[1]
    # While it is down, every command says so and covers the other host.
    rows = json.loads(dockyard("status", "--config-dir", str(config), "--format", "json").stdout)
    assert {(r["host"], r["state"]) for r in rows} == {("h1", "running"), ("h2", "unreachable")}
    down = dockyard("deploy", "--config-dir", str(config), check=False)
    # Refused or timed out, as the stopping engine's socket goes: either way h2 is named.
    assert down.returncode == 1 and "host h2" in down.stdout and "does not answer" in down.stdout, down.stdout
    # Started again (its data root kept), the next run does what is left, on h2 only.
    tb_cli("up", "2")
    again = dockyard("deploy", "--config-dir", str(config), timeout=120)
    assert "0 failed, 0 skipped" in again.stdout
    # Nothing is done on h1; it may only wait on memcached's health check (the
    # engine's own, 30 s apart, may not have reported since its recreate).
    on_h1 = [line for line in again.stdout.splitlines() if "@h1" in line]
    assert all(line.startswith("  ok      wait_healthy:memcached@h1 ") for line in on_h1), again.stdout
    assert "STAT limit_maxbytes 67108864" in memcached_stats(h2.address)
    assert "STAT limit_maxbytes 67108864" in memcached_stats(h1.address)
    final = dockyard("deploy", "--config-dir", str(config))
    assert changed_nothing(final.stdout), final.stdout


RELAY = """\
description: A job on the control host, a container on the compute host after it (tests only).
depends_on: [memcached]
config:
  relay.conf: {template: relay.conf.j2, dest: /etc/relay.conf, owner: root, perm: "0600", override: false}
jobs:
  - name: relay-check
    image: memcached
    user: root
    config: [relay.conf]
    command: >-
      sh -c 'test "$(stat -c %a:%U /etc/relay.conf)" = 600:root
      && grep -qx "host = {{ host.name }}" /etc/relay.conf && echo relay.conf checked on {{ host.name }}'
containers:
  relay:
    image: memcached
    group: compute
    command: "memcached -l {{ address }} -p 11311 -U 0 -m 16"
    ports: [11311]
    healthcheck: {test: [port, "11311", --host, "{{ address }}"]}
"""


def test_a_job_on_one_host_then_a_container_on_the_other(site, tmp_path):
    from dockyard.deploy import api

    # One engine runs one site: the first site's containers go (a check of destroy on both hosts too).
    gone = dockyard("destroy", "--config-dir", str(site["dir"]), "--yes")
    assert re.search(r"^  ok +remove:memcached@h1 ", gone.stdout, re.M), gone.stdout
    assert re.search(r"^  ok +remove:memcached@h2 ", gone.stdout, re.M), gone.stdout
    catalogue = tmp_path / "services"
    (catalogue / "templates").mkdir(parents=True)
    (catalogue / "memcached.yml").write_text((REPO / "services" / "memcached.yml").read_text())
    (catalogue / "relay.yml").write_text(RELAY)
    (catalogue / "templates" / "relay.conf.j2").write_text("host = {{ host.name }}\nsecret = {{ 'x' * 12 }}\n")
    config = tmp_path / "site"
    config.mkdir()
    inventory = yaml.safe_load((site["dir"] / "inventory.yml").read_text())
    inventory["groups"]["compute"] = ["h2"]
    (config / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (config / "globals.yml").write_text(yaml.safe_dump({"enabled_services": ["relay"],
                                                        "internal_address": site["hosts"][0].address}))
    (config / "passwords.yml").write_text((site["dir"] / "passwords.yml").read_text())
    (config / "passwords.yml").chmod(0o600)
    lines: list[str] = []
    plan = api.deploy(config, dry_run=True, say=lines.append, services_root=catalogue)
    deps = {a.id: a.deps for a in plan.actions}
    assert "job:relay_check@h1" in deps["create:relay@h2"]                 # across hosts
    assert "wait_healthy:memcached@h1" not in deps["create:relay@h2"]     # its own host's memcached only
    result = api.deploy(config, say=lines.append, services_root=catalogue)
    assert result.ok, "\n".join(lines)
    assert result.outcome("job:relay_check@h1").result == "ok"
    assert "STAT pid" in (memcached_stats_on(site["hosts"][1].address, 11311))
    again = api.deploy(config, say=lines.append, services_root=catalogue)
    assert again.ok and again.changed == 0
    api.destroy(config, include_volumes=False, say=lines.append, services_root=catalogue)
