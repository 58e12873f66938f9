"""``dockyard registry up|down|status``: the site's registry on the deployment host.

It is a service of the catalogue (``services/registry.yml``, image
``images/registry``) planned and applied like any deploy: a wanted state of one
host, the deployment host's own engine, observed, planned (make_plan) and
executed. Its containers are owned apart from the site's (their site label is
``registry:<site>``): a deploy, stop or destroy of the site never touches them,
and ``registry up`` never touches the site's.
"""

from __future__ import annotations

import errno as errno_mod
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.driver import Engine
from dockyard.errors import ConfigError, EngineError

from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.execute.executor import RunResult, execute
from dockyard.deploy.execute.jobs_record import JobsRecord
from dockyard.deploy.execute.lock import SiteLock
from dockyard.deploy.execute.timeline import Timeline
from dockyard.deploy.ops.prechecks import bind_error
from dockyard.deploy.plan.observe import observe
from dockyard.deploy.plan.planner import ActionKind, Plan, make_plan
from dockyard.deploy.site.loader import REQUIRED_GROUPS, Host, Inventory, Site
from dockyard.deploy.wanted.builder import site_id, wanted_state
from dockyard.deploy.wanted.catalogue import REGISTRY_SERVICE, ServiceCatalogue, unit_name
from dockyard.deploy.wanted.model import WantedState
from dockyard.labels import LABEL_SITE

from . import tls as tls_mod
from .client import RegistryClient

DEPLOY_HOST = "deploy"            # the deployment host, as the registry's plan names it


@dataclass(frozen=True)
class Where:
    """Where the site's registry is: its address and port, its TLS files."""

    address: str                  # IPv4 address it binds
    port: int
    tls: tls_mod.RegistryTls

    @property
    def url(self) -> str:
        """``host:port``, as engines name it in references."""
        return f"{self.address}:{self.port}"

    def client(self) -> RegistryClient:
        return RegistryClient(self.url, self.tls.ca if self.tls.ca.exists() else None)


def where(site: Site) -> Where:
    """The site's registry; a ConfigError (exit 2) when globals.yml names none."""
    settings = site.globals.registry
    if settings is None:
        raise ConfigError("the site has no registry: add `registry: {}` (the internal address, port 4000) or "
                          "`registry: {address: ..., port: ...}`", path=Path(site.config_dir) / "globals.yml",
                          key="registry")
    return Where(settings.address or site.globals.internal_address, settings.port, tls_mod.tls_of(site.state_dir))


def _bind_hint(site: Site, err: int) -> str:
    """What to do when the registry's address is not this machine's: it runs on
    the deployment host, and defaults to internal_address, which on a site of
    several hosts is a control host's (perhaps another machine)."""
    if err != errno_mod.EADDRNOTAVAIL:
        return ""
    default = "" if site.globals.registry is None or site.globals.registry.address else \
        " (by default the internal address)"
    return (f"; the address{default} is not this machine's, and the registry runs here: set registry.address in "
            f"globals.yml to an address of this machine that every host reaches")


def owner(site: Site) -> str:
    """The site label of the registry's containers: not the site's own."""
    return f"{REGISTRY_SERVICE}:{site_id(site)}"


def state_dir(site: Site) -> Path:
    """The registry's runs (timeline), apart from the site's."""
    return Path(site.state_dir) / REGISTRY_SERVICE


def registry_site(site: Site, at: Where) -> Site:
    """The site as the registry's plan sees it: one host, the deployment host at
    the registry's address, on the local engine; one service, the registry."""
    host = Host(DEPLOY_HOST, at.address)
    inventory = Inventory({DEPLOY_HOST: host}, {group: [DEPLOY_HOST] for group in REQUIRED_GROUPS})
    g = site.globals.model_copy(update={"enabled_services": [REGISTRY_SERVICE], "services": {},
                                        "service_releases": {}})
    return Site(site.config_dir, g, inventory, site.passwords)


def container_name(catalogue: ServiceCatalogue) -> str:
    return unit_name(next(iter(catalogue.services[REGISTRY_SERVICE].spec.containers)))


def wanted(site: Site, catalogue: ServiceCatalogue, engine: Engine | None, at: Where,
           resolve_images: bool = True) -> WantedState:
    """The registry's wanted state (its TLS files must exist: :func:`tls.ensure`)."""
    variables = {"registry": {"port": at.port, "certificate": at.tls.cert.read_text(),
                              "key": at.tls.key.read_text()}}
    engines = SiteEngines.single(engine) if engine is not None else None
    result = wanted_state(registry_site(site, at), catalogue, engines, resolve_images=resolve_images,
                          extra_variables=variables, site_label=owner(site))
    if result.missing_images:
        raise ConfigError(f"the registry's image is not built: dockyard build '^{result.missing_images[0]}$'",
                          key="images")
    return result.state


def plan(site: Site, catalogue: ServiceCatalogue, engine: Engine, at: Where) -> tuple[WantedState, Plan]:
    """What ``registry up`` does: the registry's own plan. Only containers owned
    by the site's registry are its to change: the engine's others (the site's,
    unlabelled ones) are not even observed."""
    state = wanted(site, catalogue, engine, at)
    observed = observe(engine, state, state_dir(site), owner(site), hosts=[DEPLOY_HOST])
    observed.containers = {k: c for k, c in observed.containers.items() if c.labels.get(LABEL_SITE) == owner(site)}
    name = container_name(catalogue)
    if name in observed.foreign:
        raise ConfigError(f"container {name} on this machine's engine belongs to another site's registry "
                          f"({observed.foreign[name]}); one engine runs one registry", key="registry")
    return state, make_plan(state, observed)


def up(site: Site, catalogue: ServiceCatalogue, engine: Engine, say=print, certs_d: Path = tls_mod.CERTS_D,
       dry_run: bool = False) -> RunResult | Plan:
    """Converge the registry: its certificate, its container (healthy), this
    machine's engine trusting it. A second run changes nothing."""
    at = where(site)
    engine.ping()
    if engine.image(site.globals.image_ref(REGISTRY_SERVICE)) is None:
        raise ConfigError(f"the registry's image is not built: dockyard build '^{REGISTRY_SERVICE}$'", key="images")
    if dry_run and not at.tls.cert.exists():
        say(f"would make the registry's CA and certificate in {at.tls.folder}")
        return Plan()
    with SiteLock(site.state_dir):
        if tls_mod.ensure(at.tls, at.address):
            say(f"  made the registry's certificate for {at.address} ({at.tls.folder})")
        state, actions = plan(site, catalogue, engine, at)
        if dry_run:
            say(actions.render())
            return actions
        if any(a.kind == ActionKind.CREATE for a in actions.actions):
            errno = bind_error(at.address, at.port)
            if errno:
                raise ConfigError(f"the registry cannot listen on {at.url}: {os.strerror(errno)}"
                                  f"{_bind_hint(site, errno)}", key="registry")
        with Timeline(state_dir(site)) as timeline:
            result = execute(actions, engine, parallelism=2, timeline=timeline,
                             jobs_record=JobsRecord(state_dir(site)), progress=lambda o: say(o.line()))
    if result.ok:
        if tls_mod.trust(at.tls, at.url, certs_d):
            say(f"  this machine's engine trusts it: {tls_mod.trust_path(at.url, certs_d)}")
        say(f"registry {at.url} up ({result.changed} changes); other hosts' engines trust it with "
            f"{at.tls.ca} as {tls_mod.trust_path(at.url, certs_d)}")
    else:
        say(f"registry {at.url}: {result.summary()}")
    return result


def down(site: Site, catalogue: ServiceCatalogue, engine: Engine, say=print, purge: bool = False,
         certs_d: Path = tls_mod.CERTS_D) -> int:
    """Remove the registry's container; with ``purge`` its storage (every pushed
    image), its certificates and this machine's trust in it too. Returns how
    many things were removed."""
    at = where(site)
    removed = 0
    name = container_name(catalogue)
    with SiteLock(site.state_dir):
        current = engine.container(name)
        if current is not None:
            if current.labels.get(LABEL_SITE) != owner(site):
                raise ConfigError(f"container {name} is not this site's registry "
                                  f"({current.labels.get(LABEL_SITE) or 'no owner label'}); left alone", key="registry")
            if current.running:
                engine.stop(name)
            engine.remove(name)
            say(f"  removed container {name}")
            removed += 1
        if purge:
            volumes = catalogue.services[REGISTRY_SERVICE].spec.volumes
            for v in engine.volumes():
                if v.name in volumes:
                    engine.remove_volume(v.name)
                    say(f"  removed volume {v.name}")
                    removed += 1
            if tls_mod.untrust(at.url, certs_d):
                say(f"  removed {tls_mod.trust_path(at.url, certs_d)}")
                removed += 1
            folder = at.tls.folder.parent
            if folder.exists():
                shutil.rmtree(folder)
                say(f"  removed {folder}")
                removed += 1
    say(f"registry {at.url}: {removed} removed")
    return removed


@dataclass
class Status:
    url: str
    container: str
    state: str                    # running | exited | ... | absent
    health: str | None
    answers: str                  # "yes" or why not
    ca: Path


def status(site: Site, catalogue: ServiceCatalogue, engine: Engine) -> Status:
    at = where(site)
    name = container_name(catalogue)
    current = engine.container(name)
    try:
        at.client().ping()
        answers = "yes"
    except EngineError as exc:
        answers = str(exc)
    return Status(at.url, name, current.status if current else "absent", current.health if current else None,
                  answers, at.tls.ca)
