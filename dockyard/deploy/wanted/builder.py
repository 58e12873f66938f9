"""Site + service catalogue + image ids -> the wanted state.

Renders every config file (Jinja2 with StrictUndefined, then the operator's INI
overrides), each container's and job's ``config.json``, and the container specs
with their hash labels. It reads templates and overrides and asks the engine for
image ids, and changes nothing: every error is a ConfigError naming the file and
key at fault, raised before a deploy acts.

The units of a service, and what each waits for (its ``after``):

- ``<service>-databases`` (toolbox: create databases and users) waits for the
  database service's containers;
- the service's jobs run in order: the first waits for the databases job (or,
  without one, for the containers of every service it depends on), each next one
  for the one before; plus whatever a job's own ``after`` names;
- ``<service>-register`` (toolbox: keystone user, services, endpoints) waits for
  the identity service's containers only, so it runs while the db sync does;
- the containers wait for the containers of every dependency, the jobs, the
  registration, and their own ``after``;
- jobs whose ``after`` names one of the service's containers run after it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import jinja2
import yaml

from dockyard import __version__
from dockyard.engine.driver import ContainerSpec, Engine, FileCopy, Healthcheck, Mount
from dockyard.errors import ConfigError

from dockyard.deploy.site import ini, overrides
from .catalogue import (DATABASE_SERVICE, IDENTITY_SERVICE, TOOLBOX_IMAGE, ConfigFile, ContainerDef, JobDef,
                        Service, ServiceCatalogue, VolumeMount, unit_name)
from .hashing import job_hash, secret_labels, spec_hashes
from dockyard.deploy.site.hostfacts import UNKNOWN, HostFacts, choose_datapath, choose_virt_type
from dockyard.deploy.site.tunnels import tunnel_bridge
from dockyard.labels import (LABEL_HASH, LABEL_HOST, LABEL_JOB, LABEL_MANAGED, LABEL_RELEASE, LABEL_SERVICE, LABEL_SITE,
                             LABEL_VERSION)
from .model import WantedContainer, WantedFile, WantedImage, WantedJob, WantedSharedMount, WantedState
from dockyard.registry.client import ImageSource, RegistryImage, pull_ref, repository_and_tag
from dockyard.deploy.site.loader import GLOBALS_FILE, Host, Site
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.site.passwords import HASH_KEY_NAME, PASSWORDS_FILE

CONFIG_MOUNT = "/var/lib/dockyard/config_files"
TOOLBOX_HOME = "/var/lib/dockyard/home"     # the toolbox user's home: its private client files
MIN_SECRET_LENGTH = 6                       # shorter "passwords" would match by accident
DIRECTORY_ENTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")   # a file name a `directory` entry renders


def share_mount_spec(path: str, image: str, labels: dict[str, str]) -> ContainerSpec:
    """The one-shot container that makes a host folder a shared mount (see
    WantedBuilder.shared_mounts): idempotent, quick, any image with util-linux."""
    quoted = shlex.quote(path)
    inner = (f"mkdir -p {quoted} && {{ mountpoint -q {quoted} || mount --bind {quoted} {quoted}; }} "
             f"&& mount --make-shared {quoted}")
    script = f'exec nsenter --target "$PPID" --mount -- sh -c {shlex.quote(inner)}'
    return ContainerSpec(
        name="dockyard_share" + path.replace("/", "_").replace("-", "_"), image=image, entrypoint=("sh", "-c"),
        command=(script,), labels=labels, pid_mode="host", user="root", cap_add=("SYS_ADMIN", "SYS_PTRACE"),
        restart_policy="no")


def site_id(site: Site) -> str:
    """Which site owns a container: its configuration folder."""
    return str(Path(site.config_dir).resolve())


def _one_line(value: str, what: str) -> str:
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        # passwords.yml refuses these; other values reach here from the catalogue.
        raise jinja2.TemplateRuntimeError(f"a {what} value cannot hold a line break or a NUL character")
    return text


def _sql_string(value: str) -> str:
    """A quoted SQL string literal, as MariaDB reads it (sql_mode without
    NO_BACKSLASH_ESCAPES, the default): backslash and quote escaped."""
    return "'" + _one_line(value, "SQL").replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cnf_string(value: str) -> str:
    """A quoted value of a MariaDB option file: inside double quotes, ``#`` starts
    no comment, spaces at either end are kept, and ``\\`` and ``\"`` are escapes."""
    return '"' + _one_line(value, "option file").replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ini_value(value: str) -> str:
    """A value of an oslo.config INI file that reads back as ``value``.

    oslo.config strips spaces around a value, then one pair of matching quotes
    around it, then interpolates ``$name`` and ``${name}`` (``$$`` is a ``$``):
    so ``$`` is doubled, and a value with spaces at either end, or one that
    starts and ends with the same quote, is put in double quotes. ``#`` and ``;``
    start a comment only at the beginning of a line, and ``=`` and ``:`` only
    split the key from the value once. (``\\$`` is oslo's other way to write
    ``$$``: passwords.yml refuses a value that holds it, as no INI text reads
    back as a backslash before a dollar.)"""
    text = _one_line(value, "INI").replace("$", "$$")
    if not text or text != text.strip() or (text[0] in "\"'" and text[-1] == text[0]):
        text = f'"{text}"'
    return text


def _yaml_document(value: object) -> str:
    """A YAML document of ``value`` (mappings keep their order), by the YAML
    library: quoting is its business, not a template's."""
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=False, width=1000)


def _rabbitmq_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256 form: base64(salt + sha256(salt +
    password)). The salt comes from the password, so the file (and the container's
    hash) only changes when the password does."""
    data = str(password).encode()
    salt = hashlib.sha256(b"dockyard rabbitmq salt:" + data).digest()[:4]
    return base64.b64encode(salt + hashlib.sha256(salt + data).digest()).decode()


def _url_part(value: str) -> str:
    """A value inside a URL (a password in a database or transport URL)."""
    return quote(str(value), safe="")


@functools.lru_cache(maxsize=8)
def _environment(templates: str) -> jinja2.Environment:
    """One environment per template folder, kept: compiling the templates is most
    of the cost of building a wanted state, and a no-op re-deploy must be quick.
    The loader still notices a template changed on disk."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters.update(sql=_sql_string, cnf=_cnf_string, url=_url_part, ini=_ini_value, yaml=_yaml_document,
                       rabbitmq_hash=_rabbitmq_hash)
    return env


@functools.lru_cache(maxsize=1024)
def _compiled(env: jinja2.Environment, text: str) -> jinja2.Template:
    """A catalogue string (command, environment value, health check) compiled once."""
    return env.from_string(text)


class _Read(dict):
    """The passwords as templates see them, noting which are read (``passwords.x``
    and ``passwords[x]`` both come here): what a unit reads is what a change of
    it touches (hashing.secret_labels)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, name):
        value = super().__getitem__(name)
        self.read.add(name)
        return value


@dataclass
class _Unit:
    """A job or container being assembled: what goes in its config folder."""

    name: str                        # engine name (underscores)
    service: Service
    host: Host
    files: dict[str, bytes] = field(default_factory=dict)
    entries: list[tuple[str, ConfigFile]] = field(default_factory=list)
    tag: str | None = None           # its image's tag, when not its service's release's (upgrade steps)
    secrets: set[str] = field(default_factory=set)   # names of the passwords its files read


class WantedBuilder:
    def __init__(self, site: Site, catalogue: ServiceCatalogue, engine: Engine | SiteEngines | None,
                 resolve_images: bool = True, facts: dict[str, HostFacts] | None = None,
                 extra_variables: dict | None = None, site_label: str | None = None,
                 registry: ImageSource | None = None):
        """``registry``: the site's registry; with it every host's images are the
        registry's (ids from there, pulled where missing). ``extra_variables``:
        more template variables (the registry's certificate); ``site_label``:
        the owner label of its containers (default: the site's folder; the
        registry's containers are owned apart, out of the site's reach)."""
        self.site = site
        self.extra_variables = dict(extra_variables or {})
        self.site_label = site_label or site_id(site)
        self.registry = registry
        self.images: dict[tuple[str, str], WantedImage] = {}     # (host, ref) -> what it must hold
        self._registry_ids: dict[str, RegistryImage | None] = {}
        self.stale: dict[str, tuple[str, str]] = {}              # image -> (this engine's id, the registry's)
        self.facts = facts or {}            # host name -> what it can do; unprobed hosts get UNKNOWN
        self.catalogue = catalogue
        self.engine = engine
        self.resolve_images = resolve_images
        self.env = _environment(str(catalogue.templates))
        self._image_ids: dict[tuple[int, str], str | None] = {}
        self.missing_images: set[str] = set()
        self.missing_on: dict[str, set[str]] = {}         # host -> images its engine lacks
        self.unreachable: set[str] = set()                 # hosts whose engines are not asked
        self.multi_host = len(site.inventory.hosts) > 1
        self.overrides_used: set[Path] = set()
        self.enabled = catalogue.closure(site.globals.enabled_services)
        self.secrets = sorted({v for v in site.passwords.values() if len(v) >= MIN_SECRET_LENGTH}, key=len,
                              reverse=True)
        if not site.passwords.get(HASH_KEY_NAME):
            raise ConfigError("missing: the site's key of the hash labels; run `dockyard genpwd`",
                              path=Path(site.config_dir) / PASSWORDS_FILE, key=HASH_KEY_NAME)
        self.hash_key = site.passwords[HASH_KEY_NAME].encode()
        self._containers_of: dict[str, list[str]] = {}
        self._choices: dict[str, dict[str, str]] = {}
        self._options: dict[str, dict] = {}
        # For the order of a secret's change: unit name -> (service, secrets its
        # files read), and secret name -> the units that make it true where it
        # is checked (see appliers_first).
        self.readers: dict[str, tuple[str, set[str]]] = {}
        self.appliers: dict[str, list[tuple[str, str]]] = {}     # secret -> [(service, unit name)]

    # -- lookups ---------------------------------------------------------------------
    def image_id(self, image: str, host: str | None = None, tag: str | None = None) -> str | None:
        """The id the reference resolves to now on the host's engine: a rebuilt
        image is a new hash. An unreachable host's engine is not asked."""
        ref = self.site.globals.image_ref(image, tag)
        if self.registry is not None and self.resolve_images:
            return self.registry_id(self.registry, image, ref, host)
        engine: Engine | None
        if isinstance(self.engine, SiteEngines):            # each host its own
            engine = None if host in self.unreachable else self.engine.of(host or "")
        else:
            engine = self.engine
        key = (id(engine), ref)
        if key not in self._image_ids:
            info = engine.image(ref) if (engine is not None and self.resolve_images) else None
            if info is None and self.resolve_images and engine is not None:
                self.missing_images.add(image)
                self.missing_on.setdefault(host or "", set()).add(image)
            self._image_ids[key] = info.id if info else None
        return self._image_ids[key]

    def registry_id(self, registry: ImageSource, image: str, ref: str, host: str | None) -> str | None:
        """The id of ``ref`` in the site's registry: what every host runs. The host
        must hold it (a pull where it does not). A host on this machine's engine,
        where images are built, holding another id under that name has an image
        built after its last push: refused by prepare (push it first)."""
        if ref not in self._registry_ids:
            self._registry_ids[ref] = registry.lookup(*repository_and_tag(ref))
        found = self._registry_ids[ref]
        if found is None:
            self.missing_images.add(image)
            self.missing_on.setdefault(host or "", set()).add(image)
            return None
        name = host or ""
        if name not in self.unreachable and (name, ref) not in self.images:
            self.images[(name, ref)] = WantedImage(ref, name, found.id, pull_ref(registry.address, ref, found.digest))
            site_host = self.site.inventory.hosts.get(name)
            engine = self.engine.of(name) if self.engine is not None and hasattr(self.engine, "of") else self.engine
            if engine is not None and site_host is not None and not site_host.remote:
                local = engine.image(ref)
                if local is not None and local.id != found.id:
                    self.stale[image] = (local.id, found.id)
        return found.id

    def hosts_in(self, groups: list[str]) -> list[Host]:
        hosts: dict[str, Host] = {}
        for group in groups:
            for host in self.site.inventory.hosts_in(group):
                hosts.setdefault(host.name, host)
        return list(hosts.values())

    def first_host(self, group: str, service: Service, key: str) -> Host:
        hosts = self.site.inventory.hosts_in(group)
        if not hosts:
            raise ConfigError(f"no host in group {group!r} of the inventory", path=service.path, key=key)
        return hosts[0]

    def host_choices(self, host: Host) -> dict[str, str]:
        """The data-plane choices for a host (hostfacts): its datapath and virt type."""
        if host.name not in self._choices:
            facts = self.facts.get(host.name, UNKNOWN)
            options = self.site.globals.services
            path = Path(self.site.config_dir) / GLOBALS_FILE
            self._choices[host.name] = {
                "datapath": choose_datapath(options.get("openvswitch", {}), facts, path).value,
                "virt_type": choose_virt_type(options.get("nova-compute", {}), facts, path).value,
            }
        return self._choices[host.name]

    def variables(self, service: Service, host: Host) -> dict:
        g = self.site.globals
        database_hosts = self.hosts_in(self._groups_of(DATABASE_SERVICE)) or [host]
        # Only the passwords the service declares: a template that uses another
        # one fails here, instead of working until someone runs genpwd afresh.
        passwords = _Read({name: self.site.passwords[name] for name in service.passwords()
                           if name in self.site.passwords})
        return {
            "service": service.name,
            "host": host,
            "address": host.address,
            # The tunnel network (inventory.yml): the address the agent's tunnels
            # use (the host's address unless set), its prefix length (None: not
            # given) and the NIC the openvswitch service puts in br-tunnel ("": none).
            "tunnel_address": host.tunnel_address,
            "tunnel_prefixlen": host.tunnel_prefixlen,
            "tunnel_interface": host.tunnel_interface,
            # The bridge the openvswitch service makes for it ("": none; tunnels.py).
            "tunnel_bridge": tunnel_bridge(host, self.host_choices(host)["datapath"]),
            "internal_address": g.internal_address,
            "external_address": g.external_address or g.internal_address,
            "database_address": database_hosts[0].address,
            "region": g.region,
            "passwords": passwords,
            "options": self.options_of(service),
            "inventory": self.site.inventory,
            "globals": g,
            "enabled": self.enabled,
            "databases": service.spec.databases,
            "register": service.spec.registration,
            **self.host_choices(host),
            **self.extra_variables,
        }

    def options_of(self, service: Service) -> dict:
        """The service's options from globals.yml, checked against its schema,
        defaults filled in: what its templates read as ``options``."""
        if service.name not in self._options:
            self._options[service.name] = service.options(self.site.globals.services.get(service.name, {}),
                                                          Path(self.site.config_dir) / GLOBALS_FILE)
        return self._options[service.name]

    def _groups_of(self, service_name: str) -> list[str]:
        svc = self.catalogue.services.get(service_name)
        if svc is None:
            return []
        return sorted({g for c in svc.spec.containers.values() for g in c.groups})

    # -- rendering -------------------------------------------------------------------
    def render(self, template: str, variables: dict, service: Service, key: str) -> str:
        try:
            return self.env.get_template(template).render(**variables)
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(f"template {exc.name} not found", path=service.path, key=key) from None
        except jinja2.TemplateError as exc:
            lineno = getattr(exc, "lineno", None)        # a syntax error's; not every TemplateError has one
            line = f" (line {lineno})" if lineno else ""
            raise ConfigError(f"rendering {template}{line}: {exc}", path=service.path, key=key) from None

    def render_string(self, text: str, variables: dict, service: Service, key: str) -> str:
        try:
            return _compiled(self.env, text).render(**variables)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"rendering {text!r}: {exc}", path=service.path, key=key) from None

    def no_secret(self, value: str, service: Service, key: str) -> str:
        """Commands, environment and health checks are visible to anyone who can
        inspect a container: a password there is a catalogue bug."""
        for secret in self.secrets:
            if secret in value:
                raise ConfigError("a password would end up in a command, the environment or a health check; "
                                  "pass it in a config file instead", path=service.path, key=key)
        return value

    def config_file(self, unit: _Unit, fname: str, variables: dict) -> None:
        cfile = unit.service.spec.config[fname]
        text = self.render(cfile.template, variables, unit.service, f"config.{fname}")
        if cfile.directory:
            self.config_directory(unit, fname, cfile, text)
            unit.secrets.update(variables["passwords"].read)
            return
        name = cfile.override_name
        if name:
            component = unit.name.replace("_", "-")
            found = overrides.find(self.site.config_dir, name, component, unit.host.name)
            self.overrides_used.update(found)
            if found:
                text = ini.merge(text, *((str(p), overrides.read(p)) for p in found))
        unit.files[fname] = text.encode()
        unit.entries.append((fname, cfile))
        unit.secrets.update(variables["passwords"].read)

    def config_directory(self, unit: _Unit, fname: str, cfile: ConfigFile, text: str) -> None:
        """A ``directory`` config entry: the rendered mapping, name -> content,
        as one file each in the unit's folder (``<entry>.<name>``), each copied
        into the folder ``dest`` under its own name. The container is made anew
        when they change, so what ``dest`` held before is not there to linger."""
        key = f"config.{fname}"
        try:
            files = yaml.safe_load(text)
        except yaml.YAMLError:
            # Not the parser's message: it would quote the text, which may be a secret.
            raise ConfigError(f"{cfile.template} must render a mapping, file name -> content (YAML or JSON); "
                              f"it rendered something else", path=unit.service.path, key=key) from None
        if not isinstance(files, dict):
            raise ConfigError(f"{cfile.template} must render a mapping, file name -> content",
                              path=unit.service.path, key=key)
        for name, content in files.items():
            name = str(name)
            if not DIRECTORY_ENTRY.fullmatch(name) or not isinstance(content, str):
                raise ConfigError(f"{cfile.template} rendered an entry {name[:40]!r}: names are letters, digits, "
                                  f"'.', '_' and '-', contents text", path=unit.service.path, key=key)
            stored = f"{fname}.{name}"
            if stored in unit.files:
                raise ConfigError(f"{cfile.template}: {stored!r} is also another config file of {unit.name}",
                                  path=unit.service.path, key=key)
            unit.files[stored] = content.encode()
            unit.entries.append((stored, cfile.model_copy(update={"dest": cfile.dest + name, "directory": False})))

    def config_json(self, unit: _Unit, command: str | None, user: str | None, permissions: list | None = None) -> None:
        doc: dict = {}
        if command:
            doc["command"] = command
        if user:
            doc["user"] = user
        doc["config_files"] = [
            {"source": f"{CONFIG_MOUNT}/{fname}", "dest": c.dest, "owner": c.owner, "perm": c.perm}
            for fname, c in unit.entries
        ]
        if permissions:
            doc["permissions"] = [p.model_dump(exclude_none=True) for p in permissions]
        unit.files["config.json"] = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def folder(self, unit: _Unit) -> Path:
        """The unit's config folder on this machine: ``generated/<unit>``, and
        ``generated/<host>/<unit>`` on a site of several hosts (a unit may run on
        more than one, with files of its own on each)."""
        base = self.site.generated_dir
        return base / unit.host.name / unit.name if self.multi_host else base / unit.name

    def mounts(self, unit: _Unit, volumes: list[VolumeMount]) -> tuple[Mount, ...]:
        own = tuple(Mount(v.source, v.target, v.read_only, v.propagation) for v in volumes)
        if unit.host.remote:
            return own               # its config is copied in (copy_in), not bound from here
        return (Mount(str(self.folder(unit)), CONFIG_MOUNT, read_only=True), *own)

    def copies(self, unit: _Unit) -> tuple[FileCopy, ...]:
        """A remote unit's config folder, to put into its container before it starts."""
        if not unit.host.remote:
            return ()
        return tuple(FileCopy(f"{CONFIG_MOUNT}/{name}", data, 0o600) for name, data in unit.files.items())

    def environment(self, unit: _Unit, env: dict[str, str], variables: dict, key: str,
                    bootstrap: bool = False) -> dict[str, str]:
        out = {"DOCKYARD_CONFIG_STRATEGY": "COPY_ALWAYS"}
        if bootstrap:
            out["DOCKYARD_BOOTSTRAP"] = "1"
        for name, value in env.items():
            rendered = self.render_string(value, variables, unit.service, f"{key}.environment.{name}")
            out[name] = self.no_secret(rendered, unit.service, f"{key}.environment.{name}")
        return out

    def labels(self, unit: _Unit) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_SERVICE: unit.service.name, LABEL_HOST: unit.host.name,
                LABEL_VERSION: __version__, LABEL_SITE: self.site_label,
                LABEL_RELEASE: self.site.globals.service_release(unit.service.name)}

    def tag(self, service: Service, image: str) -> str:
        """The tag of a unit's image: its service's release's, and the site's for
        the toolbox (which serves every service)."""
        g = self.site.globals
        return g.image_tag if image == TOOLBOX_IMAGE else g.service_tag(service.name)

    def wanted_files(self, unit: _Unit) -> list[WantedFile]:
        if unit.host.remote:
            return []                # nothing on this machine's disk: see copies()
        base = self.folder(unit)
        return [WantedFile(str(base / name), data, unit.host.name, unit.service.name, 0o600, unit.name)
                for name, data in unit.files.items()]

    def finish(self, unit: _Unit, spec: ContainerSpec, image: str) -> tuple[ContainerSpec, list[WantedFile]]:
        labels = spec_hashes(spec, dict(unit.files), self.image_id(image, unit.host.name,
                                                                   unit.tag or self.tag(unit.service, image)),
                             key=self.hash_key)
        secrets = {name: self.site.passwords[name] for name in unit.secrets}
        spec = replace(spec, labels={**spec.labels, **labels, **secret_labels(secrets, self.hash_key)})
        self.readers[unit.name] = (unit.service.name, set(unit.secrets))
        return spec, self.wanted_files(unit)

    def shared_mounts(self, unit: _Unit, mounts: tuple[Mount, ...], image: str, state: WantedState) -> None:
        """Each host folder bound with shared propagation is made a shared mount on
        its host first, by a one-shot container of the unit's own image (it is
        there already). It enters the mount namespace of its parent, the engine's
        container shim, which is the engine's own: where the engine resolves bind
        sources (the host's init may be out of reach, and on a host whose engine
        runs in a mount namespace of its own, it would be the wrong one). For that
        it needs the host's pid namespace, SYS_ADMIN and SYS_PTRACE (to open
        another process's namespace), for a moment, and nothing else."""
        for m in mounts:
            if m.propagation not in ("shared", "rshared"):
                continue
            if any(s.path == m.source and s.host == unit.host.name for s in state.shared_mounts):
                continue
            spec = share_mount_spec(m.source, image, {**self.labels(unit), LABEL_JOB: "true"})
            state.shared_mounts.append(WantedSharedMount(m.source, unit.host.name, unit.service.name, spec))

    def volumes_of(self, unit: _Unit, mounts: tuple[Mount, ...], state: WantedState) -> None:
        for m in mounts:
            if m.is_volume:
                state.add_volume(m.source, unit.host.name, unit.service.name)

    # -- units -----------------------------------------------------------------------
    def container(self, service: Service, cname: str, c: ContainerDef, host: Host, after: list[str],
                  state: WantedState) -> str:
        key = f"containers.{cname}"
        unit = _Unit(unit_name(cname), service, host)
        variables = self.variables(service, host)
        for fname in c.config:
            self.config_file(unit, fname, variables)
        command = self.no_secret(self.render_string(c.command, variables, service, f"{key}.command"), service,
                                 f"{key}.command")
        self.config_json(unit, command, c.user, c.permissions)
        health = None
        if c.healthcheck:
            hc = c.healthcheck
            test = [self.no_secret(self.render_string(a, variables, service, f"{key}.healthcheck.test"), service,
                                   f"{key}.healthcheck.test") for a in hc.test]
            health = Healthcheck(("CMD", "dockyard-healthcheck", *test), hc.interval, hc.timeout, hc.retries,
                                 hc.start_period)
        mounts = self.mounts(unit, c.volumes)
        devices = [self.render_string(d, variables, service, f"{key}.devices").strip() for d in c.devices]
        spec = ContainerSpec(
            name=unit.name, image=self.site.globals.image_ref(c.image, self.tag(service, c.image)),
            environment=self.environment(unit, c.environment, variables, key), mounts=mounts,
            labels=self.labels(unit), network_mode=c.network, pid_mode=c.pid,
            cap_add=tuple(c.cap_add), tmpfs=tuple(c.tmpfs), healthcheck=health,
            devices=tuple(d for d in devices if d), security_opt=tuple(c.security_opt),
            writable_proc_sys=c.writable_proc_sys)
        self.shared_mounts(unit, mounts, spec.image, state)
        spec, files = self.finish(unit, spec, c.image)
        state.files.extend(files)
        self.volumes_of(unit, mounts, state)
        state.containers.append(WantedContainer(
            host=host.name, service=service.name, spec=spec, hash=spec.labels[LABEL_HASH],
            after=tuple(dict.fromkeys([*after, *(unit_name(a) for a in c.after)])),
            files=tuple(f.path for f in files), volumes=tuple(m.source for m in mounts if m.is_volume),
            health_timeout=self.site.globals.health_timeout, ports=tuple(c.ports), address=host.address,
            copy_in=self.copies(unit), remote=host.remote,
            image_id=self.image_id(c.image, host.name, self.tag(service, c.image)) or "",
            restart_packages=tuple(c.restart_packages)))
        return unit.name

    def job(self, unit: _Unit, image: str, command: str | None, bootstrap: bool, user: str | None,
            volumes: list[VolumeMount], env: dict[str, str], after: list[str], key: str, timeout: float,
            state: WantedState) -> str:
        variables = self.variables(unit.service, unit.host)
        if command:
            command = self.no_secret(command, unit.service, f"{key}.command")
        self.config_json(unit, command, user)
        mounts = self.mounts(unit, volumes)
        spec = ContainerSpec(
            name=unit.name, image=self.site.globals.image_ref(image, unit.tag or self.tag(unit.service, image)),
            environment=self.environment(unit, env, variables, key, bootstrap), mounts=mounts,
            labels={**self.labels(unit), LABEL_JOB: "true"}, restart_policy="no")
        spec, files = self.finish(unit, spec, image)
        state.files.extend(files)
        self.volumes_of(unit, mounts, state)
        state.jobs.append(WantedJob(name=unit.name, host=unit.host.name, service=unit.service.name, spec=spec,
                                    hash=job_hash(spec.labels), after=tuple(dict.fromkeys(after)),
                                    files=tuple(f.path for f in files), timeout=timeout,
                                    copy_in=self.copies(unit)))
        return unit.name

    def job_def(self, service: Service, i: int, job: JobDef, after: list[str], state: WantedState) -> str:
        key = f"jobs[{i}]"
        host = self.first_host(job.group, service, f"{key}.group")
        unit = _Unit(unit_name(job.name), service, host)
        variables = self.variables(service, host)
        for fname in job.config:
            self.config_file(unit, fname, variables)
        command = self.render_string(job.command, variables, service, f"{key}.command") if job.command else None
        name = self.job(unit, job.image, command, job.bootstrap, job.user, job.volumes, job.environment,
                        [*after, *(unit_name(a) for a in job.after)], key, job.timeout, state)
        for secret in job.applies:
            self.applies(secret, service, name)
        return name

    def applies(self, secret: str, service: Service, unit: str) -> None:
        self.appliers.setdefault(secret, []).append((service.name, unit))

    def appliers_first(self, state: WantedState) -> None:
        """A unit that reads a secret another service makes true where it is
        checked (a service user's password, set in keystone by that service's
        registration; RabbitMQ's, by RabbitMQ) waits for that: after a change,
        nova gets neutron's new password only once keystone knows it. Within a
        service the catalogue's own order holds (it already runs the makers
        first); a wait on a unit with nothing to do costs nothing (planner)."""
        graph: dict[str, set[str]] = {}
        units: list[WantedJob | WantedContainer] = [*state.jobs, *state.containers]
        for u in units:
            graph.setdefault(u.name, set()).update(u.after)
        seen: dict[str, set[str]] = {}

        def ancestors(name: str) -> set[str]:
            # What a unit already waits for, directly or not (the catalogue's
            # graph is acyclic: unit_order checks it).
            if name not in seen:
                seen[name] = set()
                for dep in graph.get(name, ()):
                    seen[name] |= {dep, *ancestors(dep)}
            return seen[name]

        def extra(name: str) -> tuple[str, ...]:
            service, secrets = self.readers.get(name, ("", set()))
            more = [unit for secret in sorted(secrets) for other, unit in self.appliers.get(secret, ())
                    if other != service and unit != name and unit not in ancestors(name)]
            return tuple(dict.fromkeys(more))

        state.jobs[:] = [replace(j, secret_after=extra(j.name)) for j in state.jobs]
        state.containers[:] = [replace(c, secret_after=extra(c.name)) for c in state.containers]

    def toolbox_job(self, service: Service, name: str, files: dict[str, str], command: str, after: list[str],
                    key: str, state: WantedState) -> str:
        """A job in the toolbox image whose inputs are private client files in its
        home (0600, owned by the toolbox user): credentials never in env or argv."""
        host = self.first_host("control", service, key)
        unit = _Unit(unit_name(name), service, host)
        variables = self.variables(service, host)
        for fname, template in files.items():
            unit.files[fname] = self.render(template, variables, service, key).encode()
            unit.secrets.update(variables["passwords"].read)
            unit.entries.append((fname, ConfigFile(template=template, dest=f"{TOOLBOX_HOME}/{fname}",
                                                   owner="dockyard", perm="0600", override=False)))
        return self.job(unit, TOOLBOX_IMAGE, command, False, None, [], {}, after, key, 900.0, state)

    # -- services --------------------------------------------------------------------
    def service(self, service: Service, state: WantedState) -> None:
        spec = service.spec
        deps = [c for dep in spec.depends_on for c in self._containers_of.get(dep, [])]
        # Transitive dependencies are reached through the direct ones' own waits.
        previous: list[str] = list(deps)
        if service.databases_job is not None:          # the service has databases
            db = self.toolbox_job(
                service, service.databases_job, {"my.cnf": "common/my.cnf.j2",
                                                  "create-databases.sql": "common/create-databases.sql.j2"},
                f"sh -c 'exec mariadb --defaults-extra-file={TOOLBOX_HOME}/my.cnf "
                f"< {TOOLBOX_HOME}/create-databases.sql'",
                self._containers_of.get(DATABASE_SERVICE, []), "databases", state)
            previous = [db]
            for d in spec.databases:
                self.applies(d.password, service, db)
        ready: list[str] = []                 # what the containers wait for, besides the dependencies
        index = {id(j): i for i, j in enumerate(spec.jobs)}
        for job in service.pre_jobs():
            previous = [self.job_def(service, index[id(job)], job, previous, state)]
        if spec.databases or service.pre_jobs():
            ready += previous
        # The service registers in keystone (its register job is there exactly when its registration is).
        if service.register_job is not None and spec.registration is not None:
            ready.append(self.toolbox_job(
                service, service.register_job, {"clouds.yaml": "common/clouds.yaml.j2",
                                                 "register.py": "common/register.py.j2"},
                f"python3 {TOOLBOX_HOME}/register.py", self._containers_of.get(IDENTITY_SERVICE, []),
                "register", state))
            self.applies(spec.registration.password, service, ready[-1])
        names: list[str] = []
        for cname, c in spec.containers.items():
            hosts = self.hosts_in(c.groups)
            if not hosts:
                raise ConfigError(f"no host in group(s) {', '.join(c.groups)} of the inventory", path=service.path,
                                  key=f"containers.{cname}.group")
            for host in hosts:
                names.append(self.container(service, cname, c, host, [*deps, *ready], state))
                for secret in c.applies:
                    self.applies(secret, service, names[-1])
        self._containers_of[service.name] = list(dict.fromkeys(names))
        # Jobs that wait for a container: each also after the one before it.
        previous = []
        for job in service.post_jobs():
            previous = [self.job_def(service, index[id(job)], job, previous, state)]

    def prefetch_images(self) -> None:
        """Every engine asked for every image the site needs, all engines at once,
        so that many hosts cost about one host's lookups. Only ids found are kept:
        a missing one is asked again where a unit needs it, and reported there."""
        engines = self.engine
        if not (self.resolve_images and isinstance(engines, SiteEngines)) or self.registry is not None:
            return                      # with a registry, ids come from there
        refs = [self.site.globals.image_ref(name) for name in self.catalogue.images(self.enabled)]
        hosts = [h for h in self.site.inventory.hosts if h not in self.unreachable]
        if not hosts or len(engines.groups(hosts)) < 2:
            return

        def lookup(engine, _hosts) -> dict[str, str]:
            found = {}
            for ref in refs:
                info = engine.image(ref)
                if info is not None:
                    found[ref] = info.id
            return found

        groups = engines.groups(hosts)
        for i, result in engines.each(hosts, lookup).items():
            if isinstance(result, dict):
                engine = groups[i][0]
                for ref, image_id in result.items():
                    self._image_ids[(id(engine), ref)] = image_id

    def upgrade_steps(self, service: Service, from_release: str) -> list[tuple[str, WantedJob, list[WantedFile]]]:
        """The one-shot containers of a service's upgrade steps (its ``upgrade``
        block), in order: (step, job, its files). ``prepare`` runs in the image of
        ``from_release``, the others in the image of the service's wanted release.
        They run on the first host of the service's first container's group."""
        up = service.spec.upgrade
        if up is None:
            return []
        first = next(iter(service.spec.containers.values()), None)
        group = first.groups[0] if first else "control"
        host = self.first_host(group, service, "upgrade")
        g = self.site.globals
        steps = []
        for step, command in up.steps():
            scratch = WantedState()
            tag = g.release_tag(from_release) if step == "prepare" else g.service_tag(service.name)
            unit = _Unit(service.upgrade_unit(step), service, host, tag=tag)
            variables = self.variables(service, host)
            for fname in up.config:
                self.config_file(unit, fname, variables)
            rendered = self.render_string(command, variables, service, f"upgrade.{step}")
            self.job(unit, up.image, rendered, False, up.user, up.volumes, up.environment, [], "upgrade",
                     up.timeout, scratch)
            steps.append((step, scratch.jobs[0], scratch.files))
        return steps

    def build(self) -> WantedState:
        self.prefetch_images()
        state = WantedState()
        for name in self.enabled:
            self.service(self.catalogue.services[name], state)
        state.images = list(self.images.values())
        specs = {name: self.catalogue.services[name].spec for name in self.enabled}
        state.serial = {name: spec.serial for name, spec in specs.items() if spec.serial}
        self.appliers_first(state)
        return state


def one_per_engine(site: Site, state: WantedState) -> None:
    """Names are the engine's: hosts that share one engine (the local one, when
    they name none) cannot each run a container of the same name. Checked before
    a deploy plans (the wanted state itself may be built, to be looked at)."""
    hosts = site.inventory.hosts
    seen: dict[tuple[str, str], WantedJob | WantedContainer] = {}
    for unit in state.units():
        engine = hosts[unit.host].engine if unit.host in hosts else ""
        other = seen.setdefault((engine, unit.name), unit)
        if other is unit:
            continue
        where = (f"hosts {other.host} and {unit.host} share {hosts[unit.host].engine_label}"
                 if other.host != unit.host else f"host {unit.host}")
        raise ConfigError(f"{unit.name!r} is wanted twice on one engine (services {other.service} and "
                          f"{unit.service}; {where}); one engine runs one container per name: give each host "
                          f"its own `engine` in inventory.yml", path=Path(site.config_dir) / "inventory.yml",
                          key=unit.name)


@dataclass
class Wanted:
    state: WantedState
    missing_images: list[str]           # images the engine does not have
    unused_overrides: list[Path]        # files under config/ merged into nothing: typos, most likely
    ignored_overrides: list[Path] = field(default_factory=list)   # not .conf files: never merged
    missing_on: dict[str, list[str]] = field(default_factory=dict)   # host -> images its engine lacks
    stale: dict[str, tuple[str, str]] = field(default_factory=dict)  # image -> (this engine's id, the registry's)


def wanted_state(site: Site, catalogue: ServiceCatalogue, engine: Engine | SiteEngines | None, *,
                 resolve_images: bool = True, facts: dict[str, HostFacts] | None = None,
                 unreachable: set[str] | frozenset[str] = frozenset(), extra_variables: dict | None = None,
                 site_label: str | None = None, registry: ImageSource | None = None) -> Wanted:
    """The wanted state, what it lacks, and what the operator wrote that it ignored.

    With ``resolve_images=False`` (export, a machine without images) hashes cover
    the image reference instead of its id, and no image is reported missing.
    ``facts`` (host name -> HostFacts) drive the data-plane choices; a host
    without facts gets the choices that work anywhere (netdev, qemu).
    """
    builder = WantedBuilder(site, catalogue, engine, resolve_images, facts, extra_variables, site_label, registry)
    builder.unreachable = set(unreachable)
    state = builder.build()
    unused = overrides.unmatched(site.config_dir, builder.overrides_used)
    return Wanted(state, sorted(builder.missing_images), unused, overrides.ignored(site.config_dir),
                  {host: sorted(images) for host, images in sorted(builder.missing_on.items())}, builder.stale)
