"""The progress model and its display, on a clock the test moves."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dockyard.image import progress
from dockyard.image.progress import BuildProgress, Display, duration
from dockyard.image.scheduler import BUILT, DONE, FAILED, START, TICK, UNBUILDABLE, Event, Outcome


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def start(image: str, attempt: int = 1) -> Event:
    return Event(image, START, attempt)


def done(image: str, status: str = BUILT) -> Event:
    return Event(image, DONE, outcome=Outcome(image, status))


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (42.9, "42s"), (60, "1m00s"), (250, "4m10s"),
                                           (3599, "59m59s"), (3720, "1h02m"), (-3, "0s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_the_line_counts_what_is_done_and_times_what_builds():
    clock = Clock()
    model = BuildProgress(31, {"cached": 5, "skipped": 0}, clock=clock)
    assert model.line() == "0/31 done, 5 cached; 0s elapsed"
    model.observe(start("nova-base"))
    clock.now += 68
    model.observe(start("neutron-base"))
    clock.now += 182
    assert model.line() == "0/31 done, 5 cached; building: nova-base (4m10s), neutron-base (3m02s); 4m10s elapsed"
    model.observe(done("nova-base"))
    assert model.done == 1 and "nova-base" not in model.line()
    assert model.line().startswith("1/31 done, 5 cached; building: neutron-base (3m02s)")


def test_failures_are_counted_and_a_retry_keeps_its_first_start():
    clock = Clock()
    model = BuildProgress(4, clock=clock)
    model.observe(start("a"))
    clock.now += 30
    model.observe(start("a", attempt=2))          # the retry: still waiting since the first start
    model.observe(done("b", FAILED))
    model.observe(done("c", UNBUILDABLE))
    model.observe(done("d"))
    clock.now += 15
    assert model.line() == "3/4 done (1 failed, 1 unbuildable); building: a (45s, attempt 2); 45s elapsed"
    model.observe(done("a"))
    assert model.line() == "4/4 done (1 failed, 1 unbuildable); 45s elapsed"


def test_many_builds_at_once_name_the_oldest_and_count_the_rest():
    clock = Clock()
    model = BuildProgress(10, clock=clock)
    for name in "abcdef":
        model.observe(start(name))
        clock.now += 1
    line = model.line()
    assert "building: a (6s), b (5s), c (4s), d (3s) and 2 more;" in line
    assert "e (" not in line


def test_ticks_change_nothing_but_the_clock():
    clock = Clock()
    model = BuildProgress(2, clock=clock)
    model.observe(start("a"))
    before = model.line()
    model.observe(Event("", TICK))
    assert model.line() == before and model.done == 0
    clock.now += 61
    assert model.line() == "0/2 done; building: a (1m01s); 1m01s elapsed"


class Log:
    def __init__(self):
        self.events: list[Event] = []
        self.written: list[str] = []


def test_in_a_log_a_summary_line_comes_every_minute_and_events_pass_through():
    clock = Clock()
    log = Log()
    display = Display(BuildProgress(3, clock=clock), log.events.append, log.written.append, every=60)
    assert display.tick == 60
    with display:
        display(start("a"))
        clock.now += 59
        display(Event("", TICK))
        assert log.written == []                          # not a minute yet
        clock.now += 1
        display(Event("", TICK))
        assert log.written == ["progress: 0/3 done; building: a (1m00s); 1m00s elapsed"]
        clock.now += 30
        display(done("a"))                                # an event checks too: not due
        clock.now += 30
        display(start("b"))                               # due: any event may carry it
    assert log.written[1:] == ["progress: 1/3 done; building: b (0s); 2m00s elapsed"]
    assert [(e.kind, e.image) for e in log.events] == [(START, "a"), (DONE, "a"), (START, "b")]  # no ticks


def test_on_a_terminal_the_line_is_live_and_the_event_lines_print_above_it():
    clock = Clock()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    written: list[str] = []
    display = Display(BuildProgress(2, clock=clock), lambda e: console.print(f"event {e.kind} {e.image}"),
                      written.append, live=console)
    assert display.tick == progress.LIVE_TICK
    with display:
        display(start("keystone"))
        clock.now += 130
        display(Event("", TICK))
    text = out.getvalue()
    assert "event start keystone" in text
    assert "0/2 done; building: keystone (2m10s); 2m10s elapsed" in text
    assert written == []                                  # the live line replaces the log's summaries
    assert display._live is None                          # stopped: the terminal is given back
