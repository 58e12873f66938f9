"""The library API behind the deploy commands. The CLI only parses and prints.

Every command validates everything it needs (the site, the catalogue, every
rendered file, the images) before it takes the site's lock and acts, so bad input
changes nothing: no container, no volume, no file.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import yaml

from dockyard.engine import connect
from dockyard.engine.driver import Engine
from dockyard.errors import ConfigError, DockyardError, EngineUnavailable
from dockyard.releases import load_releases

from dockyard.deploy.ops import demo as demo_steps
from dockyard.deploy.ops import fernet_rotation, hostnet, postdeploy
from dockyard.deploy.execute import volumes_record
from dockyard.deploy.wanted.catalogue import (REGISTRY_SERVICE, TOOLBOX_IMAGE, ServiceCatalogue, load_services,
                                              unit_name)
from dockyard.deploy.ops.compose import export_compose as compose_text
from dockyard.deploy.engines import SiteEngines, connect_site
from dockyard.deploy.execute.executor import RunResult, execute
from .files import write_atomic
from dockyard.deploy.site.hostfacts import HostFacts, probe as probe_host
from dockyard.deploy.execute.jobs_record import JobsRecord
from dockyard.deploy.execute.lock import SiteLock
from dockyard.deploy.wanted.model import WantedState, unit_key
from dockyard.deploy.plan.observe import ObservedState, SiteObjects, observe, observe_site
from dockyard.deploy.plan.planner import ActionKind, Plan, make_plan
from dockyard.deploy.plan.teardown import VolumeOwnership, make_destroy_plan, make_stop_plan
from dockyard.deploy.ops.prechecks import Check, bind_error, run_prechecks
from dockyard.deploy.site.passwords import generate_passwords, make_private
from dockyard.deploy.site.loader import Site, load_site, write_defaults
from dockyard.deploy.ops.status import StatusRow, status as status_of
from dockyard.deploy.execute.timeline import Timeline
from dockyard.deploy.wanted.builder import one_per_engine, site_id, wanted_state
from dockyard.registry.client import ImageSource

if TYPE_CHECKING:
    from rich.console import Console

Say = Callable[[str], None]


@dataclass
class Prepared:
    """Everything a command needs, all of it validated."""

    site: Site
    catalogue: ServiceCatalogue
    engine: SiteEngines | None          # every host's engine (None when images are not resolved)
    wanted: WantedState
    warnings: list[str]
    unreachable: dict[str, str] = field(default_factory=dict)   # host -> why its engine did not answer

    def engines(self) -> SiteEngines:
        """The engines of a command that resolved images (and so connected)."""
        if self.engine is None:
            raise ValueError("prepared with resolve_images=False: no engine was connected")
        return self.engine


# -- loading and validating ----------------------------------------------------------

def load(config_dir: Path, services_root: Path | None = None, *, need_passwords: bool = True
         ) -> tuple[Site, ServiceCatalogue]:
    """The catalogue and the site, validated; the passwords of every enabled
    service (and its dependencies) must be present unless ``need_passwords`` is off."""
    catalogue = load_services(services_root)
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError("configuration folder not found (run `dockyard up`, or create it with a globals.yml)",
                          path=config_dir)
    known = set(catalogue.services)
    if not need_passwords:
        site = load_site(config_dir, known, [])
        catalogue.check_options(site.globals.services, config_dir / "globals.yml")
        return site, catalogue
    # Which passwords are required depends on which services are enabled: read
    # the site once without, then with the full list.
    site = load_site(config_dir, known, [])
    catalogue.check_options(site.globals.services, config_dir / "globals.yml")
    try:
        enabled = catalogue.closure(site.globals.enabled_services)
    except ConfigError as exc:
        raise ConfigError(exc.detail, path=config_dir / "globals.yml", key=exc.key) from None
    if REGISTRY_SERVICE in enabled:
        raise ConfigError(f"{REGISTRY_SERVICE!r} runs on the deployment host through `dockyard registry up`, not as a "
                          f"service of the site: remove it, and set `registry:` instead",
                          path=config_dir / "globals.yml", key="enabled_services")
    return load_site(config_dir, known, catalogue.required_passwords(enabled)), catalogue


def host_facts(site: Site) -> dict[str, HostFacts]:
    """What each host can do (datapath, virt type). A host on the local engine
    is this machine, probed once; a remote host is not probed from here, and
    gets the choices that work anywhere."""
    local = [name for name, host in site.inventory.hosts.items() if not host.remote]
    if not local:
        return {}
    facts = probe_host()
    return {name: facts for name in local}


def site_engines(site: Site, engine: Engine | SiteEngines | None = None) -> tuple[SiteEngines, dict[str, str]]:
    """Every host's engine, and the hosts whose engines do not answer (host ->
    why). When none answers the command cannot do anything: exit 4."""
    if engine is None and any(not h.engine for h in site.inventory.hosts.values()):
        engine = connect(site.globals.engine)          # the local engine, for the hosts that name none
    engines = connect_site(site, engine)
    hosts = list(site.inventory.hosts)
    unreachable = engines.unreachable(hosts)
    if unreachable and len(unreachable) == len(hosts):
        if len(hosts) == 1:
            engines.of(hosts[0]).ping()                 # again, for the engine's own words (EngineUnavailable)
            raise EngineUnavailable(f"cannot reach the container engine: {unreachable[hosts[0]]}")
        raise EngineUnavailable("no engine of the site answers: " + "; ".join(
            f"host {h} ({engines.url(h)}): {why}" for h, why in unreachable.items()))
    return engines, unreachable


def engine_for(site: Site, engine: Engine | None = None) -> Engine:
    """The given engine, or a connection to the site's; reachable (else exit 4)."""
    engine = engine or connect(site.globals.engine)
    engine.ping()
    return engine


def site_registry(site: Site, registry: ImageSource | None = None) -> ImageSource | None:
    """The site's registry (``registry:`` in globals.yml), or None; ``registry``
    (tests) stands for it."""
    if site.globals.registry is None:
        return None
    if registry is not None:
        return registry
    from dockyard.registry import service

    return service.where(site).client()


def prepare(config_dir: Path, engine: Engine | SiteEngines | None = None, services_root: Path | None = None, *,
            resolve_images: bool = True, allow_missing_images: bool = False,
            registry: ImageSource | None = None) -> Prepared:
    """Load and render everything, resolve every image: all before any action.
    A missing image is an error unless ``allow_missing_images`` (read-only uses).
    With a registry, images are resolved there: what every host must hold."""
    site, catalogue = load(config_dir, services_root)
    engines: SiteEngines | None = None
    unreachable: dict[str, str] = {}
    if resolve_images:
        engines, unreachable = site_engines(site, engine)
    source = site_registry(site, registry) if resolve_images else None
    wanted = wanted_state(site, catalogue, engines, resolve_images=resolve_images, facts=host_facts(site),
                          unreachable=set(unreachable), registry=source)
    missing = wanted.missing_images
    if missing and source is not None and not allow_missing_images:
        raise ConfigError(f"images not in the registry {source.address}: {', '.join(missing)}. Push them with: "
                          f"dockyard build --push " + " ".join(f"'^{re.escape(m)}$'" for m in missing), key="images")
    if wanted.stale and not allow_missing_images:
        raise ConfigError("this machine's engine holds other builds than the registry of: "
                          f"{', '.join(sorted(wanted.stale))} (built after their last push). Push them first: "
                          "dockyard build --push " + " ".join(f"'^{re.escape(m)}$'" for m in sorted(wanted.stale)),
                          key="images")
    if missing and not allow_missing_images:
        remote = {h: images for h, images in wanted.missing_on.items() if site.inventory.hosts.get(h, None)
                  and site.inventory.hosts[h].remote}
        if remote:
            raise ConfigError("images missing on remote hosts' engines: " + "; ".join(
                f"host {h}: {', '.join(images)}" for h, images in remote.items())
                + ". Let a registry serve them (`registry:` in globals.yml, `dockyard registry up`, "
                "`dockyard build --push`), or copy them there (docker save | docker load)", key="images")
        release = site.globals.site_release
        option = f" --release {release}" if release != load_releases().current else ""
        raise ConfigError(f"images not built: {', '.join(missing)}. Build them with: dockyard build{option} "
                          + " ".join(f"'^{re.escape(m)}$'" for m in missing), key="images")
    warnings = [f"warning: {path} is merged into no generated file (a misspelt service, component or host?)"
                for path in wanted.unused_overrides]
    warnings += [f"warning: {path} is ignored: overrides are .conf files (did you mean "
                 f"{path.name.split('.')[0]}.conf?)" for path in wanted.ignored_overrides]
    if engines is not None:
        warnings += [f"warning: host {h}: its engine ({engines.url(h)}) does not answer: {why}; its work fails "
                     f"this run, the other hosts' goes on" for h, why in unreachable.items()]
    return Prepared(site, catalogue, engines, wanted.state, warnings, unreachable)


def _check_services(prepared: Prepared, services: set[str] | None) -> None:
    if not services:
        return
    deployed = prepared.wanted.services()
    for name in sorted(services):
        if name not in prepared.catalogue.services:
            raise ConfigError(f"unknown service {name!r} (known: {', '.join(sorted(prepared.catalogue.services))})",
                              key="--services")
        if name not in deployed:
            raise ConfigError(f"service {name!r} is not enabled in globals.yml", key="--services")


def _check_foreign(prepared: Prepared, observed: ObservedState) -> None:
    """Another site's container of the same name is never touched (exit 2)."""
    multi = observed.multi_host
    wanted = {unit_key(u.name, u.host, multi) for u in prepared.wanted.units()}
    for key in sorted(wanted & set(observed.foreign)):
        raise ConfigError(f"container {key} belongs to another dockyard site ({observed.foreign[key]}); one "
                          f"engine runs one site", path=prepared.site.config_dir)


def _check_releases(prepared: Prepared, observed: ObservedState, services: set[str] | None) -> None:
    """A deploy never moves a running service to another release (exit 2): that
    is `dockyard upgrade`'s work, with the services' checks and database steps."""
    from dockyard.deploy.plan.upgrade import release_changes
    from dockyard.releases import load_releases

    g = prepared.site.globals
    wanted = {s: g.service_release(s) for s in prepared.wanted.services()}
    changes = release_changes(observed, wanted, load_releases(), services)
    if changes:
        listed = ", ".join(f"{s} runs {now}, {then} is wanted" for s, (now, then) in changes.items())
        raise ConfigError(f"{listed}: moving running services to another release is `dockyard upgrade` (checks and "
                          f"database steps in order, docs/upgrades.md); run it, or set the release back",
                          path=prepared.site.config_dir / "globals.yml", key="release")


def _check_ports(prepared: Prepared, plan: Plan) -> None:
    """A container about to be created must find its ports free (exit 2). One
    being recreated frees its own ports first, so it is not checked."""
    creating = {(a.target, a.host) for a in plan.actions if a.kind == ActionKind.CREATE}
    for c in prepared.wanted.containers:
        # A remote host's ports cannot be probed from here; its engine reports a clash.
        if (c.name, c.host) not in creating or c.remote:
            continue
        for port in c.ports:
            if bind_error(c.address, port):
                service = prepared.catalogue.services[c.service]
                raise ConfigError(f"port {port} on {c.address} is already in use, and {c.name} needs it: stop "
                                  f"what holds it, or change internal_address", path=service.path,
                                  key=f"containers.{c.name.replace('_', '-')}.ports")


# -- deploy ---------------------------------------------------------------------------

def _check_limit(prepared: Prepared, limit: set[str] | None) -> None:
    hosts = prepared.site.inventory.hosts
    for name in sorted(limit or ()):
        if name not in hosts:
            raise ConfigError(f"unknown host {name!r} (hosts: {', '.join(hosts)})", key="--limit")


def _recreate_names(prepared: Prepared, names: set[str] | None) -> set[str]:
    """``--recreate``'s names as the planner takes them: a service's name, or a
    container's engine name (``nova-libvirt`` and ``nova_libvirt`` are both
    taken for the container, when no service has that name)."""
    services = prepared.wanted.services()
    containers = {c.name for c in prepared.wanted.containers}
    out: set[str] = set()
    for name in sorted(names or ()):
        if name in services:
            out.add(name)
        elif unit_name(name) in containers:
            out.add(unit_name(name))
        else:
            raise ConfigError(f"{name!r} is neither an enabled service nor a container of one", key="--recreate")
    return out


def deploy(config_dir: Path, *, services: set[str] | None = None, dry_run: bool = False, say: Say = print,
           engine: Engine | SiteEngines | None = None, services_root: Path | None = None,
           limit: set[str] | None = None, serial: int | None = None, registry: ImageSource | None = None,
           only_pulls: bool = False, recreate: set[str] | None = None) -> RunResult | Plan:
    """Converge the site: only the difference is done, in dependency order.
    ``limit``: only these hosts' work (the others are assumed deployed);
    ``serial``: every service changes on that many hosts at a time;
    ``only_pulls``: only the images (``dockyard pull``);
    ``recreate``: services or containers recreated on a rebuilt image even
    where the packages that matter to them are unchanged (otherwise kept running).

    Returns the plan on a dry run (nothing done), else the run's result.
    """
    prepared = prepare(Path(config_dir), engine, services_root, registry=registry)
    if only_pulls and prepared.site.globals.registry is None:
        raise ConfigError("the site has no registry to pull from: set `registry:` (dockyard registry up)",
                          path=Path(config_dir) / "globals.yml", key="registry")
    _check_services(prepared, services)
    _check_limit(prepared, limit)
    forced = _recreate_names(prepared, recreate)
    one_per_engine(prepared.site, prepared.wanted)
    for warning in prepared.warnings:
        say(warning)
    site = prepared.site
    # A dry run writes nothing, not even the lock (nor the state folder it is in).
    with nullcontext() if dry_run else SiteLock(site.state_dir):
        observed = observe(prepared.engines(), prepared.wanted, site.state_dir, site_id(site),
                           hosts=list(site.inventory.hosts), unreachable=prepared.unreachable)
        _check_foreign(prepared, observed)
        _check_releases(prepared, observed, services)
        plan = make_plan(prepared.wanted, observed, only_services=services, only_hosts=limit, serial=serial,
                         recreate=forced)
        if only_pulls:
            plan = Plan([a for a in plan.actions if a.kind in (ActionKind.PULL_IMAGE, ActionKind.REACH_ENGINE)])
        if dry_run:
            say(plan.render())
            say(f"{plan.changes()} changes planned (dry run: nothing done)")
            return plan
        _check_ports(prepared, plan)
        with Timeline(site.state_dir) as timeline:
            say(f"dockyard: run {timeline.run_id} on {config_dir}")
            for kept in plan.kept:
                say(f"keep {kept.name}: {kept.reason}")
            # Recorded before they are made: a run killed half-way still leaves
            # them known as this site's, for destroy --include-volumes.
            volumes_record.add_volumes(site.state_dir,
                                       [a.target for a in plan.actions if a.kind == ActionKind.CREATE_VOLUME])
            result = execute(plan, prepared.engines(), parallelism=site.globals.parallelism, timeline=timeline,
                             jobs_record=JobsRecord(site.state_dir), progress=lambda o: say(o.line()))
        if observed.multi_host and result.outcomes:
            for line in result.host_summaries():
                say(line)
        if result.ok and "keystone" in prepared.wanted.services() and "keystone_admin_password" in site.passwords:
            # The admin's client files follow its password once keystone has it.
            for path in postdeploy.refresh_client_config(site):
                say(f"rewrote {path} (its admin password is the site's again)")
        say(result.summary())
        return result


# Reconfiguring is deploying: only what changed is recreated.
reconfigure = deploy


def pull(config_dir: Path, **options) -> RunResult | Plan:
    """Only the images: every host pulls, from the site's registry, by digest,
    what its units need and it lacks; all hosts at once."""
    return deploy(config_dir, only_pulls=True, **options)


# -- status, stop, destroy ------------------------------------------------------------

def status(config_dir: Path, engine: Engine | None = None, services_root: Path | None = None) -> list[StatusRow]:
    # Status reports on a site whose images are not all built too: those
    # containers are simply not up to date.
    prepared = prepare(Path(config_dir), engine, services_root, allow_missing_images=True)
    return status_of(prepared.engine, prepared.wanted, site_id(prepared.site),
                     hosts=list(prepared.site.inventory.hosts), unreachable=prepared.unreachable)


def status_notes(config_dir: Path, services_root: Path | None = None) -> list[str]:
    """The lines ``dockyard status`` prints under its table: when keystone's
    fernet keys last rotated."""
    site, catalogue = load(Path(config_dir), services_root, need_passwords=False)
    line = fernet_rotation.status_line(site, catalogue)
    return [line] if line else []


def rotate_fernet(config_dir: Path, engine: Engine | SiteEngines | None = None, force: bool = False,
                  services_root: Path | None = None) -> fernet_rotation.Rotation:
    """One rotation of keystone's fernet keys (fernet-keys.yml), under the site's
    lock, refused while the last one is not deployed (unless ``force``); the
    next deploy carries it."""
    site, catalogue = load(Path(config_dir), services_root)
    fernet_rotation.keystone_options(site, catalogue)          # no keystone: refused before any engine is asked
    engines = None if force else site_engines(site, engine)[0]
    with SiteLock(site.state_dir):
        return fernet_rotation.rotate(site, catalogue, engines, site_id(site), force)


def service_depends(catalogue: ServiceCatalogue) -> dict[str, tuple[str, ...]]:
    """Service -> the services it depends on: the order stop and destroy reverse."""
    return {name: tuple(service.spec.depends_on) for name, service in catalogue.services.items()}


def _teardown(config_dir: Path, command: str, dry_run: bool, say: Say, engine: Engine | SiteEngines | None,
              services_root: Path | None, make: Callable[[Site, ServiceCatalogue, SiteObjects], Plan]
              ) -> tuple[RunResult | Plan, Plan]:
    """Observe the site's objects on every engine, plan with ``make``, then
    print the plan (dry run) or apply it as a deploy is applied. Returns the
    result (the plan on a dry run) and the plan."""
    site, catalogue = load(Path(config_dir), services_root, need_passwords=False)
    engines, unreachable = site_engines(site, engine)
    for host, why in unreachable.items():
        say(f"warning: host {host}: its engine ({engines.url(host)}) does not answer: {why}; nothing is "
            f"{command}ed there this run, the other hosts are")
    # A dry run writes nothing, not even the lock (nor the state folder it is in).
    with nullcontext() if dry_run else SiteLock(site.state_dir):
        objects = observe_site(engines, site_id(site), list(site.inventory.hosts), unreachable,
                               images=(hostnet.host_network(site).image,))
        plan = make(site, catalogue, objects)
        if dry_run:
            say(plan.render())
            say(f"{plan.changes()} changes planned (dry run: nothing done)")
            return plan, plan
        with Timeline(site.state_dir) as timeline:
            say(f"dockyard: run {timeline.run_id} on {config_dir}")
            result = execute(plan, engines, parallelism=site.globals.parallelism, timeline=timeline,
                             jobs_record=JobsRecord(site.state_dir), progress=lambda o: say(o.line()),
                             command=command)
        if objects.multi_host and result.outcomes:
            for line in result.host_summaries():
                say(line)
        say(result.summary())
        return result, plan


def _done(result: RunResult, *kinds: ActionKind) -> int:
    return sum(1 for o in result.outcomes if o.result == "ok" and o.action.kind in kinds)


def stop(config_dir: Path, *, dry_run: bool = False, say: Say = print, engine: Engine | SiteEngines | None = None,
         services_root: Path | None = None) -> RunResult | Plan:
    """Stop every container of the site, on every host, dependents first;
    volumes and configuration stay. Returns the plan on a dry run (nothing
    done), else the run's result (failed where a host's engine did not answer)."""
    result, _ = _teardown(config_dir, "stop", dry_run, say, engine, services_root,
                          lambda site, catalogue, objects: make_stop_plan(objects, service_depends(catalogue)))
    if isinstance(result, RunResult):
        say(f"{_done(result, ActionKind.STOP)} containers stopped")
    return result


def destroy(config_dir: Path, include_volumes: bool, *, dry_run: bool = False, say: Say = print,
            engine: Engine | SiteEngines | None = None, services_root: Path | None = None) -> RunResult | Plan:
    """Remove every container of the site, on every host, dependents first, and
    what the data plane left on the hosts' networks; with ``include_volumes`` its
    named volumes too (all data), and the records of what they held, so every
    bootstrap runs again (kept while a host does not answer: its volumes stay)."""

    def make(site: Site, catalogue: ServiceCatalogue, objects: SiteObjects) -> Plan:
        enabled = catalogue.closure(site.globals.enabled_services)
        used = frozenset(v for name in enabled for v in catalogue.services[name].spec.volumes)
        ownership = VolumeOwnership(site_id(site), frozenset(volumes_record.load_volumes(site.state_dir)), used)
        network = {"openvswitch", "neutron-agents"} & set(enabled)
        return make_destroy_plan(objects, service_depends(catalogue), include_volumes=include_volumes,
                                 ownership=ownership, host_network=hostnet.host_network(site) if network else None,
                                 state_dir=site.state_dir)

    result, _ = _teardown(config_dir, "destroy", dry_run, say, engine, services_root, make)
    if isinstance(result, RunResult):
        say(f"{_done(result, ActionKind.REMOVE, ActionKind.REMOVE_VOLUME)} removed")
    return result


# -- the rest -------------------------------------------------------------------------

def demo_engines(site: Site, engine: Engine | SiteEngines | None = None) -> tuple[Engine, Engine]:
    """The demo's two engines, each answering (else exit 4): this machine's,
    which builds and exports the guest image, and the first network host's,
    which wires the client namespace into its external bridge (the same engine
    on the all-in-one). ``engine``: the local engine, or every host's (tests)."""
    local = engine.default if isinstance(engine, SiteEngines) else engine
    local = engine_for(site, local)
    host = demo_steps.external_host(site)
    wiring = connect_site(site, engine if isinstance(engine, SiteEngines) else local).of(host.name)
    if wiring is not local:
        wiring.ping()
    return local, wiring


def demo(config_dir: Path, say: Say = print, engine: Engine | SiteEngines | None = None,
         services_root: Path | None = None, threads: int | None = None) -> demo_steps.DemoResult:
    """First steps on the cloud (dockyard.deploy.ops.demo): guest image, flavors,
    networks, router, security group, keypair, the provider network's far side
    (on the first network host). Idempotent; builds the guest image first when
    it is missing."""
    import openstack

    from dockyard import guestimage

    site, catalogue = load(Path(config_dir), services_root)
    enabled = catalogue.closure(site.globals.enabled_services)
    missing = [s for s in ("nova-compute", "neutron-agents") if s not in enabled]
    if missing:
        raise ConfigError(f"the demo boots servers: enable {' and '.join(missing)} in globals.yml",
                          path=Path(config_dir) / "globals.yml", key="enabled_services")
    engine, wiring = demo_engines(site, engine)
    guest_ref, guest_release = demo_steps.guest_image(site)
    if engine.image(guest_ref) is None:
        say(f"building the guest image ({guest_ref})")
        if not build_images(site, engine, [guestimage.GUEST_IMAGE], say, threads, release=guest_release):
            raise DockyardError("the guest image did not build; see the build log above")
    disk = guestimage.export_guest_disk(engine, guest_ref, site.state_dir / "guest" / "dockyard-guest.qcow2")
    guest = (disk.path, disk.sha256)
    auth = yaml.safe_load(postdeploy.clouds_yaml(site))["clouds"]["dockyard"]
    conn = openstack.connect(**auth)
    say(f"demo on the cloud at {postdeploy.keystone_url(site)}:")
    result = demo_steps.run(site, conn, wiring, guest, say)
    say(f"{len(result.created)} created, {len(result.present)} already there")
    say("")
    for line in demo_steps.next_steps(site, result):
        say(line)
    return result


def post_deploy(config_dir: Path, services_root: Path | None = None) -> list[Path]:
    """clouds.yaml (cloud ``dockyard``) and admin-openrc.sh in the config folder, 0600."""
    site, _ = load(Path(config_dir), services_root)
    return postdeploy.write_client_config(site)


def genconfig(config_dir: Path, services: set[str] | None = None, services_root: Path | None = None
              ) -> tuple[list[Path], int]:
    """Write the generated configuration files (what the containers bind-mount),
    and nothing else: no container, volume or job is touched. Only files whose
    content or mode differs are rewritten. Returns (written, unchanged count)."""
    prepared = prepare(Path(config_dir), None, services_root, resolve_images=False)
    _check_services(prepared, services)
    written: list[Path] = []
    unchanged = 0
    with SiteLock(prepared.site.state_dir):
        for f in prepared.wanted.files:
            if services and f.service not in services:
                continue
            path = Path(f.path)
            try:
                same = path.read_bytes() == f.content and (path.stat().st_mode & 0o7777) == f.mode
            except OSError:
                same = False
            if same:
                unchanged += 1
                continue
            write_atomic(path, f.content, f.mode)
            written.append(path)
    return written, unchanged


def export_compose(config_dir: Path, engine: Engine | None = None, services_root: Path | None = None) -> str:
    """The site as a docker compose file. Needs no engine: hashes cover image references."""
    prepared = prepare(Path(config_dir), engine, services_root, resolve_images=False)
    return compose_text(prepared.wanted)


def prechecks(config_dir: Path, engine: Engine | None = None, say: Say = print,
              services_root: Path | None = None) -> list[Check]:
    """Is this host ready for the site (or, with no site yet, for the all-in-one defaults)?"""
    checks = run_prechecks(Path(config_dir), engine, services_root)
    for check in checks:
        say(check.line())
    failed = sum(1 for c in checks if c.status == "FAIL")
    say(f"{failed} problems" if failed else "all prechecks passed")
    return checks


def image_releases(site: Site, catalogue: ServiceCatalogue) -> dict[str, str]:
    """Each image the enabled services need -> the release it is wanted at (its
    service's; the toolbox follows the site's)."""
    g = site.globals
    enabled = catalogue.closure(g.enabled_services)
    releases = {image: g.site_release for image in catalogue.images(enabled)}
    for service in enabled:
        for image in catalogue.services[service].images() - {TOOLBOX_IMAGE}:
            releases[image] = g.service_release(service)
    return releases


def images_missing(site: Site, catalogue: ServiceCatalogue, engine: Engine) -> list[str]:
    g = site.globals
    releases = image_releases(site, catalogue)
    return [name for name, release in releases.items()
            if engine.image(g.image_ref(name, g.release_tag(release))) is None]


def build_images(site: Site, engine: Engine, names: list[str], say: Say, threads: int | None = None,
                 work_dir: Path = Path("/var/lib/dockyard/build"), release: str | None = None,
                 live: Console | None = None) -> bool:
    """Build these images (and whatever of their parents is missing) with the
    builder library, for ``release`` (default: the site's); images already
    present are kept as they are. Progress: a line per image finished, and
    with ``live`` (a console on a terminal) a live progress line below them,
    else a progress line every minute, all through ``say``."""
    from dockyard.cli.build import release_config
    from dockyard.image.builder import Builder, BuildOptions
    from dockyard.image.catalogue import load_catalogue
    from dockyard.image.config import load_build_config
    from dockyard.image.progress import BuildProgress, Display
    from dockyard.image.scheduler import DONE, Event
    from dockyard.releases import load_releases

    images = load_catalogue()
    g = site.globals
    release = release or g.site_release
    config = load_build_config(None, set(images.images))
    if release != load_releases().current:
        config = release_config(config, load_releases().get(release))
    config = config.model_copy(
        update={"namespace": g.image_namespace, "tag": g.release_tag(release), "registry": g.image_registry,
                **({"threads": threads} if threads else {})})
    options = BuildOptions(patterns=[f"^{re.escape(n)}$" for n in names], work_dir=work_dir, skip_existing=True)
    builder = Builder(engine, config, images, options)

    # Under a live line, lines print through its console to land above it (click.echo,
    # behind a CLI's ``say``, writes past rich to the terminal, onto the line).
    echo: Say = say if live is None else (lambda text: live.print(text, markup=False, highlight=False))

    def lines(e: Event) -> None:
        if e.kind == DONE and e.outcome is not None:
            echo(f"  image {e.image}: {e.outcome.status}")

    plan = builder.plan()
    display = Display(BuildProgress.of(plan), lines, lambda line: say(f"  {line}"), live=live)
    with display:
        report = builder.run(on_event=display, plan=plan, tick=display.tick)
    if not report.ok:
        say(f"image build failed; the logs are in {options.logs}")
    return report.ok


def up(config_dir: Path, say: Say = print, engine: Engine | None = None, threads: int | None = None,
       services_root: Path | None = None, live: Console | None = None) -> RunResult | None:
    """A fresh machine to a working cloud: defaults, passwords, missing images,
    deploy, client configuration. Returns the deploy's result (None when the
    image build failed). ``live``: a console on a terminal, for the image
    build's live progress line (see :func:`build_images`)."""
    config_dir = Path(config_dir)
    for path in write_defaults(config_dir):
        say(f"wrote {path}")
    catalogue = load_services(services_root)
    old_mode = make_private(config_dir / "passwords.yml")
    if old_mode is not None:
        say(f"{config_dir / 'passwords.yml'} was mode {old_mode:04o} (readable by group or others): now 0600")
    added = generate_passwords(config_dir / "passwords.yml", catalogue.all_passwords())
    if added:
        say(f"{len(added)} passwords generated in {config_dir / 'passwords.yml'}")
    site, catalogue = load(config_dir, services_root)
    engine = engine_for(site, engine)
    missing = images_missing(site, catalogue, engine)
    if missing:
        say(f"building {len(missing)} missing images: {', '.join(missing)}")
        releases = image_releases(site, catalogue)
        for release in dict.fromkeys(releases[name] for name in missing):
            if not build_images(site, engine, [n for n in missing if releases[n] == release], say, threads,
                                release=release, live=live):
                return None
    result = deploy(config_dir, say=say, engine=engine, services_root=services_root)
    if not isinstance(result, RunResult):
        raise TypeError("deploy returned a plan: it was not asked for a dry run")
    if not result.ok:
        return result
    for path in post_deploy(config_dir, services_root):
        say(f"wrote {path}")
    say("")
    say("The cloud is up. Use it with python-openstackclient:")
    say(f"  export OS_CLIENT_CONFIG_FILE={config_dir / 'clouds.yaml'} OS_CLOUD=dockyard")
    say("  openstack catalog list")
    say(f"or: source {config_dir / 'admin-openrc.sh'}")
    if {"nova-compute", "neutron-agents"} <= set(catalogue.closure(site.globals.enabled_services)):
        say(f"First steps (a guest image, networks, a router, a keypair): dockyard demo --config-dir {config_dir}")
    if "horizon" in catalogue.closure(site.globals.enabled_services):
        say(f"Horizon: http://{site.globals.external_address or site.globals.internal_address}/ (user admin, "
            f"password keystone_admin_password in {config_dir / 'passwords.yml'})")
    return result
