"""The scheduler on its own: order, parallelism, retries, failures, preset outcomes."""

from __future__ import annotations

import threading

from dockyard.image.scheduler import BUILT, CACHED, DONE, FAILED, TICK, UNBUILDABLE, Event, Outcome, Scheduler

#       base
#      /    \
#     a      b
#    / \      \
#   c   d      e
#   |
#   f
PARENTS = {"base": None, "a": "base", "b": "base", "c": "a", "d": "a", "e": "b", "f": "c"}


class Recorder:
    """A build function recording start and end; fails the images it is told to."""

    def __init__(self, failures: dict[str, int] | None = None):
        self.lock = threading.Lock()
        self.timeline: list[tuple[str, str]] = []
        self.failures = dict(failures or {})   # image -> failures left (-1: always)

    def __call__(self, name: str, attempt: int) -> int:
        with self.lock:
            self.timeline.append(("start", name))
            left = self.failures.get(name, 0)
            if left:
                self.failures[name] = left - 1 if left > 0 else left
        try:
            if left:
                raise RuntimeError(f"{name} broke on attempt {attempt}")
            return 100
        finally:
            with self.lock:
                self.timeline.append(("end", name))

    def started(self) -> list[str]:
        return [name for kind, name in self.timeline if kind == "start"]


def test_no_image_starts_before_its_parent_has_finished():
    build = Recorder()
    results = Scheduler(PARENTS, build, workers=3).run()
    assert {n: o.status for n, o in results.items()} == {n: BUILT for n in PARENTS}
    assert sorted(build.started()) == sorted(PARENTS)  # each exactly once
    for child, parent in PARENTS.items():
        if parent:
            assert build.timeline.index(("end", parent)) < build.timeline.index(("start", child))


def test_independent_images_are_built_at_the_same_time():
    # a and b can only both pass the barrier if they are in flight together; a
    # lone worker would break it (and the build) after the timeout.
    barrier = threading.Barrier(2, timeout=10)

    def build(name: str, attempt: int) -> int:
        if name in ("a", "b"):
            barrier.wait()
        return 1

    results = Scheduler({"base": None, "a": "base", "b": "base"}, build, workers=2).run()
    assert [results[n].status for n in ("base", "a", "b")] == [BUILT, BUILT, BUILT]


def test_a_child_starts_as_soon_as_its_parent_is_done_not_level_by_level():
    # "slow" (a sibling of a) is held until c, a's child, has started: c must
    # not wait for the whole level of a and slow to finish.
    c_started = threading.Event()

    def build(name: str, attempt: int) -> int:
        if name == "c":
            c_started.set()
        if name == "slow" and not c_started.wait(timeout=10):
            raise RuntimeError("c never started while slow was building")
        return 1

    parents = {"base": None, "a": "base", "slow": "base", "c": "a"}
    results = Scheduler(parents, build, workers=2).run()
    assert results["slow"].status == BUILT and results["c"].status == BUILT


def test_a_failure_is_retried_then_built():
    build = Recorder({"a": 1})
    events: list[Event] = []
    results = Scheduler(PARENTS, build, workers=2, retries=1, on_event=events.append).run()
    assert results["a"].status == BUILT and results["a"].attempts == 2
    assert results["b"].attempts == 1
    starts = [e for e in events if e.image == "a" and e.kind == "start"]
    assert [(e.attempt, e.error) for e in starts] == [(1, ""), (2, "a broke on attempt 1")]
    assert [e.outcome.status for e in events if e.image == "a" and e.kind == "done"] == [BUILT]


def test_a_failure_makes_descendants_unbuildable_and_the_rest_still_builds():
    build = Recorder({"a": -1})
    results = Scheduler(PARENTS, build, workers=2, retries=2).run()
    status = {n: o.status for n, o in results.items()}
    assert status == {"base": BUILT, "a": FAILED, "b": BUILT, "e": BUILT,
                      "c": UNBUILDABLE, "d": UNBUILDABLE, "f": UNBUILDABLE}
    assert results["a"].attempts == 3 and "a broke on attempt 3" in results["a"].error
    assert results["f"].attempts == 0 and "parent c is unbuildable" in results["f"].error
    assert not {"c", "d", "f"} & set(build.started())  # never attempted


def test_each_image_gets_one_done_event():
    events: list[Event] = []
    Scheduler(PARENTS, Recorder({"a": -1}), workers=2, on_event=events.append).run()
    done = [e.image for e in events if e.kind == "done"]
    assert sorted(done) == sorted(PARENTS)


def test_preset_images_are_not_built_and_their_children_are():
    build = Recorder()
    preset = {"base": Outcome("base", CACHED), "a": Outcome("a", CACHED)}
    results = Scheduler(PARENTS, build, workers=2, preset=preset).run()
    assert results["base"].status == CACHED and results["a"].status == CACHED
    assert sorted(build.started()) == ["b", "c", "d", "e", "f"]


def test_a_parent_outside_the_build_counts_as_ready():
    build = Recorder()
    results = Scheduler({"c": "a", "f": "c"}, build).run()
    assert build.started() == ["c", "f"] and results["f"].status == BUILT


def test_the_image_unblocking_most_work_starts_first():
    build = Recorder()
    Scheduler(PARENTS, build, workers=1).run()
    # After base, a (3 descendants) comes before b (1); after a, c (1) before d (0).
    started = build.started()
    assert started.index("a") < started.index("b")
    assert started.index("c") < started.index("d")


class SteppingClock:
    """Moves 10 s each time it is read: every wait of the scheduler is already past its tick."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 10
        return self.now


def test_ticks_come_from_the_loop_while_a_build_runs():
    released = threading.Event()
    events: list[Event] = []

    def build(name: str, attempt: int) -> int:
        # Finishes only once a tick has come: so a tick must come while it runs.
        if not released.wait(timeout=30):
            raise RuntimeError("no tick came")
        return 1

    def sink(event: Event) -> None:
        events.append(event)
        if event.kind == TICK:
            released.set()

    results = Scheduler({"a": None}, build, on_event=sink, tick=5, clock=SteppingClock()).run()
    assert results["a"].status == BUILT
    kinds = [e.kind for e in events]
    assert TICK in kinds and kinds.index(TICK) < kinds.index(DONE)
    assert all(e.image == "" for e in events if e.kind == TICK)


def test_no_ticks_without_a_tick_interval():
    events: list[Event] = []
    Scheduler(PARENTS, Recorder(), workers=2, on_event=events.append, clock=SteppingClock()).run()
    assert TICK not in {e.kind for e in events}
