"""The availability probe: what a cloud's users saw while it was being changed.

While an upgrade runs, a thread polls each API the way a client would (a new
token from keystone; an image, network, server and resource provider list with
a token) a few times a second. Each poll is a sample: the API, when, and
whether it answered. Afterwards ``summarise`` turns the samples into each API's
unavailable seconds (from the first failed poll of an outage to the next poll
that answered), its longest outage, and how long every API was down at once:
the figure an operator cares about most, and the one a rolling upgrade keeps
at zero.

The summary is a pure function of the samples, so it is tested without a
cloud; the polling itself is tested against a real one (tests/e2e).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
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

    def lines(self) -> list[str]:
        out = [f"availability during the run ({self.wall_s:.1f} s):"]
        for name, f in self.apis.items():
            out.append(f"  {name:<10} unavailable {f.unavailable_s:6.1f} s in {f.outages} outage(s), longest "
                       f"{f.longest_outage_s:.1f} s ({f.failed} of {f.polls} polls failed)")
        out.append(f"  every API down at once: {self.all_down_s:.1f} s")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


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


def summarise(samples: list[Sample], wall_s: float, apis: tuple[str, ...] = APIS) -> ProbeReport:
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
    return report


def cloud_auth(clouds_yaml: Path, cloud: str = "dockyard") -> dict:
    """The ``auth`` block of a cloud in the ``clouds.yaml`` post-deploy writes."""
    data = yaml.safe_load(Path(clouds_yaml).read_text())
    return dict(data["clouds"][cloud]["auth"])


class AvailabilityProbe:
    """Polls every API from a thread until ``stop()``, which returns the report.

    ``interval`` is the pause between two rounds (each round asks every API
    once, each with ``timeout``): about three rounds a second on a quiet cloud.
    """

    def __init__(self, auth: dict, interval: float = 0.3, timeout: float = 3.0,
                 clock: Callable[[], float] = time.monotonic):
        self.auth, self.interval, self.timeout, self.clock = auth, interval, timeout, clock
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="availability-probe", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> AvailabilityProbe:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread.is_alive():
            self.stop()

    def start(self) -> None:
        self._t0 = self.clock()
        self._thread.start()

    def stop(self) -> ProbeReport:
        self._stop.set()
        self._thread.join()
        return summarise(self.samples, self.clock() - self._t0)

    def _session(self):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        return session.Session(auth=v3.Password(**self.auth), timeout=self.timeout)

    def _run(self) -> None:
        from keystoneauth1 import exceptions

        session = None                      # the last one that got a token: the others ask with it
        while not self._stop.is_set():
            fresh = self._session()
            try:                            # identity: a new token, every round
                fresh.get_token()
                session = fresh
                self._record(IDENTITY, True)
            except exceptions.ClientException:
                self._record(IDENTITY, False)
            for name, (service_type, path) in QUERIES.items():
                ok = False
                if session is not None:
                    try:
                        answer = session.get(path, endpoint_filter={"service_type": service_type,
                                                                    "interface": "public"},
                                             raise_exc=False, timeout=self.timeout)
                        ok = answer.status_code == 200
                    except exceptions.ClientException:
                        ok = False
                self._record(name, ok)
            self._stop.wait(self.interval)

    def _record(self, api: str, ok: bool) -> None:
        self.samples.append(Sample(api, self.clock() - self._t0, ok))
