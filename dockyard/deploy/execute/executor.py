"""The executor: applies a plan with bounded parallelism.

An action starts as soon as every action it depends on has succeeded, not wave
by wave: a slow health check on one branch never holds up another. A failed
action marks everything that (transitively) depends on it ``skipped``, naming
what was missing ("needs keystone healthy"); every other branch still runs.

``parallelism`` bounds the work that loads the machine (jobs, container starts,
file writes). Waiting for health changes nothing (it runs the container's
health check, a light exec, once a second), so it takes no slot: a slow health
check never keeps a bootstrap job of another branch waiting for a free worker.
When more actions are ready than there are slots, the one with the longest
chain of dependants below it goes first (critical-path list scheduling), so the
run's wall time stays close to its critical path.

Nothing here sleeps: health waits pause between two runs of a check in the
engine's wait (engine/health_wait.py), and the scheduler blocks on a queue of
finished actions.
"""

from __future__ import annotations

import heapq
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dockyard.engine.driver import ContainerDied, Engine, HealthTimeout
from dockyard.errors import DockyardError, EngineUnavailable, EXIT_FAILED, EXIT_OK

from dockyard.deploy.engines import SiteEngines, brief
from dockyard.deploy.files import write_atomic
from .jobs_record import JobsRecord
from .records import forget_all
from dockyard.labels import LABEL_HOST, LABEL_MANAGED, LABEL_SERVICE
from dockyard.deploy.wanted.hashing import secrets_of
from dockyard.deploy.plan.planner import Action, ActionKind, Plan
from .timeline import Timeline

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
LOG_LINES = 20          # log lines shown when a container or job fails
SLOTLESS_KINDS = frozenset({ActionKind.WAIT_HEALTHY})  # waits: they take no parallelism slot
MAX_WAITS = 64                                  # health waits watched at once
# How long an action of each kind usually takes, relatively: jobs and health waits
# run for seconds, the rest for milliseconds. Only the order of priorities matters.
KIND_WEIGHT = {ActionKind.PULL_IMAGE: 10,
               ActionKind.RUN_JOB: 10, ActionKind.WAIT_HEALTHY: 10, ActionKind.CREATE: 2, ActionKind.RECREATE: 2,
               ActionKind.START: 2, ActionKind.UPGRADE_STEP: 10, ActionKind.STOP: 2,
               ActionKind.CLEAN_HOST_NETWORK: 10}


def chain_weights(plan: Plan) -> dict[str, int]:
    """Each action's priority: the weight of the heaviest chain of actions that
    starts at it and follows its dependants down (itself included)."""
    dependents = plan.dependents()
    weights: dict[str, int] = {}
    by_id = plan.by_id()
    # Dependants first: walk the plan's topological order backwards.
    for action_id in reversed(plan.topological_order()):
        below = max((weights[d] for d in dependents[action_id]), default=0)
        weights[action_id] = KIND_WEIGHT.get(by_id[action_id].kind, 1) + below
    return weights


class ActionFailed(DockyardError):
    """An action did not succeed; the message says why, for the operator."""


@dataclass
class Outcome:
    action: Action
    result: str              # ok | failed | skipped
    seconds: float = 0.0
    error: str = ""          # why it failed or was skipped (may span lines: log excerpts)
    note: str = ""           # what a successful action has to say (the namespaces a cleanup removed)

    def line(self) -> str:
        """The progress line of docs/cli.md: result, action id, time, and why;
        a note follows on lines of its own."""
        result = "FAILED" if self.result == FAILED else self.result
        took = "" if self.result == SKIPPED else f"{self.seconds:.1f}s"
        text = f"  {result:<7} {self.action.id:<44} {took:>7}"
        if self.error:
            text += "  " + self.error
        if self.note:
            text += "\n" + "\n".join("      " + line for line in self.note.splitlines())
        return text


@dataclass
class RunResult:
    outcomes: list[Outcome] = field(default_factory=list)     # in plan order
    seconds: float = 0.0

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def changed(self) -> int:
        """Actions that succeeded and changed something (health waits do not)."""
        return sum(1 for o in self.outcomes if o.result == OK and o.action.changes_something)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.skipped == 0

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def outcome(self, action_id: str) -> Outcome:
        return next(o for o in self.outcomes if o.action.id == action_id)

    def summary(self) -> str:
        return f"{self.changed} changes, {self.failed} failed, {self.skipped} skipped in {self.seconds:.1f}s"

    def host_summaries(self) -> list[str]:
        """One line per host, for a site of several: ``cmp1: 3 changes, 0 failed, 1 skipped``."""
        hosts: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            hosts.setdefault(o.action.host, []).append(o)
        lines = []
        for host, outcomes in sorted(hosts.items()):
            changed = sum(1 for o in outcomes if o.result == OK and o.action.changes_something)
            failed = sum(1 for o in outcomes if o.result == FAILED)
            skipped = sum(1 for o in outcomes if o.result == SKIPPED)
            lines.append(f"  {host or '(this machine)'}: {changed} changes, {failed} failed, {skipped} skipped")
        return lines


Progress = Callable[[Outcome], None]


def _unreachable(exc: BaseException | None) -> bool:
    """Did the engine not answer (refused, reset, timed out), rather than answer
    with an error? An error that carries the engine's response is an answer."""
    if isinstance(exc, EngineUnavailable):     # what the engine drivers raise
        return True
    seen = 0
    while exc is not None and seen < 5:
        if getattr(exc, "response", None) is not None:
            return False
        if isinstance(exc, OSError):       # requests' ConnectionError, socket errors, timeouts
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def failure_text(action: Action, exc: BaseException) -> str:
    """An action's error for the operator. An engine that did not answer is
    named by its host; on a site of several hosts every failure names its host."""
    if action.host and _unreachable(exc) and not isinstance(exc, ActionFailed):
        return f"host {action.host}: its engine did not answer: {brief(exc)}"
    text = str(exc) or type(exc).__name__
    if action.host and action.id.endswith(f"@{action.host}") and not text.startswith(f"host {action.host}:"):
        text = f"host {action.host}: {text}"
    return text


def _tail(text: str, lines: int = LOG_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join("      " + line for line in kept) if kept else "      (no output)"


class _Applier:
    """Does one action against its host's engine and the disk. Raises on failure."""

    def __init__(self, engines: SiteEngines, jobs_record: JobsRecord):
        self.engines = engines
        self.jobs_record = jobs_record
        self.host = ""

    @property
    def engine(self) -> Engine:
        """The engine of the action's host (asked for only by actions that use one)."""
        return self.engines.of(self.host)

    def __call__(self, action: Action) -> str | None:
        """Apply ``action``; returns what it has to say, if anything."""
        self.host = action.host                        # a fresh applier per action: see Executor.run_one
        return getattr(self, action.kind.value)(action)    # one method per ActionKind

    def reach_engine(self, a: Action) -> None:
        # Nothing was planned on the host: whether it answers now or not, its
        # work waits for the next run, and this one says so.
        raise ActionFailed(f"host {a.host}: {a.reason}; nothing was done there (run again once "
                           f"{self.engines.url(a.host)} answers)")

    def pull_image(self, a: Action) -> None:
        """Pull by digest, then name it as the containers do: the name then means
        exactly the bytes that were built, on this host as on the others."""
        image = a.wanted_image()
        self.engine.pull(image.source)
        self.engine.tag(image.source, image.ref)
        held = self.engine.image(image.ref)
        if held is None or held.id != image.id:
            raise ActionFailed(f"host {a.host}: {image.ref} is {held.id if held else 'missing'} after the pull of "
                               f"{image.source}, not {image.id}")

    def share_mount(self, a: Action) -> None:
        result = self.engine.run_job(a.wanted_spec(), timeout=60)
        if result.exit_code != 0:
            raise ActionFailed(f"making {a.target} a shared mount on {a.host} failed (exit code "
                               f"{result.exit_code}):\n" + _tail(result.logs))

    def create_volume(self, a: Action) -> None:
        self.engine.create_volume(a.target, {LABEL_MANAGED: "true", LABEL_SERVICE: a.service, LABEL_HOST: a.host})

    def write_file(self, a: Action) -> None:
        f = a.wanted_file()
        write_atomic(Path(f.path), f.content, f.mode)

    def remove_file(self, a: Action) -> None:
        Path(a.target).unlink(missing_ok=True)

    def one_shot(self, a: Action, what: str) -> str:
        """Run the action's one-shot container; its logs, or ActionFailed naming
        ``what`` ran, with its exit code and last log lines."""
        job = a.wanted_job()
        result = self.engine.run_job(job.spec, timeout=job.timeout, **({"files": job.copy_in} if job.copy_in else {}))
        if result.exit_code != 0:
            raise ActionFailed(f"{what} exited with code {result.exit_code}; last log lines:\n" + _tail(result.logs))
        return result.logs

    def run_job(self, a: Action) -> None:
        job = a.wanted_job()
        self.one_shot(a, f"job {job.name}")
        self.jobs_record.mark_done(job.name, job.hash, secrets_of(job.spec.labels))

    def upgrade_step(self, a: Action) -> None:
        # A one-shot like a job, recorded like one: a killed upgrade does not run it again.
        job = a.wanted_job()
        self.one_shot(a, f"upgrade step {job.name} ({a.service})")
        self.jobs_record.mark_done(job.name, job.hash)

    def create(self, a: Action) -> None:
        # `create` means create and start. A container of that name that dockyard
        # does not manage is not ours to replace: the engine's refusal is reported.
        container = a.wanted_container()
        self.engine.create(container.spec)
        if container.copy_in:
            # A remote engine's container gets its configuration before it starts
            # (never started, it is made again by the next run: see the planner).
            self.engine.copy_in(a.target, container.copy_in)
        self.engine.start(a.target)

    def recreate(self, a: Action) -> None:
        # Stop first: a clean shutdown (a database flushing) before the removal.
        self.engine.stop(a.target)
        self.engine.remove(a.target)
        self.create(a)

    def start(self, a: Action) -> None:
        self.engine.start(a.target)

    def wait_healthy(self, a: Action) -> None:
        try:
            self.engine.wait_healthy(a.target, a.wanted_container().health_timeout)
        except (HealthTimeout, ContainerDied) as exc:
            logs = self.engine.logs(a.target, tail=LOG_LINES)
            raise ActionFailed(f"{a.target} ({a.service}) is not healthy: {exc}; last log lines of {a.target}:\n"
                               + _tail(logs)) from None

    def remove(self, a: Action) -> None:
        self.engine.stop(a.target)
        self.engine.remove(a.target)

    def stop(self, a: Action) -> None:
        self.engine.stop(a.target)

    def clean_host_network(self, a: Action) -> str:
        logs = self.one_shot(a, f"the host network cleanup on {a.host}")
        return "\n".join(line.strip() for line in logs.splitlines() if line.strip())

    def remove_volume(self, a: Action) -> None:
        # An engine refuses to remove a volume a container still uses (one not of
        # this site): the refusal, naming the container, fails this action.
        self.engine.remove_volume(a.target)

    def forget_records(self, a: Action) -> str:
        gone = forget_all(Path(a.target))
        return f"forgotten: {', '.join(gone)}" if gone else ""


def execute(plan: Plan, engine: Engine | SiteEngines, *, parallelism: int, timeline: Timeline,
            jobs_record: JobsRecord, progress: Progress | None = None, command: str | None = None) -> RunResult:
    """Apply ``plan``: each action once its dependencies succeeded, at most
    ``parallelism`` at a time, on its host's engine (``engine``: one for every
    host, or a SiteEngines). Returns every action's outcome, in plan order.

    ``progress`` is called in the calling thread with each outcome as it is known
    (skips included). ``command`` names the run in its timeline (``stop``,
    ``destroy``) when it is not a deploy's. Raises ValueError, before doing
    anything, on a malformed plan.
    """
    plan.validate()
    engines = engine if isinstance(engine, SiteEngines) else SiteEngines.single(engine)
    return Executor(plan, engines, parallelism=parallelism, timeline=timeline, jobs_record=jobs_record,
                    progress=progress, command=command).run()


class Executor:
    """One run of one plan. The calling thread schedules; worker threads apply.

    The state below is touched by the calling thread only: the workers' one way
    back is the ``finished`` queue, each putting exactly one outcome per action.
    """

    def __init__(self, plan: Plan, engines: SiteEngines, *, parallelism: int, timeline: Timeline,
                 jobs_record: JobsRecord, progress: Progress | None = None, command: str | None = None):
        self.plan = plan
        self.command = command
        self.engines = engines
        self.timeline = timeline
        self.jobs_record = jobs_record
        self.progress = progress
        self.actions = plan.by_id()
        self.dependents = plan.dependents()
        self.waiting_on = {a.id: set(a.deps) for a in plan.actions}   # action -> deps not yet succeeded
        # Action id -> its outcome; None once submitted and not yet finished.
        self.results: dict[str, Outcome | None] = {}
        self.finished: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.priority = chain_weights(plan)
        self.position = {a.id: i for i, a in enumerate(plan.actions)}
        self.ready: list[tuple[int, int, str]] = []    # heap: heaviest chain first, then plan order
        self.in_flight = 0           # submitted, outcome not yet taken from the queue
        self.busy_slots = 0          # of those, the ones holding a parallelism slot
        self.slots = max(1, parallelism)

    def run(self) -> RunResult:
        started = time.monotonic()
        self.timeline.run_start(actions=len(self.plan.actions), changes=self.plan.changes(),
                                **({"command": self.command} if self.command else {}))
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="dockyard-action")
        # A thread per wait, each blocked on one event stream; beyond MAX_WAITS they queue.
        wait_count = sum(a.kind in SLOTLESS_KINDS for a in self.plan.actions)
        self.waits = ThreadPoolExecutor(max_workers=max(1, min(wait_count, MAX_WAITS)),
                                        thread_name_prefix="dockyard-wait")
        try:
            self.submit_ready([a.id for a in self.plan.actions])
            while self.in_flight:
                self.take(self.finished.get())
        finally:
            # On an interrupt, queued actions are dropped; those running finish.
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.waits.shutdown(wait=True, cancel_futures=True)
        outcomes = [o for o in (self.results.get(a.id) for a in self.plan.actions) if o is not None]
        result = RunResult(outcomes, time.monotonic() - started)
        self.timeline.run_end(OK if result.ok else FAILED, changed=result.changed, failed=result.failed,
                              skipped=result.skipped, seconds=round(result.seconds, 3))
        return result

    # -- the calling thread -----------------------------------------------------------
    def submit_ready(self, candidates: list[str]) -> None:
        """Submit the candidates whose dependencies all succeeded: a wait at once
        (it takes no slot), the rest by priority while slots are free."""
        for action_id in candidates:
            if action_id not in self.results and not self.waiting_on[action_id]:
                self.results[action_id] = None          # claimed: submitted once only
                if self.actions[action_id].kind in SLOTLESS_KINDS:
                    self.in_flight += 1
                    self.waits.submit(self.run_one, self.actions[action_id])
                else:
                    heapq.heappush(self.ready, (-self.priority[action_id], self.position[action_id], action_id))
        while self.ready and self.busy_slots < self.slots:
            _, _, action_id = heapq.heappop(self.ready)
            self.in_flight += 1
            self.busy_slots += 1
            self.pool.submit(self.run_one, self.actions[action_id])

    def take(self, outcome: Outcome) -> None:
        """An action finished: free its slot, report it, and go on with what it freed
        (or skip what needed it)."""
        self.in_flight -= 1
        if outcome.action.kind not in SLOTLESS_KINDS:
            self.busy_slots -= 1
        self.report(outcome)
        if outcome.result == OK:
            freed = []
            for d in self.dependents[outcome.action.id]:
                self.waiting_on[d].discard(outcome.action.id)
                if not self.waiting_on[d]:
                    freed.append(d)
            self.submit_ready(freed)
        else:
            self.skip_dependents(outcome.action)
            self.submit_ready([])                       # its slot is free for another branch

    def report(self, outcome: Outcome) -> None:
        self.results[outcome.action.id] = outcome
        if self.progress:
            self.progress(outcome)

    def skip_dependents(self, failed: Action) -> None:
        """Everything that needs ``failed``, transitively, is skipped, naming what it missed."""
        because = f"needs {failed.readiness()}"
        stack = list(self.dependents[failed.id])
        while stack:
            action_id = stack.pop(0)
            if action_id in self.results:
                continue
            outcome = Outcome(self.actions[action_id], SKIPPED, error=because)
            self.timeline.action_end(outcome.action, SKIPPED, because)
            self.report(outcome)
            stack.extend(self.dependents[action_id])

    # -- a worker thread --------------------------------------------------------------
    def run_one(self, action: Action) -> None:
        """Whatever happens, exactly one outcome is queued."""
        self.timeline.action_start(action)
        t0 = time.monotonic()
        try:
            note = _Applier(self.engines, self.jobs_record)(action) or ""
            outcome = Outcome(action, OK, time.monotonic() - t0, note=note)
        except Exception as exc:          # one action's failure is reported, not raised
            outcome = Outcome(action, FAILED, time.monotonic() - t0, failure_text(action, exc))
        try:
            self.timeline.action_end(action, outcome.result, outcome.error)
        finally:
            self.finished.put(outcome)
