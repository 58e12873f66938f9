"""Every run's actions as JSON lines: start, end, result. Used for reports and the
critical-path benchmark."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path


class Timeline:
    def __init__(self, state_dir: Path, run_id: str | None = None):
        self.run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        self.path = state_dir / "timeline" / f"{self.run_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", buffering=1)

    def write(self, **event) -> None:
        event = {"run": self.run_id, "t": time.time(), **event}
        with self._lock:
            self._fh.write(json.dumps(event, sort_keys=True) + "\n")

    def close(self) -> None:
        self._fh.close()


def load_timeline(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def critical_path(events: list[dict]) -> tuple[float, list[str]]:
    """The longest chain of dependent actions, each at its measured duration."""
    start, end, deps = {}, {}, {}
    for e in events:
        if "action" not in e:
            continue
        if e["event"] == "start":
            start[e["action"]] = e["t"]
            deps[e["action"]] = e.get("deps", [])
        elif e["event"] == "end":
            end[e["action"]] = e["t"]
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(a: str) -> tuple[float, list[str]]:
        if a in best:
            return best[a]
        own = end.get(a, start[a]) - start[a]
        chains = [longest(d) for d in deps.get(a, []) if d in start]
        prev = max(chains, default=(0.0, []), key=lambda c: c[0])
        best[a] = (prev[0] + own, prev[1] + [a])
        return best[a]

    results = [longest(a) for a in start]
    return max(results, default=(0.0, []), key=lambda c: c[0])
