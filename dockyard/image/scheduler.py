"""Build a tree of images with N workers, each image as soon as its parent is done.

Not level by level: a slow image holds up only its own children. Of the images
ready at once, those with the most descendants start first, since they unblock
the most work. A failing image is retried; when it still fails its descendants
are ``unbuildable`` (never attempted) and every other image still builds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Mapping

BUILT, CACHED, FAILED, UNBUILDABLE, SKIPPED = "built", "cached", "failed", "unbuildable", "skipped"
STATUSES = (BUILT, CACHED, FAILED, UNBUILDABLE, SKIPPED)
#: A parent in one of these states can have children built on it.
USABLE = frozenset({BUILT, CACHED, SKIPPED})


@dataclass
class Outcome:
    image: str
    status: str
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    size: int = 0


#: Kinds of :class:`Event`.
START, DONE, TICK = "start", "done", "tick"


@dataclass(frozen=True)
class Event:
    """Progress: ``start`` before each attempt, ``done`` once per image with its
    outcome; ``tick`` (image "") while builds run, at least every ``tick``
    seconds the scheduler was given, so a display can refresh its clock."""

    image: str
    kind: str
    attempt: int = 0
    outcome: Outcome | None = None
    error: str = ""      # on a retry's start: why the attempt before it failed


#: Builds one image (name, attempt number from 1) and returns its size in
#: bytes; raising anything means this attempt failed.
BuildFn = Callable[[str, int], int]
EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default event sink: no progress output."""


class Scheduler:
    def __init__(self, parents: Mapping[str, str | None], build: BuildFn, *, workers: int = 1, retries: int = 0,
                 on_event: EventSink = ignore, preset: Mapping[str, Outcome] | None = None,
                 tick: float | None = None, clock: Callable[[], float] = time.monotonic):
        """``parents``: every image of this build and its parent (None, or an
        image outside the build: both count as ready). ``preset``: outcomes
        decided beforehand (cached, skipped); those images are not built.
        ``tick``: seconds between ``tick`` events (None: none), measured on
        ``clock``."""
        self.parents = dict(parents)
        self.build = build
        self.workers = max(1, workers)
        self.retries = max(0, retries)
        self.on_event = on_event
        self.preset = dict(preset or {})
        self.tick = tick
        self.clock = clock
        self.children: dict[str, list[str]] = {name: [] for name in self.parents}
        for name, parent in self.parents.items():
            if parent in self.children:
                self.children[parent].append(name)
        self._event_lock = threading.Lock()

    def _emit(self, event: Event) -> None:
        # Workers and the coordinating thread both report: one at a time.
        with self._event_lock:
            self.on_event(event)

    def descendants(self, name: str) -> int:
        return sum(1 + self.descendants(child) for child in self.children[name])

    def _attempts(self, name: str) -> Outcome:
        started = time.monotonic()
        error = ""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            self._emit(Event(name, START, attempt, error=error))
            try:
                size = self.build(name, attempt)
            except Exception as exc:  # whatever breaks one image is that image's failure
                error = str(exc) or type(exc).__name__
                continue
            return Outcome(name, BUILT, time.monotonic() - started, attempt, size=size or 0)
        return Outcome(name, FAILED, time.monotonic() - started, attempts, error)

    def run(self) -> dict[str, Outcome]:
        results: dict[str, Outcome] = dict(self.preset)
        pending = {name for name in self.parents if name not in results}
        priority = {name: (-self.descendants(name), name) for name in self.parents}

        def state_of_parent(name: str) -> str:
            """ready | wait | blocked (the parent will never be usable)."""
            parent = self.parents[name]
            if parent is None or parent not in self.parents:
                return "ready"
            if parent not in results:
                return "wait"
            return "ready" if results[parent].status in USABLE else "blocked"

        def block_orphans() -> None:
            # Parents first, so a blocked image blocks its own children in this sweep.
            changed = True
            while changed:
                changed = False
                for name in sorted(pending, key=lambda n: len(self._chain(n))):
                    parent = self.parents[name]
                    if parent is not None and state_of_parent(name) == "blocked":     # blocked: it has one
                        pending.discard(name)
                        results[name] = Outcome(name, UNBUILDABLE, error=f"parent {parent} is {results[parent].status}")
                        self._emit(Event(name, DONE, outcome=results[name]))
                        changed = True

        running: dict[Future, str] = {}
        # Ticks come from this loop's own wait, not a timer thread: the wait
        # gives up at the next tick's time when no build finishes before it.
        next_tick = None if self.tick is None else self.clock() + self.tick
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="build") as pool:
            while True:
                block_orphans()
                # Hand out only as many as there are free workers, so each free
                # worker takes the best image ready at that moment.
                ready = [n for n in sorted(pending, key=priority.__getitem__) if state_of_parent(n) == "ready"]
                for name in ready[:self.workers - len(running)]:
                    pending.discard(name)
                    running[pool.submit(self._attempts, name)] = name
                if not running:
                    break
                timeout = None if next_tick is None else max(0.0, next_tick - self.clock())
                done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    results[name] = future.result()
                    self._emit(Event(name, DONE, outcome=results[name]))
                if next_tick is not None and self.tick is not None and self.clock() >= next_tick:
                    self._emit(Event("", TICK))
                    next_tick = self.clock() + self.tick
        for name in sorted(pending):  # only a parent loop leaves any; the catalogue refuses loops
            results[name] = Outcome(name, UNBUILDABLE, error="its parents form a loop")
        return results

    def _chain(self, name: str) -> list[str]:
        chain: list[str] = []
        parent = self.parents.get(name)
        while parent in self.parents and parent not in chain:
            chain.append(parent)
            parent = self.parents[parent]
        return chain
