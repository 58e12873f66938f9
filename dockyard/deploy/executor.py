"""The executor: applies a plan with bounded parallelism.

An action starts as soon as every action it depends on has succeeded. A failed
action skips everything that depends on it; every other branch still runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dockyard.engine.driver import ContainerDied, Engine, HealthTimeout
from dockyard.errors import DockyardError

from .model import WantedContainer, WantedFile, WantedJob
from .observe import jobs_record_path, read_jobs_record
from .plan import Action, Plan
from .timeline import Timeline

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"


@dataclass
class Outcome:
    action: Action
    result: str
    seconds: float = 0.0
    error: str = ""


@dataclass
class RunResult:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.result == OK for o in self.outcomes)

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    def summary(self) -> str:
        changes = sum(1 for o in self.outcomes if o.result == OK and o.action.kind != "wait_healthy")
        return (f"{changes} changes, {self.count(FAILED)} failed, {self.count(SKIPPED)} skipped "
                f"in {self.seconds:.1f}s")


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Executor:
    def __init__(self, engine: Engine, state_dir: Path, timeline: Timeline, parallelism: int = 4,
                 on_outcome: Callable[[Outcome], None] = lambda o: None):
        self.engine = engine
        self.state_dir = state_dir
        self.timeline = timeline
        self.parallelism = parallelism
        self.on_outcome = on_outcome
        self._record_lock = threading.Lock()  # jobs finish in parallel; the record is one file

    # -- one action ------------------------------------------------------------------
    def apply(self, action: Action) -> None:
        kind = action.kind
        if kind == "create_volume":
            self.engine.create_volume(action.target, {"dockyard.managed": "true", "dockyard.service": action.service})
        elif kind == "write_config":
            files: tuple[WantedFile, ...] = action.payload
            for f in files:
                write_atomic(Path(f.path), f.content, f.mode)
        elif kind == "run_job":
            self.run_job(action.payload)
        elif kind == "create":
            c: WantedContainer = action.payload
            self.engine.remove(c.name)  # a half-created leftover of a killed run
            self.engine.create(c.spec)
            self.engine.start(c.name)
        elif kind == "recreate":
            c = action.payload
            self.engine.remove(c.name)
            self.engine.create(c.spec)
            self.engine.start(c.name)
        elif kind == "start":
            self.engine.start(action.target)
        elif kind == "restart":
            self.engine.restart(action.target)
        elif kind == "wait_healthy":
            c = action.payload
            try:
                self.engine.wait_healthy(c.name, c.health_timeout)
            except (HealthTimeout, ContainerDied) as exc:
                logs = self.engine.logs(c.name, tail=20).rstrip()
                raise DockyardError(f"{exc}\n    last log lines of {c.name}:\n      "
                                    + "\n      ".join(logs.splitlines()[-20:])) from None
        elif kind == "remove":
            self.engine.remove(action.target)
        else:
            raise DockyardError(f"unknown action kind {kind}")

    def run_job(self, job: WantedJob) -> None:
        result = self.engine.run_job(job.spec, timeout=job.timeout)
        if result.exit_code != 0:
            tail = "\n      ".join(result.logs.rstrip().splitlines()[-20:])
            raise DockyardError(f"job {job.name} exited {result.exit_code}\n    last log lines:\n      {tail}")
        with self._record_lock:
            record = read_jobs_record(self.state_dir)
            record[job.name] = job.hash
            write_atomic(jobs_record_path(self.state_dir), json.dumps(record, indent=2, sort_keys=True).encode(),
                         0o600)

    # -- the plan ----------------------------------------------------------------------
    def run(self, plan: Plan) -> RunResult:
        started = time.monotonic()
        actions = plan.by_id()
        dependents: dict[str, list[str]] = {a: [] for a in actions}
        for a in plan.actions:
            for d in a.deps:
                if d in dependents:
                    dependents[d].append(a.id)
        results: dict[str, Outcome] = {}
        pending = [a.id for a in plan.actions]
        running: dict[Future, str] = {}
        self.timeline.write(event="run-start", actions=len(actions))

        def timed(action: Action) -> Outcome:
            self.timeline.write(action=action.id, kind=action.kind, service=action.service, event="start",
                                deps=list(action.deps))
            t0 = time.monotonic()
            try:
                self.apply(action)
                outcome = Outcome(action, OK, time.monotonic() - t0)
            except Exception as exc:  # one action's failure is reported, not raised
                outcome = Outcome(action, FAILED, time.monotonic() - t0, str(exc))
            self.timeline.write(action=action.id, kind=action.kind, service=action.service, event="end",
                                result=outcome.result, error=outcome.error.splitlines()[0] if outcome.error else "")
            return outcome

        def skip(action_id: str, because: str) -> None:
            if action_id in results:
                return
            results[action_id] = Outcome(actions[action_id], SKIPPED, error=because)
            self.timeline.write(action=action_id, kind=actions[action_id].kind, service=actions[action_id].service,
                                event="end", result=SKIPPED, error=because)
            self.on_outcome(results[action_id])
            for d in dependents[action_id]:
                skip(d, because)

        with ThreadPoolExecutor(max_workers=max(1, self.parallelism)) as pool:
            while pending or running:
                for action_id in list(pending):
                    if action_id in results:
                        pending.remove(action_id)
                        continue
                    deps = actions[action_id].deps
                    if all(results.get(d) and results[d].result == OK for d in deps if d in actions):
                        pending.remove(action_id)
                        running[pool.submit(timed, actions[action_id])] = action_id
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    action_id = running.pop(future)
                    outcome = future.result()
                    results[action_id] = outcome
                    self.on_outcome(outcome)
                    if outcome.result == FAILED:
                        for d in dependents[action_id]:
                            skip(d, f"needs {actions[action_id].target} ({actions[action_id].kind}) which failed")
        result = RunResult([results[a.id] for a in plan.actions if a.id in results], time.monotonic() - started)
        self.timeline.write(event="run-end", ok=result.ok, summary=result.summary())
        return result
