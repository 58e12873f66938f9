"""Planning a release upgrade: the deploy plan, with the services' upgrade steps
woven in, one service after the other. Pure, like the planner it builds on.

``make_upgrade_plan`` starts from :func:`make_plan` on the wanted state of the
new release (every changed image is a recreate, every job of a changed image
runs again) and reorders it the way the services' upgrade documents ask
(docs/upgrades.md):

- services move one at a time, in ``order``: each one's first action waits for
  the previous one's new containers to be healthy (and its ``post`` step), so
  never everything restarts at once;
- per service: ``prepare`` (in the running release's image), ``check``,
  ``expand``, ``migrate``, then its containers (recreated, health-gated), then
  ``post``; ``contract`` and ``online_migrations`` wait for its containers and
  for those of the services named in ``contract_after`` (agents, computes): no
  old code runs any more. They are off the chain: the next service does not
  wait for them;
- a moving service's own jobs (its bootstrap's full ``db_sync`` would contract
  while the old code still runs) run after its last step; its containers no
  longer wait for them, and what waited for them elsewhere waits for its
  containers instead;
- a step whose one-shot already succeeded with the same hash (the jobs record)
  is done: a killed upgrade continues where it stopped.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field, replace

from dockyard.deploy.wanted.catalogue import STEPS_BEFORE
from dockyard.deploy.wanted.model import WantedFile, WantedJob, WantedState
from dockyard.labels import LABEL_JOB, LABEL_RELEASE, LABEL_SERVICE
from dockyard.releases import Releases

from .observe import ObservedState
from .planner import Action, ActionKind, Plan, _file_reason, make_plan

CONTAINER_KINDS = (ActionKind.CREATE, ActionKind.RECREATE, ActionKind.START)
FINISH_STEPS = ("contract", "online_migrations")


def running_releases(observed: ObservedState, releases: Releases) -> dict[str, set[str]]:
    """Service -> the releases its containers run: their release label, else the
    release whose tag their image carries. A container of neither says nothing."""
    out: dict[str, set[str]] = {}
    for c in observed.containers.values():
        service = c.labels.get(LABEL_SERVICE)
        if not service or c.labels.get(LABEL_JOB) == "true":     # a one-shot's leftover says nothing
            continue
        release = c.labels.get(LABEL_RELEASE)
        if release not in releases.by_name:
            release = releases.release_of_tag(_tag(c.image))
        if release is not None:
            out.setdefault(service, set()).add(release)
    return out


def _tag(ref: str) -> str:
    """The tag of ``[registry/]namespace/name:tag`` ("" without one)."""
    name, _, tag = ref.rpartition(":")
    return tag if name and "/" not in tag else ""


def release_changes(observed: ObservedState, wanted_release: dict[str, str], releases: Releases,
                    services: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """Running services whose containers run another release than the one wanted:
    service -> (running, wanted)."""
    out = {}
    for service, running in sorted(running_releases(observed, releases).items()):
        wanted = wanted_release.get(service)
        if wanted and (services is None or service in services) and running != {wanted}:
            out[service] = (max(running, key=releases.index), wanted)
    return out


@dataclass(frozen=True)
class Step:
    """One upgrade step of a service: its one-shot container and its files."""

    service: str
    step: str                          # prepare, check, expand, migrate, post, contract, online_migrations
    command: str
    job: WantedJob
    files: tuple[WantedFile, ...] = ()


@dataclass(frozen=True)
class Move:
    """A service going from one release to another, with its steps in order."""

    service: str
    from_release: str
    to_release: str
    steps: tuple[Step, ...] = ()
    contract_after: tuple[str, ...] = ()
    versions: tuple[str, str] | None = None     # the main package's versions, when known (for the plan's header)

    def line(self) -> str:
        versions = f" ({self.versions[0]} -> {self.versions[1]})" if self.versions else ""
        steps = ", ".join(s.step for s in self.steps) or "new containers only"
        return f"{self.service}: {self.from_release} -> {self.to_release}{versions}; steps: {steps}"


@dataclass
class UpgradePlan:
    moves: list[Move]
    plan: Plan
    stays: dict[str, str] = field(default_factory=dict)     # service -> release, for services that do not move

    def render(self) -> str:
        lines = ["upgrade, in this order:"]
        lines += [f"  {i}. {m.line()}" for i, m in enumerate(self.moves, 1)]
        for service, release in self.stays.items():
            lines.append(f"  stays: {service} on {release}")
        lines.append(self.plan.render())
        return "\n".join(lines)


def make_upgrade_plan(wanted: WantedState, observed: ObservedState, moves: list[Move], *,
                      only_services: set[str] | None = None, serial: int | None = None) -> Plan:
    """The deploy plan of ``wanted``, with ``moves`` (in order) woven in.
    ``serial``: each service's containers move N hosts at a time, as a deploy's
    (else as each service's catalogue entry says: all at once by default)."""
    base = make_plan(wanted, observed, only_services=only_services, secret_order=False, serial=serial)
    return _Weaver(base, observed, moves).run()


class _Weaver:
    def __init__(self, base: Plan, observed: ObservedState, moves: list[Move]):
        self.base = base
        self.observed = observed
        self.moves = moves
        self.ids = {a.id for a in base.actions}
        self.extra: dict[str, list[str]] = defaultdict(list)     # action id -> deps to add
        self.dropped: dict[str, set[str]] = defaultdict(set)     # action id -> deps to drop
        self.new: list[Action] = []                              # step and file actions, in order
        self.ready: dict[str, tuple[str, ...]] = {}              # service -> its new containers ready

    def by_service(self, service: str, *kinds: ActionKind) -> list[Action]:
        return [a for a in self.base.actions if a.service == service and a.kind in kinds]

    def step_action(self, move: Move, step: Step, deps: tuple[str, ...]) -> Action | None:
        """The step's action, or None when the record says it is done."""
        job = step.job
        if self.observed.jobs_done.get(job.name) == job.hash:
            return None
        files = []
        for f in step.files:
            reason = _file_reason(f, self.observed)
            if reason:
                action = Action(f"write_file:{f.path}", ActionKind.WRITE_FILE, f.path, f.service, f.host, reason,
                                file=f)
                if action.id not in self.ids:
                    self.ids.add(action.id)
                    self.new.append(action)
                files.append(action.id)
        leftover = f"remove:{job.name}"          # a killed step's container: gone before it runs again
        extra = [leftover] if leftover in self.ids else []
        reason = f"{move.from_release} -> {move.to_release}: {step.command}"
        action = Action(f"upgrade:{move.service}:{step.step}", ActionKind.UPGRADE_STEP, job.name, move.service,
                        job.host, reason, tuple(dict.fromkeys([*deps, *files, *extra])), job=job)
        self.ids.add(action.id)
        self.new.append(action)
        return action

    def run(self) -> Plan:
        gate: tuple[str, ...] = ()
        finals: dict[str, tuple[str, ...]] = {}
        postponed: dict[str, set[str]] = {}
        for move in self.moves:
            service = move.service
            containers = self.by_service(service, *CONTAINER_KINDS)
            waits = {a.target: a.id for a in self.by_service(service, ActionKind.WAIT_HEALTHY)}
            jobs = {a.id for a in self.by_service(service, ActionKind.RUN_JOB)}
            postponed[service] = jobs
            last = gate
            for step in (s for s in move.steps if s.step in STEPS_BEFORE):
                action = self.step_action(move, step, last)
                if action is not None:
                    last = (action.id,)
            # A container already on its new image but not healthy yet (a resumed
            # upgrade) is waited on where the others are recreated.
            recreated = {a.target for a in containers}
            lone_waits = [a for a in self.by_service(service, ActionKind.WAIT_HEALTHY) if a.target not in recreated]
            for a in [*containers, *lone_waits]:
                self.extra[a.id] += last
                self.dropped[a.id] |= jobs
            ready = tuple(waits.get(a.target, a.id) for a in containers) + tuple(a.id for a in lone_waits) or last
            for step in (s for s in move.steps if s.step == "post"):
                action = self.step_action(move, step, ready)
                if action is not None:
                    ready = (action.id,)
            self.ready[service] = ready
            gate = ready
        # Contract and online migrations: once the service's and its dependants' new code runs.
        for move in self.moves:
            service = move.service
            last = self.ready[service]
            for other in move.contract_after:
                last = tuple(dict.fromkeys([*last, *self.ready.get(other, ())]))
            for step in (s for s in move.steps if s.step in FINISH_STEPS):
                action = self.step_action(move, step, last)
                if action is not None:
                    last = (action.id,)
            finals[service] = last
        # A moving service's jobs run last; elsewhere, waiting for them means
        # waiting for its new containers.
        for move in self.moves:
            jobs = postponed[move.service]
            for a in self.base.actions:
                if a.id in jobs:
                    self.extra[a.id] += [d for d in finals[move.service] if d != a.id]
                elif a.service != move.service and jobs & set(a.deps):
                    self.dropped[a.id] |= jobs
                    self.extra[a.id] += self.ready[move.service]
        return self.assemble()

    def assemble(self) -> Plan:
        """Steps first in the list (they come early in the order), then the base
        plan's actions with their deps rewired; Plan.validate() holds."""
        actions: list[Action] = []
        for a in self.base.actions:
            deps = [d for d in a.deps if d not in self.dropped.get(a.id, ())]
            deps += self.extra.get(a.id, [])
            actions.append(replace(a, deps=tuple(dict.fromkeys(d for d in deps if d != a.id))))
        plan = Plan(self.new + actions)
        plan.validate()                                 # raises on a cycle
        return Plan(_stable_order(plan.actions), kept=self.base.kept)


def _stable_order(actions: list[Action]) -> list[Action]:
    """Each action after what it waits for; otherwise in the given order (Kahn's
    algorithm taking the earliest free action first), so the plan reads in order."""
    index = {a.id: i for i, a in enumerate(actions)}
    waiting = {a.id: len(set(a.deps)) for a in actions}
    dependents: dict[str, list[str]] = defaultdict(list)
    for a in actions:
        for d in set(a.deps):
            dependents[d].append(a.id)
    free = [index[i] for i, n in waiting.items() if n == 0]
    heapq.heapify(free)
    out: list[Action] = []
    while free:
        action = actions[heapq.heappop(free)]
        out.append(action)
        for d in dependents[action.id]:
            waiting[d] -= 1
            if waiting[d] == 0:
                heapq.heappush(free, index[d])
    return out
