"""Secrets that change: each class rotated with ``dockyard genpwd --rotate``,
carried by ``dockyard deploy``, on the session's cloud (after the data plane).

For each: the dry run names the secret (never its value), the deploy succeeds,
the cloud still answers the client story (token, image list, network create and
delete), the old value no longer authenticates where that can be checked, the
new one does, and a second deploy changes nothing. The cloud is left working:
tests run in file order and later ones (and the session's teardown) use it.
Last, keystone's fernet keys: ``dockyard rotate-fernet``, a deploy, and a token
issued before the rotation still validates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

from .client import openstack, openstack_json
from .conftest import CONFIG_DIR, changed_nothing, dockyard


def passwords() -> dict[str, str]:
    return yaml.safe_load((CONFIG_DIR / "passwords.yml").read_text())


def address() -> str:
    data = yaml.safe_load((CONFIG_DIR / "globals.yml").read_text()) or {}
    return data.get("internal_address", "127.0.0.1")


def rotate(name: str) -> tuple[str, str]:
    """genpwd --rotate NAME, the dry run, the deploy, the second deploy: (old, new)."""
    old = passwords()[name]
    proc = dockyard("genpwd", "--config-dir", str(CONFIG_DIR), "--rotate", name)
    new = passwords()[name]
    assert new != old and "dockyard deploy" in proc.stdout
    assert (CONFIG_DIR / "passwords.yml").stat().st_mode & 0o777 == 0o600
    plan = dockyard("deploy", "--config-dir", str(CONFIG_DIR), "--dry-run").stdout
    assert f"secret {name} changed" in plan, plan
    assert old not in plan and new not in plan
    run = dockyard("deploy", "--config-dir", str(CONFIG_DIR), timeout=3600)
    assert old not in run.stdout + run.stderr and new not in run.stdout + run.stderr
    again = dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert "0 changes" in again.stdout, again.stdout
    return old, new


def cloud_answers(tag: str) -> None:
    """The client story, with the admin's clouds.yaml as it is now."""
    assert openstack_json("token", "issue")["id"]
    openstack_json("image", "list")
    net = f"e2e-rotation-{tag}"
    openstack("network", "create", net)
    try:
        assert openstack_json("network", "show", net)["name"] == net
    finally:
        openstack("network", "delete", net)


def token_with(username: str, password: str, project: str) -> subprocess.CompletedProcess:
    """openstack token issue as this user, from the environment only (no clouds.yaml)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=f"http://{address()}:5000/v3", OS_USERNAME=username, OS_PASSWORD=password,
               OS_PROJECT_NAME=project, OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default",
               OS_IDENTITY_API_VERSION="3", OS_INTERFACE="internal")
    return subprocess.run(["openstack", "token", "issue", "-f", "value", "-c", "id"], capture_output=True,
                          text=True, timeout=120, env=env)


def exec_in(name: str, cmd: list[str], environment: dict[str, str] | None = None):
    import docker

    return docker.from_env().containers.get(name).exec_run(cmd, environment=environment or {})


def poll(what: str, check, timeout: float = 300, every: float = 5.0):
    """check() until it returns something true, up to a deadline (the state of
    nova's services comes from their heartbeats, every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def test_a_service_users_keystone_password(cloud):
    old, new = rotate("glance_keystone_password")
    cloud_answers("glance-user")
    assert token_with("glance", new, "service").returncode == 0
    refused = token_with("glance", old, "service")
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr


def test_a_database_password(cloud):
    old, new = rotate("glance_database_password")
    cloud_answers("glance-db")
    # MYSQL_PWD: the client reads it from its environment, not its command line.
    query = ["mariadb", "-h", address(), "-u", "glance", "-N", "-e", "SELECT 1"]
    assert exec_in("mariadb", query, {"MYSQL_PWD": new}).exit_code == 0
    refused = exec_in("mariadb", query, {"MYSQL_PWD": old})
    assert refused.exit_code != 0 and b"Access denied" in refused.output, refused.output


def test_the_rabbitmq_password(cloud):
    old, new = rotate("rabbitmq_password")
    cloud_answers("rabbitmq")
    # nova's and neutron's services came back on the new password.
    poll("every compute service up", lambda: (s := openstack_json("compute", "service", "list")) and
         all(x["State"] == "up" for x in s))
    poll("every network agent alive", lambda: (a := openstack_json("network", "agent", "list")) and
         all(x["Alive"] in (True, ":-)") for x in a))
    # A throwaway check inside the broker's container (the old value is dead).
    assert exec_in("rabbitmq", ["rabbitmqctl", "authenticate_user", "openstack", new]).exit_code == 0
    assert exec_in("rabbitmq", ["rabbitmqctl", "authenticate_user", "openstack", old]).exit_code != 0


def test_the_keystone_admin_password(cloud):
    old, new = rotate("keystone_admin_password")
    # The deploy rewrote the client files: the client below reads clouds.yaml.
    clouds = yaml.safe_load((CONFIG_DIR / "clouds.yaml").read_text())
    assert clouds["clouds"]["dockyard"]["auth"]["password"] == new
    assert (CONFIG_DIR / "clouds.yaml").stat().st_mode & 0o777 == 0o600
    cloud_answers("admin")
    assert token_with("admin", new, "admin").returncode == 0
    refused = token_with("admin", old, "admin")
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr


def _metadata_answer(secret: str) -> int:
    """What nova's metadata API answers a request signed with ``secret`` for an
    instance that does not exist: 403 when the signature is wrong, 404 when it
    is right (nova checks the signature before it looks the instance up)."""
    instance = str(uuid.uuid4())
    signature = hmac.new(secret.encode(), instance.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://{address()}:8775/openstack", headers={
        "X-Instance-ID": instance, "X-Tenant-ID": str(uuid.uuid4()), "X-Forwarded-For": "10.0.0.2",
        "X-Instance-ID-Signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_metadata_secret_on_both_its_sides(cloud):
    old, new = rotate("metadata_secret")
    cloud_answers("metadata")
    assert _metadata_answer(old) == 403
    assert _metadata_answer(new) != 403            # signed right: nova looks for the instance (404)
    # The agent's side carries the same value.
    agent = exec_in("neutron_metadata_agent", ["grep", "-c", "^metadata_proxy_shared_secret",
                                               "/etc/neutron/metadata_agent.ini"])
    assert agent.exit_code == 0


def test_the_database_root_password_is_set_by_mariadb_itself(cloud):
    old, new = rotate("database_password")
    cloud_answers("root")
    query = ["mariadb", "-h", address(), "-u", "root", "-N", "-e", "SELECT 1"]
    assert exec_in("mariadb", query, {"MYSQL_PWD": new}).exit_code == 0
    assert exec_in("mariadb", query, {"MYSQL_PWD": old}).exit_code != 0


@pytest.mark.parametrize("name", ["horizon_secret_key", "rabbitmq_cluster_cookie"])
def test_keys_that_restart_their_service(cloud, name):
    rotate(name)
    cloud_answers(name.replace("_", "-"))


def fernet_keys() -> dict[int, str]:
    return yaml.safe_load((CONFIG_DIR / "fernet-keys.yml").read_text())["keys"]


def identity_url() -> str:
    """Keystone's public endpoint, as the catalogue has it (``.../v3``)."""
    (endpoint,) = openstack_json("endpoint", "list", "--service", "identity", "--interface", "public")
    return endpoint["URL"].rstrip("/")


def validate_token(auth_token: str, subject_token: str) -> int:
    """GET /v3/auth/tokens: keystone's answer on ``subject_token`` (200 valid,
    404 not), asked with ``auth_token`` (an admin's). Straight to the endpoint:
    no proxy from the environment."""
    request = urllib.request.Request(f"{identity_url()}/auth/tokens", headers={
        "X-Auth-Token": auth_token, "X-Subject-Token": subject_token, "Accept": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as resp:
            assert json.loads(resp.read())["token"]["user"]["name"] == "admin"
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_fernet_keys_rotate_and_a_token_from_before_still_validates(cloud):
    before = fernet_keys()
    old_token = openstack_json("token", "issue")["id"]
    assert validate_token(openstack_json("token", "issue")["id"], old_token) == 200

    proc = dockyard("rotate-fernet", "--config-dir", str(CONFIG_DIR))
    after = fernet_keys()
    assert after[max(after)] == before[0]                          # the staged key is the primary
    assert after[max(before)] == before[max(before)]               # the old primary stays, a secondary
    assert after[0] not in before.values()                         # a new staged key
    assert stat.S_IMODE((CONFIG_DIR / "fernet-keys.yml").stat().st_mode) == 0o600
    assert "dockyard deploy" in proc.stdout
    keys = {*before.values(), *after.values()}
    assert not [k for k in keys if k in proc.stdout + proc.stderr]

    plan = dockyard("deploy", "--config-dir", str(CONFIG_DIR), "--dry-run").stdout
    assert "secret keystone_fernet_keys changed" in plan and "recreate keystone" in plan, plan
    assert not [k for k in keys if k in plan]
    run = dockyard("deploy", "--config-dir", str(CONFIG_DIR), timeout=3600)
    assert not [k for k in keys if k in run.stdout + run.stderr]
    again = dockyard("deploy", "--config-dir", str(CONFIG_DIR))
    assert changed_nothing(again.stdout), again.stdout

    # keystone runs the file's keys, one file per index.
    listed = exec_in("keystone", ["ls", "/etc/keystone/fernet-keys"])
    assert listed.exit_code == 0 and sorted(listed.output.decode().split()) == sorted(str(i) for i in after)
    # A token issued before the rotation still validates; one issued after does too.
    new_token = openstack_json("token", "issue")["id"]
    assert new_token != old_token
    assert validate_token(new_token, old_token) == 200
    assert validate_token(new_token, new_token) == 200
    rotated = yaml.safe_load((CONFIG_DIR / "fernet-keys.yml").read_text())["rotated"]
    status = dockyard("status", "--config-dir", str(CONFIG_DIR)).stdout
    assert f"keystone fernet keys: last rotated {rotated};" in status, status
    cloud_answers("fernet")
