"""Facts: what the engine and the disk hold now, as plain data for the planner.

One list call for containers and one for volumes, whatever the size of the site:
the no-op re-deploy of a whole cloud must take seconds, so there is no per-container
round trip here. On disk only the wanted files are read, plus the jobs record.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.engine.driver import ContainerState, Engine

from dockyard.deploy.execute.jobs_record import load_jobs
from dockyard.labels import LABEL_MANAGED, LABEL_SITE
from dockyard.deploy.wanted.model import WantedState


@dataclass
class ObservedState:
    containers: dict[str, ContainerState] = field(default_factory=dict)   # managed containers by name
    volumes: set[str] = field(default_factory=set)                        # every volume name
    files: dict[str, bytes | None] = field(default_factory=dict)          # wanted path -> bytes, None if absent
    file_modes: dict[str, int] = field(default_factory=dict)              # wanted path -> permission bits
    jobs_done: dict[str, str] = field(default_factory=dict)               # job name -> hash of last success
    foreign: dict[str, str] = field(default_factory=dict)                 # another site's container -> its site


def read_file(path: str) -> tuple[bytes | None, int | None]:
    """The bytes and permission bits of a file, or (None, None) when it is absent."""
    try:
        with open(path, "rb") as fh:
            return fh.read(), stat.S_IMODE(Path(path).stat().st_mode)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        # Absent as a file: writing it is planned, and a folder in the way makes
        # that write fail with the path named, rather than this observation.
        return None, None


def observe(engine: Engine, wanted: WantedState, state_dir: Path, site: str | None = None) -> ObservedState:
    """The facts. With ``site``, managed containers labelled for another site go to
    ``foreign``, never to ``containers``: one site's deploy must not plan against,
    let alone remove, another's containers. Unlabelled ones (made before sites were
    labelled) count as this site's."""
    observed = ObservedState()
    for c in engine.containers(label=f"{LABEL_MANAGED}=true"):
        owner = c.labels.get(LABEL_SITE)
        if site is not None and owner is not None and owner != site:
            observed.foreign[c.name] = owner
        else:
            observed.containers[c.name] = c
    # Every volume, labelled or not: a volume of the wanted name made by hand (or by
    # an engine auto-creating a mount) is used as it is, never created over.
    observed.volumes = {v.name for v in engine.volumes()}
    for f in wanted.files:
        if f.path in observed.files:
            continue
        content, mode = read_file(f.path)
        observed.files[f.path] = content
        if mode is not None:
            observed.file_modes[f.path] = mode
    observed.jobs_done = load_jobs(state_dir)
    return observed
