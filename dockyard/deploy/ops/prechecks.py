"""Is this host ready for the site? Each check says what is wrong and what to do.
On a site whose hosts name their engines, the engine and image checks run on
every host's engine (all at once) and say which host fails what.

Read-only: nothing is created, started or written. With no configuration folder
yet, the checks run against the all-in-one defaults that ``dockyard up`` would
write, so a fresh machine can be checked before anything else.
"""

from __future__ import annotations

import errno
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard.engine import connect
from dockyard.engine.driver import Engine
from dockyard.errors import ConfigError, DockyardError

from dockyard.deploy.wanted.catalogue import TOOLBOX_IMAGE, ServiceCatalogue, load_services, unit_name
from dockyard.labels import LABEL_MANAGED, LABEL_SITE
from dockyard.deploy.site.loader import ALL_IN_ONE_HOST, Site, load_site
from dockyard.deploy.site.passwords import PASSWORDS_FILE, mode_problem
from dockyard.deploy.site.hostfacts import UNKNOWN, choose_datapath, choose_virt_type, probe as probe_host
from dockyard.deploy.site.tunnels import TUNNEL_BRIDGE, untunnelled

OK, WARN, FAIL = "ok", "WARN", "FAIL"
MEMORY_ADVISED_GIB = 8.0
# The container whose tunnels (VXLAN) join the network and compute hosts.
AGENT_SERVICE, AGENT_CONTAINER = "neutron-agents", "neutron-openvswitch-agent"


@dataclass(frozen=True)
class Check:
    name: str
    status: str          # ok | WARN | FAIL
    message: str
    advice: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.name}: {self.message}"
        return f"{text} ({self.advice})" if self.advice else text


def _site(config_dir: Path, catalogue: ServiceCatalogue) -> tuple[Site | None, list[Check]]:
    known = set(catalogue.services)
    if not config_dir.is_dir():
        # The defaults `dockyard up` would write: what an empty folder means.
        with tempfile.TemporaryDirectory() as empty:
            site = load_site(Path(empty), known, [])
        return site, [Check("configuration", WARN, f"{config_dir} does not exist; checking the all-in-one defaults",
                            "`dockyard up` writes them")]
    try:
        site = load_site(config_dir, known, [])
        catalogue.check_options(site.globals.services, config_dir / "globals.yml")
        enabled = catalogue.closure(site.globals.enabled_services)
    except ConfigError as exc:
        return None, [Check("configuration", FAIL, str(exc), "fix it, then run the prechecks again")]
    checks = [Check("configuration", OK, f"{config_dir}: {len(enabled)} services")]
    path = config_dir / PASSWORDS_FILE
    problem = mode_problem(path)
    if problem:
        # A deploy refuses such a file (exit 2): a failure here, not a warning.
        mode, _, fix = problem.partition(". Fix: ")
        checks.append(Check("passwords", FAIL, f"{path}: {mode}", fix))
        return site, checks
    try:
        load_site(config_dir, known, catalogue.required_passwords(enabled))
    except ConfigError as exc:
        if "genpwd" in exc.detail:      # missing ones: genpwd makes them
            checks.append(Check("passwords", WARN, str(exc), f"dockyard genpwd --config-dir {config_dir}"))
        else:                           # a value a deploy refuses
            checks.append(Check("passwords", FAIL, str(exc), "change that value in passwords.yml"))
    return site, checks


def _engine(site: Site, engine: Engine | None) -> tuple[Engine | None, Check]:
    try:
        engine = engine or connect(site.globals.engine)
        engine.ping()
    except DockyardError as exc:
        return None, Check("container engine", FAIL, str(exc),
                           "is the daemon running, and DOCKER_HOST (or engine in globals.yml) right?")
    return engine, Check("container engine", OK, f"{site.globals.engine} reachable")


def _images(site: Site, catalogue: ServiceCatalogue, enabled: list[str], engine: Engine) -> Check:
    g = site.globals
    tags = {name: g.image_tag for name in catalogue.images(enabled)}
    for service in enabled:                     # each service's images under its release's tag
        for name in catalogue.services[service].images() - {TOOLBOX_IMAGE}:
            tags[name] = g.service_tag(service)
    missing = [name for name, tag in tags.items() if engine.image(g.image_ref(name, tag)) is None]
    if missing:
        return Check("images", WARN, f"{len(missing)} not built: {', '.join(missing)}",
                     "`dockyard up` builds what is missing, or `dockyard build`")
    return Check("images", OK, f"all {len(catalogue.images(enabled))} present")


def bind_error(address: str, port: int) -> int:
    """0 when the port can be bound on the address, else the errno. The one port
    probe: prechecks and the deploy's own check before creating containers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        return 0
    except OSError as exc:
        return exc.errno or -1
    finally:
        sock.close()


def _ports(site: Site, catalogue: ServiceCatalogue, enabled: list[str], engine: Engine | None) -> list[Check]:
    ours: set[str] = set()
    if engine is not None:
        site_label = str(site.config_dir.resolve())
        ours = {c.name for c in engine.containers(label=f"{LABEL_MANAGED}=true")
                if c.running and c.labels.get(LABEL_SITE) in (None, site_label)}
    checks, seen = [], set()
    for service in enabled:
        for cname, c in catalogue.services[service].spec.containers.items():
            if unit_name(cname) in ours:
                continue      # held by our own container: a re-deploy keeps it
            for group in c.groups:
                for host in site.inventory.hosts_in(group):
                    if host.remote:
                        continue      # not probed from here; its engine reports a clash
                    for port in c.ports:
                        if (host.address, port) in seen:
                            continue
                        seen.add((host.address, port))
                        err = bind_error(host.address, port)
                        if err == errno.EADDRNOTAVAIL:
                            checks.append(Check("ports", FAIL, f"address {host.address} (host {host.name}) is not "
                                                f"on this machine", "set internal_address or the inventory"))
                        elif err:
                            checks.append(Check("ports", FAIL, f"port {port} on {host.address} is in use "
                                                f"({cname} needs it)", "stop what holds it, or set "
                                                "internal_address to another address"))
    if not checks:
        remote = [h.name for h in site.inventory.hosts.values() if h.remote]
        note = f" (not probed from here on remote hosts: {', '.join(remote)})" if remote else ""
        checks.append(Check("ports", OK, f"{len(seen)} ports free{note}"))
    return checks


def _meminfo() -> dict[str, float]:
    """/proc/meminfo in GiB."""
    out = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0]) / 1024 / 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _memory() -> Check:
    mem = _meminfo()
    total = mem.get("MemTotal", 0.0)
    if total < MEMORY_ADVISED_GIB:
        return Check("memory", WARN, f"{total:.1f} GiB", f"{MEMORY_ADVISED_GIB:.0f} GiB or more advised for the "
                     "all-in-one cloud; lower `workers` in globals.yml services options")
    return Check("memory", OK, f"{total:.1f} GiB, {mem.get('MemAvailable', 0.0):.1f} GiB available")


def _data_plane(site: Site, catalogue: ServiceCatalogue, enabled: list[str], root: Path = Path("/")
                ) -> list[Check]:
    """The datapath and virt type this host gets, and why (hostfacts)."""
    groups = {g for name in enabled for c in catalogue.services[name].spec.containers.values() for g in c.groups}
    if not groups & {"network", "compute"}:
        return []
    facts = probe_host(root)
    options = site.globals.services
    checks = []
    try:
        datapath = choose_datapath(options.get("openvswitch", {}), facts)
        virt = choose_virt_type(options.get("nova-compute", {}), facts) if "compute" in groups else None
    except ConfigError as exc:
        return [Check("data plane", FAIL, str(exc), "fix globals.yml")]
    kind = "the kernel's" if datapath.value == "system" else "userspace"
    checks.append(Check("datapath", OK, f"{datapath.value} ({kind}), because {datapath.why}"))
    if virt is not None:
        status = OK if virt.value == "kvm" or virt.why == "set in globals.yml" else WARN
        how = "hardware virtualisation" if virt.value == "kvm" else "QEMU emulation"
        checks.append(Check("virt type", status, f"{virt.value} ({how}), because {virt.why}",
                            "" if status == OK else "guests boot, slowly; set services: {nova-compute: "
                            "{virt_type: qemu}} to silence this"))
    local = site.inventory.hosts.get(ALL_IN_ONE_HOST)
    if local is not None and not local.remote:
        checks.append(Check("host name", OK, f"{local.hostname}: this machine's name, as libvirt reports it; "
                            f"nova-compute and the neutron agents report it too"))
    if not (root / "dev/net/tun").exists():
        checks.append(Check("tun", FAIL, "/dev/net/tun is missing (guests' ports and the userspace datapath's "
                            "need it)", "modprobe tun"))
    return checks


def _tunnels(site: Site, catalogue: ServiceCatalogue, enabled: list[str], root: Path = Path("/")) -> list[Check]:
    """Can the Open vSwitch agents' tunnels leave their hosts? With the userspace
    datapath only through a bridge holding the tunnel address, which dockyard
    makes from a host's tunnel_interface (tunnels.py): a site whose agents run on
    several hosts fails here for each such host without one."""
    if AGENT_SERVICE not in enabled:
        return []
    groups = catalogue.services[AGENT_SERVICE].spec.containers[AGENT_CONTAINER].groups
    hosts = list({h.name: h for g in groups for h in site.inventory.hosts_in(g)}.values())
    if len(hosts) < 2:
        return []
    options = site.globals.services.get("openvswitch", {})
    local = probe_host(root) if any(not h.remote for h in hosts) else UNKNOWN
    try:
        datapaths = {h.name: choose_datapath(options, UNKNOWN if h.remote else local).value for h in hosts}
    except ConfigError:
        return []                       # said by the data plane's check
    path = Path(site.config_dir) / "inventory.yml"
    checks = []
    for host in untunnelled(hosts, datapaths):
        checks.append(Check(
            "tunnels", FAIL,
            f"{path}: hosts.{host.name}.tunnel_interface: host {host.name} runs the Open vSwitch agent with the "
            f"userspace datapath (netdev), which sends its tunnels to the other hosts only out of an Open vSwitch "
            f"bridge holding the tunnel address, and no tunnel_interface is set for dockyard to make one "
            f"({TUNNEL_BRIDGE})",
            f"set hosts.{host.name}.tunnel_interface (the tunnel network's NIC, e.g. eth1) and "
            f"hosts.{host.name}.tunnel_address (its address there, with the prefix, e.g. 10.114.0.11/24); or "
            f"load the openvswitch kernel module on the host (the kernel datapath)"))
    for host in hosts:
        if host.tunnel_interface and datapaths[host.name] == "system":
            checks.append(Check(
                "tunnels", WARN, f"host {host.name}: tunnel_interface {host.tunnel_interface} is not used with the "
                f"kernel datapath: the kernel routes the tunnels, from {host.tunnel_address} on whichever interface "
                f"holds it", f"put {host.tunnel_address} on an interface of {host.name}, or leave tunnel_interface "
                f"out"))
    if not checks:
        ways = [f"{h.name} from {h.tunnel_address}" + (f" on {TUNNEL_BRIDGE} ({h.tunnel_interface})"
                                                      if datapaths[h.name] == "netdev" else "") for h in hosts]
        checks.append(Check("tunnels", OK, "VXLAN between " + ", ".join(ways)))
    return checks


def _host_engines(site: Site, catalogue: ServiceCatalogue, enabled: list[str], engine: Engine | None
                  ) -> tuple[Engine | None, list[Check]]:
    """Engine and images, per engine of the inventory's hosts; the local engine
    (for the port checks) when some host uses it and it answers."""
    from dockyard.deploy.engines import connect_site

    hosts = list(site.inventory.hosts)
    local_engine = None
    checks: list[Check] = []
    try:
        if engine is None and any(not h.engine for h in site.inventory.hosts.values()):
            engine = connect(site.globals.engine)
        engines = connect_site(site, engine)
    except DockyardError as exc:
        return None, [Check("container engine", FAIL, str(exc), "is the engine running, and `engine` in "
                            "inventory.yml (or globals.yml) right?")]
    groups = engines.groups(hosts)
    pings = engines.each(hosts, lambda e, _: e.ping())
    for i, (eng, served) in enumerate(groups):
        who = f"host{'s' if len(served) > 1 else ''} {', '.join(served)} ({engines.url(served[0])})"
        if isinstance(pings[i], Exception):
            checks.append(Check("container engine", FAIL, f"{who}: does not answer: {pings[i]}",
                                "is its engine running, reachable from here, and its tls files right?"))
            continue
        checks.append(Check("container engine", OK, f"{who}: reachable"))
        image = _images(site, catalogue, enabled, eng)
        checks.append(Check(image.name, image.status, f"{who}: {image.message}", image.advice))
        if not site.inventory.hosts[served[0]].engine:
            local_engine = eng
    return local_engine, checks


def run_prechecks(config_dir: Path, engine: Engine | None = None, services_root: Path | None = None
                  ) -> list[Check]:
    catalogue = load_services(services_root)
    site, checks = _site(Path(config_dir), catalogue)
    if site is None:
        return checks
    enabled = catalogue.closure(site.globals.enabled_services)
    if any(h.engine for h in site.inventory.hosts.values()):
        engine, host_checks = _host_engines(site, catalogue, enabled, engine)
        checks += host_checks
    else:
        engine, engine_check = _engine(site, engine)
        checks.append(engine_check)
        if engine is not None:
            checks.append(_images(site, catalogue, enabled, engine))
    checks += _ports(site, catalogue, enabled, engine)
    checks.append(_memory())
    checks += _data_plane(site, catalogue, enabled)
    checks += _tunnels(site, catalogue, enabled)
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)

