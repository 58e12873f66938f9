"""The planner: a pure function of the wanted and the observed state.

It returns the actions that take what runs to what is wanted, each with the
reason for it and the actions it must wait for. No I/O here: plans are printed
by ``--dry-run`` and tested without an engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .hashing import differing_parts
from .model import LABEL_HASH, LABEL_SERVICE, WantedContainer, WantedFile, WantedJob, WantedState
from .observe import ObservedState

KINDS = ("create_volume", "write_config", "run_job", "create", "recreate", "start", "restart", "wait_healthy",
         "remove")


@dataclass(frozen=True)
class Action:
    id: str
    kind: str
    target: str
    service: str
    host: str
    reason: str
    deps: tuple[str, ...] = ()
    payload: object = None

    def __str__(self) -> str:
        return f"{self.kind:<13} {self.target:<34} {self.reason}"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.actions

    def by_id(self) -> dict[str, Action]:
        return {a.id: a for a in self.actions}

    def render(self) -> str:
        if not self.actions:
            return "nothing to do: everything is as wanted"
        lines = []
        for service in sorted({a.service for a in self.actions}):
            lines.append(f"{service}:")
            for a in self.actions:
                if a.service == service:
                    after = f"  (after {', '.join(a.deps)})" if a.deps else ""
                    lines.append(f"  {a}{after}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps([{"id": a.id, "kind": a.kind, "target": a.target, "service": a.service, "host": a.host,
                            "reason": a.reason, "deps": list(a.deps)} for a in self.actions], indent=2)


def _file_reason(files: list[WantedFile], observed: ObservedState) -> str | None:
    changed = [f for f in files if observed.files.get(f.path) != f.content]
    if not changed:
        return None
    names = ", ".join(sorted(f.path.rsplit("/", 1)[-1] for f in changed))
    missing = all(observed.files.get(f.path) is None for f in changed)
    return f"{'missing' if missing else 'changed'}: {names}"


def make_plan(wanted: WantedState, observed: ObservedState, *, only_services: set[str] | None = None) -> Plan:
    def included(service: str) -> bool:
        return only_services is None or service in only_services

    actions: list[Action] = []
    # unit name -> ids of the actions after which it is ready. A unit that needs no
    # action passes on what it would have waited for, so order holds across it.
    ready: dict[str, tuple[str, ...]] = {}

    volume_action: dict[str, str] = {}
    for v in wanted.volumes:
        if v.name not in observed.volumes and included(v.service) and v.name not in volume_action:
            a = Action(f"create_volume:{v.name}", "create_volume", v.name, v.service, v.host, "not present")
            actions.append(a)
            volume_action[v.name] = a.id

    files_by_unit: dict[str, list[WantedFile]] = {}
    for f in wanted.files:
        files_by_unit.setdefault(f.unit, []).append(f)
    config_action: dict[str, str] = {}
    for unit, files in files_by_unit.items():
        if not included(files[0].service):
            continue
        reason = _file_reason(files, observed)
        if reason:
            a = Action(f"write_config:{unit}", "write_config", unit, files[0].service, files[0].host, reason,
                       payload=tuple(files))
            actions.append(a)
            config_action[unit] = a.id

    def deps_for(after: tuple[str, ...], unit: str, volumes: tuple[str, ...] = ()) -> tuple[str, ...]:
        deps = [d for name in after for d in ready.get(name, ())]
        if unit in config_action:
            deps.append(config_action[unit])
        deps += [volume_action[v] for v in volumes if v in volume_action]
        return tuple(dict.fromkeys(deps))

    # Units in the order the wanted state lists them: dependencies come first.
    units: list[WantedJob | WantedContainer] = []
    jobs = {j.name: j for j in wanted.jobs}
    containers = {c.name: c for c in wanted.containers}
    order = _unit_order(wanted)
    for name in order:
        unit = jobs.get(name) or containers[name]
        units.append(unit)

    for unit in units:
        if not included(unit.service):
            continue
        if isinstance(unit, WantedJob):
            if observed.jobs_done.get(unit.name) == unit.hash:
                ready[unit.name] = deps_for(unit.after, "")
                continue
            reason = "never run" if unit.name not in observed.jobs_done else "inputs changed (image or config)"
            volumes = tuple(m.source for m in unit.spec.mounts if m.is_volume)
            a = Action(f"job:{unit.name}", "run_job", unit.name, unit.service, unit.host, reason,
                       deps_for(unit.after, unit.name, volumes), payload=unit)
            actions.append(a)
            ready[unit.name] = (a.id,)
            continue
        c: WantedContainer = unit
        current = observed.containers.get(c.name)
        deps = deps_for(c.after, c.name, c.volumes)
        if current is None:
            act = Action(f"create:{c.name}", "create", c.name, c.service, c.host, "not present", deps, c)
        elif current.labels.get(LABEL_HASH) != c.hash:
            parts = differing_parts(current.labels, c.spec.labels)
            detail = ", ".join(parts) or "definition"
            if "files" in parts and c.name in config_action:
                detail = detail.replace("files", f"config ({_action(actions, config_action[c.name]).reason})")
            act = Action(f"recreate:{c.name}", "recreate", c.name, c.service, c.host, f"differs: {detail}", deps, c)
        elif current.status != "running":
            act = Action(f"start:{c.name}", "start", c.name, c.service, c.host, f"is {current.status}", deps, c)
        elif current.health == "unhealthy":
            act = Action(f"restart:{c.name}", "restart", c.name, c.service, c.host, "is unhealthy", deps, c)
        elif current.health == "starting":
            w = Action(f"wait_healthy:{c.name}", "wait_healthy", c.name, c.service, c.host, "still starting",
                       deps, c)
            actions.append(w)
            ready[c.name] = (w.id,)
            continue
        else:
            ready[c.name] = tuple(d for name in c.after for d in ready.get(name, ()))
            continue
        actions.append(act)
        ready[c.name] = (act.id,)
        if c.spec.healthcheck is not None:
            w = Action(f"wait_healthy:{c.name}", "wait_healthy", c.name, c.service, c.host, "gate dependants",
                       (act.id,), c)
            actions.append(w)
            ready[c.name] = (w.id,)

    wanted_names = set(containers)
    for name, current in sorted(observed.containers.items()):
        service = current.labels.get(LABEL_SERVICE, "")
        if name not in wanted_names and included(service) and current.labels.get("dockyard.job") != "true":
            actions.append(Action(f"remove:{name}", "remove", name, service, current.labels.get("dockyard.host", ""),
                                  "no longer wanted"))
    return Plan(actions)


def _action(actions: list[Action], action_id: str) -> Action:
    return next(a for a in actions if a.id == action_id)


def _unit_order(wanted: WantedState) -> list[str]:
    """Jobs and containers, each after the units it names in ``after``."""
    units = {j.name: j.after for j in wanted.jobs}
    units.update({c.name: c.after for c in wanted.containers})
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in units:
            return
        seen.add(name)
        for dep in units[name]:
            visit(dep)
        order.append(name)

    for name in units:
        visit(name)
    return order
