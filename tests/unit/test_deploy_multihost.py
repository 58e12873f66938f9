"""A site across several engines, with one FakeEngine per host: the inventory's
engines, one plan for every host, routing, a host whose engine is down."""

from __future__ import annotations

import json

import pytest

from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.plan.observe import ObservedState
from dockyard.deploy.plan.planner import make_plan
from dockyard.deploy.site.loader import load_inventory, Globals
from dockyard.deploy.wanted.model import WantedContainer, WantedState
from dockyard.engine.driver import ContainerSpec, Healthcheck
from dockyard.errors import ConfigError, DockyardError, EXIT_FAILED

from .deploy_fixtures import fake_engine, make_site, quiet, remote, set_globals, waits_for, write_inventory

ACTING = {"create", "start", "stop", "remove", "job", "create_volume", "copy_in"}


@pytest.fixture
def two_hosts(tmp_path):
    """memcached on two remote hosts, h1 and h2, each its own fake engine."""
    config_dir = make_site(tmp_path)
    set_globals(config_dir, enabled_services=["memcached"])
    write_inventory(config_dir, {"h1": remote("192.0.2.11"), "h2": remote("192.0.2.12")})
    e1, e2 = fake_engine(), fake_engine()
    e1.url, e2.url = "tcp://192.0.2.11:2376", "tcp://192.0.2.12:2376"
    engines = SiteEngines({"h1": e1, "h2": e2}, urls={"h1": e1.url, "h2": e2.url})
    return config_dir, engines, e1, e2


def acting(engine) -> list[tuple]:
    return [c for c in engine.calls if c[0] in ACTING]


# -- the inventory --------------------------------------------------------------------------

def inventory_error(tmp_path, host: dict) -> ConfigError:
    write_inventory(tmp_path, {"h1": host})
    with pytest.raises(ConfigError) as err:
        load_inventory(tmp_path, Globals())
    return err.value


@pytest.mark.parametrize("host, key, words", [
    ({"address": "192.0.2.1", "engine": "http://x:2376"}, "hosts.h1.engine", ["unix://", "tcp://", "ssh://"]),
    ({"address": "192.0.2.1", "engine": "tcp://192.0.2.1"}, "hosts.h1.engine", ["port"]),
    ({"address": "192.0.2.1", "engine": "tcp://192.0.2.1:2376"}, "hosts.h1.tls", ["TLS client certificates"]),
    ({"address": "192.0.2.1", "engine": "tcp://192.0.2.1:x"}, "hosts.h1.engine", ["port"]),
    ({"address": "192.0.2.1", "engine": "unix://var/run/docker.sock"}, "hosts.h1.engine", ["three slashes"]),
    ({"address": "192.0.2.1", "engine": "ssh://root@h1", "tls": {"ca": "a", "cert": "b", "key": "c"}},
     "hosts.h1.tls", ["tcp:// engines only"]),
    ({"address": "192.0.2.1", "tls": {"ca": "tls/ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"}},
     "hosts.h1.tls", ["needs an engine"]),
    ({**remote("192.0.2.1"), "tls": {"ca": "tls/ca.pem", "cert": "tls/nope.pem", "key": "tls/key.pem"}},
     "hosts.h1.tls.cert", ["file not found", "tls/nope.pem"]),
    ({**remote("192.0.2.1"), "tls": {"ca": "tls/ca.pem", "cert": "tls/cert.pem"}}, "hosts.h1.tls.key", ["missing"]),
])
def test_bad_engines_are_refused_naming_file_and_key(tmp_path, host, key, words):
    err = inventory_error(tmp_path, host)
    assert err.path == str(tmp_path / "inventory.yml") and err.key == key, err
    for word in words:
        assert word in str(err)


def test_engines_are_read_with_certificates_relative_to_the_config_folder(tmp_path):
    write_inventory(tmp_path, {"h1": remote("192.0.2.11"), "h2": {"address": "192.0.2.12", "engine": "ssh://op@h2"},
                               "h3": {"address": "192.0.2.13", "engine": "unix:///run/other.sock"},
                               "h4": {"address": "192.0.2.14"}})
    hosts = load_inventory(tmp_path, Globals()).hosts
    assert hosts["h1"].engine == "tcp://192.0.2.11:2376" and hosts["h1"].remote
    assert hosts["h1"].tls.files() == tuple(str(tmp_path / "tls" / n) for n in ("ca.pem", "cert.pem", "key.pem"))
    assert hosts["h2"].remote and hosts["h2"].tls is None
    assert not hosts["h3"].remote and not hosts["h4"].remote and hosts["h4"].engine == ""


# -- the wanted state -------------------------------------------------------------------------

def test_remote_units_get_their_config_copied_in_not_bound_from_this_disk(two_hosts):
    config_dir, engines, *_ = two_hosts
    prepared = api.prepare(config_dir, engines)
    wanted = prepared.wanted
    assert [(c.name, c.host) for c in wanted.containers] == [("memcached", "h1"), ("memcached", "h2")]
    assert wanted.files == []                                     # nothing for this disk
    for c in wanted.containers:
        assert not [m for m in c.spec.mounts if m.target == "/var/lib/dockyard/config_files"]
        copied = {f.path: f for f in c.copy_in}
        config = json.loads(copied["/var/lib/dockyard/config_files/config.json"].content)
        assert f"-l 192.0.2.1{c.host[-1]} " in config["command"]        # each host its own address
        assert {f.mode for f in c.copy_in} == {0o600}
        assert "-l 192.0.2" not in repr(c) and "-l 192.0.2" not in repr(c.copy_in)   # contents never shown


def test_two_hosts_on_one_engine_may_not_run_a_name_twice(tmp_path):
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"h1": {"address": "127.0.0.97"}, "h2": {"address": "127.0.0.96"}})
    api.prepare(config_dir, fake_engine())                  # it may be built, to be looked at...
    with pytest.raises(ConfigError) as err:
        api.deploy(config_dir, engine=fake_engine(), dry_run=True, say=quiet)      # ...not deployed
    assert "wanted twice on one engine" in str(err.value) and "hosts h1 and h2 share the local engine" in str(err.value)


def test_local_hosts_of_a_multi_host_site_have_a_folder_per_host(tmp_path):
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"h1": {"address": "127.0.0.97", "engine": "unix:///run/a.sock"},
                                 "h2": {"address": "127.0.0.96", "engine": "unix:///run/b.sock"}})
    engines = SiteEngines({"h1": fake_engine(), "h2": fake_engine()})
    wanted = api.prepare(config_dir, engines).wanted
    paths = {f.path for f in wanted.files if f.unit == "memcached"}
    generated = config_dir.absolute() / "generated"
    assert paths >= {str(generated / "h1/memcached/config.json"), str(generated / "h2/memcached/config.json")}


# -- one plan, every host -------------------------------------------------------------------------

def test_one_deploy_covers_every_host_with_host_qualified_ids(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    ids = [a.id for a in plan.actions]
    assert ids == ["create:memcached@h1", "wait_healthy:memcached@h1", "create:memcached@h2",
                   "wait_healthy:memcached@h2"]
    assert {a.target for a in plan.actions} == {"memcached"}
    result = api.deploy(config_dir, engine=engines, say=quiet)
    assert result.ok and result.changed == 2
    for engine, address in ((e1, "192.0.2.11"), (e2, "192.0.2.12")):
        assert [c[0] for c in acting(engine)] == ["create", "copy_in", "start"]      # copied in before it starts
        content, mode = engine.copied["memcached"]["/var/lib/dockyard/config_files/config.json"]
        assert address in json.loads(content)["command"] and mode == 0o600
        assert engine.container("memcached").running
    assert not (config_dir / "generated").exists() or not any((config_dir / "generated").rglob("*.json"))
    # A second run: nothing on either host.
    e1.calls.clear()
    e2.calls.clear()
    again = api.deploy(config_dir, engine=engines, say=quiet)
    assert again.ok and again.changed == 0 and acting(e1) == acting(e2) == []


def test_each_engine_is_observed_with_one_list_of_containers_and_one_of_volumes(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    api.deploy(config_dir, engine=engines, say=quiet)
    counts = []
    for engine in (e1, e2):
        calls = []
        for name in ("containers", "volumes", "container"):
            original = getattr(engine, name)
            setattr(engine, name, lambda *a, _o=original, _n=name, _c=calls, **k: (_c.append(_n), _o(*a, **k))[1])
        counts.append(calls)
    api.deploy(config_dir, engine=engines, say=quiet)
    assert [sorted(c) for c in counts] == [["containers", "volumes"]] * 2


def test_one_host_down_fails_its_work_only_and_the_next_run_converges(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    e2.down = True
    lines: list[str] = []
    result = api.deploy(config_dir, engine=engines, say=lines.append)
    assert result.exit_code == EXIT_FAILED
    assert result.outcome("create:memcached@h1").result == "ok" and e1.container("memcached").running
    failed = result.outcome("reach_engine:h2")
    assert failed.result == "failed" and "host h2" in failed.error and "tcp://192.0.2.12:2376" in failed.error
    assert any("warning: host h2" in line for line in lines)
    assert "  h1: 1 changes, 0 failed, 0 skipped" in lines and "  h2: 0 changes, 1 failed, 0 skipped" in lines
    assert lines[-1].startswith("1 changes, 1 failed, 0 skipped")
    # Back: the next run does what is left, and only that.
    e2.down = False
    e1.calls.clear()
    result = api.deploy(config_dir, engine=engines, say=quiet)
    assert result.ok and [a.id for a in (o.action for o in result.outcomes)] == \
        ["create:memcached@h2", "wait_healthy:memcached@h2"]
    assert acting(e1) == []


def test_an_engine_dying_mid_run_names_its_host(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    original = e2.create

    def die(spec):
        e2.down = True
        return original(spec)
    e2.create = die
    result = api.deploy(config_dir, engine=engines, say=quiet)
    outcome = result.outcome("create:memcached@h2")
    assert outcome.result == "failed" and outcome.error.startswith("host h2: its engine did not answer")
    assert result.outcome("wait_healthy:memcached@h2").result == "skipped"
    assert result.outcome("wait_healthy:memcached@h1").result == "ok"


def test_every_host_down_is_exit_4(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    e1.down = e2.down = True
    with pytest.raises(DockyardError) as err:
        api.deploy(config_dir, engine=engines, say=quiet)
    assert err.value.exit_code == 4 and "host h1" in str(err.value) and "host h2" in str(err.value)


def test_a_remote_container_created_but_never_started_is_made_again(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    api.deploy(config_dir, engine=engines, say=quiet)
    e2.stop("memcached")
    e2._set("memcached", status="created")          # as a run killed between create and copy
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    recreate = plan.by_id()["recreate:memcached@h2"]
    assert "never started" in recreate.reason and recreate.host == "h2"


def test_status_stop_and_destroy_cover_every_host(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    api.deploy(config_dir, engine=engines, say=quiet)
    rows = api.status(config_dir, engine=engines)
    assert {(r.container, r.host, r.state, r.up_to_date) for r in rows} == \
        {("memcached", "h1", "running", True), ("memcached", "h2", "running", True)}
    e2.down = True
    rows = api.status(config_dir, engine=engines)
    assert {(r.host, r.state) for r in rows} == {("h1", "running"), ("h2", "unreachable")}
    result = api.stop(config_dir, engine=engines, say=quiet)
    assert result.exit_code == EXIT_FAILED and [o.action.id for o in result.outcomes if o.result == "failed"] == \
        ["reach_engine:h2"] and result.outcome("reach_engine:h2").error.startswith("host h2: engine unreachable")
    assert not e1.container("memcached").running
    e2.down = False
    assert api.stop(config_dir, engine=engines, say=quiet).changed == 1
    result = api.destroy(config_dir, include_volumes=False, engine=engines, say=quiet)
    assert result.ok and [o.action.id for o in result.outcomes] == ["remove:memcached@h1", "remove:memcached@h2"]
    assert e1.containers() == e2.containers() == []


def test_prechecks_say_which_host_fails_what(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    e2.down = True
    del e1.images_by_tag["dockyard/memcached:2025.1"]
    checks = api.prechecks(config_dir, engine=engines, say=quiet)
    engine_checks = [(c.status, c.message) for c in checks if c.name == "container engine"]
    assert engine_checks[0] == ("ok", "host h1 (tcp://192.0.2.11:2376): reachable")
    assert engine_checks[1][0] == "FAIL" and engine_checks[1][1].startswith("host h2 (tcp://192.0.2.12:2376): does")
    images = [c for c in checks if c.name == "images"]
    assert len(images) == 1 and images[0].status == "WARN" and images[0].message.startswith("host h1")


# -- the planner alone ------------------------------------------------------------------------------

def unit(name: str, host: str, after=(), health=True) -> WantedContainer:
    spec = ContainerSpec(name=name, image="x", labels={"dockyard.config-hash": name},
                         healthcheck=Healthcheck(("CMD", "true")) if health else None)
    return WantedContainer(host=host, service=name, spec=spec, hash=name, after=tuple(after))


def test_a_dependency_across_hosts_waits_there_and_a_local_one_stays_local():
    wanted = WantedState(containers=[
        unit("conductor", "ctl1"),
        unit("vswitchd", "cmp1"), unit("vswitchd", "cmp2"),
        unit("compute", "cmp1", after=("conductor", "vswitchd")),
        unit("compute", "cmp2", after=("conductor", "vswitchd")),
        unit("api", "ctl1", after=("vswitchd",)),           # none on its host: every one
    ])
    plan = make_plan(wanted, ObservedState())
    deps = {a.id: set(a.deps) for a in plan.actions}
    assert deps["create:compute@cmp1"] == {"wait_healthy:conductor@ctl1", "wait_healthy:vswitchd@cmp1"}
    assert deps["create:compute@cmp2"] == {"wait_healthy:conductor@ctl1", "wait_healthy:vswitchd@cmp2"}
    assert deps["create:api@ctl1"] == {"wait_healthy:vswitchd@cmp1", "wait_healthy:vswitchd@cmp2"}
    plan.validate()


def test_an_unreachable_host_blocks_only_what_needs_it():
    wanted = WantedState(containers=[unit("conductor", "ctl1"), unit("compute", "cmp1", after=("conductor",)),
                                     unit("other", "cmp2", after=("conductor",))])
    plan = make_plan(wanted, ObservedState(unreachable={"ctl1": "refused"}))
    deps = {a.id: a.deps for a in plan.actions}
    assert deps == {"reach_engine:ctl1": (), "create:compute@cmp1": ("reach_engine:ctl1",),
                    "wait_healthy:compute@cmp1": ("create:compute@cmp1",),
                    "create:other@cmp2": ("reach_engine:ctl1",), "wait_healthy:other@cmp2": ("create:other@cmp2",)}


def test_a_single_host_site_keeps_its_plain_ids():
    wanted = WantedState(containers=[unit("a", "aio"), unit("b", "aio", after=("a",))])
    assert [a.id for a in make_plan(wanted, ObservedState()).actions] == \
        ["create:a", "wait_healthy:a", "create:b", "wait_healthy:b"]


def test_failures_name_their_host_and_an_answer_is_not_unreachable():
    from dockyard.deploy.execute.executor import failure_text
    from dockyard.deploy.plan.planner import Action

    class Answered(OSError):               # requests' HTTPError: an OSError with the engine's response
        response = object()

    on_h2 = Action("create:memcached@h2", "create", "memcached", "memcached", "h2", "not present")
    assert failure_text(on_h2, ConnectionRefusedError(111, "Connection refused")) == \
        "host h2: its engine did not answer: Connection refused"
    assert failure_text(on_h2, Answered("500 Server Error")) == "host h2: 500 Server Error"
    single = Action("create:memcached", "create", "memcached", "memcached", "aio", "not present")
    assert failure_text(single, RuntimeError("no such image")) == "no such image"


def test_the_whole_cloud_on_three_hosts_in_one_plan(tmp_path):
    """The default services: control and network on ctl, compute on cmp1 and cmp2."""
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"ctl": remote("192.0.2.10"), "cmp1": remote("192.0.2.21"),
                                 "cmp2": remote("192.0.2.22")},
                    {"control": ["ctl"], "network": ["ctl"], "compute": ["cmp1", "cmp2"]})
    fakes = {name: fake_engine() for name in ("ctl", "cmp1", "cmp2")}
    engines = SiteEngines(fakes)
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    plan.validate()
    by_id = plan.by_id()
    assert {a.host for a in plan.actions} == {"ctl", "cmp1", "cmp2"}
    assert all(a.id.endswith(f"@{a.host}") for a in plan.actions if a.kind != "reach_engine")
    for cmp in ("cmp1", "cmp2"):
        other = "cmp2" if cmp == "cmp1" else "cmp1"
        assert "wait_healthy:nova_conductor@ctl" in waits_for(plan, f"create:nova_compute@{cmp}")     # across hosts
        assert f"wait_healthy:openvswitch_db_server@{cmp}" in by_id[f"create:openvswitch_vswitchd@{cmp}"].deps
        assert not [d for d in waits_for(plan, f"create:openvswitch_vswitchd@{cmp}") if d.endswith(f"@{other}")]
    # Applied: every unit lands on its host's engine, jobs get their files copied in too.
    result = api.deploy(config_dir, engine=engines, say=quiet)
    assert result.ok, [o.line() for o in result.outcomes if o.result != "ok"]
    assert {c.name for c in fakes["cmp1"].containers()} == {c.name for c in fakes["cmp2"].containers()}
    assert "nova_compute" in {c.name for c in fakes["cmp1"].containers()}
    assert "nova_compute" not in {c.name for c in fakes["ctl"].containers()}
    assert "keystone" in {c.name for c in fakes["ctl"].containers()}
    assert "/var/lib/dockyard/config_files/config.json" in fakes["ctl"].copied["keystone_bootstrap"]
    assert not [p for p in (config_dir / "generated").rglob("*") if p.is_file()]   # nothing on this disk
    again = api.deploy(config_dir, engine=engines, say=quiet)
    assert again.ok and again.changed == 0


def test_export_compose_refuses_remote_hosts(two_hosts):
    config_dir, *_ = two_hosts
    with pytest.raises(ConfigError) as err:
        api.export_compose(config_dir)
    assert "hosts h1, h2 are on remote engines" in str(err.value)


def test_limit_acts_on_those_hosts_only(two_hosts):
    config_dir, engines, e1, e2 = two_hosts
    e1.down = True                                   # outside the limit: no failure for it
    result = api.deploy(config_dir, engine=engines, say=quiet, limit={"h2"})
    assert result.ok and [o.action.id for o in result.outcomes] == ["create:memcached@h2", "wait_healthy:memcached@h2"]
    with pytest.raises(ConfigError) as err:
        api.deploy(config_dir, engine=engines, say=quiet, limit={"h9"})
    assert err.value.key == "--limit" and "unknown host 'h9'" in str(err.value)


def test_limit_leaves_the_other_hosts_units_unwaited():
    wanted = WantedState(containers=[unit("conductor", "ctl1"), unit("compute", "cmp1", after=("conductor",))])
    plan = make_plan(wanted, ObservedState(), only_hosts={"cmp1"})
    assert [(a.id, a.deps) for a in plan.actions] == [("create:compute@cmp1", ()),
                                                      ("wait_healthy:compute@cmp1", ("create:compute@cmp1",))]


def test_a_single_host_site_whose_engine_is_down_is_exit_4_in_the_engines_words(tmp_path):
    config_dir = make_site(tmp_path)
    engine = fake_engine()
    engine.down = True
    with pytest.raises(DockyardError) as err:
        api.deploy(config_dir, engine=engine, say=quiet)
    assert err.value.exit_code == 4 and "Connection refused" in str(err.value)
