"""Facts: what the engine and the disk hold now. One list call per kind of object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.engine.driver import ContainerState, Engine

from .model import LABEL_MANAGED, WantedState


@dataclass
class ObservedState:
    containers: dict[str, ContainerState] = field(default_factory=dict)
    volumes: set[str] = field(default_factory=set)
    files: dict[str, bytes | None] = field(default_factory=dict)     # wanted path -> current bytes
    jobs_done: dict[str, str] = field(default_factory=dict)          # job name -> hash recorded


def jobs_record_path(state_dir: Path) -> Path:
    return state_dir / "jobs.json"


def read_jobs_record(state_dir: Path) -> dict[str, str]:
    path = jobs_record_path(state_dir)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a torn record only means jobs (all idempotent) run again


def observe(engine: Engine, wanted: WantedState, state_dir: Path) -> ObservedState:
    containers = {c.name: c for c in engine.containers(label=f"{LABEL_MANAGED}=true")}
    volumes = {v.name for v in engine.volumes()}
    files: dict[str, bytes | None] = {}
    for f in wanted.files:
        p = Path(f.path)
        files[f.path] = p.read_bytes() if p.exists() else None
    return ObservedState(containers, volumes, files, read_jobs_record(state_dir))
