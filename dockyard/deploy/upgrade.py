"""``dockyard upgrade``: a running site moved to the releases globals.yml now names.

Everything is decided before anything changes: which services move, from which
release to which, in which order, with which steps (``plan/upgrade.py``), and
what is refused (exit 2, nothing done):

- a downgrade (a service running a newer release than the one wanted);
- a jump the services do not support in one step (``upgrade_from`` in
  images/releases.yml);
- a site that is not converged on the releases it runs: every difference from
  its current releases' wanted state is a change the upgrade would make blind;
- an unfinished upgrade (below) moving a service globals.yml no longer enables.

The upgrade is recorded in ``<state_dir>/upgrade.json`` (from and to, per
service) before its first action; its steps are recorded as they succeed, like
jobs. A killed upgrade run again finds the record, skips the convergence check
(the site is half-way, by design), keeps the releases it started from, and does
what is left. Once a run succeeds the record says so, and another
``dockyard upgrade`` finds nothing to move. ``--abandon`` marks an unfinished
record given up: the next upgrade is a new one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from dockyard.deploy import api
from dockyard.deploy.execute import volumes_record
from dockyard.deploy.execute.executor import RunResult, execute
from dockyard.deploy.execute.jobs_record import JobsRecord
from dockyard.deploy.execute.lock import SiteLock
from dockyard.deploy.execute.records import UPGRADE_RECORD
from dockyard.deploy.execute.timeline import Timeline, load_timeline, timeline_path
from dockyard.deploy.files import write_atomic
from dockyard.deploy.ops import outages
from dockyard.deploy.ops.availability import AvailabilityRecord
from dockyard.deploy.ops.probe import AvailabilityProbe, cloud_auth
from dockyard.deploy.ops.status import settling
from dockyard.deploy.plan.observe import ObservedState, observe, observe_packages
from dockyard.deploy.plan.planner import ActionKind, Plan, make_plan
from dockyard.deploy.plan.upgrade import Move, Step, UpgradePlan, make_upgrade_plan, running_releases
from dockyard.deploy.site.loader import GLOBALS_FILE, Site
from dockyard.deploy.site.passwords import PASSWORDS_FILE
from dockyard.deploy.wanted.builder import WantedBuilder, site_id, wanted_state
from dockyard.deploy.wanted.catalogue import ServiceCatalogue
from dockyard.deploy.wanted.model import unit_key
from dockyard.engine.driver import Engine
from dockyard.errors import ConfigError
from dockyard.releases import Releases, load_releases

Say = Callable[[str], None]
RECORD_NAME = UPGRADE_RECORD          # forgotten with the data by destroy --include-volumes


# -- the record ------------------------------------------------------------------------

def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_NAME


def load_record(state_dir: Path) -> dict:
    """``{"from": {service: release}, "to": {service: release}, "complete": bool}``; {} when absent or unreadable."""
    try:
        data = json.loads(record_path(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(state_dir: Path, record: dict) -> None:
    write_atomic(record_path(state_dir), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), 0o644)


def unfinished(record: dict) -> bool:
    """The record is of an upgrade a run started and none finished (nor abandoned)."""
    return bool(record) and not record.get("complete") and not record.get("abandoned") \
        and isinstance(record.get("from"), dict)


# -- what runs now ----------------------------------------------------------------------

def upgrade_order(catalogue: ServiceCatalogue, services: list[str], releases: Releases) -> list[str]:
    """``services`` with each one after the services it depends on; where that
    leaves a choice, in images/releases.yml's ``upgrade_order``."""
    preference = {name: i for i, name in enumerate(releases.upgrade_order)}
    wanted = set(services)
    order: list[str] = []
    left = sorted(wanted, key=lambda s: (preference.get(s, len(preference)), s))
    while left:
        for name in left:
            deps = set(catalogue.closure([name])) - {name}
            if not (deps & wanted) - set(order):
                order.append(name)
                left.remove(name)
                break
    return order


@dataclass
class Decision:
    """What the upgrade does: moves in order, services staying where they are, and
    whether it resumes a killed one."""

    moves: list[tuple[str, str, str]]      # (service, from, to), in order
    stays: dict[str, str]
    resuming: bool
    record: dict


def decide(site: Site, catalogue: ServiceCatalogue, observed: ObservedState, services: set[str] | None,
           releases: Releases | None = None) -> Decision:
    """Which services move, or a ConfigError saying why the upgrade is refused."""
    releases = releases or load_releases()
    g = site.globals
    path = Path(site.config_dir) / GLOBALS_FILE
    enabled = catalogue.closure(g.enabled_services)
    running = running_releases(observed, releases)
    record = load_record(site.state_dir)
    in_progress = unfinished(record)
    target = {s: g.service_release(s) for s in enabled}
    if in_progress:
        _check_recorded_services_enabled(record, target, path)
    resuming = in_progress and all(record.get("to", {}).get(s) == target[s] for s in record["from"])
    moves, stays = [], {}
    for service in enabled:
        if services and service not in services:
            continue
        now = running.get(service)
        if not now:
            continue                       # not running: deploy's business, not the upgrade's
        wanted = target[service]
        oldest = min(now, key=releases.index)
        newest = max(now, key=releases.index)
        started = record.get("from", {}).get(service) if resuming else None
        if releases.newer(newest, wanted):
            raise ConfigError(f"{service} runs {newest}, newer than {wanted}: a downgrade is not supported (the "
                              f"databases are already migrated); set release back to {newest}",
                              path=path, key=f"service_releases.{service}" if service in g.service_releases
                              else "release")
        source = started or oldest
        if source == wanted:
            if len(now) == 1 and not (started and started != wanted):
                stays[service] = wanted
                continue
        elif source not in releases.by_name[wanted].upgrade_from:
            supported = ", ".join(releases.by_name[wanted].upgrade_from) or "none"
            raise ConfigError(f"{service} runs {source}: {wanted} is not reached from it in one step (it is "
                              f"upgraded to from: {supported}); upgrade through the releases in between",
                              path=path, key="release")
        moves.append((service, source, wanted))
    # A service that moved on a killed run, whose containers all run the new code
    # already, still has its remaining steps (contract) to do.
    if resuming:
        for service, source in record["from"].items():
            if (services is None or service in services) and service in target and \
                    all(m[0] != service for m in moves) and source != target[service]:
                stays.pop(service, None)
                moves.append((service, source, target[service]))
    order = upgrade_order(catalogue, [m[0] for m in moves], releases)
    by_name = {m[0]: m for m in moves}
    return Decision([by_name[s] for s in order], {s: r for s, r in stays.items() if s not in by_name},
                    resuming, record)


def _check_recorded_services_enabled(record: dict, target: dict[str, str], path: Path) -> None:
    """A service the unfinished upgrade moves must still be in the site: its
    steps left (a contract, online migrations) cannot run in a site without it,
    and whether they ran cannot be told from here."""
    gone = sorted(s for s in record["from"] if s not in target)
    if not gone:
        return
    moves = ", ".join(f"{s} ({record['from'][s]} -> {record.get('to', {}).get(s, '?')})" for s in gone)
    it = "it" if len(gone) == 1 else "them"
    raise ConfigError(f"the upgrade a previous run started moves {moves}, no longer enabled: enable {it} again "
                      f"and run `dockyard upgrade` to finish that upgrade, or give it up with `dockyard upgrade "
                      f"--abandon` (its steps not done then never run; docs/upgrades.md)",
                      path=path, key="enabled_services")


def current_site(site: Site, decision: Decision) -> Site:
    """The site as it runs now: each moving service on the release it moves from."""
    g = site.globals
    sources = {service: source for service, source, _ in decision.moves}
    if not sources:
        return site
    # The toolbox and the site's own tag follow the release most services come from.
    common = max(set(sources.values()), key=list(sources.values()).count)
    globals_now = g.model_copy(update={
        "release": common, "image_tag": g.release_tag(common),
        "service_releases": {**{s: g.service_release(s) for s in g.service_releases}, **sources,
                             **{s: r for s, r in decision.stays.items() if r != common}},
    })
    return replace(site, globals=globals_now)


def package_versions(engine: Engine, old_ref: str, new_ref: str, packages: list[str]) -> tuple[str, str] | None:
    """The first of ``packages`` both images list, with its two versions."""
    from dockyard.image.packages import MANIFEST, parse_manifest

    try:
        old = parse_manifest(engine.read_file(old_ref, MANIFEST).decode(errors="replace"))
        new = parse_manifest(engine.read_file(new_ref, MANIFEST).decode(errors="replace"))
    except Exception:                      # noqa: BLE001 - versions are a courtesy of the dry run
        return None
    for name in packages:
        if name in old and name in new:
            return old[name], new[name]
    return None


# -- the command ------------------------------------------------------------------------

def plan_upgrade(config_dir: Path, *, services: set[str] | None = None, engine: Engine | None = None,
                 services_root: Path | None = None,
                 serial: int | None = None) -> tuple[api.Prepared, UpgradePlan, Decision, ObservedState]:
    """Everything the upgrade needs, decided and checked; nothing changed. The
    caller holds the site's lock."""
    prepared = api.prepare(Path(config_dir), engine, services_root)
    api._check_services(prepared, services)
    site, catalogue = prepared.site, prepared.catalogue
    observed = observe(prepared.engines(), prepared.wanted, site.state_dir, site_id(site))
    api._check_foreign(prepared, observed)
    decision = decide(site, catalogue, observed, services)
    if decision.moves and not decision.resuming:
        _check_converged(site, catalogue, prepared, decision, observed, services)
    _check_mariadb_upgrade_password(site, decision)
    builder = WantedBuilder(site, catalogue, prepared.engine, True, api.host_facts(site))
    moves: list[Move] = []
    for service, source, target in decision.moves:
        svc = catalogue.services[service]
        steps = tuple(Step(service, step, cmd, job, tuple(files))
                      for (step, job, files), (_, cmd) in zip(builder.upgrade_steps(svc, source),
                                                              svc.spec.upgrade.steps() if svc.spec.upgrade else []))
        if builder.missing_images:
            missing = sorted(builder.missing_images)
            raise ConfigError(f"images not built: {', '.join(missing)} (the upgrade steps of {service} run in them)",
                              key="images")
        versions = None
        first = next(iter(svc.spec.containers.values()), None)
        if first is not None:
            g = site.globals
            hosts = site.inventory.hosts_in(first.groups[0])
            # The engine of the service's (first) host.
            host_engine = prepared.engines().of(hosts[0].name if hosts else "")
            versions = package_versions(host_engine, g.image_ref(first.image, g.release_tag(source)),
                                        g.image_ref(first.image, g.release_tag(target)), _main_packages(first.image))
        moves.append(Move(service, source, target, steps,
                          tuple(svc.spec.upgrade.contract_after) if svc.spec.upgrade else (), versions))
    if moves:
        plan = make_upgrade_plan(prepared.wanted, observed, moves, only_services=services, serial=serial)
    else:
        plan = Plan()
    return prepared, UpgradePlan(moves, plan, decision.stays), decision, observed


def _main_packages(image: str) -> list[str]:
    """The Debian packages that say an image's version: its own, then its parent's."""
    from dockyard.image.catalogue import load_catalogue

    images = load_catalogue()
    names: list[str] = []
    current: str | None = image
    while current:
        names += list(images.images[current].meta.packages)
        current = images.images[current].parent
    return names


def _report_availability(watcher: AvailabilityProbe, figures: AvailabilityRecord, state_dir: Path,
                         say: Say) -> None:
    """The run's figures, written whole (no longer partial) with those of the
    runs before it, and printed: all of them added up, with the steps every
    moment of every API down at once came with."""
    report = watcher.stop()
    try:
        total = figures.write(report, partial=False)
    except OSError as exc:
        say(f"the availability figures could not be written to {figures.path}: {exc}")
        total = report
    else:
        if watcher.publish_error:
            say(f"the availability figures could not be written while the run went on: {watcher.publish_error}")
    during = "the run" if figures.runs == 1 else \
        f"the upgrade's {figures.runs} runs (the time between them not polled)"
    for line in total.lines(during):
        say(line)
    events = []
    for run in figures.run_ids:
        path = timeline_path(state_dir, run)
        if path.exists():
            events += load_timeline(path)
    for outage in outages.during(total.all_down_at, events):
        say(f"    {outage.line()}")


def _check_converged(site: Site, catalogue: ServiceCatalogue, prepared: api.Prepared, decision: Decision,
                     observed: ObservedState, services: set[str] | None) -> None:
    now = current_site(site, decision)
    wanted = wanted_state(now, catalogue, prepared.engine, facts=api.host_facts(site))
    path = Path(site.config_dir) / GLOBALS_FILE
    if wanted.missing_images:
        raise ConfigError(f"the images the site runs now are gone ({', '.join(wanted.missing_images)}): the site "
                          f"cannot be checked converged before its upgrade", path=path, key="release")
    # The package lists decide for the wanted state of the releases it runs (a
    # container kept over a rebuild is converged): read them for that one.
    as_it_runs = replace(observed, packages={})
    observe_packages(prepared.engines(), wanted.state, as_it_runs)
    plan = make_plan(wanted.state, as_it_runs, only_services=services, secret_order=False)
    # A health wait only because the engine's own check (every 30 s) has not
    # reported since the container started is converged, as `dockyard status`
    # counts it; an unhealthy container is not.
    pending = [a for a in plan.actions if a.changes_something or (
        a.kind == ActionKind.WAIT_HEALTHY
        and not settling(a.kind, as_it_runs.containers.get(unit_key(a.target, a.host, as_it_runs.multi_host))))]
    if pending:
        shown = "; ".join(f"{a.id} ({a.reason})" for a in pending[:5])
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        sources = ", ".join(sorted({source for _, source, _ in decision.moves}))
        raise ConfigError(f"the site is not converged on the release it runs ({sources}): {shown}{more}. Set the "
                          f"release back, run `dockyard deploy`, then upgrade", path=path, key="release")


def abandon(config_dir: Path, *, say: Say = print, services_root: Path | None = None) -> bool:
    """Give up the upgrade a previous run started and none finished: its record
    says so (and is kept, to be read), and the next ``dockyard upgrade`` starts
    a new one, convergence check included. Nothing else changes: the steps it
    had not done are never run. False when no upgrade was unfinished."""
    site, _ = api.load(Path(config_dir), services_root, need_passwords=False)
    with SiteLock(site.state_dir):
        record = load_record(site.state_dir)
        if not unfinished(record):
            say("no unfinished upgrade to abandon")
            return False
        write_record(site.state_dir, {**record, "abandoned": True})
        moves = ", ".join(f"{s} {source} -> {record.get('to', {}).get(s, '?')}"
                          for s, source in sorted(record["from"].items()))
        say(f"abandoned the upgrade a previous run started ({moves}): the steps it had not done will not run; "
            f"the next `dockyard upgrade` starts a new one")
        return True


# mariadb-upgrade hands the password it reads on to the clients it runs, and its
# quoting loses a ' or a \ (MariaDB 11.8, measured: "Access denied" with such a
# password, none without). Its step comes after the new server runs, so such a
# password is refused before anything changes.
MARIADB_UPGRADE_UNSAFE = ("'", "\\")


def _check_mariadb_upgrade_password(site: Site, decision: Decision) -> None:
    if not any(service == "mariadb" for service, _, _ in decision.moves):
        return
    password = site.passwords.get("database_password", "")
    if any(ch in password for ch in MARIADB_UPGRADE_UNSAFE):
        raise ConfigError("database_password holds a ' or a \\, which mariadb-upgrade (MariaDB's own upgrade "
                          "step) cannot pass on to the clients it runs: give it another value, `dockyard deploy` "
                          "(the database takes the new password), then upgrade. Nothing was changed.",
                          path=site.config_dir / PASSWORDS_FILE, key="database_password")


def upgrade(config_dir: Path, *, services: set[str] | None = None, dry_run: bool = False, say: Say = print,
            engine: Engine | None = None, services_root: Path | None = None,
            probe: bool = True, serial: int | None = None) -> RunResult | UpgradePlan:
    """Move the running site to the releases globals.yml names. Returns the plan on
    a dry run (nothing done), else the run's result.

    With ``probe`` (and the ``clouds.yaml`` post-deploy wrote), every API is
    polled while the upgrade runs; the figures are kept in
    ``<state_dir>/upgrade-availability.json`` as the run goes (partial until it
    ends: a killed run leaves them), a resumed upgrade's added to those of its
    runs before (``ops/availability.py``), and printed at the end.

    ``serial``: every service's containers move N hosts at a time, each batch
    healthy before the next (else as each service's catalogue entry says)."""
    site, _ = api.load(Path(config_dir), services_root, need_passwords=False)
    with SiteLock(site.state_dir):
        prepared, upgrade_plan, decision, observed = plan_upgrade(config_dir, services=services, engine=engine,
                                                                  services_root=services_root, serial=serial)
        site = prepared.site
        if not upgrade_plan.moves:
            say("nothing to upgrade: every service runs the release globals.yml names"
                + (f" ({', '.join(f'{s} on {r}' for s, r in sorted(upgrade_plan.stays.items()))})"
                   if upgrade_plan.stays else ""))
            return upgrade_plan
        if dry_run:
            say(upgrade_plan.render())
            say(f"{upgrade_plan.plan.changes()} changes planned (dry run: nothing done)")
            return upgrade_plan
        api._check_ports(prepared, upgrade_plan.plan)
        with Timeline(site.state_dir) as timeline:
            if not decision.resuming:
                # The first run's id names the upgrade: the probe's figures of its runs go together.
                write_record(site.state_dir, {
                    "from": {s: source for s, source, _ in decision.moves},
                    "to": {s: target for s, _, target in decision.moves}, "complete": False,
                    "started_by": timeline.run_id})
            else:
                say("resuming the upgrade a previous run started")
            for move in upgrade_plan.moves:
                say(f"  {move.line()}")
            say(f"dockyard: upgrade run {timeline.run_id} on {config_dir}")
            clouds = Path(config_dir) / "clouds.yaml"
            watcher, figures = None, None
            if probe and clouds.exists():
                upgrade_id = timeline.run_id if not decision.resuming else str(decision.record.get("started_by", ""))
                figures = AvailabilityRecord.open(site.state_dir, upgrade_id, timeline.run_id,
                                                  resuming=decision.resuming, say=say)
                watcher = AvailabilityProbe(cloud_auth(clouds), on_figures=figures.write)
                watcher.start()
            try:
                volumes_record.add_volumes(site.state_dir, [a.target for a in upgrade_plan.plan.actions
                                                            if a.kind == ActionKind.CREATE_VOLUME])
                result = execute(upgrade_plan.plan, prepared.engines(), parallelism=site.globals.parallelism,
                                 timeline=timeline, jobs_record=JobsRecord(site.state_dir),
                                 progress=lambda o: say(o.line()))
            finally:
                if watcher is not None and figures is not None:
                    _report_availability(watcher, figures, site.state_dir, say)
        if result.ok:
            record = load_record(site.state_dir)
            write_record(site.state_dir, {**record, "complete": True})
        say(result.summary())
        return result
