"""The Docker engine driver against the real engine.

A health wait blocks on the engine's event stream. The events API replays the
whole second named by `since`; a wait that woke again on an event it had
already seen would spin, opening thousands of streams and loading the engine
while every other service starts. This counts the streams one wait opens.
"""

from __future__ import annotations

import docker
import pytest

NAME = "dockyard-e2e-healthwait"


@pytest.fixture
def probe(built_catalogue, engine):
    api = engine.api
    if engine.container(NAME):
        engine.remove(NAME)
    check = docker.types.Healthcheck(test=["CMD-SHELL", "test -e /tmp/ready"], interval=1_000_000_000,
                                     timeout=5_000_000_000, retries=3, start_period=60_000_000_000)
    # The container's own work: become ready after a few seconds, then idle.
    api.create_container("dockyard/base:2025.1", name=NAME, healthcheck=check,
                         entrypoint=["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 300"])
    yield api
    engine.remove(NAME)


def test_health_wait_opens_a_few_event_streams_not_a_spin(probe, engine):
    streams = []
    real_events = engine.client.events

    def counted(*args, **kwargs):
        streams.append(kwargs.get("since"))
        return real_events(*args, **kwargs)

    engine.client.events = counted
    try:
        probe.start(NAME)
        state = engine.wait_healthy(NAME, 60)
    finally:
        engine.client.events = real_events
    assert state.health == "healthy"
    # One stream per new event of the container (start, health_status): a handful.
    assert 1 <= len(streams) <= 5, f"{len(streams)} event streams for one health wait"
