"""What a run was doing while every API was down at once.

The probe knows when the cloud's users saw nothing answer (``ProbeReport.
all_down_at``); the run's timeline knows when each of its actions started and
ended. Put side by side, they name the steps an outage came with:

    every API down at once: <seconds> s
      <seconds> s from <HH:MM:SS>, during <action id>, <action id>, ...

so an operator (and whoever tunes the upgrade's order) sees which restart cost
the cloud its availability, instead of guessing. Both sides are in the host's
clock (``time.time()``); this is a pure function of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

# An outage names at most this many actions: those that overlapped it most.
MOST = 4


@dataclass(frozen=True)
class Outage:
    start: float                   # seconds since the epoch
    end: float
    actions: tuple[str, ...]       # the actions going on meanwhile, the longest overlap first

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.start))
        doing = f"during {', '.join(self.actions)}" if self.actions else "while no action of the run was going on"
        return f"{self.seconds:.1f} s from {when}, {doing}"


def action_spans(events: list[dict]) -> dict[str, tuple[float, float]]:
    """Action id -> (started, ended) from a run's timeline events. An action
    that started and never ended (the run was killed) runs on to the end of
    time; a skipped one (an ``end`` line only) never ran."""
    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for event in events:
        action, at = event.get("action"), event.get("t")
        if not isinstance(action, str) or not isinstance(at, (int, float)):
            continue
        if event.get("event") == "start":
            started[action] = float(at)
        elif event.get("event") == "end" and action in started:
            spans[action] = (started.pop(action), float(at))
    for action, at in started.items():
        spans[action] = (at, math.inf)
    return spans


def during(all_down_at: list[list[float]], events: list[dict]) -> list[Outage]:
    """Each span of ``all_down_at`` with the actions of ``events`` that overlapped it."""
    spans = action_spans(events)
    out = []
    for start, end in all_down_at:
        overlaps = {action: min(end, e) - max(start, s) for action, (s, e) in spans.items()
                    if s < end and e > start}
        ranked = sorted(overlaps, key=lambda a: (-overlaps[a], spans[a][0], a))
        out.append(Outage(start, end, tuple(ranked[:MOST])))
    return out
