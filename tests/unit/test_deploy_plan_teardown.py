"""The stop and destroy planners alone: pure functions of the site's objects
(dockyard.deploy.plan.teardown), and the commands around them with the fake
engine (dry runs, failures mid-run, exit codes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dockyard.deploy import api
from dockyard.deploy.plan.observe import SiteObjects
from dockyard.deploy.plan.planner import ActionKind, Plan
from dockyard.deploy.plan.teardown import (HostNetwork, VolumeOwnership, dependents_first, make_destroy_plan,
                                           make_stop_plan)
from dockyard.engine.driver import ContainerSpec, ContainerState, VolumeInfo
from dockyard.errors import EngineError
from dockyard.labels import LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE

from .deploy_fixtures import converge_site, full_engine

# web -> api -> db; cache used by api; worker -> db
DEPENDS = {"db": (), "cache": (), "api": ("db", "cache"), "web": ("api",), "worker": ("db",)}
SITE = "/etc/site"


def container(name: str, service: str, status: str = "running") -> ContainerState:
    return ContainerState(id=name, name=name, image_id="i", image="i", labels={LABEL_SERVICE: service},
                          status=status, health=None)


def objects(*containers: ContainerState, host: str = "h", volumes: tuple[VolumeInfo, ...] = (),
            images: set[str] = frozenset(), unreachable: dict[str, str] | None = None) -> SiteObjects:
    o = SiteObjects(unreachable=dict(unreachable or {}))
    for c in containers:
        o.containers[c.name] = c
        o.hosts[c.name] = host
    for v in volumes:
        o.volumes[v.name] = v
        o.volume_hosts[v.name] = host
    o.engine_hosts[host] = host
    o.images[host] = set(images)
    return o


def deps(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {a.id: a.deps for a in plan.actions}


def test_dependents_come_before_what_they_depend_on():
    order = dependents_first(DEPENDS)
    for service, needs in DEPENDS.items():
        for need in needs:
            assert order.index(service) < order.index(need)
    assert dependents_first(DEPENDS) == order            # deterministic


def test_stop_goes_in_reverse_dependency_order_and_in_parallel_where_independent():
    plan = make_stop_plan(objects(container("db1", "db"), container("cache1", "cache"), container("api1", "api"),
                                  container("api2", "api"), container("web1", "web"), container("worker1", "worker")),
                          DEPENDS)
    plan.validate()
    assert deps(plan) == {
        "stop:web1": (), "stop:worker1": (),
        "stop:api1": ("stop:web1",), "stop:api2": ("stop:web1",),
        "stop:cache1": ("stop:api1", "stop:api2"),
        "stop:db1": ("stop:api1", "stop:api2", "stop:worker1"),
    }
    assert {a.kind for a in plan.actions} == {ActionKind.STOP} and plan.by_id()["stop:db1"].reason == "is running"


def test_a_service_already_stopped_passes_its_order_on():
    # api is stopped: db still waits for web, which needed api.
    plan = make_stop_plan(objects(container("db1", "db"), container("api1", "api", "exited"),
                                  container("web1", "web")), DEPENDS)
    assert deps(plan) == {"stop:web1": (), "stop:db1": ("stop:web1",)}


def test_a_crash_looping_container_is_stopped_and_a_created_one_is_left():
    plan = make_stop_plan(objects(container("db1", "db", "restarting"), container("api1", "api", "created")),
                          DEPENDS)
    assert [(a.id, a.reason) for a in plan.actions] == [("stop:db1", "is restarting")]


def test_a_service_the_catalogue_does_not_know_goes_first():
    plan = make_stop_plan(objects(container("db1", "db"), container("old1", "retired"), container("web1", "web")),
                          DEPENDS)
    assert deps(plan)["stop:old1"] == () and deps(plan)["stop:web1"] == ("stop:old1",)


def test_an_unreachable_host_gets_a_failing_reach_engine_and_the_rest_goes_on():
    plan = make_stop_plan(objects(container("db1", "db"), unreachable={"cmp2": "Connection refused"}), DEPENDS)
    assert [(a.id, a.reason, a.deps) for a in plan.actions] == [
        ("reach_engine:cmp2", "engine unreachable when observed: Connection refused", ()),
        ("stop:db1", "is running", ())]


NET = HostNetwork(share=ContainerSpec(name="share", image="tools"), clean=ContainerSpec(name="clean", image="tools"),
                  image="tools")
OWN = VolumeOwnership(SITE, frozenset({"recorded"}), frozenset({"used"}))


def test_destroy_removes_containers_then_cleans_the_network_then_the_volumes_then_forgets():
    vols = (VolumeInfo("recorded", {}), VolumeInfo("mine", {LABEL_SITE: SITE}),
            VolumeInfo("used", {LABEL_MANAGED: "true"}),
            VolumeInfo("theirs", {LABEL_SITE: "/etc/other"}), VolumeInfo("used-unmanaged", {}),
            VolumeInfo("stranger", {LABEL_MANAGED: "true"}))
    o = objects(container("db1", "db", "exited"), container("api1", "api"), volumes=vols, images={"tools"})
    plan = make_destroy_plan(o, DEPENDS, include_volumes=True, ownership=OWN, host_network=NET,
                             state_dir=Path("/state"))
    plan.validate()
    d = deps(plan)
    assert d["remove:api1"] == () and d["remove:db1"] == ("remove:api1",)
    assert d["share_mount:/run/netns"] == ("remove:api1", "remove:db1")
    assert d["clean_host_network:h"] == ("share_mount:/run/netns",)
    removed = {a.target: a.reason for a in plan.actions if a.kind == ActionKind.REMOVE_VOLUME}
    assert removed == {"recorded": "made by this site", "mine": "labelled for this site",
                       "used": "used by this site's services"}
    assert d["remove_volume:mine"] == ("remove:api1", "remove:db1", "clean_host_network:h")
    forget = plan.by_id()["forget_records:/state"]
    assert forget.kind == ActionKind.FORGET_RECORDS and forget.deps == ()
    assert plan.by_id()["remove:db1"].reason == "is exited"


def test_destroy_without_volumes_keeps_them_and_the_records():
    o = objects(container("db1", "db"), volumes=(VolumeInfo("recorded", {}),), images={"tools"})
    plan = make_destroy_plan(o, DEPENDS, include_volumes=False, ownership=OWN, host_network=NET,
                             state_dir=Path("/state"))
    assert [a.kind for a in plan.actions] == [ActionKind.REMOVE, ActionKind.SHARE_MOUNT,
                                              ActionKind.CLEAN_HOST_NETWORK]


def test_no_network_cleanup_without_the_data_plane_or_its_image():
    o = objects(container("db1", "db"))
    for net in (None, NET):                  # no network service; no tools image on the engine
        plan = make_destroy_plan(o, DEPENDS, include_volumes=False, ownership=OWN, host_network=net,
                                 state_dir=Path("/state"))
        assert [a.id for a in plan.actions] == ["remove:db1"]


def test_records_are_kept_while_a_host_does_not_answer():
    o = objects(container("db1", "db"), volumes=(VolumeInfo("recorded", {}),), unreachable={"h2": "timed out"})
    plan = make_destroy_plan(o, DEPENDS, include_volumes=True, ownership=OWN, host_network=None,
                             state_dir=Path("/state"))
    assert [a.id for a in plan.actions] == ["reach_engine:h2", "remove:db1", "remove_volume:recorded"]


# -- the commands, with the fake engine ---------------------------------------------------------

@pytest.fixture
def deployed(site_dir):
    engine = converge_site(site_dir, full_engine())
    engine.calls.clear()
    return site_dir, engine


def run_cli(monkeypatch, engine, *args: str) -> int:
    from dockyard import cli

    monkeypatch.setattr(api, "connect", lambda name="docker": engine)
    monkeypatch.setattr(sys, "argv", ["dockyard", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code


@pytest.mark.parametrize("command", [("stop",), ("destroy", "--include-volumes")])
def test_a_dry_run_prints_the_plan_and_changes_nothing(monkeypatch, deployed, capsys, command):
    site_dir, engine = deployed
    state = site_dir / "state"
    before = sorted(p.name for p in state.rglob("*"))
    # No --yes: a dry run asks nothing (stdin is empty: a question would abort).
    assert run_cli(monkeypatch, engine, *command, "--dry-run", "--config-dir", str(site_dir)) == 0
    out = capsys.readouterr().out
    kind = "stop" if command[0] == "stop" else "remove"
    assert f"  {kind} " in out and "mariadb" in out and "changes planned (dry run: nothing done)" in out
    assert [c for c in engine.calls if c[0] not in ("image",)] == []
    assert sorted(p.name for p in state.rglob("*")) == before and not (state / "lock").exists()


def test_stop_and_destroy_print_progress_lines_and_the_counts(monkeypatch, deployed, capsys):
    site_dir, engine = deployed
    running = sum(1 for c in engine.containers() if c.running)
    assert run_cli(monkeypatch, engine, "stop", "--config-dir", str(site_dir)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dockyard: run ") and out[-1] == f"{running} containers stopped"
    assert any(line.startswith("  ok      stop:mariadb ") for line in out)
    assert out[-2].startswith(f"{running} changes, 0 failed, 0 skipped in ")
    assert run_cli(monkeypatch, engine, "destroy", "--yes", "--config-dir", str(site_dir)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{running} removed" and not engine.containers()


def test_an_engine_dying_mid_stop_names_the_action_exit_1(monkeypatch, deployed, capsys):
    site_dir, engine = deployed
    stop = engine.stop

    def die_at_keystone(name, timeout=10):
        if name == "keystone":
            engine.down = True              # every call from now on is refused, this one too
            return engine.stop(name, timeout)
        return stop(name, timeout)
    engine.stop = die_at_keystone
    assert run_cli(monkeypatch, engine, "stop", "--config-dir", str(site_dir)) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    lines = captured.out.splitlines()
    assert any(line.startswith("  FAILED  stop:keystone ") and "its engine did not answer: Connection refused"
               in line for line in lines)
    # What needed keystone stopped first is skipped, naming it.
    assert any(line.startswith("  skipped stop:mariadb ") and "needs keystone stopped" in line for line in lines)


def test_a_volume_the_engine_refuses_to_remove_fails_its_action_exit_1(monkeypatch, deployed, capsys):
    site_dir, engine = deployed

    def refuse(name):
        raise EngineError(f"the container engine refused it: remove {name}: volume is in use - [abc] (HTTP 409)")
    engine.remove_volume = refuse
    assert run_cli(monkeypatch, engine, "destroy", "--yes", "--include-volumes", "--config-dir", str(site_dir)) == 1
    out = capsys.readouterr().out
    assert "  FAILED  remove_volume:mariadb " in out and "volume is in use" in out
    assert not engine.containers()
    # The records are forgotten all the same: the data of the volumes that went is gone.
    assert not (site_dir / "state" / "jobs.json").exists()
