"""Every run's actions as JSON lines: ``<state_dir>/timeline/<run-id>.jsonl``.

One line when the run starts, one when each action starts and ends, one when the
run ends::

    {"run": "...", "event": "run_start", "t": 1764000000.1, "actions": 12}
    {"run": "...", "event": "start", "action": "job:keystone_db_sync", "kind": "run_job",
     "service": "keystone", "deps": ["wait_healthy:mariadb"], "t": ...}
    {"run": "...", "event": "end", "action": "job:keystone_db_sync", "kind": "run_job",
     "service": "keystone", "result": "ok", "error": "", "t": ...}
    {"run": "...", "event": "run_end", "result": "failed", "changed": 9, "failed": 1, "skipped": 2, "t": ...}

A skipped action has only an ``end`` line. Each line is one ``write`` on a file
opened for appending, so a run killed mid-way leaves whole lines (at worst a
torn last one, which :func:`load_timeline` ignores). Errors keep only their first
line: log excerpts stay on the operator's terminal, not on disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + f"-{os.getpid()}"


def timeline_path(state_dir: Path, run_id: str) -> Path:
    """Where the run ``run_id`` of a site writes its timeline."""
    return Path(state_dir) / "timeline" / f"{run_id}.jsonl"


class Timeline:
    def __init__(self, state_dir: Path, run_id: str | None = None):
        self.run_id = run_id or new_run_id()
        self.path = timeline_path(state_dir, self.run_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **fields) -> None:
        line = json.dumps({"run": self.run_id, "t": time.time(), **fields}, sort_keys=True) + "\n"
        with self._lock:
            if self._fd is None:
                raise ValueError(f"timeline {self.path} is closed")
            os.write(self._fd, line.encode())

    def run_start(self, **info) -> None:
        self.write(event="run_start", **info)

    def run_end(self, result: str, **info) -> None:
        self.write(event="run_end", result=result, **info)

    def action_start(self, action) -> None:
        self.write(event="start", action=action.id, kind=action.kind, service=action.service,
                   deps=list(action.deps))

    def action_end(self, action, result: str, error: str = "") -> None:
        first_line = error.strip().splitlines()[0] if error.strip() else ""
        self.write(event="end", action=action.id, kind=action.kind, service=action.service,
                   result=result, error=first_line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "Timeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_timeline(path: Path) -> list[dict]:
    """The events of one run, in order. A torn line (a killed run) is left out."""
    events = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def deps_from_events(events: list[dict]) -> dict[str, list[str]]:
    """The plan's dependencies as recorded in the start lines."""
    return {e["action"]: list(e.get("deps", [])) for e in events if e.get("event") == "start"}


def durations(events: list[dict]) -> dict[str, float]:
    """Action id -> seconds from its start to its end (actions that ran and ended)."""
    start = {e["action"]: e["t"] for e in events if e.get("event") == "start"}
    end = {e["action"]: e["t"] for e in events if e.get("event") == "end" and e["action"] in start}
    return {a: max(0.0, end[a] - start[a]) for a in end}


def critical_path(events: list[dict], plan_deps: dict[str, list[str]] | dict[str, tuple[str, ...]] | None = None
                  ) -> tuple[float, list[str]]:
    """The longest chain of dependent actions, by measured duration.

    ``plan_deps`` maps each action id to the ids it depends on (``{a.id: a.deps}``);
    without it, the dependencies recorded in the start lines are used. Actions that
    did not run (skipped, or cut off by a killed run) are not part of any chain.
    Returns the chain's total seconds and its ids, first to last.
    """
    deps = plan_deps if plan_deps is not None else deps_from_events(events)
    took = durations(events)
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(action: str, visiting: frozenset[str]) -> tuple[float, list[str]]:
        if action in best:
            return best[action]
        if action in visiting:
            raise ValueError(f"dependency cycle through {action}")
        before = [longest(d, visiting | {action}) for d in deps.get(action, ()) if d in took]
        prev = max(before, default=(0.0, []), key=lambda chain: chain[0])
        best[action] = (prev[0] + took[action], prev[1] + [action])
        return best[action]

    chains = [longest(a, frozenset()) for a in took]
    return max(chains, default=(0.0, []), key=lambda chain: chain[0])
