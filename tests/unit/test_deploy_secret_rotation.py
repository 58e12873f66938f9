"""A changed secret, carried by a deploy (fake engine): the plan names the
secret (never its value), touches everything that reads it, in an order that
keeps the cloud working, and a second deploy has nothing to do."""

from __future__ import annotations

import json

import pytest
import yaml

from dockyard.deploy import api
from dockyard.deploy.plan.planner import Plan

from .deploy_fixtures import converge_site, quiet, set_password, waits_for


def dry_run(site_dir, engine) -> Plan:
    return api.deploy(site_dir, engine=engine, dry_run=True, say=quiet)


@pytest.fixture
def site(site_dir):
    """A converged all-in-one on the fake engine."""
    return site_dir, converge_site(site_dir)


NEW = "Rotated-value-4f1c9a0b7e2d"


def rotate(site, name: str) -> Plan:
    site_dir, engine = site
    set_password(site_dir, name, NEW)
    plan = dry_run(site_dir, engine)
    text = plan.render() + plan.to_json() + "".join(a.reason for a in plan.actions)
    assert NEW not in text                            # by name, never by value
    return plan


def then_converged(site) -> None:
    site_dir, engine = site
    converge_site(site_dir, engine)
    again = dry_run(site_dir, engine)
    assert again.changes() == 0, again.render()


def kinds(plan: Plan) -> dict[str, str]:
    return {a.id: a.reason for a in plan.actions if a.changes_something}


def test_a_service_users_keystone_password(site):
    plan = rotate(site, "glance_keystone_password")
    assert set(plan.secrets) == {"glance_keystone_password"}
    touched = set(plan.secrets["glance_keystone_password"])
    assert {"job:glance_register", "recreate:glance_api"} <= touched
    changes = kinds(plan)
    assert "secret glance_keystone_password changed" in changes["job:glance_register"]
    assert "secret glance_keystone_password changed" in changes["recreate:glance_api"]
    # keystone knows the new password before glance uses it.
    assert "job:glance_register" in waits_for(plan, "recreate:glance_api")
    summary = plan.render().splitlines()[0]
    assert summary.startswith("secret glance_keystone_password changed: ")
    assert "run_job glance_register" in summary and "recreate glance_api" in summary
    # Nothing that does not read it.
    assert not any(a.target in ("keystone", "mariadb", "rabbitmq", "nova_api") for a in plan.actions)
    then_converged(site)


def test_another_services_user_password_waits_for_that_services_registration(site):
    plan = rotate(site, "neutron_keystone_password")
    for unit in ("recreate:nova_api", "recreate:nova_conductor", "recreate:neutron_api"):
        assert "job:neutron_register" in waits_for(plan, unit), unit
    assert "recreate:nova_compute" in plan.secrets["neutron_keystone_password"]
    then_converged(site)


def test_a_database_password(site):
    plan = rotate(site, "glance_database_password")
    changes = kinds(plan)
    assert "secret glance_database_password changed" in changes["job:glance_databases"]    # ALTER USER
    assert "job:glance_databases" in waits_for(plan, "recreate:glance_api")
    assert not any(a.target in ("mariadb", "keystone") for a in plan.actions)
    then_converged(site)


def test_nova_database_password_reaches_the_cell_mappings_through_its_templates(site):
    site_dir, _ = site
    plan = rotate(site, "nova_database_password")
    assert "job:nova_databases" in waits_for(plan, "recreate:nova_conductor")
    # The mappings are templates (made once, rewritten harmlessly): no password in them.
    script = (site_dir / "generated" / "nova_cells" / "nova-cells.sh").read_text()
    assert "--database_connection \"$database\"" in script
    assert "database='{scheme}://{username}:{password}@{hostname}:{port}/{path}?{query}'" in script
    assert "transport='{scheme}://{username}:{password}@{hostname}:{port}//'" in script
    assert "job:nova_cells" in waits_for(plan, "recreate:nova_conductor")
    then_converged(site)


def test_the_database_root_password_restarts_mariadb_which_sets_it_itself(site):
    site_dir, _ = site
    plan = rotate(site, "database_password")
    changes = kinds(plan)
    assert "secret database_password changed" in changes["recreate:mariadb"]
    for job in ("job:keystone_databases", "job:glance_databases", "job:nova_databases"):
        assert "wait_healthy:mariadb" in waits_for(plan, job)          # root's new password is set by then
    sql = (site_dir / "generated" / "mariadb" / "root-password.sql")
    assert not sql.exists() or NEW not in sql.read_text()              # not written by a dry run
    then_converged(site)
    text = sql.read_text()
    assert f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{NEW}';" in text
    assert oct(sql.stat().st_mode & 0o777) == oct(0o600)


def test_the_rabbitmq_password(site):
    plan = rotate(site, "rabbitmq_password")
    changes = kinds(plan)
    assert "secret rabbitmq_password changed" in changes["recreate:rabbitmq"]
    for unit in ("recreate:nova_api", "recreate:neutron_rpc_server", "recreate:nova_compute",
                 "recreate:neutron_openvswitch_agent"):
        assert "wait_healthy:rabbitmq" in waits_for(plan, unit), unit
    then_converged(site)


def test_the_erlang_cookie_restarts_rabbitmq_and_says_so(site):
    plan = rotate(site, "rabbitmq_cluster_cookie")
    assert plan.secrets == {"rabbitmq_cluster_cookie": ["recreate:rabbitmq"]}
    assert "erlang.cookie changed; secret rabbitmq_cluster_cookie changed" in kinds(plan)["recreate:rabbitmq"]
    assert "secret rabbitmq_cluster_cookie changed: recreate rabbitmq" in plan.render()
    then_converged(site)


def test_the_keystone_admin_password(site):
    plan = rotate(site, "keystone_admin_password")
    changes = kinds(plan)
    assert "secret keystone_admin_password changed" in changes["job:keystone_admin"]    # keystone-manage bootstrap
    for job in ("job:glance_register", "job:nova_register", "job:neutron_register"):
        assert "job:keystone_admin" in waits_for(plan, job)            # they log in as admin
    assert "recreate:keystone" not in changes                           # keystone itself does not read it
    then_converged(site)


def test_the_metadata_secret_on_both_its_sides(site):
    plan = rotate(site, "metadata_secret")
    touched = set(plan.secrets["metadata_secret"])
    assert {"recreate:neutron_metadata_agent", "recreate:nova_compute", "recreate:nova_metadata"} <= touched
    then_converged(site)


def test_horizons_secret_key(site):
    plan = rotate(site, "horizon_secret_key")
    assert plan.secrets == {"horizon_secret_key": ["recreate:horizon"]}
    assert {a.target for a in plan.actions if a.changes_something and a.kind != "write_file"} == {"horizon"}
    then_converged(site)


def test_the_plan_as_json_names_secrets_and_what_they_touch(site):
    plan = rotate(site, "horizon_secret_key")
    data = json.loads(plan.to_json())
    assert data["secrets"] == {"horizon_secret_key": ["recreate:horizon"]}


def test_a_new_hash_key_says_re_keyed_not_every_secret(site):
    plan = rotate(site, "dockyard_hash_key")
    assert plan.secrets == {}
    assert all("hashes re-keyed" in a.reason for a in plan.actions if a.kind == "recreate")


def test_the_admins_client_files_follow_its_password_after_the_deploy(site):
    site_dir, engine = site
    api.post_deploy(site_dir)
    lines: list[str] = []
    set_password(site_dir, "keystone_admin_password", NEW)
    plan = dry_run(site_dir, engine)
    assert NEW not in (site_dir / "clouds.yaml").read_text()            # a dry run changes nothing
    assert plan.secrets["keystone_admin_password"]
    assert api.deploy(site_dir, engine=engine, say=lines.append).ok
    assert yaml.safe_load((site_dir / "clouds.yaml").read_text())["clouds"]["dockyard"]["auth"]["password"] == NEW
    assert NEW in (site_dir / "admin-openrc.sh").read_text()
    for name in ("clouds.yaml", "admin-openrc.sh"):
        assert (site_dir / name).stat().st_mode & 0o777 == 0o600
    assert any("rewrote" in line and "clouds.yaml" in line for line in lines)
    assert not any(NEW in line for line in lines)
