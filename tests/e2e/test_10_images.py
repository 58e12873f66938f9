"""The real catalogue, built for real, and each image run through its contract.

For every runnable image: a real ``config.json`` is mounted, the entrypoint copies
a config file into place with the owner and mode it asks for, and the command then
runs as the image's service user and proves the service's own program is there.
"""

from __future__ import annotations

import json

import docker
import pytest
import yaml

from dockyard import SOURCE_ROOT

from .conftest import dockyard

CATALOGUE = SOURCE_ROOT / "images"

# image -> a command proving the service's own program runs in it.
SERVICE_PROGRAM = {
    "mariadb-server": "mariadbd --version",
    "rabbitmq": "test -x /usr/lib/rabbitmq/bin/rabbitmq-server",
    "memcached": "memcached --version",
    "toolbox": "openstack --version && mariadb --version",
    "keystone": "keystone-manage --version",
    "glance-api": "glance-api --version",
    "placement-api": "placement-manage --version",
    "nova-api": "nova-api --version",
    "nova-conductor": "nova-conductor --version",
    "nova-scheduler": "nova-scheduler --version",
    "nova-novncproxy": "nova-novncproxy --version",
    "nova-compute": "nova-compute --version",
    "nova-libvirt": "libvirtd --version",
    "neutron-server": "neutron-server --version",
    "neutron-openvswitch-agent": "neutron-openvswitch-agent --version",
    "neutron-dhcp-agent": "neutron-dhcp-agent --version",
    "neutron-l3-agent": "neutron-l3-agent --version",
    "neutron-metadata-agent": "neutron-metadata-agent --version",
    "openvswitch-db-server": "ovsdb-server --version",
    "openvswitch-vswitchd": "ovs-vswitchd --version",
    "horizon": 'python3 -c "import openstack_dashboard"',
    "registry": "docker-registry --version",
    "guest-image": "test -s /guest/dockyard-guest.qcow2 && python3 -m json.tool /guest/guest.json >/dev/null",
}


def catalogue() -> dict[str, dict]:
    return {p.parent.name: yaml.safe_load(p.read_text()) for p in CATALOGUE.glob("*/image.yml")}


def test_every_leaf_image_is_exercised_here():
    images = catalogue()
    parents = {meta.get("parent") for meta in images.values()}
    leaves = {name for name in images if name not in parents}
    assert leaves == set(SERVICE_PROGRAM)


def test_whole_catalogue_built(built_catalogue):
    statuses = {row["image"]: row["status"] for row in built_catalogue["images"]}
    assert set(statuses) == set(catalogue())
    assert all(s in ("built", "cached") for s in statuses.values()), statuses


def test_second_build_is_all_cached(built_catalogue, tmp_path):
    proc = dockyard("build", "--format", "json", "--work-dir", str(tmp_path / "w"))
    report = json.loads(proc.stdout)
    assert {row["status"] for row in report["images"]} == {"cached"}


def _ref(name: str) -> str:
    return f"dockyard/{name}:2025.1"


@pytest.mark.parametrize("image", sorted(SERVICE_PROGRAM))
def test_image_runs_its_program_as_its_user(built_catalogue, image, tmp_path):
    user = catalogue()[image]["user"]
    config_dir = tmp_path / "config_files"
    config_dir.mkdir()
    (config_dir / "probe.conf").write_text("[DEFAULT]\nprobe = yes\n")
    owner = user if user != "root" else "root"
    (config_dir / "config.json").write_text(json.dumps({
        "command": f"sh -c 'id -un; stat -c \"%U %a\" /etc/dockyard-probe.conf; {SERVICE_PROGRAM[image]}'",
        "config_files": [{
            "source": "/var/lib/dockyard/config_files/probe.conf",
            "dest": "/etc/dockyard-probe.conf",
            "owner": owner,
            "perm": "0640",
        }],
    }))
    client = docker.from_env()
    out = client.containers.run(
        _ref(image), remove=True, network_mode="none",
        volumes={str(config_dir): {"bind": "/var/lib/dockyard/config_files", "mode": "ro"}},
    ).decode()
    lines = out.strip().splitlines()
    assert lines[0] == user, out
    assert lines[1] == f"{owner} 640", out


def test_bad_config_json_fails_before_changing_anything(built_catalogue, tmp_path):
    config_dir = tmp_path / "config_files"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({
        "command": "true",
        "config_files": [{"source": "/var/lib/dockyard/config_files/missing.conf",
                          "dest": "/etc/keystone/keystone.conf", "owner": "keystone", "perm": "0600"}],
    }))
    client = docker.from_env()
    container = client.containers.run(
        _ref("keystone"), detach=True, network_mode="none",
        volumes={str(config_dir): {"bind": "/var/lib/dockyard/config_files", "mode": "ro"}},
    )
    try:
        result = container.wait(timeout=120)
        assert result["StatusCode"] != 0
        assert "missing.conf" in container.logs().decode()
        diff = container.diff() or []
        assert not [d for d in diff if d["Path"].startswith("/etc/keystone")], diff
    finally:
        container.remove(force=True)


def test_memcached_serves_as_memcache_user_and_gets_healthy(built_catalogue, tmp_path):
    config_dir = tmp_path / "config_files"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({
        "command": "memcached -l 127.0.0.1 -p 21211 -m 16", "config_files": []}))
    client = docker.from_env()
    container = client.containers.run(
        _ref("memcached"), detach=True, network_mode="host",
        volumes={str(config_dir): {"bind": "/var/lib/dockyard/config_files", "mode": "ro"}},
        healthcheck={"test": ["CMD", "dockyard-healthcheck", "port", "21211"],
                     "interval": 500_000_000, "timeout": 2_000_000_000, "retries": 60},
    )
    try:
        from dockyard.engine import connect

        connect().wait_healthy(container.name, timeout=60)
        # `docker top` runs ps on the host, which may not know the name: compare ids.
        uid = yaml.safe_load((CATALOGUE / "base" / "users.yml").read_text())["memcache"]
        top = container.top(ps_args="-o pid,uid,comm")  # the engine needs the pid column
        uids = {row[1].strip() for row in top["Processes"] if row[2] == "memcached"}
        assert uids == {str(uid)}, top
    finally:
        container.remove(force=True)
