"""Waiting for a container to become healthy, by running its health check.

The engine runs every container's health check each ``interval``, and each
check is an exec: an idle all-in-one cloud of about 22 containers checked every
2 s kept its two cores busy. So the interval is long (30 s), and a deploy does
not wait for the engine's next check: while it waits on a container it runs
the container's own test itself, through the engine, about once a second, and
stops at the first pass. The engine's status (``docker ps``, ``dockyard
status``) catches up at its own pace. Once nothing waits, no exec runs.

The test is the one the engine holds (``Healthcheck.Test``): ``CMD`` runs its
arguments as they are, ``CMD-SHELL`` through ``/bin/sh -c`` (the engine's own
shell on Linux), ``NONE`` means no check: running is healthy, as it is for a
container the engine reports no health for.

Any engine with ``container`` and ``exec_in`` can be waited on; the Docker
driver and the fake both wait through this module, the fake on a clock of its
own so tests never sleep.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from dockyard.errors import EngineError, EngineUnavailable

from .driver import ContainerDied, ContainerState, ExecResult, Healthcheck, HealthTimeout

POLL = 1.0                       # seconds from one run of the check to the next
SHELL = ("/bin/sh", "-c")        # what runs a CMD-SHELL test (the engine's default shell on Linux)
SAID_CHARS = 300                 # how much of a failing check's output an error keeps
GONE = ("exited", "dead", "restarting")


class Probe(Protocol):
    """What the wait needs from an engine."""

    def container(self, name: str) -> ContainerState | None: ...
    def exec_in(self, name: str, command: tuple[str, ...], timeout: float) -> ExecResult: ...


def disabled(check: Healthcheck | None) -> bool:
    """``NONE``: the container's health check is switched off."""
    return check is not None and check.test[:1] == ("NONE",)


def check_command(check: Healthcheck | None) -> tuple[str, ...] | None:
    """The command that runs ``check``'s test in the container, as the engine
    would run it; None when there is nothing to run (none, ``NONE``, an empty
    or unknown form)."""
    if check is None or not check.test:
        return None
    form, args = check.test[0], tuple(check.test[1:])
    if form == "CMD" and args:
        return args
    if form == "CMD-SHELL" and args:
        return (*SHELL, *args)           # as the engine does: extra arguments become $0, $1...
    return None


def said(result: ExecResult) -> str:
    """A failing check's output, on one line and bounded (it ends up in an error,
    and the timeline keeps an error's first line)."""
    text = " ".join(result.output.split())
    if len(text) > SAID_CHARS:
        text = text[:SAID_CHARS] + "..."
    if result.exit_code is None:
        return text or "no answer in time"
    return text or f"exit code {result.exit_code}, no output"


def alive(engine: Probe, name: str) -> ContainerState:
    """The container's state; :class:`ContainerDied` when it is gone or stopped."""
    state = engine.container(name)
    if state is None:
        raise ContainerDied(f"{name} does not exist")
    if state.status in GONE:
        # With a restart policy a crashing service shows as restarting: its
        # command failed, and waiting longer would not make it healthy.
        raise ContainerDied(f"{name} exited with code {state.exit_code} ({state.status})")
    return state


def wait_healthy(engine: Probe, name: str, timeout: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll: float = POLL) -> ContainerState:
    """Run the container's health check about every ``poll`` seconds until it
    passes (returns the container's state, whose ``health`` is still the
    engine's, often ``starting``), the container stops (:class:`ContainerDied`)
    or ``timeout`` seconds pass (:class:`HealthTimeout`, with what the check
    last said). A container the engine already reports healthy, or one with no
    health check that is running, is returned at once."""
    deadline = clock() + timeout
    last = ""
    while True:
        state = alive(engine, name)
        if state.health == "healthy":
            return state
        if (state.health is None or disabled(state.healthcheck)) and state.running:
            return state
        started = clock()
        check = state.healthcheck
        command = check_command(check)
        # Without a test to run (the engine did not say), the engine's own
        # status is all there is: it is looked at again on the next round.
        if check is not None and command is not None and state.running:
            try:
                result = engine.exec_in(name, command, min(check.timeout, max(deadline - started, POLL)))
            except EngineUnavailable:
                raise
            except EngineError as exc:
                # Stopped between the look and the exec: the next look says so.
                last = f"the check could not run: {exc}"
            else:
                if result.exit_code == 0:
                    return state
                last = said(result)
        now = clock()
        if now >= deadline:
            tail = f"; its health check said: {last}" if last else ""
            raise HealthTimeout(f"{name} not healthy after {timeout:.0f}s (health: {state.health}){tail}")
        sleep(min(max(poll - (now - started), 0.0), deadline - now))
