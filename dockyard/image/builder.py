"""The builder: select, render, hash, decide what is cached, then build the rest.

Everything that can be wrong with the input (catalogue, configuration,
templates, overrides) is found in the constructor, before the engine is asked
anything, so invalid input never leaves half a build behind.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from dockyard import __version__
from dockyard.engine.driver import Engine, ImageInfo
from dockyard.deploy.files import write_atomic
from dockyard.registry.client import ImageSource, push_ref, repository_and_tag

from . import rootfs as rootfs_mod
from .catalogue import Catalogue
from .config import BuildConfig
from dockyard.labels import LABEL_BUILD_TIME, LABEL_IMAGE_HASH, LABEL_IMAGE_NAME, LABEL_OWN_HASH, LABEL_VERSION
from .hashing import image_hash, rootfs_hash, tree_hashes
from .render import ImageContext, Renderer, write_context
from .report import BuildReport, distinct_bytes
from .scheduler import CACHED, FAILED, SKIPPED, EventSink, Outcome, Scheduler, ignore

#: The scheduler's name for the root filesystem (the catalogue refuses it as an image name).
ROOTFS = "rootfs"
# What the plan says to do with an image.
BUILD = "build"


@dataclass
class BuildOptions:
    patterns: list[str] = field(default_factory=list)    # regular expressions on image names
    profiles: list[str] = field(default_factory=list)
    overrides: list[Path] = field(default_factory=list)  # --template-override files, in order
    work_dir: Path = Path("/var/lib/dockyard/build")
    logs_dir: Path | None = None
    push: bool = False
    # Where --push sends images whose names carry no registry: the site's own
    # (its address and what it holds, so an image already there is not sent).
    push_to: ImageSource | None = None
    skip_existing: bool = False
    no_cache: bool = False
    rebuild_rootfs: bool = False
    exclude: frozenset[str] = frozenset()               # left out whatever selects them (held-back images)

    @property
    def logs(self) -> Path:
        return Path(self.logs_dir) if self.logs_dir else Path(self.work_dir) / "logs"

    @property
    def contexts(self) -> Path:
        return Path(self.work_dir) / "contexts"

    @property
    def digests_file(self) -> Path:
        """The record of what was pushed: pushed name -> manifest digest and image id."""
        return Path(self.work_dir) / "digests.json"


@dataclass(frozen=True)
class PlannedImage:
    name: str
    ref: str
    hash: str
    action: str                  # build | cached | skipped
    existing: ImageInfo | None   # what the engine holds under ``ref``


@dataclass
class Plan:
    images: dict[str, PlannedImage]   # the selection, in build order
    rootfs_ref: str
    rootfs_hash: str
    rootfs_action: str | None         # build | cached | None (not needed: no root image is built)
    rootfs_existing: ImageInfo | None = None

    def to_build(self) -> list[str]:
        return [name for name, p in self.images.items() if p.action == BUILD]


class Builder:
    def __init__(self, engine: Engine | None, config: BuildConfig, catalogue: Catalogue, options: BuildOptions,
                 run: rootfs_mod.Runner | None = None):
        """``run`` replaces the runner of debootstrap and tar (tests)."""
        self.engine = engine
        self.config = config
        self.catalogue = catalogue
        self.options = options
        self._run = run
        self.selected: list[str] = [n for n in catalogue.select(options.patterns, options.profiles)
                                    if n not in options.exclude]
        self.renderer = Renderer(catalogue, config, options.overrides)
        self.contexts: dict[str, ImageContext] = self.renderer.render_all(self.selected)
        self.rootfs_hash = rootfs_hash(config.base)
        self.hashes: dict[str, str] = tree_hashes(catalogue, self.contexts, self.rootfs_hash)
        self.digests: dict[str, str] = {}             # image -> manifest digest in the registry (--push)
        self.sent: set[str] = set()                   # images whose bytes a push sent (not already there)
        self.pushed_as: dict[str, tuple[str, str, str]] = {}   # image -> (pushed name, digest, image id)
        self._push_lock = threading.Lock()

    # -- without an engine -----------------------------------------------------------
    def ref(self, name: str) -> str:
        return self.config.ref(name)

    def render_to(self, directory: Path) -> list[Path]:
        """``--template-only``: write each selected build context to ``directory/<image>``."""
        return [write_context(self.contexts[name], Path(directory) / name) for name in self.selected]

    def labels(self, name: str) -> dict[str, str]:
        return {
            LABEL_VERSION: __version__,
            LABEL_IMAGE_HASH: self.hashes[name],
            LABEL_IMAGE_NAME: name,
            LABEL_OWN_HASH: image_hash(self.contexts[name], ""),
            LABEL_BUILD_TIME: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # -- deciding ----------------------------------------------------------------------
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("this needs a container engine; the Builder was made without one")
        return self.engine

    def plan(self) -> Plan:
        """What each selected image needs. ``cached``: the engine holds the tag
        with the same hash (not with --no-cache or --rebuild-rootfs, which rebuild
        on a fresh root filesystem); ``skipped``: --skip-existing keeps the tag
        whatever its hash; otherwise ``build``."""
        engine = self._engine()
        opts = self.options
        images: dict[str, PlannedImage] = {}
        for name in self.selected:
            ref = self.ref(name)
            existing = engine.image(ref)
            if existing is not None and not (opts.no_cache or opts.rebuild_rootfs) \
                    and existing.labels.get(LABEL_IMAGE_HASH) == self.hashes[name]:
                action = CACHED
            elif existing is not None and opts.skip_existing:
                action = SKIPPED
            else:
                action = BUILD
            images[name] = PlannedImage(name, ref, self.hashes[name], action, existing)
        rootfs_existing = engine.image(self.config.rootfs_ref())
        needed = any(p.action == BUILD and not self.catalogue.images[n].parent for n, p in images.items())
        if opts.rebuild_rootfs:
            rootfs_action: str | None = BUILD
        elif not needed:
            rootfs_action = None
        elif rootfs_existing is not None and rootfs_existing.labels.get(LABEL_IMAGE_HASH) == self.rootfs_hash:
            rootfs_action = CACHED
        else:
            rootfs_action = BUILD
        return Plan(images, self.config.rootfs_ref(), self.rootfs_hash, rootfs_action, rootfs_existing)

    # -- building ------------------------------------------------------------------------
    def _log_file(self, name: str, attempt: int):
        self.options.logs.mkdir(parents=True, exist_ok=True)
        # The first attempt starts the file afresh; retries add to it.
        return open(self.options.logs / f"{name}.log", "w" if attempt == 1 else "a")

    def _build_rootfs(self, attempt: int) -> int:
        engine = self._engine()
        log_path = self.options.logs / f"{ROOTFS}.log"
        with self._log_file(ROOTFS, attempt) as log:
            log.write(f"# dockyard: root filesystem {self.config.rootfs_ref()}, attempt {attempt}\n")
        rootfs_mod.make_rootfs(engine, self.config, Path(self.options.work_dir), log_path,
                               run=self._run or rootfs_mod.run_command)
        info = engine.image(self.config.rootfs_ref())
        return info.size if info else 0

    def _build_image(self, name: str, attempt: int) -> int:
        engine = self._engine()
        ref = self.ref(name)
        context = write_context(self.contexts[name], self.options.contexts / name)
        with self._log_file(name, attempt) as log:
            def sink(line: str) -> None:
                log.write(line + "\n")
                log.flush()

            sink(f"# dockyard: build {ref} (hash {self.hashes[name]}), attempt {attempt}")
            try:
                engine.build(context, ref, self.labels(name), nocache=self.options.no_cache, log=sink)
                if self.options.push:
                    self._push(name, sink)
            except Exception as exc:
                sink(f"# dockyard: attempt {attempt} failed: {exc}")
                raise
        info = engine.image(ref)
        return info.size if info else 0

    def _push(self, name: str, sink) -> None:
        """Push one image: under its own name when it carries a registry, else as
        ``<site registry>/<namespace>/<name>:<tag>``. An image the registry holds
        already (same image id under that tag) is not sent again: pushing an
        unchanged catalogue moves nothing."""
        engine = self._engine()
        ref = self.ref(name)
        source = self.options.push_to
        target = push_ref(source.address, ref) if source is not None else ref
        info = engine.image(ref)
        if info is None:
            raise RuntimeError(f"{ref} is not in the engine, nothing to push")
        if source is not None:
            found = source.lookup(*repository_and_tag(target))
            if found is not None and found.id == info.id:
                sink(f"# dockyard: {target} is in the registry already ({found.digest}): nothing sent")
                self._pushed(name, target, found.digest, info.id, sent=False)
                return
            if target != ref:
                engine.tag(ref, target)
        sink(f"# dockyard: push {target}")
        digest = engine.push(target, log=sink)
        sink(f"# dockyard: pushed {target} as {digest}")
        self._pushed(name, target, digest, info.id, sent=True)

    def _pushed(self, name: str, target: str, digest: str, image_id: str, sent: bool) -> None:
        with self._push_lock:
            self.digests[name] = digest
            self.pushed_as[name] = (target, digest, image_id)
            if sent:
                self.sent.add(name)

    def _record_digests(self) -> None:
        """Keep what was pushed (name -> digest and image id) beside the build's
        logs, added to what earlier pushes recorded."""
        if not self.pushed_as:
            return
        path = self.options.digests_file
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            record = {}
        for target, digest, image_id in self.pushed_as.values():
            record[target] = {"digest": digest, "id": image_id}
        write_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)

    def _job(self, name: str, attempt: int) -> int:
        return self._build_rootfs(attempt) if name == ROOTFS else self._build_image(name, attempt)

    def _push_kept(self, plan: Plan, results: dict[str, Outcome]) -> None:
        """With --push, cached and skipped images go to the registry too: a
        registry that lost them, or a push that failed last time, is made whole
        (one the registry holds already is only looked up: nothing is sent)."""
        for name in plan.images:
            outcome = results[name]
            if outcome.status not in (CACHED, SKIPPED):
                continue
            self.options.logs.mkdir(parents=True, exist_ok=True)
            with open(self.options.logs / f"{name}.log", "a") as log:  # keep the log of its build
                log.write(f"# dockyard: {outcome.status}\n")

                def write(line: str) -> None:
                    log.write(line + "\n")
                try:
                    self._push(name, write)
                except Exception as exc:
                    log.write(f"# dockyard: push failed: {exc}\n")
                    results[name] = Outcome(name, FAILED, outcome.seconds, outcome.attempts,
                                            f"push failed: {exc}", outcome.size)

    def _distinct_bytes(self) -> int:
        engine = self._engine()
        infos = {name: engine.image(self.ref(name)) for name in self.selected}
        rootfs = engine.image(self.config.rootfs_ref())
        pairs: list[tuple[ImageInfo, ImageInfo | None]] = [(rootfs, None)] if rootfs else []
        for name in self.selected:
            info = infos[name]
            if info is not None:
                parent = self.catalogue.images[name].parent
                pairs.append((info, infos.get(parent) if parent else rootfs))
        return distinct_bytes(pairs)

    def run(self, on_event: EventSink = ignore, workers: int | None = None, plan: Plan | None = None,
            tick: float | None = None) -> BuildReport:
        """Build what the plan (default: a fresh :meth:`plan`) says, ``workers``
        (default: the configuration's threads) at a time, and report on every
        selected image. ``tick``: seconds between the scheduler's ``tick``
        events (None: none)."""
        started = time.monotonic()
        plan = plan or self.plan()
        if plan.rootfs_action == BUILD and self._run is None:
            rootfs_mod.check_host()  # a clear error now, not a failed tree later
        preset = {name: Outcome(name, p.action, size=p.existing.size if p.existing else 0)
                  for name, p in plan.images.items() if p.action != BUILD}
        rootfs_in_build = plan.rootfs_action == BUILD
        parents: dict[str, str | None] = {}
        if rootfs_in_build:
            parents[ROOTFS] = None
        for name in self.selected:
            parent = self.catalogue.images[name].parent
            parents[name] = parent if parent else (ROOTFS if rootfs_in_build else None)
        scheduler = Scheduler(parents, self._job, workers=workers or self.config.workers,
                              retries=self.config.retries, on_event=on_event, preset=preset,
                              tick=tick)
        results = scheduler.run()
        rootfs_outcome = results.pop(ROOTFS, None)
        if plan.rootfs_action == CACHED:
            rootfs_outcome = Outcome(ROOTFS, CACHED, size=plan.rootfs_existing.size if plan.rootfs_existing else 0)
        if self.options.push:
            self._push_kept(plan, results)
            self._record_digests()
        return BuildReport(
            outcomes=[results[name] for name in self.selected],
            seconds=time.monotonic() - started,
            distinct_bytes=self._distinct_bytes(),
            rootfs=rootfs_outcome,
            refs={name: self.ref(name) for name in self.selected},
            hashes=dict(self.hashes),
            rootfs_ref=self.config.rootfs_ref(),
            digests=dict(self.digests),
            sent=sorted(self.sent),
            pushed_to=self.options.push_to.address if (self.options.push and self.options.push_to) else "",
        )
