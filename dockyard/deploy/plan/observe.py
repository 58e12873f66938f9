"""Facts: what the engines and the disk hold now, as plain data for the planner.

One list call for containers and one for volumes per engine, whatever the size of
the site, every engine at once: the no-op re-deploy of a whole cloud must take
seconds, so there is no per-container round trip here. On disk only the wanted
files are read, the names of the files in their units' folders (a file no unit
wants any more is removed), and the jobs record.

A container whose image was rebuilt, and for which the versions of the
packages it names decide whether it is kept (plan/inplace.py), has both
images' package lists read, from its host's engine: only then, so a no-op
deploy reads none.

On a site of several hosts, containers and volumes are keyed ``name@host``
(:func:`dockyard.deploy.wanted.model.unit_key`), as the plan names them. An
engine that does not answer is no error here: its hosts go to ``unreachable``,
and the plan fails their work, and only theirs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.engine.driver import ContainerState, Engine, VolumeInfo
from dockyard.errors import EngineError, EngineUnavailable
from dockyard.image.packages import MANIFEST, parse_manifest

from dockyard.deploy.execute.jobs_record import load_job_secrets, load_jobs
from dockyard.labels import LABEL_HOST, LABEL_MANAGED, LABEL_OWN_HASH, LABEL_SITE
from dockyard.deploy.wanted.model import WantedContainer, WantedState, unit_key

from .inplace import PackageVersions, matching, rebuilt_only


@dataclass
class ObservedState:
    containers: dict[str, ContainerState] = field(default_factory=dict)   # managed containers by name
    volumes: set[str] = field(default_factory=set)                        # every volume name
    files: dict[str, bytes | None] = field(default_factory=dict)          # wanted path -> bytes, None if absent
    file_modes: dict[str, int] = field(default_factory=dict)              # wanted path -> permission bits
    jobs_done: dict[str, str] = field(default_factory=dict)               # job name -> hash of last success
    job_secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # job name -> {secret: keyed hash} then
    foreign: dict[str, str] = field(default_factory=dict)                 # another site's container -> its site
    multi_host: bool = False                  # keys are name@host (more than one host observed or wanted)
    hosts: dict[str, str] = field(default_factory=dict)                   # container key -> host it was seen on
    unreachable: dict[str, str] = field(default_factory=dict)             # host -> why its engine did not answer
    images: dict[str, dict[str, str]] = field(default_factory=dict)       # host -> tag -> image id (with a registry)
    folder_files: dict[str, list[str]] = field(default_factory=dict)      # unit config folder -> its files' paths
    # Container key -> the versions of its restart_packages in the image it runs
    # and in the wanted one; only for containers where they decide (plan/inplace.py).
    packages: dict[str, PackageVersions] = field(default_factory=dict)


def read_file(path: str) -> tuple[bytes | None, int | None]:
    """The bytes and permission bits of a file, or (None, None) when it is absent."""
    try:
        with open(path, "rb") as fh:
            return fh.read(), stat.S_IMODE(Path(path).stat().st_mode)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        # Absent as a file: writing it is planned, and a folder in the way makes
        # that write fail with the path named, rather than this observation.
        return None, None


def folder_files(folder: str) -> list[str]:
    """The paths of the regular files in a unit's config folder, but those whose
    names start with "." (a write's temporary file, never a unit's file)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries if not e.name.startswith(".") and e.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _engine_facts(engine: Engine, tags: bool = False) -> tuple[list[ContainerState], set[str], dict[str, str]]:
    containers = engine.containers(label=f"{LABEL_MANAGED}=true")
    # Every volume, labelled or not: a volume of the wanted name made by hand (or by
    # an engine auto-creating a mount) is used as it is, never created over.
    # The images' tags only when a registry serves them (one more list call).
    return containers, {v.name for v in engine.volumes()}, engine.tags() if tags else {}


def observe(engine, wanted: WantedState, state_dir: Path, site: str | None = None,
            hosts: list[str] | None = None, unreachable: dict[str, str] | None = None) -> ObservedState:
    """The facts: :func:`observe_containers` (containers and volumes of every
    engine), the wanted files on this machine's disk and the jobs record."""
    observed = observe_containers(engine, wanted, site, hosts, unreachable)
    for f in wanted.files:
        if f.path in observed.files:
            continue
        content, mode = read_file(f.path)
        observed.files[f.path] = content
        if mode is not None:
            observed.file_modes[f.path] = mode
    for folder in sorted({str(Path(f.path).parent) for f in wanted.files if f.unit}):
        observed.folder_files[folder] = folder_files(folder)
    observed.jobs_done = load_jobs(state_dir)
    observed.job_secrets = load_job_secrets(state_dir)
    return observed


def observe_containers(engine, wanted: WantedState, site: str | None = None, hosts: list[str] | None = None,
                       unreachable: dict[str, str] | None = None) -> ObservedState:
    """The facts. ``engine``: one engine for every host, or a
    :class:`dockyard.deploy.engines.SiteEngines`; ``hosts``: the site's hosts
    (default: those of the wanted state); ``unreachable``: hosts known not to
    answer (host -> why), not asked again. With ``site``, managed containers
    labelled for another site go to ``foreign``, never to ``containers``: one
    site's deploy must not plan against, let alone remove, another's containers.
    Unlabelled ones (made before sites were labelled) count as this site's.

    A container is put on the host its label names when that host's engine is
    the one it was found on, else on the first host of that engine (so that an
    unwanted one is removed where it is)."""
    from dockyard.deploy.engines import SiteEngines, brief

    engines = engine if isinstance(engine, SiteEngines) else SiteEngines.single(engine)
    names = list(dict.fromkeys([*(hosts or []), *sorted(wanted.hosts())])) or [""]
    observed = ObservedState(multi_host=len(names) > 1)
    skip = dict(unreachable or {})
    asked = [h for h in names if h not in skip]
    groups = engines.groups(asked)
    tags = bool(wanted.images)
    facts = engines.each(asked, lambda e, _: _engine_facts(e, tags)) if asked else {}
    observed.unreachable.update({h: why for h, why in skip.items() if h in names})
    for i, (_, served) in enumerate(groups):
        result = facts[i]
        if isinstance(result, Exception):
            why = brief(result)
            for host in served:
                observed.unreachable[host] = why
            continue
        containers, volumes, images = result
        for c in containers:
            labelled = c.labels.get(LABEL_HOST, "")
            host = labelled if labelled in served else served[0]
            key = unit_key(c.name, host, observed.multi_host)
            owner = c.labels.get(LABEL_SITE)
            if site is not None and owner is not None and owner != site:
                observed.foreign[key] = owner
            else:
                observed.containers[key] = c
                observed.hosts[key] = host
        for host in served:
            observed.volumes |= {unit_key(v, host, observed.multi_host) for v in volumes}
            if tags:
                observed.images[host] = images
    observe_packages(engines, wanted, observed)
    return observed


def observe_packages(engines, wanted: WantedState, observed: ObservedState) -> None:
    """For each wanted container whose package versions decide whether it is
    kept (:func:`rebuilt_only`), those versions in the image it runs and in the
    wanted one, read from its host's engine by image id, with the two images'
    own-file hashes (their labels); each image's list and labels read once per
    engine, every engine at once. What cannot be read is said in
    ``error`` (and the container is recreated, with that reason)."""
    from dockyard.deploy.engines import brief

    todo: dict[str, list[tuple[str, WantedContainer, ContainerState]]] = {}
    for c in wanted.containers:
        if c.host in observed.unreachable:
            continue
        key = unit_key(c.name, c.host, observed.multi_host)
        current = observed.containers.get(key)
        if current is not None and rebuilt_only(c, current):
            todo.setdefault(c.host, []).append((key, c, current))
    if not todo:
        return

    def read(engine: Engine, served: list[str]) -> dict[str, PackageVersions]:
        lists: dict[str, dict[str, str] | str] = {}          # image id -> its packages, or why unreadable

        def packages(image_id: str) -> dict[str, str] | str:
            if image_id not in lists:
                try:
                    lists[image_id] = parse_manifest(engine.read_file(image_id, MANIFEST).decode(errors="replace"))
                except EngineUnavailable:
                    raise                                   # the whole engine: said once, for all it serves
                except EngineError as exc:
                    lists[image_id] = f"cannot read {MANIFEST} of image {image_id[:19]}: {exc}"
            return lists[image_id]

        owns: dict[str, str] = {}                            # image id -> its own-file hash ("": none)

        def own_hash(image_id: str) -> str:
            if image_id not in owns:
                info = engine.image(image_id)
                owns[image_id] = info.labels.get(LABEL_OWN_HASH, "") if info is not None else ""
            return owns[image_id]

        out = {}
        for host in served:
            for key, c, current in todo[host]:
                running, wanted_list = packages(current.image_id), packages(c.image_id)
                if isinstance(running, str) or isinstance(wanted_list, str):
                    out[key] = PackageVersions(error=running if isinstance(running, str) else str(wanted_list))
                else:
                    out[key] = PackageVersions(matching(running, c.restart_packages),
                                               matching(wanted_list, c.restart_packages),
                                               own_running=own_hash(current.image_id),
                                               own_wanted=own_hash(c.image_id))
        return out

    hosts = list(todo)
    results = engines.each(hosts, read)
    for i, (_, served) in enumerate(engines.groups(hosts)):
        result = results[i]
        if isinstance(result, Exception):
            why = f"the engine did not answer: {brief(result)}"
            observed.packages.update({key: PackageVersions(error=why) for host in served for key, _, _ in todo[host]})
        else:
            observed.packages.update(result)


# -- what stop and destroy act on -------------------------------------------------------

@dataclass
class SiteObjects:
    """What a site has on its engines, for ``dockyard stop`` and ``destroy``
    (plan/teardown.py). Keys are as in :class:`ObservedState`. What an engine
    holds once (a volume, the host's network) is put on the first of its hosts."""

    containers: dict[str, ContainerState] = field(default_factory=dict)   # key -> the site's container
    hosts: dict[str, str] = field(default_factory=dict)                   # container key -> its host
    volumes: dict[str, VolumeInfo] = field(default_factory=dict)          # key -> every volume of an engine
    volume_hosts: dict[str, str] = field(default_factory=dict)            # volume key -> host
    engine_hosts: dict[str, str] = field(default_factory=dict)            # host -> first host of its engine
    images: dict[str, set[str]] = field(default_factory=dict)             # first host -> asked-for images present
    multi_host: bool = False
    unreachable: dict[str, str] = field(default_factory=dict)             # host -> why its engine did not answer


def observe_site(engine, site: str, hosts: list[str], unreachable: dict[str, str] | None = None,
                 images: tuple[str, ...] = ()) -> SiteObjects:
    """The containers labelled for ``site`` (only those: stopping and removing
    are not undone by a deploy, so never another site's, nor an unlabelled
    one), every volume, and which of ``images`` each engine holds; one call
    of each per engine, every engine at once. An engine that does not answer
    puts its hosts in ``unreachable``."""
    from dockyard.deploy.engines import SiteEngines, brief

    engines = engine if isinstance(engine, SiteEngines) else SiteEngines.single(engine)
    names = list(hosts) or [""]
    objects = SiteObjects(multi_host=len(names) > 1)
    objects.unreachable.update({h: why for h, why in (unreachable or {}).items() if h in names})
    asked = [h for h in names if h not in objects.unreachable]

    def facts(e: Engine, _: list[str]) -> tuple[list[ContainerState], list[VolumeInfo], set[str]]:
        ours = [c for c in e.containers(label=f"{LABEL_MANAGED}=true") if c.labels.get(LABEL_SITE) == site]
        return ours, e.volumes(), {ref for ref in images if e.image(ref) is not None}

    groups = engines.groups(asked)
    results = engines.each(asked, facts) if asked else {}
    for i, (_, served) in enumerate(groups):
        result = results[i]
        if isinstance(result, Exception):
            objects.unreachable.update({host: brief(result) for host in served})
            continue
        containers, volumes, present = result
        first = served[0]
        objects.engine_hosts.update({host: first for host in served})
        objects.images[first] = present
        for c in containers:
            labelled = c.labels.get(LABEL_HOST, "")
            host = labelled if labelled in served else first
            key = unit_key(c.name, host, objects.multi_host)
            objects.containers[key] = c
            objects.hosts[key] = host
        for v in volumes:
            key = unit_key(v.name, first, objects.multi_host)
            objects.volumes[key] = v
            objects.volume_hosts[key] = first
    return objects
