"""The all-in-one cloud, deployed by ``dockyard up`` and used with a real client.

Everything here goes through the operator's interface (the ``dockyard`` command)
and python-openstackclient with the ``clouds.yaml`` that ``post-deploy`` wrote.
Tests run in file order and build on each other: they are one story.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.request

import yaml

from dockyard.deploy.site.hostfacts import machine_hostname

from .client import container_facts, openstack, openstack_json
from .conftest import CONFIG_DIR, NASTY_PASSWORDS, changed_nothing, dockyard


def test_up_wrote_client_config_with_private_modes(cloud):
    for name in ("clouds.yaml", "admin-openrc.sh", "passwords.yml"):
        path = CONFIG_DIR / name
        assert path.exists(), name
        assert path.stat().st_mode & 0o777 == 0o600, name


def test_the_cloud_runs_on_the_operators_nasty_passwords(cloud):
    # `up` kept them (and the token below is issued with the admin's).
    kept = yaml.safe_load((CONFIG_DIR / "passwords.yml").read_text())
    for name, value in NASTY_PASSWORDS.items():
        assert kept[name] == value, name


def test_token_issue(cloud):
    token = openstack_json("token", "issue")
    assert token["id"]
    assert token["project_id"]


def test_catalog_lists_every_service(cloud):
    types = {entry["Type"] for entry in openstack_json("catalog", "list")}
    assert {"identity", "image", "placement", "compute", "network"} <= types


def test_project_user_role_and_the_new_user_gets_a_token(cloud):
    openstack("project", "create", "e2e-project")
    openstack("user", "create", "--project", "e2e-project", "--password", "e2e-secret-pw", "e2e-user")
    openstack("role", "add", "--project", "e2e-project", "--user", "e2e-user", "member")
    env = {
        "OS_AUTH_URL": openstack_json("endpoint", "list", "--service", "identity", "--interface", "public")[0]["URL"],
        "OS_USERNAME": "e2e-user", "OS_PASSWORD": "e2e-secret-pw", "OS_PROJECT_NAME": "e2e-project",
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
    }
    proc = subprocess.run(["openstack", "token", "issue", "-f", "json"], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in {**os.environ, **env}.items()
                                            if k != "OS_CLOUD"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"]


def test_image_upload_download_is_byte_identical(cloud, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "img.raw"
    src.write_bytes(payload)
    openstack("image", "create", "--file", str(src), "--disk-format", "raw",
              "--container-format", "bare", "e2e-image")
    dst = tmp_path / "back.raw"
    openstack("image", "save", "--file", str(dst), "e2e-image")
    assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_image_upload_in_chunks_as_nova_sends_snapshots(cloud, tmp_path):
    # Nova uploads a snapshot (and cinder a volume) through glanceclient as a body
    # of unknown length: Transfer-Encoding chunked, 1 MiB chunks. Sent here by hand,
    # chunk by chunk, to the image's file.
    token = openstack("token", "issue", "-f", "value", "-c", "id").stdout.strip()
    endpoint = next(e["URL"] for e in openstack_json("endpoint", "list", "--service", "image",
                                                     "--interface", "public"))
    # The record by the API: `openstack image create` with no --file uploads its
    # stdin (empty here), which makes the image active before the PUT below.
    create = urllib.request.Request(
        f"{endpoint}/v2/images", method="POST",
        data=json.dumps({"name": "e2e-chunked", "disk_format": "raw", "container_format": "bare"}).encode(),
        headers={"X-Auth-Token": token, "Content-Type": "application/json"})
    with urllib.request.urlopen(create, timeout=60) as response:
        image = json.load(response)
    chunks = [os.urandom(1024 * 1024) for _ in range(3)] + [os.urandom(17)]
    try:
        put = urllib.request.Request(
            f"{endpoint}/v2/images/{image['id']}/file", data=iter(chunks), method="PUT",
            headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream",
                     "Transfer-Encoding": "chunked"})
        with urllib.request.urlopen(put, timeout=120) as response:
            assert response.status == 204
        assert openstack_json("image", "show", image["id"])["status"] == "active"
        dst = tmp_path / "back.raw"
        openstack("image", "save", "--file", str(dst), image["id"])
        assert hashlib.sha256(dst.read_bytes()).hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    finally:
        openstack("image", "delete", image["id"], check=False)


def test_placement_answers(cloud):
    # Its own standard resource classes: placement's database is there and its API answers.
    classes = {row["name"] for row in openstack_json("resource", "class", "list")}
    assert {"VCPU", "MEMORY_MB", "DISK_GB"} <= classes, classes
    # The only provider there can be is the all-in-one's compute node, named like
    # its hypervisor: the machine (nova-compute registers it a few seconds after
    # it starts, so it may not be there yet; test_50 waits for it).
    providers = openstack_json("resource", "provider", "list")
    assert {p["name"] for p in providers} <= {machine_hostname()}, providers


def test_glance_metadata_definitions_are_loaded(cloud):
    # The glance-metadefs job loaded Debian's files (Horizon's property editors read them).
    names = {row["namespace"] for row in openstack_json("image", "metadef", "namespace", "list")}
    assert {"OS::Compute::CPUPinning", "OS::Compute::Libvirt", "OS::Glance::CommonImageProperties"} <= names, names
    assert len(names) >= 20, names


def test_compute_services_up(cloud):
    rows = openstack_json("compute", "service", "list")
    binaries = {r["Binary"]: r for r in rows}
    for binary in ("nova-conductor", "nova-scheduler"):
        assert binary in binaries, rows
        assert binaries[binary]["State"] == "up", rows


def test_network_and_subnet(cloud):
    openstack("network", "create", "e2e-net")
    openstack("subnet", "create", "--network", "e2e-net", "--subnet-range", "10.99.0.0/24", "e2e-subnet")
    assert openstack_json("subnet", "show", "e2e-subnet")["cidr"] == "10.99.0.0/24"


def test_horizon_login_page(cloud):
    url = os.environ.get("DOCKYARD_E2E_HORIZON", "http://127.0.0.1/auth/login/")
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = resp.read().decode("utf-8", "replace")
        assert resp.status == 200
    assert "csrfmiddlewaretoken" in body


def test_second_deploy_changes_nothing(cloud, engine):
    before = container_facts(engine)
    proc = dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert changed_nothing(proc.stdout), proc.stdout + proc.stderr
    assert container_facts(engine) == before


def test_reconfigure_restarts_only_glance_api(cloud, engine):
    before = container_facts(engine)
    namespaces = openstack_json("image", "metadef", "namespace", "list")
    override = CONFIG_DIR / "config" / "glance.conf"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text("[DEFAULT]\nshow_image_direct_url = True\n")
    out = dockyard("reconfigure", "--config-dir", str(CONFIG_DIR)).stdout
    after = container_facts(engine)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"glance_api"}
    # The jobs that read glance-api.conf ran again; loading the metadata
    # definitions a second time succeeded and changed none of them.
    assert re.search(r"^\s+ok\s+job:glance_metadefs\s", out, re.M), out
    assert openstack_json("image", "metadef", "namespace", "list") == namespaces
    # The change really reached the running service's configuration file.
    import docker

    result = docker.from_env().containers.get("glance_api").exec_run(
        ["grep", "-c", "^show_image_direct_url = True", "/etc/glance/glance-api.conf"])
    assert result.exit_code == 0 and result.output.strip() == b"1", result.output


def test_everything_created_is_still_there(cloud):
    assert openstack_json("project", "show", "e2e-project")["name"] == "e2e-project"
    assert openstack_json("user", "show", "e2e-user")["name"] == "e2e-user"
    assert openstack_json("image", "show", "e2e-image")["status"] == "active"
    assert openstack_json("network", "show", "e2e-net")["name"] == "e2e-net"

