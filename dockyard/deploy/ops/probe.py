"""The availability probe: what a cloud's users saw while it was being changed.

While an upgrade runs, a thread per API polls it the way a client would (a new
token from keystone; an image, network, server and resource provider list with
the last token) a few times a second. Each poll is a sample: the API, when, and
whether it answered. Afterwards ``summarise`` turns the samples into each API's
unavailable seconds (from the first failed poll of an outage to the next poll
that answered), its longest outage, and how long every API was down at once:
the figure an operator cares about most, and the one a rolling upgrade keeps
at zero. The report keeps when those moments were (``all_down_at``, in the
host's clock, as the run's timeline is), so the upgrade can say which of its
steps were going on then (``outages.py``).

While it runs, the probe hands its figures so far to ``on_figures`` after its
first poll, then at most once every ``every`` seconds (the upgrade writes them to
disk: ``availability.py``), so a run killed outright leaves figures up to its
last second or so.

The summary is a pure function of the samples, so it is tested without a
cloud, and so is the hand-over (a probe whose polls answer from a script); the
polling itself is tested against a real one (tests/e2e).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import yaml

# What each API is asked: (service type in the catalogue, path under its endpoint).
QUERIES: dict[str, tuple[str, str]] = {
    "image": ("image", "/v2/images?limit=1"),
    "network": ("network", "/v2.0/networks?limit=1"),
    "compute": ("compute", "/servers?limit=1"),
    "placement": ("placement", "/resource_providers"),     # at the default microversion: no query options
}
IDENTITY = "identity"
APIS = (IDENTITY, *QUERIES)


@dataclass(frozen=True)
class Sample:
    api: str
    at: float          # seconds since the probe started
    ok: bool


@dataclass
class ApiFigures:
    polls: int = 0
    failed: int = 0
    unavailable_s: float = 0.0
    longest_outage_s: float = 0.0
    outages: int = 0


@dataclass
class ProbeReport:
    wall_s: float
    apis: dict[str, ApiFigures] = field(default_factory=dict)
    all_down_s: float = 0.0
    # Each time every API was down at once: [from, to], seconds since the epoch.
    all_down_at: list[list[float]] = field(default_factory=list)

    def lines(self, during: str = "the run") -> list[str]:
        out = [f"availability during {during} ({self.wall_s:.1f} s):"]
        for name, f in self.apis.items():
            out.append(f"  {name:<10} unavailable {f.unavailable_s:6.1f} s in {f.outages} outage(s), longest "
                       f"{f.longest_outage_s:.1f} s ({f.failed} of {f.polls} polls failed)")
        out.append(f"  every API down at once: {self.all_down_s:.1f} s")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> ProbeReport:
        """The report :meth:`to_json` wrote (as a dict); ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("apis"), dict):
            raise ValueError("not a report: no apis")
        apis = {}
        for name, figures in data["apis"].items():
            if not isinstance(figures, dict) or set(figures) != {f.name for f in fields(ApiFigures)}:
                raise ValueError(f"apis.{name}: not the figures of an API")
            apis[str(name)] = ApiFigures(_count(figures["polls"]), _count(figures["failed"]),
                                         _seconds(figures["unavailable_s"]), _seconds(figures["longest_outage_s"]),
                                         _count(figures["outages"]))
        spans = data.get("all_down_at", [])         # absent from the figures of earlier versions
        if not isinstance(spans, list) or not all(
                isinstance(span, list) and len(span) == 2 and _seconds(span[0]) <= _seconds(span[1])
                for span in spans):
            raise ValueError("all_down_at: not a list of [from, to] times")
        return cls(_seconds(data.get("wall_s")), apis, _seconds(data.get("all_down_s")),
                   [[float(a), float(b)] for a, b in spans])


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{value!r} is not a number of seconds")
    return float(value)


def combine(reports: list[ProbeReport]) -> ProbeReport:
    """The figures of several runs as one: polls, failures, outages and seconds
    add up (the time between runs was not polled: it counts in none), the longest
    outage is the longest of any run. An outage a run ended in and the next run
    began with counts as two."""
    total = ProbeReport(wall_s=round(sum(r.wall_s for r in reports), 1))
    for report in reports:
        for name, f in report.apis.items():
            into = total.apis.setdefault(name, ApiFigures())
            into.polls += f.polls
            into.failed += f.failed
            into.outages += f.outages
            into.unavailable_s = round(into.unavailable_s + f.unavailable_s, 1)
            into.longest_outage_s = max(into.longest_outage_s, f.longest_outage_s)
        total.all_down_s = round(total.all_down_s + report.all_down_s, 1)
        total.all_down_at += [list(span) for span in report.all_down_at]
    return total


def _outages(samples: list[Sample], end: float) -> list[tuple[float, float]]:
    """(start, end) of each run of failed polls of one API: from its first failed
    poll to the next poll that answered (or the end of the probe)."""
    spans, start = [], None
    for s in sorted(samples, key=lambda s: s.at):
        if not s.ok and start is None:
            start = s.at
        elif s.ok and start is not None:
            spans.append((start, s.at))
            start = None
    if start is not None:
        spans.append((start, end))
    return spans


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            lo, hi = max(s1, s2), min(e1, e2)
            if lo < hi:
                out.append((lo, hi))
    return out


def summarise(samples: list[Sample], wall_s: float, apis: tuple[str, ...] = APIS,
              started_at: float = 0.0) -> ProbeReport:
    """The figures of ``samples`` (their times in seconds since the probe
    started, at ``started_at`` seconds since the epoch)."""
    report = ProbeReport(wall_s=round(wall_s, 1))
    every: list[tuple[float, float]] | None = None
    for name in apis:
        mine = [s for s in samples if s.api == name]
        spans = _outages(mine, wall_s)
        report.apis[name] = ApiFigures(
            polls=len(mine), failed=sum(not s.ok for s in mine),
            unavailable_s=round(sum(e - s for s, e in spans), 1),
            longest_outage_s=round(max((e - s for s, e in spans), default=0.0), 1), outages=len(spans))
        every = spans if every is None else _intersect(every, spans)
    report.all_down_s = round(sum(e - s for s, e in every or []), 1)
    report.all_down_at = [[round(started_at + s, 2), round(started_at + e, 2)] for s, e in sorted(every or [])]
    return report


def cloud_auth(clouds_yaml: Path, cloud: str = "dockyard") -> dict:
    """The ``auth`` block of a cloud in the ``clouds.yaml`` post-deploy writes."""
    data = yaml.safe_load(Path(clouds_yaml).read_text())
    return dict(data["clouds"][cloud]["auth"])


class AvailabilityProbe:
    """Polls every API until ``stop()``, which returns the report: one thread per
    API, so an API that hangs (its timeout) never delays the samples of the
    others, and each outage's ends are seen within a poll of that API.

    The identity thread asks keystone for a new token each time; the others ask
    their API with the last token it got, at the endpoints of that token's
    catalogue; until there is a first token they ask nothing (nobody could).
    ``interval`` is each thread's pause between two polls (each with
    ``timeout``).
    ``on_figures``, when given, is handed the report so far after the first
    poll, then at most once every ``every`` seconds, in one of the probe's
    threads; an OSError it raises (a full disk) does not stop the polling: the
    first one is kept in ``publish_error``.
    """

    def __init__(self, auth: dict, interval: float = 0.3, timeout: float = 3.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_figures: Callable[[ProbeReport], object] | None = None, every: float = 1.0,
                 wall_clock: Callable[[], float] = time.time):
        self.auth, self.interval, self.timeout, self.clock = auth, interval, timeout, clock
        self.wall_clock = wall_clock
        self.on_figures, self.every = on_figures, every
        self.samples: list[Sample] = []
        self.publish_error: str | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(api,), name=f"availability-probe-{api}",
                                          daemon=True) for api in APIS]
        self._t0 = 0.0
        self._started_at = 0.0                      # the wall clock when the probe started
        self._published: float | None = None        # when on_figures was last called
        self._publishing = threading.Lock()
        # The last token and the endpoints of its catalogue: (token, {api: url}).
        self._credentials: tuple[str, dict[str, str]] | None = None
        self._have_token = threading.Event()
        self._http = threading.local()              # each thread's own HTTP session

    def __enter__(self) -> AvailabilityProbe:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if any(t.is_alive() for t in self._threads):
            self.stop()

    def start(self) -> None:
        self._t0, self._started_at = self.clock(), self.wall_clock()
        for thread in self._threads:
            thread.start()

    def stop(self) -> ProbeReport:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.figures()

    def figures(self) -> ProbeReport:
        """The report of the samples so far."""
        return summarise(list(self.samples), self.clock() - self._t0, started_at=self._started_at)

    def poll_once(self, apis: tuple[str, ...] = APIS) -> None:
        """One poll of each of ``apis`` (identity first: the others ask with its
        token), then the figures handed over when they are due."""
        for api in apis:
            if api == IDENTITY or self._credentials is not None:
                self._record(api, self._ask(api))
        self._publish_if_due()

    def _publish_if_due(self) -> None:
        if self.on_figures is None or not self._publishing.acquire(blocking=False):
            return                                  # another thread is handing them over
        try:
            now = self.clock()
            if self._published is not None and now - self._published < self.every:
                return
            self._published = now
            try:
                self.on_figures(self.figures())
            except OSError as exc:
                self.publish_error = self.publish_error or str(exc)
        finally:
            self._publishing.release()

    def _run(self, api: str) -> None:
        while not self._stop.is_set():
            if api != IDENTITY and not self._have_token.is_set():
                self._have_token.wait(self.interval)        # bounded: the loop looks at stop again
                continue
            self.poll_once((api,))
            self._stop.wait(self.interval)

    def _ask(self, api: str) -> bool:
        """Whether ``api`` answered one request."""
        return self._new_token() if api == IDENTITY else self._query(api)

    def _new_token(self) -> bool:
        from keystoneauth1 import exceptions, session
        from keystoneauth1.identity import v3

        fresh = session.Session(auth=v3.Password(**self.auth), timeout=self.timeout)
        try:
            token = fresh.get_token()
            endpoints = {name: fresh.get_endpoint(service_type=service_type, interface="public")
                         for name, (service_type, _) in QUERIES.items()}
        except exceptions.ClientException:
            return False
        if token is None or not all(endpoints.values()):
            return False
        self._credentials = (token, {name: str(url) for name, url in endpoints.items()})
        self._have_token.set()
        return True

    def _query(self, api: str) -> bool:
        import requests

        if self._credentials is None:
            return False
        token, endpoints = self._credentials
        http = getattr(self._http, "session", None)
        if http is None:
            http = self._http.session = requests.Session()
            http.trust_env = False                  # the cloud's own addresses: no proxy
        try:
            answer = http.get(endpoints[api].rstrip("/") + QUERIES[api][1], headers={"X-Auth-Token": token},
                              timeout=self.timeout)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def _record(self, api: str, ok: bool) -> None:
        self.samples.append(Sample(api, self.clock() - self._t0, ok))
