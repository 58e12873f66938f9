"""The planner: what it decides, why, and in which order — on a fake engine."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.deploy.wanted.hashing import differing_files, spec_hashes
from dockyard.labels import LABEL_HASH, LABEL_HASH_KEY, LABEL_HASH_PART_PREFIX, LABEL_MANAGED, LABEL_SERVICE
from dockyard.deploy.plan.observe import ObservedState, observe
from dockyard.deploy.plan.planner import Action, ActionKind, Plan, make_plan
from dockyard.engine.driver import ContainerSpec
from dockyard.errors import ConfigError

from .deploy_fixtures import waits_for
from .wanted_factory import SECRET, Site, apply, converge, fake_engine, make_wanted, plan_for


@pytest.fixture
def deployed(site, state_dir):
    """A fake engine with the whole site converged."""
    engine = fake_engine()
    converge(engine, make_wanted(site), state_dir)
    return engine


def ids(plan: Plan) -> list[str]:
    return [a.id for a in plan.actions]


def path(site: Site, unit: str, name: str) -> str:
    return str(site.folder(unit) / name)


# -- a fresh site ------------------------------------------------------------------------------

def test_fresh_site_creates_everything(site, state_dir):
    wanted = make_wanted(site)
    plan = make_plan(wanted, ObservedState())
    plan.validate()
    got = set(ids(plan))
    assert {"create_volume:mariadb", "create_volume:glance"} <= got
    assert {f"write_file:{f.path}" for f in wanted.files} <= got
    assert {f"job:{j.name}" for j in wanted.jobs} <= got
    assert {f"create:{c.name}" for c in wanted.containers} <= got
    # A wait after every container with a health check, none after memcached (it has none).
    assert {"wait_healthy:mariadb", "wait_healthy:keystone", "wait_healthy:glance_api"} <= got
    assert "wait_healthy:memcached" not in got
    assert len(got) == len(wanted.volumes) + len(wanted.files) + len(wanted.jobs) + len(wanted.containers) + 3
    assert all(isinstance(a.kind, ActionKind) for a in plan.actions)


def test_fresh_site_dependency_edges(site):
    plan = make_plan(make_wanted(site), ObservedState())
    deps = {a.id: set(a.deps) for a in plan.actions}
    assert deps["create:mariadb"] == {"create_volume:mariadb", f"write_file:{path(site, 'mariadb', 'my.cnf')}",
                                      f"write_file:{path(site, 'mariadb', 'config.json')}"}
    assert deps["wait_healthy:mariadb"] == {"create:mariadb"}
    assert "wait_healthy:mariadb" in deps["job:keystone_databases"]
    assert f"write_file:{path(site, 'keystone_databases', 'keystone-create.sql')}" in deps["job:keystone_databases"]
    assert "job:keystone_databases" in deps["job:keystone_db_sync"]
    # memcached has no health check: keystone waits for it to be created, no more.
    assert {"job:keystone_db_sync", "create:memcached"} <= deps["create:keystone"]
    assert {"wait_healthy:keystone", "job:glance_db_sync", "create_volume:glance"} <= deps["create:glance_api"]
    assert deps["job:keystone_register"] >= {"wait_healthy:keystone"}


def test_fresh_site_jobs_before_their_containers_and_dependencies_healthy_first(site):
    plan = make_plan(make_wanted(site), ObservedState())
    keystone = waits_for(plan, "create:keystone")
    assert {"job:keystone_databases", "job:keystone_db_sync", "wait_healthy:mariadb"} <= keystone
    glance = waits_for(plan, "create:glance_api")
    assert {"wait_healthy:keystone", "job:glance_db_sync", "job:glance_databases", "wait_healthy:mariadb"} <= glance
    # and nothing waits on what comes after it
    assert "create:glance_api" not in waits_for(plan, "wait_healthy:keystone")
    # Every dependency appears earlier in the list: the plan reads top to bottom.
    seen: set[str] = set()
    for a in plan.actions:
        assert set(a.deps) <= seen, a.id
        seen.add(a.id)


# -- converged, and small differences ------------------------------------------------------------

def test_unchanged_site_gives_an_empty_plan(site, state_dir, deployed):
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert plan.is_empty(), plan.render()
    assert plan.render() == "nothing to do: everything is as wanted"
    assert json.loads(plan.to_json())["actions"] == []


def test_observe_lists_containers_and_volumes_once(site, state_dir, deployed):
    counted = {"containers": 0, "volumes": 0}
    real_containers, real_volumes = deployed.containers, deployed.volumes

    def containers(label=None):
        counted["containers"] += 1
        return real_containers(label)

    def volumes(label=None):
        counted["volumes"] += 1
        return real_volumes(label)

    deployed.containers, deployed.volumes = containers, volumes
    deployed.container = lambda name: pytest.fail("observe must not inspect containers one by one")
    observe(deployed, make_wanted(site), state_dir)
    assert counted == {"containers": 1, "volumes": 1}


def test_one_file_changed_recreates_only_its_readers_and_names_the_file(site, state_dir, deployed):
    site.config["keystone.conf"] = "[database]\nconnection = changed\n"
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert set(ids(plan)) == {
        f"write_file:{path(site, 'keystone', 'keystone.conf')}",
        f"write_file:{path(site, 'keystone_db_sync', 'keystone.conf')}",
        "job:keystone_db_sync", "recreate:keystone", "wait_healthy:keystone"}
    by_id = plan.by_id()
    assert by_id["recreate:keystone"].reason == "config-hash differs (keystone.conf changed)"
    assert by_id["job:keystone_db_sync"].reason == "inputs changed since its last run (keystone.conf changed)"
    assert by_id[f"write_file:{path(site, 'keystone', 'keystone.conf')}"].reason == "content differs"
    assert f"write_file:{path(site, 'keystone', 'keystone.conf')}" in by_id["recreate:keystone"].deps
    # mariadb is fine: keystone's job does not wait for it.
    assert not any("mariadb" in d for d in by_id["job:keystone_db_sync"].deps)


def test_file_named_even_when_already_rewritten_by_a_killed_run(site, state_dir, deployed):
    site.config["keystone.conf"] = "[database]\nconnection = changed\n"
    wanted = make_wanted(site)
    for f in wanted.files:                       # the killed run had written the files, no more
        if f.path.endswith("keystone.conf"):
            Path(f.path).write_bytes(f.content)
    plan = plan_for(deployed, wanted, state_dir)
    assert plan.by_id()["recreate:keystone"].reason == "config-hash differs (keystone.conf changed)"
    assert not [a for a in plan.actions if a.kind == "write_file"]


def test_image_changed_recreates_with_reason_image(site, state_dir, deployed):
    site.image_ids["keystone"] = "sha256:keystone-v2"
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert set(ids(plan)) == {"recreate:keystone", "wait_healthy:keystone", "job:keystone_db_sync"}
    assert plan.by_id()["recreate:keystone"].reason == "config-hash differs (image)"


def test_environment_change_is_named(site, state_dir, deployed):
    site.environment["glance_api"] = {"GLANCE_DEBUG": "1"}
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["recreate:glance_api", "wait_healthy:glance_api"]
    assert plan.actions[0].reason == "config-hash differs (environment)"


def test_stopped_container_is_started_only(site, state_dir, deployed):
    deployed.stop("keystone")
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["start:keystone", "wait_healthy:keystone"]
    assert plan.actions[0].reason == "is exited"


def test_container_removed_by_hand_is_created_only(site, state_dir, deployed):
    deployed.remove("memcached")
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["create:memcached"]
    assert plan.actions[0].reason == "not present"


def test_unhealthy_unchanged_dependency_is_waited_for(site, state_dir, deployed):
    deployed._set("keystone", health="unhealthy")
    site.config["glance-api.conf"] = "[DEFAULT]\ndebug = true\n"
    plan = plan_for(deployed, make_wanted(site), state_dir)
    by_id = plan.by_id()
    assert by_id["wait_healthy:keystone"].reason == "running, health unhealthy"
    assert "wait_healthy:keystone" in by_id["recreate:glance_api"].deps
    assert "recreate:keystone" not in by_id            # no restart of what did not change


def test_healthy_dependency_is_not_waited_for(site, state_dir, deployed):
    site.config["glance-api.conf"] = "[DEFAULT]\ndebug = true\n"
    plan = plan_for(deployed, make_wanted(site), state_dir)
    recreate = plan.by_id()["recreate:glance_api"]
    assert recreate.deps == (f"write_file:{path(site, 'glance_api', 'glance-api.conf')}", "job:glance_db_sync")


def test_order_holds_across_done_jobs(site, state_dir, deployed):
    # keystone waits for mariadb through two jobs that are done: mariadb restarting
    # must still come first, though nothing in between has anything to do.
    deployed.stop("mariadb")
    deployed.remove("keystone")
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["start:mariadb", "wait_healthy:mariadb", "create:keystone", "wait_healthy:keystone"]
    assert plan.by_id()["create:keystone"].deps == ("wait_healthy:mariadb",)


def test_half_done_site_plans_only_the_rest(site, state_dir):
    engine = fake_engine()
    wanted = make_wanted(site)
    from dockyard.engine.driver import JobResult
    engine.job_results["keystone_db_sync"] = JobResult(1, "migration failed\n")
    first = apply(engine, plan_for(engine, wanted, state_dir), state_dir)
    assert not first.ok
    del engine.job_results["keystone_db_sync"]
    plan = plan_for(engine, wanted, state_dir)
    assert set(ids(plan)) == {"job:keystone_db_sync", "create:keystone", "wait_healthy:keystone",
                              "job:keystone_register", "create:glance_api", "wait_healthy:glance_api"}
    # Done work is not waited for: the db sync depends on nothing left to do.
    assert plan.by_id()["job:keystone_db_sync"].deps == ()
    assert plan.by_id()["job:keystone_db_sync"].reason == "never run"


def test_file_mode_is_repaired_without_restart(site, state_dir, deployed):
    conf = path(site, "keystone", "keystone.conf")
    os.chmod(conf, 0o644)
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == [f"write_file:{conf}"]
    assert plan.actions[0].reason == "mode 0644, wanted 0600"


def test_deleted_file_is_written_back_alone(site, state_dir, deployed):
    conf = path(site, "mariadb", "my.cnf")
    os.unlink(conf)
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == [f"write_file:{conf}"]
    assert plan.actions[0].reason == "not present"


def test_job_runs_again_only_when_its_hash_changes(site, state_dir, deployed):
    wanted = make_wanted(site)
    observed = observe(deployed, wanted, state_dir)
    key_id = observed.jobs_done["glance_databases"].partition(".")[0]
    observed.jobs_done["glance_databases"] = key_id + ".an-older-hash"
    plan = make_plan(wanted, observed)
    assert ids(plan) == ["job:glance_databases"]
    assert plan.actions[0].reason == "inputs changed since its last run"


# -- orphans and --services ----------------------------------------------------------------------

def add_orphan(engine, name: str, service: str) -> None:
    engine.create(ContainerSpec(name=name, image="dockyard/keystone:test",
                                labels={LABEL_MANAGED: "true", LABEL_SERVICE: service, "dockyard.host": "aio"}))
    engine.start(name)


def test_orphan_is_removed(site, state_dir, deployed):
    add_orphan(deployed, "keystone_old", "keystone")
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["remove:keystone_old"]
    assert plan.actions[0].reason == "not wanted any more"


def test_orphan_kept_when_its_service_is_not_deployed(site, state_dir, deployed):
    add_orphan(deployed, "keystone_old", "keystone")
    assert plan_for(deployed, make_wanted(site), state_dir, only_services={"glance"}).is_empty()
    assert ids(plan_for(deployed, make_wanted(site), state_dir, only_services={"keystone"})) == ["remove:keystone_old"]


def test_replacement_waits_for_the_removal_of_its_predecessor(site, state_dir, deployed):
    add_orphan(deployed, "keystone_old", "keystone")
    deployed.remove("keystone")
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert "remove:keystone_old" in plan.by_id()["create:keystone"].deps


def test_leftover_job_container_removed_only_when_job_is_done(site, state_dir, deployed):
    job_labels = {LABEL_MANAGED: "true", LABEL_SERVICE: "glance", "dockyard.job": "true"}
    deployed.create(ContainerSpec(name="glance_db_sync", image="dockyard/glance-api:test", labels=job_labels))
    plan = plan_for(deployed, make_wanted(site), state_dir)
    assert ids(plan) == ["remove:glance_db_sync"]
    observed = observe(deployed, make_wanted(site), state_dir)
    observed.jobs_done.pop("glance_db_sync")
    assert ids(make_plan(make_wanted(site), observed)) == ["job:glance_db_sync"]


def test_only_services_on_a_fresh_site(site):
    plan = make_plan(make_wanted(site), ObservedState(), only_services={"mariadb"})
    assert {a.service for a in plan.actions} == {"mariadb"}
    assert ids(plan) == ["create_volume:mariadb", f"write_file:{path(site, 'mariadb', 'my.cnf')}",
                         f"write_file:{path(site, 'mariadb', 'config.json')}", "create:mariadb",
                         "wait_healthy:mariadb"]


def test_only_services_leaves_other_services_out_even_when_broken(site, state_dir, deployed):
    deployed.stop("keystone")
    site.config["glance-api.conf"] = "[DEFAULT]\ndebug = true\n"
    plan = plan_for(deployed, make_wanted(site), state_dir, only_services={"glance"})
    assert {a.service for a in plan.actions} == {"glance"}
    assert not any("keystone" in d for a in plan.actions for d in a.deps)


# -- errors, output, secrets ---------------------------------------------------------------------

def test_dependency_cycle_is_refused_with_its_path(site):
    wanted = make_wanted(site)
    wanted.containers = [replace(c, after=(*c.after, "keystone_register")) if c.name == "mariadb" else c
                         for c in wanted.containers]
    with pytest.raises(ConfigError) as err:
        make_plan(wanted, ObservedState())
    assert "dependency cycle: keystone_databases -> mariadb -> keystone_register -> keystone -> " \
           "keystone_db_sync -> keystone_databases" in str(err.value)


def test_same_file_rendered_twice_differently_is_refused(site):
    wanted = make_wanted(site)
    wanted.files.append(replace(wanted.files[0], content=b"other"))
    with pytest.raises(ConfigError) as err:
        make_plan(wanted, ObservedState())
    assert err.value.path == wanted.files[0].path


def test_render_groups_by_service_in_dependency_order_with_reasons(site, state_dir, deployed):
    deployed.stop("mariadb")
    site.config["glance-api.conf"] = "[DEFAULT]\ndebug = true\n"
    text = plan_for(deployed, make_wanted(site), state_dir).render()
    lines = text.splitlines()
    assert lines[0] == "mariadb:"
    assert "glance:" in lines and lines.index("glance:") > lines.index("mariadb:")
    assert any(line.split()[:2] == ["start", "mariadb"] and "is exited" in line for line in lines)
    assert any(line.split()[:2] == ["recreate", "glance_api"] and "glance-api.conf changed" in line for line in lines)
    assert lines[-1] == "7 actions (2 write_file, 1 run_job, 1 recreate, 1 start, 2 wait_healthy)"


def test_secrets_stay_out_of_plan_output(site):
    plan = make_plan(make_wanted(site), ObservedState())
    assert SECRET not in plan.render()
    assert SECRET not in plan.to_json()
    assert SECRET not in repr(plan)
    assert SECRET not in str(plan.actions)


def test_to_json_lists_every_action_with_its_deps(site):
    plan = make_plan(make_wanted(site), ObservedState())
    data = json.loads(plan.to_json())
    assert [a["id"] for a in data["actions"]] == ids(plan)
    assert data["counts"]["run_job"] == 5
    first = data["actions"][0]
    assert set(first) == {"id", "kind", "target", "service", "host", "reason", "deps"}


def test_validate_refuses_a_broken_plan(site):
    plan = make_plan(make_wanted(site), ObservedState())
    a, b = plan.actions[0], plan.actions[1]
    with pytest.raises(ValueError, match="not in the plan"):
        Plan([replace(a, deps=("nope",))]).validate()
    with pytest.raises(ValueError, match="cycle"):
        Plan([replace(a, deps=(b.id,)), replace(b, deps=(a.id,))]).validate()
    with pytest.raises(ValueError, match="duplicate"):
        Plan([a, a]).validate()


# -- hashing agrees with the planner -------------------------------------------------------------

def test_spec_hashes_labels_and_file_names():
    spec = ContainerSpec(name="x", image="img:1", environment={"A": "1"})
    labels = spec_hashes(spec, {"/etc/x/x.conf": b"one"}, "sha256:1", key=b"k")
    assert set(labels) == {LABEL_HASH, *(LABEL_HASH_PART_PREFIX + p for p in
                                        ("image", "files", "env", "command", "volumes", "runtime")),
                           LABEL_HASH_PART_PREFIX + "file.x.conf", LABEL_HASH_KEY}
    changed = spec_hashes(spec, {"/etc/x/x.conf": b"two", "/etc/x/new.conf": b""}, "sha256:1", key=b"k")
    assert changed[LABEL_HASH] != labels[LABEL_HASH]
    assert differing_files(labels, changed) == {"new.conf": "added", "x.conf": "changed"}
    # The spec's own labels (dockyard version...) do not count.
    relabelled = replace(spec, labels={"dockyard.version": "9"})
    assert spec_hashes(relabelled, {"/etc/x/x.conf": b"one"}, "sha256:1", key=b"k") == labels
    assert "one" not in json.dumps(labels)


# -- convergence, whatever the damage ------------------------------------------------------------

DAMAGE = st.lists(st.sampled_from([
    ("remove", "mariadb"), ("remove", "keystone"), ("stop", "glance_api"), ("stop", "memcached"),
    ("unlink", "keystone/keystone.conf"), ("forget", "keystone_db_sync"), ("forget", "glance_databases"),
    ("change", "glance-api.conf"), ("image", "keystone"), ("remove_volume", "glance"),
]), unique=True, max_size=5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=DAMAGE)
def test_any_damage_converges_in_one_run(damage):
    with tempfile.TemporaryDirectory() as tmp:
        site, state_dir = Site(Path(tmp) / "site"), Path(tmp) / "state"
        engine = fake_engine()
        converge(engine, make_wanted(site), state_dir)
        for what, name in damage:
            if what in ("remove", "stop", "remove_volume"):
                getattr(engine, what)(name)
            elif what == "unlink":
                os.unlink(site.root / "generated" / name)
            elif what == "forget":
                record = json.loads((state_dir / "jobs.json").read_text())
                record.pop(name)
                (state_dir / "jobs.json").write_text(json.dumps(record))
            elif what == "change":
                site.config[name] = "changed\n"
            elif what == "image":
                site.image_ids[name] = "sha256:new"
        wanted = make_wanted(site)
        plan = plan_for(engine, wanted, state_dir)
        assert plan.is_empty() == (not damage)
        converge(engine, wanted, state_dir)
        assert plan_for(engine, wanted, state_dir).is_empty()
        assert {c.name for c in engine.containers()} == {c.name for c in wanted.containers}


def test_another_sites_containers_are_never_planned_against(site, state_dir, deployed):
    from dockyard.labels import LABEL_SITE

    deployed.create(ContainerSpec(name="other_memcached", image="dockyard/memcached:test",
                                  labels={LABEL_MANAGED: "true", LABEL_SERVICE: "memcached",
                                          LABEL_SITE: "/etc/other-site"}))
    observed = observe(deployed, make_wanted(site), state_dir, "/etc/this-site")
    assert observed.foreign == {"other_memcached": "/etc/other-site"}
    assert "other_memcached" not in observed.containers
    assert make_plan(make_wanted(site), observed).is_empty()
    # Without a site, every managed container is this site's (the old behaviour).
    assert ids(plan_for(deployed, make_wanted(site), state_dir)) == ["remove:other_memcached"]


def test_action_kinds_are_one_vocabulary():
    # A plain string is taken as its ActionKind; anything else is refused when the action is made.
    action = Action("create_volume:x", "create_volume", "x", "s", "local", "test")
    assert action.kind is ActionKind.CREATE_VOLUME
    assert json.loads(Plan([action]).to_json())["actions"][0]["kind"] == "create_volume"
    with pytest.raises(ValueError, match="unknown action kind 'explode'"):
        Action("x", "explode", "x", "s", "local", "test")
