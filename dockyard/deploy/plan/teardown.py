"""The plans of ``dockyard stop`` and ``dockyard destroy``: pure functions of
what the site has on its engines (:class:`~dockyard.deploy.plan.observe.SiteObjects`).

Both take the site down in the reverse of the order a deploy brings it up: a
service's containers are stopped (or removed) once those of every service
depending on it are, so nova lets go of rabbitmq before rabbitmq goes, and
services independent of each other go in parallel. A service with nothing to
do passes on what it would have waited for, as in the deploy planner, so the
order holds across services already stopped. The order is by service (the
catalogue's ``depends_on``), across hosts: a compute host's nova_compute is
stopped before the controller's rabbitmq.

Destroy then cleans what the data plane left on each host's network (once the
containers that made it are gone), removes the site's volumes when asked (once
no container of theirs holds them), and forgets the records of what those
volumes held. A host whose engine does not answer gets one ``reach_engine``
action, which fails; the others are taken down all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.engine.driver import ContainerSpec, VolumeInfo
from dockyard.labels import LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE

from dockyard.deploy.wanted.model import WantedJob, WantedSharedMount, unit_key
from .observe import SiteObjects
from .planner import Action, ActionKind, Plan

# Statuses in which a container is stopped by `stop`: a restarting one is a
# crash loop its restart policy keeps going.
STOPPABLE = ("running", "restarting")


@dataclass(frozen=True)
class HostNetwork:
    """The host-network cleanup of ops/hostnet.py, as data: the one-shot that
    makes /run/netns a shared mount, the one-shot that cleans, and the image
    both need (a host whose engine lacks it never ran the data plane)."""

    share: ContainerSpec
    clean: ContainerSpec
    image: str
    service: str = "neutron-agents"
    timeout: float = 120.0


@dataclass(frozen=True)
class VolumeOwnership:
    """What makes a volume the site's to delete (names are global on an engine):
    the site recorded making it, or it is labelled for the site, or (made before
    either existed) it has no site label and the site's services use its name."""

    site: str
    recorded: frozenset[str]
    used: frozenset[str]

    def why(self, volume: VolumeInfo) -> str | None:
        """Why ``volume`` is the site's, or None when it is not."""
        if volume.name in self.recorded:
            return "made by this site"
        if LABEL_SITE in volume.labels:
            return "labelled for this site" if volume.labels[LABEL_SITE] == self.site else None
        if volume.labels.get(LABEL_MANAGED) == "true" and volume.name in self.used:
            return "used by this site's services"
        return None


def dependents_first(depends: dict[str, tuple[str, ...]]) -> list[str]:
    """Services, each before the services it depends on (a name it depends on
    that is not a key is left out). Deterministic: by name where free."""
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done or name not in depends or name in path:
            return
        for dep in sorted(depends[name]):
            visit(dep, (*path, name))
        done.add(name)
        order.append(name)

    for name in sorted(depends):
        visit(name, ())
    return order[::-1]


class _Teardown:
    def __init__(self, objects: SiteObjects, depends: dict[str, tuple[str, ...]]):
        self.objects = objects
        self.actions: list[Action] = []
        known = set(depends)
        # Services the catalogue does not know (any more) go first, as if they
        # depended on every service that nothing else depends on.
        present = {c.labels.get(LABEL_SERVICE, "") for c in objects.containers.values()}
        self.unknown = sorted(present - known)
        self.dependents: dict[str, list[str]] = {s: [] for s in known}
        for service, deps in depends.items():
            for dep in deps:
                if dep in self.dependents:
                    self.dependents[dep].append(service)
        for service in known:
            if not self.dependents[service]:
                self.dependents[service] = list(self.unknown)
        self.order = [*self.unknown, *dependents_first(depends)]

    def key(self, name: str, host: str) -> str:
        return unit_key(name, host, self.objects.multi_host)

    def add(self, action: Action) -> Action:
        self.actions.append(action)
        return action

    def reach(self) -> None:
        for host, why in sorted(self.objects.unreachable.items()):
            self.add(Action(f"reach_engine:{host}", ActionKind.REACH_ENGINE, host, "", host,
                            f"engine unreachable when observed: {why}"))

    def containers(self, act) -> dict[str, list[str]]:
        """``act(key, container, deps)`` for each container, services dependents
        first; returns host -> the ids of the actions made there."""
        by_service: dict[str, list[str]] = {}
        for key in sorted(self.objects.containers):
            service = self.objects.containers[key].labels.get(LABEL_SERVICE, "")
            by_service.setdefault(service, []).append(key)
        ready: dict[str, tuple[str, ...]] = {}      # service -> after which it is down
        on_host: dict[str, list[str]] = {}
        for service in self.order:
            deps = tuple(dict.fromkeys(d for s in self.dependents.get(service, ()) for d in ready.get(s, ())))
            mine = []
            for key in by_service.get(service, ()):
                action = act(key, self.objects.containers[key], deps)
                if action is not None:
                    mine.append(self.add(action).id)
                    on_host.setdefault(self.objects.hosts[key], []).append(action.id)
            ready[service] = tuple(mine) or deps
        return on_host


def make_stop_plan(objects: SiteObjects, depends: dict[str, tuple[str, ...]]) -> Plan:
    """Stop every running container of the site; ``depends``: service -> the
    services it depends on (the catalogue's ``depends_on``)."""
    t = _Teardown(objects, depends)
    t.reach()

    def stop(key: str, c, deps: tuple[str, ...]) -> Action | None:
        if c.status not in STOPPABLE:
            return None
        return Action(f"stop:{key}", ActionKind.STOP, c.name, c.labels.get(LABEL_SERVICE, ""), t.objects.hosts[key],
                      f"is {c.status}", deps)

    t.containers(stop)
    return Plan(t.actions)


def make_destroy_plan(objects: SiteObjects, depends: dict[str, tuple[str, ...]], *, include_volumes: bool,
                      ownership: VolumeOwnership, host_network: HostNetwork | None, state_dir: Path) -> Plan:
    """Remove every container of the site; clean each host's network when the
    data plane ran there (``host_network`` None: no network service is
    enabled); with ``include_volumes`` remove the site's volumes and, every
    host having answered, forget the records (jobs, volumes, upgrade) in
    ``state_dir``, so every bootstrap runs again."""
    t = _Teardown(objects, depends)
    t.reach()

    def remove(key: str, c, deps: tuple[str, ...]) -> Action:
        return Action(f"remove:{key}", ActionKind.REMOVE, c.name, c.labels.get(LABEL_SERVICE, ""),
                      t.objects.hosts[key], f"is {c.status}", deps)

    removals = t.containers(remove)
    for first in dict.fromkeys(objects.engine_hosts.values()):
        # What runs on this engine, whichever of its hosts it is put on.
        gone = tuple(a for host, ids in removals.items() if objects.engine_hosts.get(host) == first for a in ids)
        cleaned: tuple[str, ...] = ()
        if host_network is not None and host_network.image in objects.images.get(first, set()):
            cleaned = _clean_host_network(t, host_network, first, gone)
        if include_volumes:
            for key in sorted(k for k, h in objects.volume_hosts.items() if h == first):
                volume = objects.volumes[key]
                why = ownership.why(volume)
                if why is not None:
                    t.add(Action(f"remove_volume:{key}", ActionKind.REMOVE_VOLUME, volume.name,
                                 volume.labels.get(LABEL_SERVICE, ""), first, why, (*gone, *cleaned)))
    if include_volumes and not objects.unreachable:
        # No dependency on purpose: with the records gone, the next deploy runs
        # every bootstrap again, harmless over data that is still there (the jobs
        # are idempotent); records kept over data that is gone would skip them.
        t.add(Action(f"forget_records:{state_dir}", ActionKind.FORGET_RECORDS, str(state_dir), "", "",
                     "the data they record is removed: every bootstrap job runs again"))
    return Plan(t.actions)


def _clean_host_network(t: _Teardown, hn: HostNetwork, host: str, gone: tuple[str, ...]) -> tuple[str, ...]:
    """/run/netns shared (as after a reboot), then the cleanup, once the
    containers that made the namespaces and taps are gone."""
    share = t.add(Action(f"share_mount:{t.key('/run/netns', host)}", ActionKind.SHARE_MOUNT, "/run/netns",
                         hn.service, host, "the host network cleanup binds it with shared propagation", gone,
                         shared_mount=WantedSharedMount("/run/netns", host, hn.service, hn.share)))
    job = WantedJob(name=hn.clean.name, host=host, service=hn.service, spec=hn.clean, hash="", timeout=hn.timeout)
    clean = t.add(Action(f"clean_host_network:{host}", ActionKind.CLEAN_HOST_NETWORK, host, hn.service, host,
                         "the data plane's network namespaces and bridge taps outlive its containers",
                         (share.id,), job=job))
    return (clean.id,)
