"""A build's progress while it runs: how much is done, what builds now, for how long.

:class:`BuildProgress` is the model: fed the scheduler's events, read with a
clock it is given, so it is tested without waiting. :class:`Display` shows it:
on a terminal one live line kept below the event lines; in a log (CI, a pipe)
the same line printed every minute or so, so a long wait is never silent.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .builder import BUILD, Plan
from .scheduler import BUILT, DONE, START, STATUSES, TICK, Event, EventSink

Clock = Callable[[], float]

#: Seconds between summary lines in a log.
EVERY = 60.0
#: Seconds between refreshes of the live line (its clock shows seconds).
LIVE_TICK = 1.0
#: Images named on the line at most; the rest are counted.
MOST_NAMED = 4


def duration(seconds: float) -> str:
    """``42s``, ``4m10s``, ``1h02m``."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class BuildProgress:
    """``total``: the images this run builds (the root filesystem included when
    it is made); ``kept``: the images it does not build, by status (cached,
    skipped): they have no events and are counted apart."""

    def __init__(self, total: int, kept: Mapping[str, int] | None = None, clock: Clock = time.monotonic):
        self.total = total
        self.kept = {status: n for status, n in (kept or {}).items() if n}
        self.clock = clock
        self.started = clock()
        self.building: dict[str, float] = {}     # image -> when its first attempt started
        self.attempt: dict[str, int] = {}        # image -> its attempt now
        self.finished = {status: 0 for status in STATUSES}

    def observe(self, event: Event) -> None:
        if event.kind == START:
            # A retry keeps the first start: the wait is what the line is about.
            self.building.setdefault(event.image, self.clock())
            self.attempt[event.image] = event.attempt
        elif event.kind == DONE and event.outcome is not None:
            self.building.pop(event.image, None)
            self.finished[event.outcome.status] += 1

    @classmethod
    def of(cls, plan: Plan, clock: Clock = time.monotonic) -> BuildProgress:
        """The progress of building ``plan``: its images to build (and the root
        filesystem when it is made) count; cached and skipped ones are kept."""
        kept: dict[str, int] = {}
        for p in plan.images.values():
            if p.action != BUILD:
                kept[p.action] = kept.get(p.action, 0) + 1
        return cls(len(plan.to_build()) + (1 if plan.rootfs_action == BUILD else 0), kept, clock)

    @property
    def done(self) -> int:
        return sum(self.finished.values())

    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.started

    def line(self, now: float | None = None) -> str:
        """``12/31 done (1 failed), 9 cached; building: nova-base (4m10s),
        neutron-base (3m02s, attempt 2); 18m40s elapsed``"""
        now = self.clock() if now is None else now
        not_built = [f"{n} {status}" for status, n in self.finished.items() if n and status != BUILT]
        parts = [f"{self.done}/{self.total} done" + (f" ({', '.join(not_built)})" if not_built else "")
                 + "".join(f", {n} {status}" for status, n in self.kept.items())]
        if self.building:
            oldest = sorted(self.building.items(), key=lambda item: (item[1], item[0]))
            named = []
            for image, since in oldest[:MOST_NAMED]:
                retry = f", attempt {self.attempt[image]}" if self.attempt.get(image, 1) > 1 else ""
                named.append(f"{image} ({duration(now - since)}{retry})")
            more = len(oldest) - MOST_NAMED
            parts.append("building: " + ", ".join(named) + (f" and {more} more" if more > 0 else ""))
        parts.append(f"{duration(now - self.started)} elapsed")
        return "; ".join(parts)


class Display:
    """Shows a :class:`BuildProgress` while a build runs; an event sink.

    Each event goes to the model, then (all but ticks) to ``lines``, which
    prints the per-image line. With ``live`` (a console on a terminal) the
    progress line stays at the bottom of it, redrawn on every event and tick;
    ``lines`` must print through that console for its lines to land above the
    line (rich routes Python's own sys.stdout there too, but click.echo writes
    past it). Without, ``write`` gets ``progress: <line>``
    once ``every`` seconds have passed since the last (checked on every event;
    the scheduler's ticks make sure one comes)."""

    def __init__(self, model: BuildProgress, lines: EventSink, write: Callable[[str], None],
                 live: Console | None = None, every: float | None = None):
        self.model = model
        self.lines = lines
        self.write = write
        self.console = live
        self.every = EVERY if every is None else every
        self.last = model.started
        self._live: Live | None = None

    @property
    def tick(self) -> float:
        """How often the scheduler should tick for this display."""
        return LIVE_TICK if self.console is not None else self.every

    def _renderable(self, now: float) -> Text:
        return Text(self.model.line(now), no_wrap=True, overflow="ellipsis")

    def __enter__(self) -> Display:
        if self.console is not None:
            # Refreshed by the events and ticks, not by a thread of its own; gone
            # once the build ends (the summary follows).
            self._live = Live(self._renderable(self.model.clock()), console=self.console, auto_refresh=False,
                              transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, event: Event) -> None:
        self.model.observe(event)
        if event.kind != TICK:
            self.lines(event)
        now = self.model.clock()
        if self._live is not None:
            self._live.update(self._renderable(now), refresh=True)
        elif self.console is None and now - self.last >= self.every:
            self.last = now
            self.write(f"progress: {self.model.line(now)}")
