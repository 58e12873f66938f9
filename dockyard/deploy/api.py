"""The library API behind the deploy commands. The CLI only parses and prints.

Every command validates everything (site, catalogue, rendering, images, ports)
before it takes the lock and acts, so bad input changes nothing.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dockyard.engine import connect
from dockyard.engine.driver import Engine
from dockyard.errors import ConfigError, DockyardError

from .catalogue import ServiceCatalogue, load_services
from .executor import Executor, Outcome, RunResult
from .lock import SiteLock
from .model import LABEL_MANAGED, LABEL_SERVICE, WantedState
from .observe import observe
from .plan import Plan, make_plan
from .site import Site, load_globals, load_site
from .timeline import Timeline
from .wanted import build_wanted

Say = Callable[[str], None]


@dataclass
class Prepared:
    site: Site
    catalogue: ServiceCatalogue
    engine: Engine
    wanted: WantedState


def prepare(config_dir: Path, engine: Engine | None = None, services_root: Path | None = None) -> Prepared:
    catalogue = load_services(services_root)
    if not config_dir.is_dir():
        raise ConfigError("configuration folder not found (run `dockyard up` or create it)", path=config_dir)
    enabled = load_globals(config_dir, set(catalogue.services)).enabled_services
    required = catalogue.required_passwords(catalogue.closure(enabled))
    site = load_site(config_dir, set(catalogue.services), required)
    engine = engine or connect(site.globals.engine)
    engine.ping()
    wanted, missing = build_wanted(site, catalogue, engine)
    if missing:
        raise ConfigError(f"images not built: {', '.join(missing)} (run `dockyard build "
                          f"{' '.join('^' + m + '$' for m in missing)}`)", key="images")
    return Prepared(site, catalogue, engine, wanted)


def check_ports(prepared: Prepared, plan: Plan) -> None:
    """A container about to be created must find its ports free (bad input, exit 2)."""
    creating = {a.target for a in plan.actions if a.kind == "create"}
    for c in prepared.wanted.containers:
        if c.name not in creating:
            continue
        for port in c.ports:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((c.address, port))
            except OSError:
                raise ConfigError(f"port {port} on {c.address} is already in use; {c.name} ({c.service}) "
                                  f"needs it", key=f"{c.service}.ports") from None
            finally:
                sock.close()


def deploy(config_dir: Path, *, services: set[str] | None = None, dry_run: bool = False, say: Say = print,
           engine: Engine | None = None, services_root: Path | None = None) -> RunResult | Plan:
    prepared = prepare(config_dir, engine, services_root)
    if services:
        unknown = services - set(prepared.catalogue.services)
        if unknown:
            raise ConfigError(f"unknown service {sorted(unknown)[0]!r}", key="--services")
    site = prepared.site
    if dry_run:
        plan = make_plan(prepared.wanted, observe(prepared.engine, prepared.wanted, site.state_dir),
                         only_services=services)
        say(plan.render())
        say(f"{len(plan.actions)} changes planned (dry run: nothing done)")
        return plan
    with SiteLock(site.state_dir):
        timeline = Timeline(site.state_dir)
        say(f"dockyard: run {timeline.run_id} on {config_dir}")
        observed = observe(prepared.engine, prepared.wanted, site.state_dir)
        plan = make_plan(prepared.wanted, observed, only_services=services)
        check_ports(prepared, plan)

        def report(o: Outcome) -> None:
            line = f"  {o.result:<7} {o.action.id:<44} {o.seconds:6.1f}s"
            if o.result != "ok":
                line += f"  {o.error}"
            say(line)

        executor = Executor(prepared.engine, site.state_dir, timeline, site.globals.parallelism, report)
        try:
            result = executor.run(plan)
        finally:
            timeline.close()
        say(result.summary())
        return result


def managed(engine: Engine) -> list:
    return engine.containers(label=f"{LABEL_MANAGED}=true")


def stop(config_dir: Path, say: Say = print, engine: Engine | None = None) -> int:
    prepared_site = _site_only(config_dir)
    engine = engine or connect(prepared_site.globals.engine)
    with SiteLock(prepared_site.state_dir):
        count = 0
        for c in managed(engine):
            if c.running:
                engine.stop(c.name)
                say(f"  stopped {c.name}")
                count += 1
        say(f"{count} containers stopped")
    return count


def destroy(config_dir: Path, include_volumes: bool, say: Say = print, engine: Engine | None = None) -> None:
    site = _site_only(config_dir)
    engine = engine or connect(site.globals.engine)
    with SiteLock(site.state_dir):
        for c in managed(engine):
            engine.remove(c.name)
            say(f"  removed container {c.name}")
        if include_volumes:
            for v in engine.volumes(label=f"{LABEL_MANAGED}=true"):
                engine.remove_volume(v.name)
                say(f"  removed volume {v.name}")
            record = site.state_dir / "jobs.json"
            if record.exists():
                record.unlink()  # with the data gone, every bootstrap must run again


def _site_only(config_dir: Path) -> Site:
    catalogue = load_services()
    return load_site(config_dir, set(catalogue.services), [])


def status_rows(config_dir: Path, engine: Engine | None = None) -> list[dict]:
    prepared = prepare(config_dir, engine)
    observed = observe(prepared.engine, prepared.wanted, prepared.site.state_dir)
    rows = []
    for c in prepared.wanted.containers:
        cur = observed.containers.get(c.name)
        if cur is None:
            rows.append(dict(container=c.name, service=c.service, host=c.host, state="missing", health="",
                             image=c.spec.image, up_to_date=False))
            continue
        rows.append(dict(container=c.name, service=c.service, host=c.host, state=cur.status,
                         health=cur.health or "", image=c.spec.image,
                         up_to_date=cur.labels.get("dockyard.config-hash") == c.hash))
    return rows


def services_of(engine: Engine) -> set[str]:
    return {c.labels.get(LABEL_SERVICE, "") for c in managed(engine)}
