"""Faults survived and bad input refused, on the real cloud from ``dockyard up``.

Each test leaves the cloud converged for the next one, and checks that what was
created through the API in test_20 (a project, a user, an image, a network) is
still there.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys

import pytest
import yaml

from .client import container_facts, openstack_json
from .conftest import CONFIG_DIR, REPO, changed_nothing, dockyard


def containers_of(engine, service: str):
    return engine.containers(label=f"dockyard.service={service}")


def assert_data_survived():
    assert openstack_json("project", "show", "e2e-project")["name"] == "e2e-project"
    assert openstack_json("user", "show", "e2e-user")["name"] == "e2e-user"
    assert openstack_json("image", "show", "e2e-image")["status"] == "active"
    assert openstack_json("network", "show", "e2e-net")["name"] == "e2e-net"


def assert_no_duplicate_bootstrap_effects():
    endpoints = openstack_json("endpoint", "list")
    keys = [(e["Service Type"], e["Interface"], e["Region"]) for e in endpoints]
    assert len(keys) == len(set(keys)), endpoints
    services = [s["Name"] for s in openstack_json("service", "list")]
    assert len(services) == len(set(services)), services


def host_snapshot(engine) -> dict:
    """Everything a failed run must leave as it was: containers, volumes, files."""
    files = {}
    for path in sorted(CONFIG_DIR.rglob("*")):
        if path.is_file() and "timeline" not in path.parts:
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "containers": sorted((c.name, c.id, c.status, c.started_at)
                             for c in engine.containers(label="dockyard.managed=true")),
        "volumes": sorted(v.name for v in engine.volumes()),
        "files": files,
    }


def deploy_popen(*extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dockyard", "deploy", "--config-dir", str(CONFIG_DIR), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )


def test_container_removed_or_stopped_by_hand_is_the_only_one_touched(cloud, engine):
    removed = containers_of(engine, "memcached")[0].name
    stopped = containers_of(engine, "placement")[0].name
    engine.remove(removed)
    engine.stop(stopped)
    before = container_facts(engine)
    dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    after = container_facts(engine)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {removed, stopped}
    assert after[stopped][0] == before[stopped][0], "a stopped container is started, not recreated"
    assert engine.container(removed).running and engine.container(stopped).running


def test_stop_then_deploy_keeps_data(cloud, engine):
    dockyard("stop", "--config-dir", str(CONFIG_DIR))
    assert not [c for c in engine.containers(label="dockyard.managed=true") if c.running]
    dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert_data_survived()


def test_sigkill_mid_deploy_then_deploy_completes_after_destroy(cloud, engine):
    """destroy (volumes kept), a deploy killed half-way, then a deploy that finishes."""
    dockyard("destroy", "--yes", "--config-dir", str(CONFIG_DIR))
    assert not engine.containers(label="dockyard.managed=true")
    proc = deploy_popen()
    finished_actions = 0
    # Block on the deploy's own progress output; kill it once some actions are done.
    for line in proc.stdout:
        if " ok " in f" {line} " or line.startswith("ok"):
            finished_actions += 1
        if finished_actions >= 4:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert_data_survived()
    assert_no_duplicate_bootstrap_effects()
    again = dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert changed_nothing(again.stdout), again.stdout + again.stderr


def test_two_deploys_at_once_one_refuses(cloud, engine):
    # Give the first run real work (a container to recreate), let it take the lock
    # (its first line says so), and hold it there (SIGSTOP) while the second
    # starts: however quick the first run's work, the second meets the lock.
    engine.remove(containers_of(engine, "memcached")[0].name)
    first = deploy_popen()
    try:
        head = first.stdout.readline()
        assert "run" in head.lower(), head
        first.send_signal(signal.SIGSTOP)
        second = deploy_popen()
        out2, _ = second.communicate(timeout=600)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, _ = first.communicate(timeout=1800)
    out1 = head + out1
    assert (first.returncode, second.returncode) == (0, 3), (out1, out2)
    refused = out2
    assert "lock" in refused.lower()
    again = dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert changed_nothing(again.stdout), again.stdout + again.stderr


def test_unhealthy_service_stops_its_branch_and_the_rest_finishes(cloud, engine):
    globals_file = CONFIG_DIR / "globals.yml"
    globals_saved = globals_file.read_text()
    override = CONFIG_DIR / "config" / "glance.conf"
    override_saved = override.read_text() if override.exists() else None
    horizon = containers_of(engine, "horizon")[0].name
    try:
        data = yaml.safe_load(globals_saved) or {}
        data["health_timeout"] = 45
        globals_file.write_text(yaml.safe_dump(data))
        override.parent.mkdir(parents=True, exist_ok=True)
        override.write_text((override_saved or "") + "\n[DEFAULT]\ndebug = not-a-boolean\n")
        engine.remove(horizon)  # independent work the same run must still finish
        proc = dockyard("deploy", "--config-dir", str(CONFIG_DIR), check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        glance = containers_of(engine, "glance")[0].name
        assert glance in out
        assert "last log lines" in out.lower() or "logs" in out.lower()
        assert engine.container(horizon) is not None and engine.container(horizon).running
    finally:
        globals_file.write_text(globals_saved)
        if override_saved is None:
            override.unlink()
        else:
            override.write_text(override_saved)
    dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert_data_survived()


BAD_INPUTS = {
    "malformed-yaml": ("globals.yml", lambda text: text + "\nenabled_services: [mariadb\n", "globals.yml"),
    "wrong-type": ("globals.yml", lambda text: text + "\nparallelism: many\n", "parallelism"),
    "unknown-key": ("globals.yml", lambda text: text + "\nno_such_option: 1\n", "no_such_option"),
    "unknown-service": ("globals.yml",
                        lambda text: yaml.safe_dump({**(yaml.safe_load(text) or {}),
                                                     "enabled_services": ["keystone", "nosuchservice"]}),
                        "nosuchservice"),
    "missing-password": ("passwords.yml",
                         lambda text: "\n".join(line for line in text.splitlines()
                                                if not line.startswith("keystone_admin_password")) + "\n",
                         "keystone_admin_password"),
    "override-ini-unparsable": ("config/keystone.conf", lambda text: "this is not ini\n[[[\n", "keystone.conf"),
    "inventory-unknown-host": ("inventory.yml",
                               lambda text: yaml.safe_dump({"hosts": {"localhost": {"address": "127.0.0.1"}},
                                                            "groups": {"control": ["ghost"], "network": ["localhost"],
                                                                       "compute": ["localhost"]}}),
                               "ghost"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_changes_nothing(cloud, engine, case):
    relpath, corrupt, must_name = BAD_INPUTS[case]
    path = CONFIG_DIR / relpath
    saved = path.read_text() if path.exists() else None
    before = host_snapshot(engine)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(corrupt(saved or ""))
        proc = dockyard("deploy", "--config-dir", str(CONFIG_DIR), check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out
        assert must_name in out, out
    finally:
        if saved is None:
            path.unlink()
        else:
            path.write_text(saved)
    assert host_snapshot(engine) == before


def test_broken_template_override_is_refused(cloud, engine, tmp_path):
    bad = tmp_path / "override.j2"
    bad.write_text("{% extends parent_template %}\n{% block footer %}RUN true\n")
    images_before = sorted((i.id, i.tags) for i in engine.images(label="dockyard.hash"))
    proc = dockyard("build", "--template-override", str(bad), "memcached", check=False)
    assert proc.returncode == 2
    assert str(bad) in proc.stdout + proc.stderr
    assert sorted((i.id, i.tags) for i in engine.images(label="dockyard.hash")) == images_before


def test_no_secret_leaks(cloud, engine):
    passwords = yaml.safe_load((CONFIG_DIR / "passwords.yml").read_text())
    secrets_ = [v for v in passwords.values() if isinstance(v, str) and len(v) >= 8]
    assert secrets_
    # 1. Labels, environment and commands of every container and image we own.
    import docker

    client = docker.from_env()
    blobs = []
    for c in client.containers.list(all=True, filters={"label": "dockyard.managed=true"}):
        cfg = c.attrs["Config"]
        blobs.append(json.dumps([cfg.get("Labels"), cfg.get("Env"), cfg.get("Cmd"), c.attrs.get("Args")]))
    for image in client.images.list(filters={"label": "dockyard.hash"}):
        blobs.append(json.dumps(image.attrs["Config"]))
    # 2. dockyard's own output and its timelines.
    blobs.append(dockyard("status", "--config-dir", str(CONFIG_DIR)).stdout)
    blobs.append(dockyard("deploy", "--dry-run", "--config-dir", str(CONFIG_DIR)).stdout)
    for path in CONFIG_DIR.rglob("*.jsonl"):
        blobs.append(path.read_text())
    joined = "\n".join(blobs)
    for secret in secrets_:
        assert secret not in joined
    # 3. Every file under the config folder holding a secret is mode 0600.
    for path in CONFIG_DIR.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(s.encode() in data for s in secrets_):
                assert path.stat().st_mode & 0o777 == 0o600, path
