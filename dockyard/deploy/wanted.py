"""Site + service catalogue + image ids -> the wanted state.

Renders every config file (Jinja2, then the operator's INI overrides), each
container's and job's ``config.json``, and the container specs with their hash
labels. Pure apart from reading templates and resolving image ids through the
engine; raises ConfigError before anything is changed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from dockyard import __version__
from dockyard.engine.driver import ContainerSpec, Engine, Healthcheck, Mount
from dockyard.errors import ConfigError

from . import ini
from .catalogue import ConfigFile, ContainerDef, JobDef, Service, ServiceCatalogue
from .hashing import digest, files_digest, hash_labels, spec_hashes
from .model import (LABEL_HASH, LABEL_HOST, LABEL_MANAGED, LABEL_SERVICE, LABEL_VERSION, WantedContainer,
                    WantedFile, WantedJob, WantedState, WantedVolume)
from .overrides import find_overrides
from .site import Host, Site

CONFIG_MOUNT = "/var/lib/dockyard/config_files"
TOOLBOX_HOME = "/var/lib/dockyard/home"


def container_name(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class Unit:
    """A container or a job being assembled."""

    name: str
    files: dict[str, bytes]


class WantedBuilder:
    def __init__(self, site: Site, catalogue: ServiceCatalogue, engine: Engine | None):
        self.site = site
        self.catalogue = catalogue
        self.engine = engine
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(catalogue.templates)),
                                      undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self._image_ids: dict[str, str] = {}
        self.missing_images: list[str] = []

    # -- helpers -----------------------------------------------------------------------
    def image_id(self, image: str) -> str:
        ref = self.site.globals.image_ref(image)
        if ref not in self._image_ids:
            info = self.engine.image(ref) if self.engine else None
            if info is None:
                self.missing_images.append(image)
                self._image_ids[ref] = "missing:" + ref
            else:
                self._image_ids[ref] = info.id
        return self._image_ids[ref]

    def variables(self, service: Service, host: Host) -> dict:
        g = self.site.globals
        return {
            "service": service.name,
            "host": host,
            "address": host.address,
            "internal_address": g.internal_address,
            "external_address": self.site.external_address,
            "region": g.region,
            "passwords": self.site.passwords,
            "options": g.services.get(service.name, {}),
            "inventory": self.site.inventory,
            "globals": g,
            "enabled": g.enabled_services,
            "database_address": self.site.inventory.hosts_in("control")[0].address,
        }

    def render(self, template: str, variables: dict, where: Path, key: str) -> str:
        try:
            return self.env.get_template(template).render(**variables)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"rendering {template}: {exc}", path=where, key=key) from None

    def render_string(self, text: str, variables: dict, where: Path, key: str) -> str:
        try:
            return self.env.from_string(text).render(**variables)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"rendering {text!r}: {exc}", path=where, key=key) from None

    def config_file(self, service: Service, fname: str, cfile: ConfigFile, unit: str, host: Host,
                    variables: dict) -> bytes:
        text = self.render(cfile.template, variables, service.path, f"config.{fname}")
        if cfile.override:
            paths = find_overrides(self.site.config_dir, cfile.override, unit.replace("_", "-"), host.name)
            overrides = []
            for path in paths:
                overrides.append((str(path), path.read_text()))
            if overrides:
                text = ini.merge(text, *overrides, base_name=cfile.template)
        return text.encode()

    def config_json(self, command: str | None, entries: list[tuple[str, ConfigFile]], user: str | None) -> bytes:
        doc: dict = {}
        if command:
            doc["command"] = command
        if user:
            doc["user"] = user
        doc["config_files"] = [
            {"source": f"{CONFIG_MOUNT}/{fname}", "dest": c.dest, "owner": c.owner, "perm": c.perm}
            for fname, c in entries
        ]
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def mounts(self, unit: str, volumes: list[str], service: Service, key: str, variables: dict) -> tuple[Mount, ...]:
        mounts = [Mount(str(self.site.generated_dir / unit), CONFIG_MOUNT, read_only=True)]
        for i, entry in enumerate(volumes):
            entry = self.render_string(entry, variables, service.path, f"{key}.volumes[{i}]")
            parts = entry.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ConfigError(f"expected 'volume:/path[:ro]', got {entry!r}", path=service.path,
                                  key=f"{key}.volumes[{i}]")
            mounts.append(Mount(parts[0], parts[1], read_only=len(parts) == 3 and parts[2] == "ro"))
        return tuple(mounts)

    def labels(self, service: str, host: Host) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_SERVICE: service, LABEL_HOST: host.name, LABEL_VERSION: __version__}

    def files_of(self, unit: str, files: dict[str, bytes], service: str, host: Host) -> list[WantedFile]:
        base = self.site.generated_dir / unit
        return [WantedFile(str(base / name), data, host.name, service, 0o600, unit) for name, data in files.items()]

    # -- units --------------------------------------------------------------------------
    def container(self, service: Service, cname: str, c: ContainerDef, host: Host, after: list[str],
                  state: WantedState) -> None:
        name = container_name(cname)
        variables = self.variables(service, host)
        files = {fname: self.config_file(service, fname, service.spec.config[fname], name, host, variables)
                 for fname in c.config}
        command = self.render_string(c.command, variables, service.path, f"containers.{cname}.command")
        entries = [(f, service.spec.config[f]) for f in c.config]
        files["config.json"] = self.config_json(command, entries, c.user)
        env = {"DOCKYARD_CONFIG_STRATEGY": "COPY_ALWAYS", **c.environment}
        health = None
        if c.healthcheck:
            test = [self.render_string(a, variables, service.path, f"containers.{cname}.healthcheck")
                    for a in c.healthcheck.test]
            hc = c.healthcheck
            health = Healthcheck(("CMD", "dockyard-healthcheck", *test), hc.interval, hc.timeout, hc.retries,
                                 hc.start_period)
        mounts = self.mounts(name, c.volumes, service, f"containers.{cname}", variables)
        image_id = self.image_id(c.image)
        spec = ContainerSpec(name=name, image=self.site.globals.image_ref(c.image), environment=env,
                             mounts=mounts, labels=self.labels(service.name, host), privileged=c.privileged,
                             pid_mode=c.pid, healthcheck=health)
        parts = spec_hashes(spec, image_id, files)
        spec = replace(spec, labels={**spec.labels, **hash_labels(parts)})
        state.files.extend(self.files_of(name, files, service.name, host))
        state.containers.append(WantedContainer(
            host=host.name, service=service.name, spec=spec, hash=parts["all"],
            after=tuple(after + [container_name(a) for a in c.after]),
            files=tuple(f.path for f in self.files_of(name, files, service.name, host)),
            volumes=tuple(m.source for m in mounts if m.is_volume),
            health_timeout=self.site.globals.health_timeout, ports=tuple(c.ports), address=host.address,
        ))

    def job(self, service: Service, name: str, image: str, host: Host, files: dict[str, bytes],
            entries: list[tuple[str, ConfigFile]], command: str | None, bootstrap: bool, user: str | None,
            volumes: list[str], after: list[str], key: str, state: WantedState) -> str:
        name = container_name(name)
        files = {**files, "config.json": self.config_json(command, entries, user)}
        env = {"DOCKYARD_CONFIG_STRATEGY": "COPY_ALWAYS"}
        if bootstrap:
            env["DOCKYARD_BOOTSTRAP"] = "1"
        mounts = self.mounts(name, volumes, service, key, self.variables(service, host))
        labels = {**self.labels(service.name, host), "dockyard.job": "true"}
        spec = ContainerSpec(name=f"{name}", image=self.site.globals.image_ref(image), environment=env,
                             mounts=mounts, labels=labels, restart_policy="no")
        image_id = self.image_id(image)
        job_hash = digest([image_id, files_digest(files), env, [(m.source, m.target) for m in mounts]])
        wanted_files = self.files_of(name, files, service.name, host)
        state.files.extend(wanted_files)
        state.jobs.append(WantedJob(name=name, host=host.name, service=service.name, spec=spec, hash=job_hash,
                                    after=tuple(after), files=tuple(f.path for f in wanted_files)))
        return name

    # -- services -----------------------------------------------------------------------
    def service(self, service: Service, dep_containers: list[str], state: WantedState) -> list[str]:
        spec = service.spec
        control = self.site.inventory.hosts_in("control")
        first = control[0]
        after = list(dep_containers)
        for vol in spec.volumes:
            for host in self.hosts_for(service):
                state.volumes.append(WantedVolume(vol, host.name, service.name))
        variables = self.variables(service, first)
        if spec.databases:
            files = {"my.cnf": self.render("common/my.cnf.j2", variables, service.path, "databases").encode(),
                     "create.sql": self.render("common/create-databases.sql.j2",
                                               {**variables, "databases": spec.databases}, service.path,
                                               "databases").encode()}
            entries = [(n, ConfigFile(template="-", dest=f"{TOOLBOX_HOME}/{n}", owner="dockyard"))
                       for n in files]
            cmd = f"sh -c 'mariadb --defaults-extra-file={TOOLBOX_HOME}/my.cnf < {TOOLBOX_HOME}/create.sql'"
            after = [self.job(service, f"{service.name}-databases", "toolbox", first, files, entries, cmd, False,
                              None, [], after, "databases", state)]
        for i, job in enumerate(spec.jobs):
            after = [self.job_def(service, job, first, after, i, state)]
        if spec.registration:
            files = {"clouds.yaml": self.render("common/clouds.yaml.j2", variables, service.path, "register").encode(),
                     "register.py": self.render("common/register.py.j2", {**variables, "register": spec.registration},
                                                service.path, "register").encode()}
            entries = [(n, ConfigFile(template="-", dest=f"{TOOLBOX_HOME}/{n}", owner="dockyard")) for n in files]
            after = [self.job(service, f"{service.name}-register", "toolbox", first, files, entries,
                              f"python3 {TOOLBOX_HOME}/register.py", False, None, [], after, "register", state)]
        names = []
        for cname, c in spec.containers.items():
            for host in self.site.inventory.hosts_in(c.group):
                self.container(service, cname, c, host, after, state)
                names.append(container_name(cname))
        return names

    def job_def(self, service: Service, job: JobDef, host: Host, after: list[str], i: int,
                state: WantedState) -> str:
        variables = self.variables(service, host)
        name = container_name(job.name)
        files = {f: self.config_file(service, f, service.spec.config[f], name, host, variables) for f in job.config}
        entries = [(f, service.spec.config[f]) for f in job.config]
        command = self.render_string(job.command, variables, service.path, f"jobs[{i}].command") if job.command else None
        if not job.bootstrap and not command:
            raise ConfigError("a job needs `bootstrap: true` or a `command`", path=service.path, key=f"jobs[{i}]")
        return self.job(service, job.name, job.image, host, files, entries, command, job.bootstrap, job.user,
                        job.volumes, after, f"jobs[{i}]", state)

    def hosts_for(self, service: Service) -> list[Host]:
        groups = {c.group for c in service.spec.containers.values()} or {"control"}
        hosts: dict[str, Host] = {}
        for group in sorted(groups):
            for host in self.site.inventory.hosts_in(group):
                hosts[host.name] = host
        return list(hosts.values())

    def build(self) -> WantedState:
        state = WantedState()
        containers_of: dict[str, list[str]] = {}
        for name in self.catalogue.closure(self.site.globals.enabled_services):
            service = self.catalogue.services[name]
            deps = [c for dep in service.spec.depends_on for c in containers_of.get(dep, [])]
            containers_of[name] = self.service(service, deps, state)
        return state


def build_wanted(site: Site, catalogue: ServiceCatalogue, engine: Engine | None) -> tuple[WantedState, list[str]]:
    """The wanted state and the images it needs that the engine does not have."""
    builder = WantedBuilder(site, catalogue, engine)
    state = builder.build()
    return state, sorted(set(builder.missing_images))


def shell_quote(value: str) -> str:
    return shlex.quote(value)
