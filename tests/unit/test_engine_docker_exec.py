"""The Docker driver's half of the health wait: the health check it reads from a
container's inspect, and ``exec_in`` (the SDK's exec calls, answered here by a
stand-in for its low-level client: no engine is touched)."""

from __future__ import annotations

import threading

import docker.errors
import pytest
import requests

from dockyard.engine.docker_engine import DockerEngine
from dockyard.engine.driver import ExecResult, Healthcheck
from dockyard.errors import EngineError

NS = 1_000_000_000


def inspect(healthcheck: dict | None) -> dict:
    config = {"Image": "dockyard/memcached:2025.1", "Labels": {}}
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    return {"Id": "c1", "Name": "/memcached", "Image": "sha256:1", "Config": config,
            "State": {"Status": "running", "Health": {"Status": "starting"}}}


def test_the_containers_health_check_is_read_from_its_config():
    state = DockerEngine._state(inspect({"Test": ["CMD", "dockyard-healthcheck", "port", "11211"],
                                         "Interval": 30 * NS, "Timeout": 10 * NS, "Retries": 3,
                                         "StartPeriod": 300 * NS}))
    assert state.health == "starting"
    assert state.healthcheck == Healthcheck(("CMD", "dockyard-healthcheck", "port", "11211"), 30.0, 10.0, 3, 300.0)


def test_unset_durations_are_the_engines_defaults():
    state = DockerEngine._state(inspect({"Test": ["CMD-SHELL", "true"]}))
    assert state.healthcheck == Healthcheck(("CMD-SHELL", "true"), interval=30.0, timeout=30.0, retries=3,
                                            start_period=0.0)


@pytest.mark.parametrize("healthcheck", [None, {}, {"Test": []}])
def test_no_health_check(healthcheck):
    assert DockerEngine._state(inspect(healthcheck)).healthcheck is None


class StandIn:
    """The SDK's APIClient, for the three exec calls."""

    def __init__(self, output: bytes = b"", exit_code: int | None = 0, error: Exception | None = None) -> None:
        self.output, self.exit_code, self.error = output, exit_code, error
        self.created: list[tuple[str, list[str]]] = []
        self.release = threading.Event()
        self.hang = False

    def exec_create(self, container, cmd, stdout=True, stderr=True):
        self.created.append((container, cmd))
        return {"Id": "e1"}

    def exec_start(self, exec_id):
        if self.hang:
            self.release.wait(30)
        if self.error is not None:
            raise self.error
        return self.output

    def exec_inspect(self, exec_id):
        return {"ExitCode": self.exit_code, "Running": False}


@pytest.fixture
def engine(tmp_path):
    # Named by URL: making the client asks the engine nothing.
    return DockerEngine(base_url=f"unix://{tmp_path}/none.sock")


def test_exec_in_gives_the_exit_code_and_the_output(engine):
    engine.api = StandIn(output=b"nothing listens on TCP port 11211\n", exit_code=1)
    result = engine.exec_in("memcached", ("dockyard-healthcheck", "port", "11211"), 10)
    assert result == ExecResult(1, "nothing listens on TCP port 11211\n")
    assert engine.api.created == [("memcached", ["dockyard-healthcheck", "port", "11211"])]


def test_no_exit_code_said_is_not_a_pass(engine):
    engine.api = StandIn(exit_code=None)
    assert engine.exec_in("memcached", ("true",), 10).exit_code == -1


def test_an_exec_the_engine_refuses_is_an_engine_error(engine):
    response = requests.Response()
    response.status_code = 409
    engine.api = StandIn(error=docker.errors.APIError("conflict", response, "container memcached is not running"))
    with pytest.raises(EngineError, match="is not running"):
        engine.exec_in("memcached", ("true",), 10)


def test_a_check_that_does_not_answer_in_time_is_no_answer(engine):
    stand_in = StandIn()
    stand_in.hang = True
    engine.api = stand_in
    try:
        result = engine.exec_in("memcached", ("true",), 0.05)
    finally:
        stand_in.release.set()
    assert result.exit_code is None and result.output == "no answer within 0.05s"
