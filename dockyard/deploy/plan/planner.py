"""The planner: a pure function of the wanted state and the observed facts.

``make_plan`` returns the actions that take what runs to what is wanted, each with
a stable readable id, the reason for it, and the ids of the actions it must wait
for. There is no I/O here: ``--dry-run`` prints the plan, and the tests check
plans without an engine.

The rules, in short (docs/planning.md has the long version):

- a missing volume is created; volumes are never removed by a deploy;
- a file whose content or mode differs (or that is missing) is written;
- a file in a unit's config folder that the unit no longer has (a pruned fernet
  key, a config file the catalogue dropped) is removed, once the unit's new
  container or job no longer reads it;
- a job runs when its recorded hash differs from its wanted hash;
- a container is created when missing, recreated when its config-hash label
  differs, started when stopped, and waited on when it has a health check;
- but a running container that names the packages its process is made of
  (``restart_packages``), whose image alone was rebuilt (same reference and
  release) with none of them changed, is kept: the plan lists it, with the
  versions, and has no action for it (plan/inplace.py). ``recreate`` names
  the services or containers recreated all the same;
- a managed container nobody wants any more is removed;
- X waits for Y (named in X's ``after``) only when Y has an action in this plan;
  a Y with nothing to do passes on what it would have waited for. Things that
  are already fine are never waited on, which keeps a no-op run fast;
- on a site of several hosts, everything is named ``name@host``; X waits for the
  Y on its own host when there is one, else for Y on every host it runs on;
- a host whose engine did not answer gets one ``reach_engine`` action, which
  fails; its units have no other action, and what waits for them is skipped;
- with a registry, a host that does not hold an image its units use, with the
  registry's id, pulls it (``pull_image``, by digest) before the first of them;
- a service rolled ``serial`` (N hosts at a time): its containers' actions on
  each batch of N hosts wait for those of the batch before, healthy.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import PurePath
from typing import NamedTuple

from dockyard.engine.driver import ContainerSpec, ContainerState
from dockyard.errors import ConfigError

from dockyard.deploy.wanted.hashing import (changed_secrets, differing_files, differing_parts, file_key, job_rekeyed,
                                            rekeyed, secrets_differing, secrets_of)
from dockyard.labels import LABEL_HASH, LABEL_HOST, LABEL_SERVICE
from dockyard.deploy.wanted.model import (WantedContainer, WantedFile, WantedImage, WantedJob, WantedSharedMount,
                                          WantedState, WantedVolume, unit_key)
from .inplace import PackageVersions, verdict
from .observe import ObservedState



class ActionKind(StrEnum):
    """What an action does: the one list of kinds. The planner makes them (in this
    order in counts), the executor has one method per kind, named by its value."""

    REACH_ENGINE = "reach_engine"
    PULL_IMAGE = "pull_image"           # from the site's registry, by digest (plan_images)
    SHARE_MOUNT = "share_mount"
    CREATE_VOLUME = "create_volume"
    WRITE_FILE = "write_file"
    REMOVE_FILE = "remove_file"         # a file in a unit's config folder the unit no longer has (plan_stale_files)
    RUN_JOB = "run_job"
    UPGRADE_STEP = "upgrade_step"       # one step of a release upgrade (dockyard upgrade; plan/upgrade.py)
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    WAIT_HEALTHY = "wait_healthy"
    REMOVE = "remove"                   # stop and remove a container (deploy: unwanted; destroy: every one)
    # dockyard stop and destroy (plan/teardown.py)
    STOP = "stop"
    CLEAN_HOST_NETWORK = "clean_host_network"   # the data plane's namespaces and bridge taps (ops/hostnet.py)
    REMOVE_VOLUME = "remove_volume"
    FORGET_RECORDS = "forget_records"   # the jobs, volumes and upgrade records: the data they describe is gone


# Kinds that change something on the host; waiting on health changes nothing.
CHANGING_KINDS = frozenset(ActionKind) - {ActionKind.WAIT_HEALTHY}

# How a reason names each part of a container's definition.
PART_NAMES = {"image": "image", "files": "config files", "env": "environment", "command": "command",
              "volumes": "mounts", "runtime": "runtime settings"}

Unit = WantedJob | WantedContainer      # what `after` names: a job or a container


@dataclass(frozen=True)
class Action:
    """One step of a plan. The payload fields carry what the executor needs; they
    are left out of repr and comparison (file contents and environments may hold
    secrets, and must never end up in an error message)."""

    id: str
    kind: ActionKind
    target: str
    service: str
    host: str
    reason: str
    deps: tuple[str, ...] = ()
    container: WantedContainer | None = field(default=None, repr=False, compare=False)
    job: WantedJob | None = field(default=None, repr=False, compare=False)
    file: WantedFile | None = field(default=None, repr=False, compare=False)
    volume: WantedVolume | None = field(default=None, repr=False, compare=False)
    shared_mount: WantedSharedMount | None = field(default=None, repr=False, compare=False)
    image: WantedImage | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.kind) is not ActionKind:          # a plain string is accepted, and checked
            try:
                object.__setattr__(self, "kind", ActionKind(self.kind))
            except ValueError:
                raise ValueError(f"{self.id}: unknown action kind {self.kind!r}") from None

    @property
    def spec(self) -> ContainerSpec | None:
        if self.container is not None:
            return self.container.spec
        if self.job is not None:
            return self.job.spec
        if self.shared_mount is not None:
            return self.shared_mount.spec
        return None

    # The payload an action of its kind needs; a plan whose action lacks it is malformed.
    def wanted_job(self) -> WantedJob:
        if self.job is None:
            raise ValueError(f"{self.id}: a {self.kind} action without its job")
        return self.job

    def wanted_container(self) -> WantedContainer:
        if self.container is None:
            raise ValueError(f"{self.id}: a {self.kind} action without its container")
        return self.container

    def wanted_file(self) -> WantedFile:
        if self.file is None:
            raise ValueError(f"{self.id}: a {self.kind} action without its file")
        return self.file

    def wanted_image(self) -> WantedImage:
        if self.image is None:
            raise ValueError(f"{self.id}: a {self.kind} action without its image")
        return self.image

    def wanted_spec(self) -> ContainerSpec:
        if self.spec is None:
            raise ValueError(f"{self.id}: a {self.kind} action without its container's definition")
        return self.spec

    @property
    def changes_something(self) -> bool:
        return self.kind in CHANGING_KINDS

    def readiness(self) -> str:
        """What its success makes true, for "skipped: needs <this>" messages."""
        return {
            ActionKind.REACH_ENGINE: f"the engine of host {self.host} reachable",
            ActionKind.PULL_IMAGE: f"{self.target} pulled on {self.host}",
            ActionKind.SHARE_MOUNT: f"{self.target} a shared mount",
            ActionKind.CREATE_VOLUME: f"volume {self.target}",
            ActionKind.WRITE_FILE: f"{self.target} written",
            ActionKind.REMOVE_FILE: f"{self.target} removed",
            ActionKind.RUN_JOB: f"job {self.target} done",
            ActionKind.UPGRADE_STEP: f"upgrade step {self.target} done",
            ActionKind.CREATE: f"{self.target} created",
            ActionKind.RECREATE: f"{self.target} recreated",
            ActionKind.START: f"{self.target} started",
            ActionKind.WAIT_HEALTHY: f"{self.target} healthy",
            ActionKind.REMOVE: f"{self.target} removed",
            ActionKind.STOP: f"{self.target} stopped",
            ActionKind.CLEAN_HOST_NETWORK: f"the host network of {self.host} cleaned",
            ActionKind.REMOVE_VOLUME: f"volume {self.target} removed",
            ActionKind.FORGET_RECORDS: "the records forgotten",
        }[self.kind]

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "target": self.target, "service": self.service,
                "host": self.host, "reason": self.reason, "deps": list(self.deps)}


@dataclass(frozen=True)
class Kept:
    """A container the plan leaves running although its image was rebuilt: none
    of the packages its process is made of changed (plan/inplace.py). Not an
    action: nothing is done to it."""

    name: str             # as the plan names it (name@host on a site of several hosts)
    service: str
    host: str
    reason: str


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    # Secret name -> ids of the actions its change makes (by name; never a value).
    secrets: dict[str, list[str]] = field(default_factory=dict)
    kept: list[Kept] = field(default_factory=list)

    def is_empty(self) -> bool:
        """No action: containers kept running change nothing."""
        return not self.actions

    def by_id(self) -> dict[str, Action]:
        return {a.id: a for a in self.actions}

    def changes(self) -> int:
        """How many actions change something (wait_healthy does not)."""
        return sum(1 for a in self.actions if a.changes_something)

    def dependents(self) -> dict[str, list[str]]:
        """Action id -> ids of the actions that wait for it."""
        out: dict[str, list[str]] = {a.id: [] for a in self.actions}
        for a in self.actions:
            for d in a.deps:
                out[d].append(a.id)
        return out

    def validate(self) -> None:
        """Ids unique, every dependency in the plan, no cycle. Raises ValueError."""
        ids = [a.id for a in self.actions]
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        if dupes:
            raise ValueError(f"plan has duplicate action ids: {', '.join(dupes)}")
        known = set(ids)
        for a in self.actions:
            missing = [d for d in a.deps if d not in known]
            if missing:
                raise ValueError(f"{a.id} depends on {', '.join(missing)}, which is not in the plan")
        self.topological_order()

    def topological_order(self) -> list[str]:
        """Action ids, each after all it depends on. Raises ValueError on a cycle."""
        # Kahn's algorithm: if some action never becomes free, there is a cycle.
        waiting = {a.id: len(set(a.deps)) for a in self.actions}
        dependents = self.dependents()
        free = [i for i, n in waiting.items() if n == 0]
        order: list[str] = []
        while free:
            current = free.pop()
            order.append(current)
            for d in set(dependents[current]):
                waiting[d] -= 1
                if waiting[d] == 0:
                    free.append(d)
        if len(order) != len(self.actions):
            stuck = sorted(i for i, n in waiting.items() if n > 0)
            raise ValueError(f"plan has a dependency cycle among: {', '.join(stuck)}")
        return order

    def render(self) -> str:
        """The plan for ``--dry-run``: by service, one line per action with its
        reason, and one per container kept running (``keep``)."""
        kept = f"{len(self.kept)} container{'s' if len(self.kept) > 1 else ''} kept running" if self.kept else ""
        if not self.actions and not self.kept:
            return "nothing to do: everything is as wanted"
        names = {a.id: _shown(a) for a in self.actions}
        by_id = self.by_id()
        lines = []
        for secret, ids in self.secrets.items():
            touched = ", ".join(f"{by_id[i].kind} {names[i]}" for i in ids)
            lines.append(f"secret {secret} changed: {touched}")
        width = min(max(len(n) for n in [*names.values(), *(k.name for k in self.kept)]), 60)
        kind_width = max([13, *(len(a.kind) for a in self.actions)])
        services: dict[str, list[str]] = {}
        for a in self.actions:                      # services in plan (dependency) order
            line = f"  {a.kind:<{kind_width}} {names[a.id]:<{width}}  {a.reason}"
            after = _render_deps(a.deps)
            if after:
                line += f"  [after {after}]"
            services.setdefault(a.service or "(no service)", []).append(line)
        for k in self.kept:
            services.setdefault(k.service, []).append(f"  {'keep':<{kind_width}} {k.name:<{width}}  {k.reason}")
        for service, service_lines in services.items():
            lines.append(f"{service}:")
            lines += service_lines
        if not self.actions:
            lines.append(f"nothing to do: everything is as wanted ({kept})")
            return "\n".join(lines)
        counts = Counter(a.kind for a in self.actions)
        detail = ", ".join(f"{counts[k]} {k}" for k in ActionKind if counts[k])
        lines.append(f"{len(self.actions)} actions ({detail})" + (f"; {kept}" if kept else ""))
        return "\n".join(lines)

    def to_json(self) -> str:
        counts = Counter(a.kind for a in self.actions)
        return json.dumps({"actions": [a.to_dict() for a in self.actions],
                           "counts": {k: counts[k] for k in ActionKind if counts[k]},
                           "secrets": self.secrets, "kept": [asdict(k) for k in self.kept]}, indent=2)


def _shown(a: Action) -> str:
    """The target as --dry-run shows it: with its host where the id names one."""
    return f"{a.target}@{a.host}" if a.host and a.id.endswith(f"@{a.host}") else a.target


# Waits on many stops or removals (a volume waits for every container of its
# engine to be removed) are counted rather than listed, past this many.
LISTED_TEARDOWN_DEPS = 4


def _render_deps(deps: tuple[str, ...]) -> str:
    # File, volume and image dependencies are implied ("its files"); name only the units.
    implied = {"write_file:": "file", "create_volume:": "volume", "pull_image:": "image"}
    parts = [d for d in deps if not d.startswith(tuple(implied))]
    for kind, done in ((ActionKind.STOP, "stopped"), (ActionKind.REMOVE, "removed")):
        ids = [d for d in parts if d.startswith(f"{kind}:")]
        if len(ids) > LISTED_TEARDOWN_DEPS:
            parts = [f"{len(ids)} containers {done}", *(d for d in parts if d not in ids)]
    for prefix, word in implied.items():
        n = sum(1 for d in deps if d.startswith(prefix))
        if n:
            parts.append(f"{n} {word}{'s' if n > 1 else ''}")
    return ", ".join(parts)


# -- decisions shared with `dockyard status` -------------------------------------------

def hash_reason(observed_labels: dict[str, str], wanted_labels: dict[str, str],
                rewritten_files: Sequence[str] = ()) -> str:
    """Why a container's config-hash differs, naming the parts (and files) at fault.

    ``rewritten_files`` names the container's files this plan rewrites; it is the
    fallback when the running container predates per-file labels.
    """
    if LABEL_HASH not in observed_labels:
        return "config-hash differs (the container has no config-hash label)"
    why = rekeyed(observed_labels, wanted_labels)
    if why:
        return f"config-hash differs ({why})"
    details = []
    secrets = changed_secrets(observed_labels, wanted_labels)
    for part in differing_parts(observed_labels, wanted_labels):
        if part == "files":
            files = differing_files(observed_labels, wanted_labels)
            if files:
                details += [f"{name} {how}" for name, how in files.items()]
            elif rewritten_files:
                details += [f"{name} changed" for name in rewritten_files]
            else:
                details.append(PART_NAMES[part])
        else:
            details.append(PART_NAMES[part])
    said = ", ".join(details)
    if secrets:
        said += ("; " if said else "") + secrets_said(secrets)
    return f"config-hash differs ({said})" if said else "config-hash differs"


def secrets_said(names: list[str]) -> str:
    """How a reason names changed secrets: by name, never by value."""
    return f"secret{'s' if len(names) > 1 else ''} {', '.join(names)} changed"


class Change(NamedTuple):
    """What a container needs: ``kind`` (None: nothing) and the reason for it;
    ``kept``, when it stays on its current image although that was rebuilt, why."""

    kind: ActionKind | None
    reason: str
    kept: str = ""


def container_change(c: WantedContainer, current: ContainerState | None, rewritten_files: Sequence[str] = (),
                     packages: PackageVersions | None = None, forced: bool = False) -> Change:
    """What a container needs. The one place that decides. ``packages``: the
    versions of its ``restart_packages`` in both images (observed), which
    decide whether a rebuilt image is kept; ``forced``: recreated all the same."""
    if current is None:
        return Change(ActionKind.CREATE, "not present")
    kept = ""
    if current.labels.get(LABEL_HASH) != c.hash:
        decided = verdict(c, current, packages, forced)
        if decided is None or not decided.keep:
            reason = hash_reason(current.labels, c.spec.labels, rewritten_files)
            return Change(ActionKind.RECREATE, f"{reason}: {decided.reason}" if decided else reason)
        kept = decided.reason
    if c.copy_in and current.status == "created":
        # Created and never started: a run killed before it copied the whole
        # configuration in may have left it so. Made again, it is certain.
        return Change(ActionKind.RECREATE, "created but never started (its configuration copy may be incomplete)")
    if not current.running:
        code = f", exit code {current.exit_code}" if current.status == "exited" and current.exit_code else ""
        return Change(ActionKind.START, f"is {current.status}{code}", kept)
    if c.spec.healthcheck is not None and current.health != "healthy":
        return Change(ActionKind.WAIT_HEALTHY, f"running, health {current.health or 'not reported yet'}", kept)
    return Change(None, "", kept)


def _file_reason(f: WantedFile, observed: ObservedState) -> str | None:
    current = observed.files.get(f.path)
    if current is None:
        return "not present"
    if current != f.content:
        return "content differs"
    mode = observed.file_modes.get(f.path)
    if mode is not None and mode != f.mode:
        return f"mode {mode:04o}, wanted {f.mode:04o}"
    return None


class UnitIndex:
    """The units by plan key (``name`` or ``name@host``), and what an ``after``
    name means for a unit: the unit of that name on its own host when there is
    one, else that name on every host it runs on. Raises ConfigError on a unit
    wanted twice on one host."""

    def __init__(self, wanted: WantedState, multi_host: bool, secret_order: bool = True):
        self.multi = multi_host
        self.secret_order = secret_order
        self.units: dict[str, Unit] = {}
        self.by_name: dict[str, list[str]] = {}
        for unit in wanted.units():
            key = unit_key(unit.name, unit.host, multi_host)
            if key in self.units:
                other = self.units[key]
                raise ConfigError(f"{unit.name!r} is wanted twice (services {other.service} and {unit.service}, "
                                  f"hosts {other.host} and {unit.host}); one engine runs one container per name",
                                  key=unit.name)
            self.units[key] = unit
            self.by_name.setdefault(unit.name, []).append(key)

    def key(self, unit: Unit) -> str:
        return unit_key(unit.name, unit.host, self.multi)

    def after(self, unit: Unit) -> list[str]:
        """The keys of the units ``unit`` waits for (names outside the wanted
        state are not ours to order)."""
        keys: list[str] = []
        for name in (*unit.after, *unit.secret_after) if self.secret_order else unit.after:
            own = unit_key(name, unit.host, self.multi)
            keys += [own] if own in self.units else self.by_name.get(name, [])
        return keys


def unit_order(wanted: WantedState, multi_host: bool = False, index: UnitIndex | None = None) -> list[Unit]:
    """Jobs and containers, each after the units its ``after`` names (depth first,
    otherwise in the wanted state's order). Raises ConfigError on a name wanted
    twice on one host or a dependency cycle."""
    index = index or UnitIndex(wanted, multi_host)
    units = index.units
    order: list[Unit] = []
    state: dict[str, str] = {}        # key -> "visiting" | "done"

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            cycle = " -> ".join(path[path.index(key):] + [key])
            raise ConfigError(f"dependency cycle: {cycle}", key="after")
        state[key] = "visiting"
        for dep in index.after(units[key]):
            visit(dep, path + [key])
        state[key] = "done"
        order.append(units[key])

    for key in units:
        visit(key, [])
    return order


# -- the planner ----------------------------------------------------------------------

def make_plan(wanted: WantedState, observed: ObservedState, *, only_services: set[str] | None = None,
              only_hosts: set[str] | None = None, serial: int | None = None,
              secret_order: bool = True, recreate: set[str] | None = None) -> Plan:
    """The actions that converge ``observed`` on ``wanted``.

    ``only_services`` limits the plan to those services' objects, ``only_hosts``
    to those hosts' (``--limit``); the others are assumed deployed and are
    neither acted on nor waited for. ``serial`` (deploy --serial) rolls every
    service through its hosts that many at a time; without it, services whose
    catalogue entry sets ``serial`` roll so.
    ``secret_order`` off leaves out the waits on the units that make a changed
    secret true (``secret_after``): an upgrade orders services its own way.
    ``recreate``: services or containers (engine names) recreated on a rebuilt
    image even where the packages that matter to them are unchanged.
    """
    # Planning allocates many small objects and no reference cycles; the cyclic
    # collector would rescan the growing heap again and again, which makes a
    # 1000-host plan superlinear. Pause it for the duration (bench/planner_scale.py).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Planner(wanted, observed, only_services, only_hosts, serial, secret_order, recreate).run()
    finally:
        if was_enabled:
            gc.enable()


class _Planner:
    def __init__(self, wanted: WantedState, observed: ObservedState, only_services: set[str] | None,
                 only_hosts: set[str] | None = None, serial: int | None = None, secret_order: bool = True,
                 recreate: set[str] | None = None):
        self.wanted = wanted
        self.recreate = recreate or set()
        self.kept: list[Kept] = []
        self.observed = observed
        self.only = only_services
        self.only_hosts = only_hosts
        self.multi = observed.multi_host or len(wanted.hosts()) > 1
        self.index = UnitIndex(wanted, self.multi, secret_order)
        self.actions: list[Action] = []
        # Volume and file actions are decided first, and placed in the plan just
        # before the first unit that needs them, so the plan reads in order.
        self.volume_action: dict[str, Action] = {}    # volume key -> create_volume action
        self.file_action: dict[str, Action] = {}      # file path -> write_file action
        self.placed: set[str] = set()                 # ids already in self.actions
        # unit key -> ids of the actions after which it is ready: its own last action,
        # or, when it needs none, whatever it would itself have waited for.
        self.ready: dict[str, tuple[str, ...]] = {}
        self.removals: dict[tuple[str, str], list[str]] = {}   # (service, host) -> remove action ids
        self.shared = {(m.host, m.path): m for m in wanted.shared_mounts}
        self.unreachable = observed.unreachable
        self.reach: dict[str, Action] = {}            # unreachable host -> its reach_engine action
        self.pull_action: dict[tuple[str, str], Action] = {}   # (host, image ref) -> its pull_image action
        self.serial = serial
        self.secrets: dict[str, list[str]] = {}       # changed secret -> ids of the actions it makes

    def note_secrets(self, names: list[str], action_id: str) -> None:
        for name in names:
            self.secrets.setdefault(name, []).append(action_id)

    def key(self, name: str, host: str) -> str:
        return unit_key(name, host, self.multi)

    def included(self, service: str, host: str | None = None) -> bool:
        return (self.only is None or service in self.only) and \
            (self.only_hosts is None or host is None or host in self.only_hosts)

    def add(self, action: Action) -> Action:
        if action.id not in self.placed:
            self.placed.add(action.id)
            self.actions.append(action)
        return action

    def run(self) -> Plan:
        units = unit_order(self.wanted, self.multi, self.index)
        self.plan_unreachable(units)
        self.plan_removals()
        self.plan_images(units)
        self.plan_volumes()
        self.plan_files()
        for unit in units:
            if not self.included(unit.service, unit.host):
                continue
            if unit.host in self.unreachable:
                # Nothing is known of its host: what waits for it waits for the
                # engine to be reached, which fails this run.
                self.ready[self.index.key(unit)] = (self.add(self.reach[unit.host]).id,)
            elif isinstance(unit, WantedJob):
                self.plan_job(unit)
            else:
                self.plan_container(unit)
        self.plan_stale_files()
        # What no planned unit needed (a file of an up-to-date container gone missing,
        # the image of one whose tag was removed from its host).
        for action in [*self.volume_action.values(), *self.file_action.values(), *self.pull_action.values(),
                       *self.reach.values()]:
            self.add(action)
        self.roll_serially()
        return Plan(self.actions, {name: ids for name, ids in sorted(self.secrets.items())}, self.kept)

    # -- objects --------------------------------------------------------------------------
    def plan_unreachable(self, units: list[Unit]) -> None:
        """One failing action per unreachable host that has work of the plan's services."""
        for unit in units:
            if unit.host in self.unreachable and unit.host not in self.reach and self.included(unit.service, unit.host):
                why = self.unreachable[unit.host]
                self.reach[unit.host] = Action(f"reach_engine:{unit.host}", ActionKind.REACH_ENGINE, unit.host, "",
                                               unit.host, f"engine unreachable when observed: {why}")

    def plan_removals(self) -> None:
        wanted_containers = {self.index.key(c) for c in self.wanted.containers}
        jobs = {self.index.key(j): j for j in self.wanted.jobs}
        for key, current in sorted(self.observed.containers.items()):
            if key in wanted_containers:
                continue
            name = current.name
            service = current.labels.get(LABEL_SERVICE, "")
            host = self.observed.hosts.get(key) or current.labels.get(LABEL_HOST, "")
            job = jobs.get(key)
            if job is not None:
                # A job's container left behind by a killed run. If the job still has
                # to run, running it replaces the leftover; if it is done, tidy up.
                if not self.included(job.service, host) or self.observed.jobs_done.get(name) != job.hash:
                    continue
                reason = f"leftover container of job {name}, which is done"
            elif not self.included(service, host):
                continue
            else:
                reason = "not wanted any more"
            action = self.add(Action(f"remove:{key}", ActionKind.REMOVE, name, service, host, reason))
            self.removals.setdefault((service, host), []).append(action.id)

    def plan_images(self, units: list[Unit]) -> None:
        """A pull for each image a planned unit's host lacks (or holds under its
        name with another id than the registry's). A host holding it pulls nothing."""
        images = {(i.host, i.ref): i for i in self.wanted.images}
        if not images:
            return
        users = [*units, *self.wanted.shared_mounts]
        for unit in users:
            host, ref = unit.host, unit.spec.image
            if (host, ref) in self.pull_action or (host, ref) not in images or host in self.unreachable \
                    or not self.included(unit.service, host):
                continue
            wanted = images[(host, ref)]
            held = self.observed.images.get(host, {}).get(ref)
            if held == wanted.id:
                continue
            reason = "not on the host" if held is None else f"the host's {ref} is another image ({held[:19]})"
            self.pull_action[(host, ref)] = Action(f"pull_image:{self.key(ref, host)}", ActionKind.PULL_IMAGE, ref,
                                                   "", host, f"{reason}; pulled by digest {wanted.source}",
                                                   image=wanted)

    def pulls(self, host: str, ref: str) -> list[str]:
        action = self.pull_action.get((host, ref))
        return [self.add(action).id] if action is not None else []

    def roll_serially(self) -> None:
        """Serial services: the containers' actions on each batch of N hosts (the
        hosts with such actions, in the inventory's order) wait for the last
        action of each of the service's containers on the batch before. The
        pulls, files and volumes of every host go ahead: only what stops or
        starts containers waits."""
        rolled = {s: self.serial or n for s, n in self.wanted.serial.items()}
        if self.serial:
            rolled.update({s: self.serial for s in self.wanted.services()})
        if not rolled or not self.multi:
            return
        order = list(dict.fromkeys([*(c.host for c in self.wanted.containers), *self.observed.hosts.values()]))
        by_id = {a.id: i for i, a in enumerate(self.actions)}
        container_kinds = {ActionKind.CREATE, ActionKind.RECREATE, ActionKind.START, ActionKind.WAIT_HEALTHY,
                           ActionKind.REMOVE}
        for service, n in rolled.items():
            acts: dict[str, list[Action]] = {}
            for a in self.actions:
                if a.service == service and a.kind in container_kinds:
                    acts.setdefault(a.host, []).append(a)
            hosts = [h for h in order if h in acts]
            batches = [hosts[i:i + n] for i in range(0, len(hosts), n)]
            for before, batch in zip(batches, batches[1:]):
                # The end of each container's chain on the batch before: what nothing there waits for.
                earlier = [a for h in before for a in acts[h]]
                waited = {d for a in earlier for d in a.deps}
                ends = [a.id for a in earlier if a.id not in waited]
                for host in batch:
                    for a in acts[host]:
                        if a.kind == ActionKind.WAIT_HEALTHY and a.deps:
                            continue                # follows its own create or start
                        i = by_id[a.id]
                        self.actions[i] = replace(a, deps=tuple(dict.fromkeys([*a.deps, *ends])))

    def plan_volumes(self) -> None:
        for v in self.wanted.volumes:
            key = self.key(v.name, v.host)
            if key in self.observed.volumes or key in self.volume_action or not self.included(v.service, v.host) \
                    or v.host in self.unreachable:
                continue
            self.volume_action[key] = Action(f"create_volume:{key}", ActionKind.CREATE_VOLUME, v.name, v.service,
                                             v.host, "not present", volume=v)

    def plan_files(self) -> None:
        seen: dict[str, WantedFile] = {}
        for f in self.wanted.files:
            if f.path in seen:
                if seen[f.path].content != f.content or seen[f.path].mode != f.mode:
                    raise ConfigError(f"rendered twice with different content or mode (services "
                                      f"{seen[f.path].service} and {f.service})", path=f.path)
                continue
            seen[f.path] = f
            if not self.included(f.service, f.host) or f.host in self.unreachable:
                continue
            reason = _file_reason(f, self.observed)
            if reason:
                self.file_action[f.path] = Action(f"write_file:{f.path}", ActionKind.WRITE_FILE, f.path, f.service,
                                                  f.host, reason, file=f)

    def plan_stale_files(self) -> None:
        """A file in a unit's config folder that no wanted file names is removed:
        dockyard owns these folders, and what a unit stopped reading (a fernet key
        a rotation dropped) must not stay on the host. After the unit's own
        actions, so nothing that still runs with the old files loses one."""
        wanted: dict[str, WantedFile] = {}
        for f in self.wanted.files:
            wanted.setdefault(f.path, f)
        by_folder: dict[str, WantedFile] = {}
        for f in wanted.values():
            if f.unit:
                by_folder.setdefault(str(PurePath(f.path).parent), f)
        for folder, paths in self.observed.folder_files.items():
            owner = by_folder.get(folder)
            if owner is None or not self.included(owner.service, owner.host) or owner.host in self.unreachable:
                continue
            deps = self.ready.get(self.key(owner.unit, owner.host), ())
            for path in paths:
                if path not in wanted:
                    self.add(Action(f"remove_file:{path}", ActionKind.REMOVE_FILE, path, owner.service, owner.host,
                                    f"not a file of {owner.unit} any more", deps))

    # -- units ----------------------------------------------------------------------------
    def deps_of(self, unit: Unit, files: tuple[str, ...], volumes: tuple[str, ...],
                extra: Sequence[str] = ()) -> tuple[str, ...]:
        deps = [self.add(self.volume_action[k]).id for k in (self.key(v, unit.host) for v in volumes)
                if k in self.volume_action]
        deps += [self.add(self.file_action[p]).id for p in files if p in self.file_action]
        deps += self.pulls(unit.host, unit.spec.image)
        for key in self.index.after(unit):
            deps += self.ready.get(key, ())
        deps += list(extra)
        return tuple(dict.fromkeys(deps))           # unique, in order

    def rewritten(self, files: tuple[str, ...]) -> list[str]:
        """Names of these files whose content this plan changes."""
        return [file_key(p) for p in files if p in self.file_action and self.file_action[p].reason == "content differs"]

    def plan_job(self, job: WantedJob) -> None:
        key = self.index.key(job)
        done = self.observed.jobs_done.get(job.name)
        if done == job.hash:
            self.pass_through(job)
            return
        if done is None:
            reason = "never run"
        elif job_rekeyed(done, job.hash):
            reason = str(job_rekeyed(done, job.hash))
        else:
            files = self.rewritten(job.files)
            changed = [f"{', '.join(files)} changed"] if files else []
            secrets = secrets_differing(self.observed.job_secrets.get(job.name, {}), secrets_of(job.spec.labels))
            if secrets:
                changed.append(secrets_said(secrets))
            reason = "inputs changed since its last run" + (f" ({'; '.join(changed)})" if changed else "")
            self.note_secrets(secrets, f"job:{key}")
        volumes = tuple(m.source for m in job.spec.mounts if m.is_volume)
        action = self.add(Action(f"job:{key}", ActionKind.RUN_JOB, job.name, job.service, job.host, reason,
                                 self.deps_of(job, job.files, volumes), job=job))
        self.ready[key] = (action.id,)

    def share_mounts(self, c: WantedContainer) -> list[str]:
        """A container about to start that binds a folder with shared propagation
        waits for that folder to be made a shared mount on its host. Only then:
        the mount lasts until the host reboots, and after a reboot the containers
        are stopped, so the next deploy starts them, and shares the folder first."""
        ids = []
        for m in c.spec.mounts:
            shared = self.shared.get((c.host, m.source)) if m.propagation in ("shared", "rshared") else None
            if shared is not None:
                # A one-shot left behind by a killed run is removed first (its
                # removal and the new run would race for the name).
                leftover = f"remove:{self.key(shared.spec.name, shared.host)}"
                deps = ((leftover,) if leftover in self.placed else ()) + tuple(self.pulls(shared.host,
                                                                                            shared.spec.image))
                ids.append(self.add(Action(f"share_mount:{self.key(shared.path, shared.host)}",
                                           ActionKind.SHARE_MOUNT,
                                           shared.path, shared.service, shared.host,
                                           "bound with shared propagation by a container starting", deps,
                                           shared_mount=shared)).id)
        return ids

    def pass_through(self, unit: Unit) -> None:
        """A unit with nothing to do: what waits for it waits for what it would
        have waited for, so order holds across done jobs and healthy containers
        (mariadb restarting -> keystone_db_sync done -> keystone waits for mariadb).
        When all of that is fine too, this is empty: nothing waits at all."""
        self.ready[self.index.key(unit)] = self.deps_of(unit, (), ())

    def plan_container(self, c: WantedContainer) -> None:
        key = self.index.key(c)
        current = self.observed.containers.get(key)
        kind, reason, kept = container_change(c, current, self.rewritten(c.files), self.observed.packages.get(key),
                                              forced=bool({c.service, c.name} & self.recreate))
        if kept:
            self.kept.append(Kept(key, c.service, c.host, kept))
        if kind == ActionKind.RECREATE and current is not None and not rekeyed(current.labels, c.spec.labels):
            self.note_secrets(changed_secrets(current.labels, c.spec.labels), f"{kind}:{key}")
        if kind is None:
            self.pass_through(c)
            return
        if kind == ActionKind.WAIT_HEALTHY:
            # Running with its wanted definition, but not healthy (yet): dependants wait.
            action = self.add(Action(f"wait_healthy:{key}", ActionKind.WAIT_HEALTHY, c.name, c.service, c.host,
                                     reason, self.deps_of(c, (), ()), container=c))
            self.ready[key] = (action.id,)
            return
        # A replacement of the same service on the same host may need what the
        # removed container held (a port, a name in some config): remove first.
        removals = self.removals.get((c.service, c.host), [])
        volumes = tuple(dict.fromkeys([*c.volumes, *(m.source for m in c.spec.mounts if m.is_volume)]))
        action = self.add(Action(f"{kind}:{key}", kind, c.name, c.service, c.host, reason,
                                 self.deps_of(c, c.files, volumes, [*removals, *self.share_mounts(c)]),
                                 container=c))
        self.ready[key] = (action.id,)
        if c.spec.healthcheck is not None:
            wait = self.add(Action(f"wait_healthy:{key}", ActionKind.WAIT_HEALTHY, c.name, c.service, c.host,
                                   f"health check after {kind}", (action.id,), container=c))
            self.ready[key] = (wait.id,)
