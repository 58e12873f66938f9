"""Build a tree of images with N workers, each image as soon as its parent is ready.

A failed image is retried; when it still fails its descendants are reported
unbuildable (never attempted) and every other image still builds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

BUILT, CACHED, FAILED, UNBUILDABLE, SKIPPED = "built", "cached", "failed", "unbuildable", "skipped"


@dataclass
class Outcome:
    image: str
    status: str
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    size: int = 0


@dataclass
class Event:
    image: str
    kind: str            # start | done
    attempt: int = 0
    outcome: Outcome | None = None


# A build function returns the image's size, or raises on failure.
BuildFn = Callable[[str, int], int]


@dataclass
class Scheduler:
    parents: dict[str, str | None]        # image -> parent (within this build, or None)
    build: BuildFn
    workers: int = 1
    retries: int = 0
    on_event: Callable[[Event], None] = lambda event: None
    preset: dict[str, Outcome] = field(default_factory=dict)   # cached/skipped, decided before

    def run(self) -> dict[str, Outcome]:
        results: dict[str, Outcome] = dict(self.preset)
        children: dict[str, list[str]] = {name: [] for name in self.parents}
        for name, parent in self.parents.items():
            if parent in children:
                children[parent].append(name)
        lock = threading.Lock()

        def ready(name: str) -> bool:
            parent = self.parents[name]
            return parent is None or parent not in self.parents or results.get(parent, Outcome("", "")).status in (
                BUILT, CACHED, SKIPPED)

        def work(name: str) -> Outcome:
            start = time.monotonic()
            error = ""
            for attempt in range(1, self.retries + 2):
                self.on_event(Event(name, "start", attempt))
                try:
                    size = self.build(name, attempt)
                    return Outcome(name, BUILT, time.monotonic() - start, attempt, size=size)
                except Exception as exc:  # any failure of one image is that image's failure
                    error = str(exc) or type(exc).__name__
            return Outcome(name, FAILED, time.monotonic() - start, self.retries + 1, error)

        def mark_unbuildable(name: str) -> None:
            for child in children[name]:
                results[child] = Outcome(child, UNBUILDABLE, error=f"parent {name} failed")
                self.on_event(Event(child, "done", outcome=results[child]))
                mark_unbuildable(child)

        def weight(name: str) -> int:
            return len(children[name]) + sum(weight(c) for c in children[name])

        # Images with more descendants first: they unblock the most work.
        priority = {name: (-weight(name), name) for name in self.parents}
        pending = {n for n in self.parents if n not in results}
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            while pending or running:
                for name in sorted(pending, key=priority.__getitem__):
                    if ready(name):
                        pending.discard(name)
                        running[pool.submit(work, name)] = name
                if not running:
                    break  # everything left waits on something that failed
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    outcome = future.result()
                    with lock:
                        results[name] = outcome
                    self.on_event(Event(name, "done", outcome=outcome))
                    if outcome.status == FAILED:
                        mark_unbuildable(name)
                        pending -= set(results)
        return results
