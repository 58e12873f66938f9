"""The health wait: a container's own health check, run through the engine about
once a second while a deploy waits, not the engine's slow periodic one.

On the fake engine and a clock that only moves when slept (FakeClock): no test
sleeps, and a deadline of minutes passes at once.
"""

from __future__ import annotations

import pytest

from dockyard.engine.driver import ContainerDied, ContainerSpec, ExecResult, Healthcheck, HealthTimeout
from dockyard.engine.fake import FakeClock, FakeEngine
from dockyard.engine.health_wait import check_command, said, wait_healthy
from dockyard.errors import EngineUnavailable

IMAGE = "dockyard/keystone:test"
CHECK = ("CMD", "dockyard-healthcheck", "port", "5000")
NOT_YET = ExecResult(1, "nothing listens on TCP port 5000\n")
PASS = ExecResult(0, "")


def started(engine: FakeEngine, name: str = "keystone", test: tuple[str, ...] | None = CHECK,
            timeout: float = 10.0) -> str:
    """A running container whose engine-side health is still ``starting`` (its
    own 30 s check has not run yet): only the wait's exec can pass it."""
    engine.starting.add(name)
    check = Healthcheck(test, timeout=timeout) if test is not None else None
    engine.create(ContainerSpec(name=name, image=IMAGE, healthcheck=check))
    engine.start(name)
    return name


@pytest.fixture
def engine() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(IMAGE)
    return engine


def execs(engine: FakeEngine) -> list[tuple]:
    return [c for c in engine.calls if c[0] == "exec"]


def wait(engine: FakeEngine, name: str, timeout: float = 300) -> tuple[object, FakeClock]:
    clock = FakeClock()
    return wait_healthy(engine, name, timeout, clock=clock, sleep=clock.sleep), clock


# -- the test the engine holds, as a command ----------------------------------------------------

def test_cmd_runs_its_arguments_as_they_are():
    assert check_command(Healthcheck(CHECK)) == ("dockyard-healthcheck", "port", "5000")


def test_cmd_shell_runs_through_the_shell():
    assert check_command(Healthcheck(("CMD-SHELL", "test -e /tmp/ready"))) == ("/bin/sh", "-c", "test -e /tmp/ready")


@pytest.mark.parametrize("test", [("NONE",), (), ("CMD",), ("CMD-SHELL",), ("SOMETHING", "x")])
def test_nothing_to_run(test):
    assert check_command(Healthcheck(test)) is None
    assert check_command(None) is None


# -- waits ---------------------------------------------------------------------------------------

def test_passes_after_n_failures_about_a_second_apart(engine):
    name = started(engine)
    engine.exec_results[name] = [NOT_YET, NOT_YET, NOT_YET, PASS]
    state, clock = wait(engine, name)
    assert state.name == name and state.health == "starting"     # the engine's own verdict follows later
    assert execs(engine) == [("exec", name, ("dockyard-healthcheck", "port", "5000"))] * 4
    assert clock.slept == [1.0, 1.0, 1.0]
    assert engine.exec_results[name] == [PASS]                    # every scripted answer was asked for


def test_cmd_shell_is_run_through_the_shell(engine):
    name = started(engine, test=("CMD-SHELL", "test -e /tmp/ready"))
    wait(engine, name)
    assert execs(engine) == [("exec", name, ("/bin/sh", "-c", "test -e /tmp/ready"))]


def test_none_is_no_check_running_is_enough(engine):
    name = started(engine, test=("NONE",))
    state, clock = wait(engine, name)
    assert state.running and state.health is None
    assert execs(engine) == [] and clock.slept == []


def test_no_health_check_running_is_enough(engine):
    name = started(engine, test=None)
    state, _ = wait(engine, name)
    assert state.running and execs(engine) == []


def test_a_container_the_engine_calls_healthy_needs_no_exec(engine):
    engine.create(ContainerSpec(name="keystone", image=IMAGE, healthcheck=Healthcheck(CHECK)))
    engine.start("keystone")
    state, _ = wait(engine, "keystone")
    assert state.health == "healthy" and execs(engine) == []


def test_the_deadline_names_what_the_check_last_said(engine):
    name = started(engine)
    engine.exec_results[name] = [ExecResult(1, "connection refused\n"), NOT_YET]
    with pytest.raises(HealthTimeout) as err:
        wait(engine, name, timeout=5)
    message = str(err.value)
    assert message == ("keystone not healthy after 5s (health: starting); "
                       "its health check said: nothing listens on TCP port 5000")
    assert len(execs(engine)) == 6                                # at 0, 1, 2, 3, 4 and 5 s: then the deadline


def test_a_check_that_hangs_is_a_failure_and_the_deadline_still_holds(engine):
    name = started(engine, timeout=10)
    engine.exec_results[name] = [ExecResult(None, "")]
    with pytest.raises(HealthTimeout) as err:
        wait(engine, name, timeout=3)
    assert str(err.value).endswith("its health check said: no answer in time")


def test_a_long_output_is_kept_short_and_on_one_line():
    text = said(ExecResult(1, "first line\n" + "x" * 1000 + "\nlast"))
    assert "\n" not in text and text.startswith("first line x") and len(text) <= 303
    assert said(ExecResult(2, "")) == "exit code 2, no output"


def test_each_check_runs_with_its_own_timeout_bounded_by_the_deadline(engine):
    seen = []

    class Timed(FakeEngine):
        def exec_in(self, name, command, timeout):
            seen.append(timeout)
            return super().exec_in(name, command, timeout)

    timed = Timed()
    timed.add_image(IMAGE)
    name = started(timed, timeout=4)
    timed.exec_results[name] = [NOT_YET]
    with pytest.raises(HealthTimeout):
        wait(timed, name, timeout=6)
    assert seen[0] == 4 and seen[-1] == 1.0                       # the last ones: no more than the time left, or 1 s


def test_a_container_that_exits_during_the_wait_ends_it(engine):
    name = started(engine)
    engine.exec_results[name] = [NOT_YET]

    def crash_on_the_third(container, command):
        if len(execs(engine)) == 3:
            engine._set(container, status="exited", exit_code=137, health=None)

    engine.on_exec = crash_on_the_third
    with pytest.raises(ContainerDied) as err:
        wait(engine, name)
    assert str(err.value) == "keystone exited with code 137 (exited)"
    assert len(execs(engine)) == 3                                # the refused exec, then the look that saw it


def test_a_restarting_container_is_dead_for_the_wait(engine):
    name = started(engine)
    engine._set(name, status="restarting")
    with pytest.raises(ContainerDied, match="restarting"):
        wait(engine, name)
    assert execs(engine) == []


def test_a_container_that_is_not_there(engine):
    with pytest.raises(ContainerDied, match="does not exist"):
        wait(engine, "nobody")


def test_an_engine_that_stops_answering_is_not_a_failing_check(engine):
    name = started(engine)

    def engine_goes(container, command):
        engine.down = True

    engine.on_exec = engine_goes
    with pytest.raises(EngineUnavailable):
        wait(engine, name)


def test_the_fakes_wait_is_this_wait(engine):
    # What the executor calls: the same wait, on a clock of the fake's own.
    name = started(engine)
    engine.unhealthy.add(name)
    with pytest.raises(HealthTimeout) as err:
        engine.wait_healthy(name, 300)
    assert str(err.value).endswith("its health check said: keystone is unhealthy (fake engine)")
    assert len(execs(engine)) == 301
    fresh = started(engine, name="glance_api")
    engine.exec_results[fresh] = [NOT_YET, PASS]
    assert engine.wait_healthy(fresh, 300).name == fresh
