"""Wanted state, planner and executor with a fake engine: no Docker."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from dockyard.deploy import api
from dockyard.deploy.execute.executor import execute
from dockyard.deploy.execute.jobs_record import JobsRecord
from dockyard.deploy.execute.lock import SiteLock
from dockyard.deploy.plan.observe import ObservedState, observe
from dockyard.deploy.plan.planner import make_plan
from dockyard.deploy.execute.timeline import Timeline, critical_path, deps_from_events, durations, load_timeline
from dockyard.errors import ConfigError, LockedError

from .deploy_fixtures import edit_yaml, fake_engine, leaks, quiet, wanted_of


def converge(config_dir, engine):
    return api.deploy(config_dir, engine=engine, say=quiet)


def test_all_in_one_wanted_state(site_dir):
    engine = fake_engine()
    site, wanted = wanted_of(site_dir, engine)
    names = {c.name for c in wanted.containers}
    assert {"mariadb", "memcached", "rabbitmq", "keystone", "glance_api", "placement_api", "nova_api",
            "nova_conductor", "nova_scheduler", "nova_novncproxy", "neutron_api", "neutron_rpc_server",
            "neutron_periodic_workers", "horizon",
            "openvswitch_db_server", "openvswitch_vswitchd", "neutron_openvswitch_agent", "neutron_dhcp_agent",
            "neutron_l3_agent", "neutron_metadata_agent", "nova_metadata", "nova_virtlogd", "nova_libvirt",
            "nova_compute"} == names
    keystone = next(c for c in wanted.containers if c.name == "keystone")
    assert "mariadb" in keystone.after or "keystone_admin" in keystone.after
    jobs = [j.name for j in wanted.jobs]
    assert jobs.index("keystone_databases") < jobs.index("keystone_bootstrap") < jobs.index("keystone_admin")
    assert all(f.mode == 0o600 for f in wanted.files)


def test_no_secret_in_any_label_env_or_command(site_dir):
    site, wanted = wanted_of(site_dir, fake_engine())
    secrets_ = [v for v in site.passwords.values()]
    for spec in [c.spec for c in wanted.containers] + [j.spec for j in wanted.jobs]:
        blob = json.dumps([spec.labels, spec.environment, spec.command])
        assert not leaks(blob, secrets_), spec.name
    # Nor in the compose export, nor in the jobs record, which hold the same hashes.
    compose = api.export_compose(site_dir)
    assert not leaks(compose, secrets_)


def test_same_site_same_hashes_and_override_changes_only_its_container(site_dir):
    engine = fake_engine()
    _, first = wanted_of(site_dir, engine)
    _, again = wanted_of(site_dir, engine)
    assert {c.name: c.hash for c in first.containers} == {c.name: c.hash for c in again.containers}
    (site_dir / "config" / "glance.conf").write_text("[DEFAULT]\nshow_image_direct_url = True\n")
    _, changed = wanted_of(site_dir, engine)
    differ = {c.name for c, d in zip(first.containers, changed.containers) if c.hash != d.hash}
    assert differ == {"glance_api"}
    api_conf = next(f for f in changed.files if f.path.endswith("glance_api/glance-api.conf"))
    assert b"show_image_direct_url = True" in api_conf.content


def test_fresh_plan_orders_dependencies(site_dir):
    engine = fake_engine()
    _, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, ObservedState())
    ids = plan.by_id()
    assert "job:keystone_databases" in ids
    assert "wait_healthy:mariadb" in ids["job:keystone_databases"].deps
    assert "wait_healthy:keystone" in ids["job:glance_register"].deps or \
        "wait_healthy:keystone" in ids["job:glance_databases"].deps


def test_deploy_then_nothing_to_do(site_dir):
    engine = fake_engine()
    result = converge(site_dir, engine)
    assert result.ok
    assert {c.name for c in engine.containers()} >= {"keystone", "nova_api", "horizon"}
    assert (site_dir / "state" / "jobs.json").exists()
    engine.calls.clear()
    again = converge(site_dir, engine)
    assert again.ok and again.summary().startswith("0 changes")
    assert not [c for c in engine.calls if c[0] in ("create", "start", "remove", "job", "restart")]


def test_changed_override_recreates_only_that_container_with_reason(site_dir):
    engine = fake_engine()
    converge(site_dir, engine)
    (site_dir / "config" / "glance.conf").write_text("[DEFAULT]\nworkers = 3\n")
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    recreated = [a for a in plan.actions if a.kind in ("create", "recreate", "start", "restart")]
    assert [a.target for a in recreated] == ["glance_api"]
    assert "glance-api.conf" in recreated[0].reason
    assert {a.target for a in plan.actions if a.kind == "run_job"} == {"glance_bootstrap", "glance_metadefs"}


def test_removed_and_stopped_containers_are_the_only_ones_acted_on(site_dir):
    engine = fake_engine()
    converge(site_dir, engine)
    engine.remove("memcached")
    engine.stop("placement_api")
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    acted = {(a.kind, a.target) for a in plan.actions if a.kind != "wait_healthy"}
    assert acted == {("create", "memcached"), ("start", "placement_api")}


def test_half_done_state_plans_only_the_rest(site_dir):
    engine = fake_engine()
    converge(site_dir, engine)
    # As if a run had been killed: a job record lost, a container never created.
    record = json.loads((site_dir / "state" / "jobs.json").read_text())
    del record["nova_bootstrap"]
    (site_dir / "state" / "jobs.json").write_text(json.dumps(record))
    engine.remove("nova_scheduler")
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    assert {a.id for a in plan.actions} == {"job:nova_bootstrap", "create:nova_scheduler",
                                           "wait_healthy:nova_scheduler"}
    assert "job:nova_bootstrap" in plan.by_id()["create:nova_scheduler"].deps


def test_orphan_removed_and_only_services(site_dir):
    engine = fake_engine()
    converge(site_dir, engine)
    edit_yaml(site_dir / "globals.yml", lambda data: data["enabled_services"].remove("horizon"))
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    assert [(a.kind, a.target) for a in plan.actions] == [("remove", "horizon")]
    assert make_plan(wanted, observe(engine, wanted, site.state_dir), only_services={"nova"}).is_empty()


def test_failure_skips_dependents_and_other_branches_finish(site_dir):
    engine = fake_engine()
    engine.unhealthy.add("keystone")
    result = converge(site_dir, engine)
    assert not result.ok
    by_id = {o.action.id: o for o in result.outcomes}
    assert by_id["wait_healthy:keystone"].result.lower() == "failed"
    assert "last log lines of keystone" in by_id["wait_healthy:keystone"].error
    assert by_id["create:glance_api"].result == "skipped"
    assert by_id["wait_healthy:rabbitmq"].result == "ok"     # independent of keystone


def test_independent_actions_run_in_parallel(site_dir, tmp_path):
    barrier = threading.Barrier(2, timeout=10)

    class Racing(type(fake_engine())):
        def create_volume(self, name, labels):
            if name in ("mariadb", "rabbitmq"):
                barrier.wait()  # fails (BrokenBarrierError) unless both are in flight at once
            super().create_volume(name, labels)

    engine = Racing()
    for ref in list(fake_engine().images_by_tag):
        engine.add_image(ref)
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, ObservedState())
    timeline = Timeline(tmp_path / "state")
    result = execute(plan, engine, parallelism=4, timeline=timeline, jobs_record=JobsRecord(tmp_path / "state"))
    timeline.close()
    assert result.ok
    events = load_timeline(timeline.path)
    assert {e["event"] for e in events} >= {"start", "end"}
    seconds, chain = critical_path(events)
    # Which chain is longest depends on how long each fake action happened to
    # take; what holds whatever the timing: each step waited for the one before,
    # and the chain starts with an action that waited for nothing that ran.
    deps = deps_from_events(events)
    assert len(chain) > 1 and seconds >= 0
    assert all(a in deps[b] for a, b in zip(chain, chain[1:])), chain
    assert not [d for d in deps.get(chain[0], ()) if d in durations(events)], chain


def test_critical_path_on_a_synthetic_timeline():
    ev = [
        {"action": "a", "event": "start", "t": 0, "deps": []}, {"action": "a", "event": "end", "t": 2},
        {"action": "b", "event": "start", "t": 2, "deps": ["a"]}, {"action": "b", "event": "end", "t": 5},
        {"action": "c", "event": "start", "t": 0, "deps": []}, {"action": "c", "event": "end", "t": 4},
    ]
    assert critical_path(ev) == (5, ["a", "b"])


def test_lock_refuses_a_second_run(tmp_path):
    with SiteLock(tmp_path):
        with pytest.raises(LockedError) as exc:
            SiteLock(tmp_path).acquire()
        assert "pid" in str(exc.value)
    SiteLock(tmp_path).acquire().release()


def test_bad_input_changes_nothing(site_dir):
    engine = fake_engine()
    (site_dir / "globals.yml").write_text("enabled_services: [nosuch]\n")
    with pytest.raises(ConfigError):
        converge(site_dir, engine)
    assert not engine.containers() and not engine.volumes()
    assert not (site_dir / "generated").exists()


def test_missing_images_is_a_clear_error_before_anything(site_dir):
    engine = fake_engine()
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    with pytest.raises(ConfigError, match="horizon"):
        converge(site_dir, engine)
    assert not engine.containers()


def test_compose_export_mirrors_the_containers(site_dir):
    from dockyard.deploy.ops.compose import export_compose

    _, wanted = wanted_of(site_dir, fake_engine())
    doc = yaml.safe_load(export_compose(wanted))
    assert {c.name for c in wanted.containers} <= set(doc["services"])
    assert doc["services"]["keystone"]["depends_on"]["keystone_admin"]["condition"] == \
        "service_completed_successfully"
    assert doc["volumes"]["mariadb"] == {"external": True}


def test_the_netns_folder_is_shared_before_the_agents_that_bind_it_start_and_only_then(site_dir):
    engine = fake_engine()
    site, wanted = wanted_of(site_dir, engine)
    plan = make_plan(wanted, ObservedState())
    share = plan.by_id()["share_mount:/run/netns"]
    assert share.kind == "share_mount" and share.changes_something
    for agent in ("neutron_dhcp_agent", "neutron_l3_agent"):
        assert share.id in plan.by_id()[f"create:{agent}"].deps
    assert not any(share.id in a.deps for a in plan.actions if a.target in ("neutron_openvswitch_agent", "keystone"))
    assert "share_mount" in plan.render() and "1 share_mount" in plan.render()
    # Converged: nothing starts, so nothing is shared again (a no-op stays a no-op).
    converge(site_dir, engine)
    assert make_plan(wanted, observe(engine, wanted, site.state_dir)).is_empty()
    # One agent stopped (as after a reboot): shared again before it starts.
    engine.stop("neutron_l3_agent")
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    assert [(a.kind, a.target) for a in plan.actions][:2] == [("share_mount", "/run/netns"),
                                                              ("start", "neutron_l3_agent")]


def test_a_failed_share_mount_fails_the_agents_with_the_reason(site_dir):
    from dockyard.engine.driver import JobResult

    engine = fake_engine()
    engine.job_results["dockyard_share_run_netns"] = JobResult(32, "mount: permission denied\n")
    result = converge(site_dir, engine)
    by_id = {o.action.id: o for o in result.outcomes}
    assert by_id["share_mount:/run/netns"].result == "failed"
    assert "mount: permission denied" in by_id["share_mount:/run/netns"].error
    assert by_id["create:neutron_l3_agent"].result == "skipped"
    assert by_id["wait_healthy:keystone"].result == "ok"


def test_a_share_one_shot_left_by_a_killed_run_is_removed_before_it_runs_again(site_dir):
    from dockyard.engine.driver import ContainerSpec

    engine = fake_engine()
    converge(site_dir, engine)
    site, wanted = wanted_of(site_dir, engine)
    share = wanted.shared_mounts[0].spec
    engine.create(ContainerSpec(name=share.name, image=share.image, labels=share.labels))   # the leftover
    engine.stop("neutron_l3_agent")
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    by_id = plan.by_id()
    assert by_id["remove:dockyard_share_run_netns"].kind == "remove"
    assert "remove:dockyard_share_run_netns" in by_id["share_mount:/run/netns"].deps
