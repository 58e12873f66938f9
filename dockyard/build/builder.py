"""The builder: select, render, decide what is cached, then build the rest."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from dockyard import __version__
from dockyard.engine.driver import Engine

from .catalogue import Catalogue
from .config import BuildConfig
from .render import Rendered, Renderer, write_context
from .rootfs import ensure_rootfs, rootfs_hash, run_logged
from .scheduler import BUILT, CACHED, SKIPPED, Event, Outcome, Scheduler


@dataclass
class BuildOptions:
    patterns: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    overrides: list[Path] = field(default_factory=list)
    work_dir: Path = Path("work-dir")
    logs_dir: Path | None = None
    push: bool = False
    skip_existing: bool = False
    no_cache: bool = False
    rebuild_rootfs: bool = False

    @property
    def logs(self) -> Path:
        return self.logs_dir or self.work_dir / "logs"


@dataclass
class Report:
    outcomes: list[Outcome]
    seconds: float
    distinct_bytes: int
    rootfs_built: bool = False

    @property
    def ok(self) -> bool:
        return all(o.status in (BUILT, CACHED, SKIPPED) for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("built", "cached", "failed", "unbuildable", "skipped")}
        for o in self.outcomes:
            counts[o.status] += 1
        return counts


class Builder:
    def __init__(self, engine: Engine | None, config: BuildConfig, catalogue: Catalogue, options: BuildOptions,
                 run: Callable = run_logged):
        self.engine = engine
        self.config = config
        self.catalogue = catalogue
        self.options = options
        self.renderer = Renderer(catalogue, config, options.overrides)
        self.selected = catalogue.select(options.patterns, options.profiles)
        self._run = run
        # Rendering everything up front validates every template and override
        # before anything is built.
        self.rendered: dict[str, Rendered] = self.renderer.render_all(self.selected, rootfs_hash(config))

    def render_to(self, directory: Path) -> list[Path]:
        """--template-only: write every selected build context, build nothing."""
        return [write_context(self.rendered[name], directory / name) for name in self.selected]

    def labels(self, name: str) -> dict[str, str]:
        return {
            "dockyard.version": __version__,
            "dockyard.image": name,
            "dockyard.hash": self.rendered[name].hash,
            "dockyard.build-time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def preset(self) -> dict[str, Outcome]:
        """Images that need no build: same hash already in the engine, or kept by --skip-existing."""
        out = {}
        for name in self.selected:
            info = self.engine.image(self.config.ref(name))
            if info is None:
                continue
            if self.options.skip_existing:
                out[name] = Outcome(name, SKIPPED, size=info.size)
            elif not self.options.no_cache and info.labels.get("dockyard.hash") == self.rendered[name].hash:
                out[name] = Outcome(name, CACHED, size=info.size)
        return out

    def run(self, on_event: Callable[[Event], None] = lambda e: None, workers: int | None = None) -> Report:
        assert self.engine is not None, "building needs an engine"
        started = time.monotonic()
        logs = self.options.logs
        logs.mkdir(parents=True, exist_ok=True)
        _, rootfs_built = ensure_rootfs(self.engine, self.config, self.options.work_dir, logs / "rootfs.log",
                                        rebuild=self.options.rebuild_rootfs, run=self._run)
        preset = self.preset()
        # A rebuilt parent invalidates a skipped child's base: --skip-existing keeps it anyway, by design.
        contexts = self.options.work_dir / "contexts"
        log_lock = threading.Lock()

        def build_one(name: str, attempt: int) -> int:
            ref = self.config.ref(name)
            context = write_context(self.rendered[name], contexts / name)
            log_path = logs / f"{name}.log"
            with open(log_path, "a" if attempt > 1 else "w") as log:
                log.write(f"# dockyard build {ref} attempt {attempt}\n")

                def sink(line: str) -> None:
                    with log_lock:
                        log.write(line + "\n")
                        log.flush()

                self.engine.build(context, ref, self.labels(name), nocache=self.options.no_cache, log=sink)
                if self.options.push:
                    self.engine.push(ref, log=sink)
            info = self.engine.image(ref)
            return info.size if info else 0

        parents = {name: self.catalogue.images[name].parent for name in self.selected}
        scheduler = Scheduler(parents=parents, build=build_one, workers=workers or self.config.workers,
                              retries=self.config.retries, on_event=on_event, preset=preset)
        results = scheduler.run()
        outcomes = [results[name] for name in self.selected]
        return Report(outcomes, time.monotonic() - started, self.distinct_bytes(), rootfs_built)

    def distinct_bytes(self) -> int:
        """Bytes of the selected images with shared layers counted once.

        An engine reports each image's size with its parents' layers included, so
        an image adds only its size minus its parent's; the rootfs is counted once."""
        total = 0
        for name in self.selected:
            info = self.engine.image(self.config.ref(name))
            if info is None:
                continue
            parent = self.catalogue.images[name].parent
            parent_info = self.engine.image(self.config.ref(parent) if parent else self.config.rootfs_ref())
            total += max(info.size - (parent_info.size if parent_info else 0), 0)
        rootfs = self.engine.image(self.config.rootfs_ref())
        return total + (rootfs.size if rootfs else 0)
