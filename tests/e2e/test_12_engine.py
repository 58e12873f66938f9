"""The Docker engine driver against the real engine.

A health wait runs the container's own health check through an exec, about once
a second, rather than waiting for the engine's own check (30 s apart in the
catalogue, and here). Against the real engine: the wait ends on the check's
first pass while the engine still says "starting", with about one exec a second
(not a spin); it names what the check last said when it runs out; it ends when
the container exits.
"""

from __future__ import annotations

import time

import docker
import pytest

from dockyard.engine.driver import ContainerDied, HealthTimeout

NAME = "dockyard-e2e-healthwait"
NS = 1_000_000_000
CHECK = "test -e /tmp/ready || { echo not ready yet; exit 1; }"


@pytest.fixture
def probe(built_catalogue, engine):
    """Makes and starts the test container: its own work is the given script;
    its health check passes once /tmp/ready exists; the engine's own first
    check comes 30 s after the start, after every wait here has ended."""

    def make(script: str) -> None:
        if engine.container(NAME):
            engine.remove(NAME)
        check = docker.types.Healthcheck(test=["CMD-SHELL", CHECK], interval=30 * NS, timeout=5 * NS, retries=3,
                                         start_period=60 * NS)
        engine.api.create_container("dockyard/base:2025.1", name=NAME, healthcheck=check,
                                    entrypoint=["sh", "-c", script])
        engine.api.start(NAME)

    yield make
    engine.remove(NAME)


def test_the_wait_runs_the_check_itself_about_once_a_second(probe, engine, monkeypatch):
    execs = []
    real_exec_create = engine.api.exec_create

    def counted(*args, **kwargs):
        execs.append(time.monotonic())
        return real_exec_create(*args, **kwargs)

    monkeypatch.setattr(engine.api, "exec_create", counted)
    probe("sleep 4; touch /tmp/ready; exec sleep 300")
    started = time.monotonic()
    state = engine.wait_healthy(NAME, 60)
    took = time.monotonic() - started
    assert state.running and took < 20, took
    # It passed on its own run of the check: the engine's has not run yet.
    assert engine.container(NAME).health == "starting"
    # About one exec a second while it waited: a handful, not a spin.
    assert 2 <= len(execs) <= took + 2, (len(execs), took)


def test_a_check_that_never_passes_is_named_when_the_wait_runs_out(probe, engine):
    probe("exec sleep 300")
    with pytest.raises(HealthTimeout) as err:
        engine.wait_healthy(NAME, 3)
    assert str(err.value).endswith("its health check said: not ready yet"), str(err.value)


def test_a_container_that_exits_ends_the_wait(probe, engine):
    probe("sleep 2; exit 3")
    with pytest.raises(ContainerDied, match="exited with code 3"):
        engine.wait_healthy(NAME, 60)
