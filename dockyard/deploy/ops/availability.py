"""The availability probe's figures on disk: ``<state_dir>/upgrade-availability.json``.

An upgrade run writes them while it goes on (each time the probe hands them
over: after a round of polls, at most once a second), each time whole
(:func:`write_atomic`: a temporary file renamed), marked ``partial`` until the
run ends. A run killed outright (SIGKILL) runs no clean-up: it leaves its
figures up to its last write, still marked partial.

A run that resumes an unfinished upgrade adds its figures to those of the runs
of the same upgrade before it, so the report of a killed-then-resumed upgrade
covers both::

    {"upgrade": "<run id of the upgrade's first run>",
     "partial": false,                  # the last run ended (true: it goes on, or was killed)
     "runs": [{"run": "<run id>", "partial": true, "wall_s": ..., "apis": {...}, "all_down_s": ...},
              {"run": "<run id>", "partial": false, ...}],
     "wall_s": ..., "apis": {...}, "all_down_s": ...}      # the runs' figures added up (probe.combine)

The time between two runs is polled by nobody and counts in no figure. The file
holds figures and run ids only: the probe's credentials never reach it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from dockyard.deploy.files import write_atomic
from dockyard.deploy.ops.probe import ProbeReport, combine

FILE_NAME = "upgrade-availability.json"


def figures_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE_NAME


@dataclass(frozen=True)
class RunFigures:
    run: str
    partial: bool
    report: ProbeReport

    def as_dict(self) -> dict:
        return {"run": self.run, "partial": self.partial, **asdict(self.report)}

    @classmethod
    def from_dict(cls, data: object) -> RunFigures:
        if not isinstance(data, dict) or not isinstance(data.get("run"), str) \
                or not isinstance(data.get("partial"), bool):
            raise ValueError("a run without its id or partial mark")
        return cls(data["run"], data["partial"], ProbeReport.from_dict(data))


def earlier_runs(state_dir: Path, upgrade: str) -> list[RunFigures]:
    """The figures the file holds of ``upgrade``'s runs; [] when it holds none
    (no file, another upgrade's). ValueError when it cannot be read."""
    try:
        data = json.loads(figures_path(state_dir).read_text())
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError("no list of runs")
    if data.get("upgrade") != upgrade:
        return []
    return [RunFigures.from_dict(run) for run in data["runs"]]


class AvailabilityRecord:
    """The file, for one run of one upgrade: :meth:`write` replaces it with the
    earlier runs' figures and this run's."""

    def __init__(self, state_dir: Path, upgrade: str, run: str, earlier: list[RunFigures] | None = None):
        self.path = figures_path(state_dir)
        self.upgrade, self.run = upgrade, run
        self.earlier = list(earlier or [])

    @classmethod
    def open(cls, state_dir: Path, upgrade: str, run: str, *, resuming: bool,
             say: Callable[[str], None]) -> AvailabilityRecord:
        """The record of ``run``; a resumed upgrade's carries the figures of its
        runs before (an unreadable file is said, and left to be replaced)."""
        earlier: list[RunFigures] = []
        if resuming and upgrade:
            try:
                earlier = earlier_runs(state_dir, upgrade)
            except ValueError as exc:
                say(f"the availability figures of the earlier runs in {figures_path(state_dir)} cannot be read "
                    f"({exc}): this run's replace them")
        return cls(state_dir, upgrade, run, earlier)

    @property
    def runs(self) -> int:
        return len(self.earlier) + 1

    @property
    def run_ids(self) -> list[str]:
        """The upgrade's runs, this one last."""
        return [r.run for r in self.earlier] + [self.run]

    def write(self, report: ProbeReport, partial: bool = True) -> ProbeReport:
        """Replace the file with the earlier runs' figures and ``report``, this
        run's; the figures of all of them added up."""
        runs = [*self.earlier, RunFigures(self.run, partial, report)]
        total = combine([r.report for r in runs])
        data = {"upgrade": self.upgrade, "partial": partial, "runs": [r.as_dict() for r in runs], **asdict(total)}
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o644)
        return total
