"""The executor on a fake engine: order, real parallelism, failures, records, timeline.

Concurrency is proven with threading primitives, never with sleeps: an engine
call that needs another one to run at the same time waits on a barrier or an
event (with a generous timeout that only matters when the executor is wrong).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import replace

import pytest

from dockyard.deploy.execute.executor import FAILED, KIND_WEIGHT, OK, SKIPPED, _Applier, chain_weights, execute
from dockyard.deploy.execute.jobs_record import JobsRecord, load_jobs
from dockyard.deploy.plan.observe import ObservedState
from dockyard.deploy.plan.planner import Action, ActionKind, Plan, make_plan
from dockyard.deploy.execute.timeline import Timeline, load_timeline
from dockyard.engine.driver import ContainerSpec, ExecResult, JobResult
from dockyard.engine.fake import FakeEngine

from ..e2e.conftest import changed_nothing
from .wanted_factory import SECRET, Site, apply, converge, fake_engine, make_wanted, plan_for

GUARD = 20  # seconds a primitive waits before the test fails: never reached when the executor is right


def fresh_plan(site: Site) -> Plan:
    return make_plan(make_wanted(site), ObservedState())


def run(engine, plan, state_dir, parallelism=4):
    outcomes = []
    with Timeline(state_dir, run_id="test-run") as timeline:
        result = execute(plan, engine, parallelism=parallelism, timeline=timeline, jobs_record=JobsRecord(state_dir),
                         progress=outcomes.append)
    return result, outcomes, load_timeline(timeline.path)


def first_call(engine: FakeEngine, *call) -> int:
    return engine.calls.index(call)


# -- order --------------------------------------------------------------------------------------

def test_every_action_starts_after_its_dependencies_ended(site, state_dir):
    plan = fresh_plan(site)
    result, _, events = run(fake_engine(), plan, state_dir)
    assert result.ok
    # The timeline is written in the order things happen: a dependant's start line
    # must come after the end line of each of its dependencies.
    position = {(e["event"], e.get("action")): i for i, e in enumerate(events)}
    for a in plan.actions:
        for dep in a.deps:
            assert position[("end", dep)] < position[("start", a.id)], (dep, a.id)


def test_engine_sees_dependencies_first(site, state_dir):
    engine = fake_engine()
    result, _, _ = run(engine, fresh_plan(site), state_dir)
    assert result.ok
    order = [
        ("create_volume", "mariadb"), ("create", "mariadb"), ("start", "mariadb"), ("wait", "mariadb"),
        ("job", "keystone_databases"), ("job", "keystone_db_sync"), ("create", "keystone"), ("wait", "keystone"),
        ("create", "glance_api"), ("wait", "glance_api"),
    ]
    indexes = [first_call(engine, *call) for call in order]
    assert indexes == sorted(indexes)
    assert first_call(engine, "create", "memcached") < first_call(engine, "create", "keystone")
    assert first_call(engine, "wait", "keystone") < first_call(engine, "job", "keystone_register")


def test_files_are_written_before_their_container_is_created(site, state_dir):
    seen = {}

    class Checking(FakeEngine):
        def create(self, spec):
            folder = site.folder(spec.name)
            seen[spec.name] = sorted(p.name for p in folder.iterdir())
            return super().create(spec)

    result, _, _ = run(fake_engine(Checking), fresh_plan(site), state_dir)
    assert result.ok
    assert seen["keystone"] == ["config.json", "keystone.conf"]
    assert seen["mariadb"] == ["config.json", "my.cnf"]


# -- parallelism --------------------------------------------------------------------------------

def test_independent_actions_run_together(site, state_dir):
    # keystone_databases and glance_databases both only need mariadb healthy: each
    # waits at a barrier for the other. Run one after the other, the barrier breaks.
    barrier = threading.Barrier(2, timeout=GUARD)

    class Meeting(FakeEngine):
        def run_job(self, spec, timeout=600):
            if spec.name in ("keystone_databases", "glance_databases"):
                barrier.wait()
            return super().run_job(spec, timeout)

    result, _, _ = run(fake_engine(Meeting), fresh_plan(site), state_dir, parallelism=2)
    assert result.ok, [(o.action.id, o.error) for o in result.outcomes if o.result != OK]


def test_an_action_starts_as_soon_as_its_dependencies_succeeded_not_wave_by_wave(site, state_dir):
    # glance_databases holds its worker until keystone_db_sync has started. That job
    # needs keystone_databases, a sibling of glance_databases: an executor running
    # wave by wave would wait for glance_databases before starting it, and deadlock.
    db_sync_started = threading.Event()

    class Chained(FakeEngine):
        def run_job(self, spec, timeout=600):
            if spec.name == "keystone_db_sync":
                db_sync_started.set()
            if spec.name == "glance_databases":
                assert db_sync_started.wait(GUARD), "keystone_db_sync never started while glance_databases ran"
            return super().run_job(spec, timeout)

    result, _, _ = run(fake_engine(Chained), fresh_plan(site), state_dir, parallelism=3)
    assert result.ok, [(o.action.id, o.error) for o in result.outcomes if o.result != OK]


def test_parallelism_is_a_bound(site, state_dir):
    lock = threading.Lock()
    in_flight = {"now": 0, "max": 0}

    class Counting(FakeEngine):
        def _enter(self):
            with lock:
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])

        def _leave(self):
            with lock:
                in_flight["now"] -= 1

        def run_job(self, spec, timeout=600):
            self._enter()
            try:
                return super().run_job(spec, timeout)
            finally:
                self._leave()

        def create_volume(self, name, labels):
            self._enter()
            try:
                return super().create_volume(name, labels)
            finally:
                self._leave()

    result, _, _ = run(fake_engine(Counting), fresh_plan(site), state_dir, parallelism=1)
    assert result.ok
    assert in_flight["max"] == 1


def test_a_health_wait_takes_no_slot(site, state_dir):
    # One slot. mariadb's health wait is listed first and cannot end until the
    # volume of another branch is created: if the wait held the slot, the volume
    # would queue behind it and the wait would time out.
    volume_created = threading.Event()
    mariadb = next(c for c in make_wanted(site).containers if c.name == "mariadb")
    plan = Plan([Action("wait_healthy:mariadb", "wait_healthy", "mariadb", "mariadb", "local", "test",
                        container=mariadb),
                 Action("create_volume:other", "create_volume", "other", "other", "local", "test")])

    class WaitsForTheVolume(FakeEngine):
        def wait_healthy(self, name, timeout):
            assert volume_created.wait(GUARD), "the volume never got a slot while mariadb's wait ran"
            return None

        def create_volume(self, name, labels):
            super().create_volume(name, labels)
            volume_created.set()

    result, _, _ = run(fake_engine(WaitsForTheVolume), plan, state_dir, parallelism=1)
    assert result.ok, [(o.action.id, o.error) for o in result.outcomes if o.result != OK]


def test_with_slots_short_the_longest_chain_goes_first(site, state_dir):
    # Both chains are ready at once and "alone" comes first in the plan; with one
    # slot the head of the longer chain must still be served first.
    def volume(name, *deps):
        return Action(f"create_volume:{name}", "create_volume", name, "s", "local", "test", tuple(deps))

    plan = Plan([volume("alone"), volume("a1"), volume("a2", "create_volume:a1"),
                 volume("a3", "create_volume:a2")])
    engine = fake_engine()
    result, _, _ = run(engine, plan, state_dir, parallelism=1)
    assert result.ok
    created = [c[1] for c in engine.calls if c[0] == "create_volume"]
    assert created.index("a1") < created.index("alone")


def test_chain_weights_count_the_heaviest_chain_below():
    def act(name, kind, *deps):
        return Action(name, kind, name, "s", "local", "test", tuple(deps))

    plan = Plan([act("f", "write_file"), act("j", "run_job", "f"), act("c", "create", "j"),
                 act("w", "wait_healthy", "c"), act("side", "write_file", "f")])
    weights = chain_weights(plan)
    assert weights["w"] == KIND_WEIGHT["wait_healthy"]
    assert weights["j"] == KIND_WEIGHT["run_job"] + KIND_WEIGHT["create"] + KIND_WEIGHT["wait_healthy"]
    assert weights["f"] == 1 + weights["j"]           # the job's branch, not the lone file
    assert weights["side"] == 1


# -- failures -----------------------------------------------------------------------------------

def test_unhealthy_container_skips_its_dependants_and_the_rest_runs(site, state_dir):
    engine = fake_engine()
    engine.unhealthy.add("keystone")
    result, outcomes, _ = run(engine, fresh_plan(site), state_dir)
    by_id = {o.action.id: o for o in result.outcomes}
    failed = by_id["wait_healthy:keystone"]
    assert failed.result == FAILED
    assert "keystone" in failed.error and "last log lines of keystone" in failed.error
    assert "fake logs of keystone" in failed.error
    assert "its health check said: keystone is unhealthy (fake engine)" in failed.error
    for dependant in ("job:keystone_register", "create:glance_api", "wait_healthy:glance_api"):
        assert by_id[dependant].result == SKIPPED
        assert by_id[dependant].error == "needs keystone healthy"
    # An independent branch, and glance's own jobs, still ran.
    for independent in ("job:glance_databases", "job:glance_db_sync", "create:memcached"):
        assert by_id[independent].result == OK
    assert (result.failed, result.skipped) == (1, 3)
    assert result.exit_code == 1 and not result.ok
    assert len(outcomes) == len(result.outcomes)       # progress heard about every action, skips included
    assert engine.container("glance_api") is None


def test_a_wait_passes_on_the_containers_own_check_before_the_engine_says_healthy(site, state_dir):
    # The engine checks every 30 s; right after its start every container is
    # still "starting" there. The wait runs the check itself and goes on.
    engine = fake_engine()
    engine.starting |= {"mariadb", "keystone", "glance_api"}
    engine.exec_results["keystone"] = [ExecResult(1, "nothing listens on TCP port 5000\n"), ExecResult(0, "")]
    result, _, _ = run(engine, fresh_plan(site), state_dir)
    assert result.ok, [(o.action.id, o.error) for o in result.outcomes if o.result != OK]
    assert engine.container("keystone").health == "starting"
    assert [c[1] for c in engine.calls if c[0] == "exec"].count("keystone") == 2
    assert {c[1] for c in engine.calls if c[0] == "exec"} == {"mariadb", "keystone", "glance_api"}


def test_failed_job_is_not_recorded_and_reports_its_logs(site, state_dir):
    engine = fake_engine()
    logs = "".join(f"line {i}\n" for i in range(40)) + "boom\n"
    engine.job_results["keystone_db_sync"] = JobResult(3, logs)
    result, _, _ = run(engine, fresh_plan(site), state_dir)
    failed = result.outcome("job:keystone_db_sync")
    assert failed.result == FAILED
    assert "exited with code 3" in failed.error and "boom" in failed.error
    assert "line 21" in failed.error and "line 20" not in failed.error     # the last 20 lines only
    assert result.outcome("create:keystone").error == "needs job keystone_db_sync done"
    record = load_jobs(state_dir)
    assert "keystone_db_sync" not in record
    assert {"keystone_databases", "glance_databases", "glance_db_sync"} <= set(record)


def test_engine_error_fails_the_action_not_the_run(site, state_dir):
    engine = fake_engine()
    engine.create(ContainerSpec(name="memcached", image="dockyard/memcached:test"))   # not dockyard's
    result, _, _ = run(engine, fresh_plan(site), state_dir)
    assert result.outcome("create:memcached").result == FAILED
    assert "already exists" in result.outcome("create:memcached").error
    assert result.outcome("create:keystone").result == SKIPPED
    assert result.outcome("wait_healthy:glance_api").result == SKIPPED
    assert result.outcome("job:glance_db_sync").result == OK


def test_malformed_plan_is_refused_before_anything_is_done(site, state_dir):
    plan = fresh_plan(site)
    plan.actions[0] = replace(plan.actions[0], deps=("no-such-action",))
    engine = fake_engine()
    with pytest.raises(ValueError):
        run(engine, plan, state_dir)
    assert engine.calls == []


# -- what each action does ----------------------------------------------------------------------

def test_job_records_hold_every_successful_job(site, state_dir):
    wanted = make_wanted(site)
    result, _, _ = run(fake_engine(), make_plan(wanted, ObservedState()), state_dir)
    assert result.ok
    assert json.loads((state_dir / "jobs.json").read_text()) == {j.name: j.hash for j in wanted.jobs}
    assert not [p for p in state_dir.iterdir() if p.name.endswith(".tmp")]


def test_files_written_atomically_with_their_mode(site, state_dir):
    result, _, _ = run(fake_engine(), fresh_plan(site), state_dir)
    assert result.ok
    conf = site.folder("keystone") / "keystone.conf"
    assert SECRET in conf.read_text()
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o755 & ~_umask()
    assert sorted(p.name for p in conf.parent.iterdir()) == ["config.json", "keystone.conf"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_recreate_stops_removes_creates_starts(site, state_dir):
    engine = fake_engine()
    converge(engine, make_wanted(site), state_dir)
    site.image_ids["memcached"] = "sha256:memcached-v2"
    engine.calls.clear()
    result = apply(engine, plan_for(engine, make_wanted(site), state_dir), state_dir)
    assert result.ok
    assert engine.calls == [("stop", "memcached"), ("remove", "memcached"), ("create", "memcached"),
                            ("start", "memcached")]
    assert result.changed == 1


def test_counts_changes_and_a_no_op_run(site, state_dir):
    engine = fake_engine()
    plan = fresh_plan(site)
    result, _, _ = run(engine, plan, state_dir)
    assert result.changed == sum(1 for a in plan.actions if a.kind != "wait_healthy")
    again = apply(engine, plan_for(engine, make_wanted(site), state_dir), state_dir)
    assert again.outcomes == [] and again.changed == 0 and again.ok
    assert again.summary().startswith("0 changes, 0 failed, 0 skipped in ")
    # The end-to-end tests' pattern for "nothing changed" matches this summary
    # as a whole line, and neither a run's "10 changes" nor a host's line.
    assert changed_nothing(f"dockyard: run 1\n{again.summary()}\n")
    assert not changed_nothing(f"1{again.summary()}\n")
    assert not changed_nothing(result.summary()) and result.changed > 0
    assert not changed_nothing("  h1: 0 changes, 0 failed, 0 skipped\n")


# -- timeline -----------------------------------------------------------------------------------

def test_timeline_lines_are_well_formed(site, state_dir):
    engine = fake_engine()
    engine.unhealthy.add("keystone")
    plan = fresh_plan(site)
    result, _, events = run(engine, plan, state_dir)
    path = state_dir / "timeline" / "test-run.jsonl"
    assert len(path.read_text().splitlines()) == len(events)
    assert events[0]["event"] == "run_start" and events[0]["actions"] == len(plan.actions)
    assert events[-1]["event"] == "run_end" and events[-1]["result"] == "failed"
    assert (events[-1]["failed"], events[-1]["skipped"]) == (1, 3)
    for e in events:
        assert e["run"] == "test-run" and isinstance(e["t"], float)
    actions = [e for e in events if e["event"] in ("start", "end")]
    for e in actions:
        assert {"action", "kind", "service"} <= set(e)
    ends = {e["action"]: e for e in actions if e["event"] == "end"}
    starts = {e["action"] for e in actions if e["event"] == "start"}
    assert set(ends) == {a.id for a in plan.actions}                   # every action ends exactly once
    assert len([e for e in actions if e["event"] == "end"]) == len(plan.actions)
    assert {a for a, e in ends.items() if e["result"] == "skipped"} == {a for a in ends if a not in starts}
    assert {e["result"] for e in ends.values()} == {"ok", "failed", "skipped"}
    assert ends["wait_healthy:keystone"]["error"].startswith("keystone (keystone) is not healthy")
    assert "\n" not in ends["wait_healthy:keystone"]["error"]          # log excerpts stay off disk
    assert SECRET not in path.read_text()


def test_every_action_kind_has_its_applier():
    assert all(callable(getattr(_Applier, kind.value, None)) for kind in ActionKind)
