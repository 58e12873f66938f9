"""``dockyard status``: every container, its state and health, and whether a deploy
would leave it alone (and if not, why).

"Up to date" is decided by the planner's own rule (``plan.container_change``), so
status and ``deploy --dry-run`` never disagree. One list call to the engine (and,
for a container whose rebuilt image it may keep, its images' package lists).
A container a deploy keeps on its current image, although that was rebuilt, is
up to date and says so: "kept", with the versions that made it so.

One difference from the plan: a running container with its wanted definition
whose health the engine still reports ``starting`` is up to date. The engine
checks every 30 s, so right after a deploy (which ran the check itself and saw
it pass) that is every container with a health check. A deploy would only wait
on it, changing nothing. One the engine found ``unhealthy`` is not up to date.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dockyard.labels import LABEL_HOST, LABEL_SERVICE
from dockyard.deploy.wanted.model import WantedState, unit_key
from dockyard.deploy.plan.observe import observe_containers
from dockyard.deploy.plan.planner import ActionKind, container_change
from dockyard.engine.driver import ContainerState


@dataclass(frozen=True)
class StatusRow:
    container: str
    service: str
    host: str
    state: str               # running | exited | created | ... | missing
    health: str              # healthy | unhealthy | starting | "" (no health check, or not running)
    image: str               # the wanted image reference (the running one for unwanted containers)
    up_to_date: bool
    reason: str = ""         # why not up to date: what a deploy would do about it
    kept: str = ""           # why a deploy keeps it on its current image, though that was rebuilt


def settling(kind: ActionKind | None, current: ContainerState | None) -> bool:
    """Only a health wait (``kind``) is needed, and only because the engine's own
    check has not reported yet: up to date (the module's docstring says why).
    ``dockyard upgrade`` counts such a container converged by the same rule."""
    return kind == ActionKind.WAIT_HEALTHY and current is not None and current.health == "starting"


def status(engine, wanted: WantedState, site: str | None = None, hosts: list[str] | None = None,
           unreachable: dict[str, str] | None = None) -> list[StatusRow]:
    """One row per wanted container, then one per managed container nobody wants.
    With ``site``, other sites' containers are left out (as ``observe`` does).
    ``engine``: one engine, or every host's (a SiteEngines); ``hosts`` and
    ``unreachable`` as for ``observe``."""
    observed = observe_containers(engine, wanted, site, hosts, unreachable)
    multi = observed.multi_host
    job_keys = {unit_key(j.name, j.host, multi) for j in wanted.jobs}
    rows = []
    for c in wanted.containers:
        if c.host in observed.unreachable:
            rows.append(StatusRow(container=c.name, service=c.service, host=c.host, state="unreachable",
                                  health="", image=c.spec.image, up_to_date=False,
                                  reason=f"engine unreachable: {observed.unreachable[c.host]}"))
            continue
        key = unit_key(c.name, c.host, multi)
        current = observed.containers.get(key)
        kind, reason, kept = container_change(c, current, packages=observed.packages.get(key))
        if settling(kind, current):
            kind, reason = None, ""
        rows.append(StatusRow(
            container=c.name, service=c.service, host=c.host,
            state=current.status if current else "missing",
            health=(current.health or "") if current else "",
            image=c.spec.image, up_to_date=kind is None,
            reason=f"{kind}: {reason}" if kind else "", kept=kept))
    wanted_keys = {unit_key(c.name, c.host, multi) for c in wanted.containers}
    for key, current in sorted(observed.containers.items()):
        if key in wanted_keys or key in job_keys:
            continue   # a job's container only lives while the job runs
        rows.append(StatusRow(
            container=current.name, service=current.labels.get(LABEL_SERVICE, ""),
            host=observed.hosts.get(key) or current.labels.get(LABEL_HOST, ""),
            state=current.status, health=current.health or "", image=current.image, up_to_date=False,
            reason="remove: not wanted any more"))
    return rows


def to_json(rows: list[StatusRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


_STATE_STYLE = {"running": "green", "missing": "red", "exited": "red", "dead": "red", "restarting": "yellow"}
_HEALTH_STYLE = {"healthy": "green", "unhealthy": "red", "starting": "yellow"}


def table(rows: list[StatusRow]) -> Table:
    t = Table(title="dockyard status")
    for column in ("container", "service", "host", "state", "health", "image", "up to date"):
        t.add_column(column)
    for r in rows:
        state = f"[{_STATE_STYLE[r.state]}]{r.state}[/]" if r.state in _STATE_STYLE else escape(r.state)
        health = f"[{_HEALTH_STYLE[r.health]}]{r.health}[/]" if r.health in _HEALTH_STYLE else escape(r.health)
        if not r.up_to_date:
            verdict = f"[yellow]no[/] ({escape(r.reason)})"
        else:
            verdict = f"[cyan]kept[/] ({escape(r.kept)})" if r.kept else "yes"
        t.add_row(escape(r.container), escape(r.service), escape(r.host), state, health, escape(r.image), verdict)
    return t


def render(rows: list[StatusRow], console: Console | None = None) -> None:
    (console or Console()).print(table(rows))
