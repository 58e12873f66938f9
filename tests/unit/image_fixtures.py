"""Shared pieces of the builder's unit tests: the fixture catalogue, a stand-in
for debootstrap and tar, and a Builder wired to a FakeEngine."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from dockyard.image.builder import Builder, BuildOptions
from dockyard.image.catalogue import Catalogue, load_catalogue
from dockyard.image.config import BuildConfig
from dockyard.labels import LABEL_IMAGE_HASH
from dockyard.image.hashing import rootfs_hash
from dockyard.engine.fake import FakeEngine

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "images"

#: The fixture tree: image -> parent.
TREE = {
    "base": None,
    "memcached": "base",
    "openstack-base": "base",
    "glance-api": "openstack-base",
    "keystone-base": "openstack-base",
    "keystone": "keystone-base",
    "nova-compute": "openstack-base",
}


def copy_catalogue(tmp_path: Path) -> Path:
    """A private copy of the fixture catalogue, for tests that change it."""
    root = tmp_path / "images"
    shutil.copytree(FIXTURE, root)
    return root


def fixture_catalogue() -> Catalogue:
    return load_catalogue(FIXTURE)


class FakeRunner:
    """Stands in for debootstrap and tar: records each command and makes what
    it would have made. ``fail``: commands (by program) that exit non-zero."""

    def __init__(self, fail: set[str] | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail or set()

    def __call__(self, argv: list[str], log_file: Path) -> None:
        self.calls.append(list(argv))
        with open(log_file, "a") as log:
            log.write(f"$ {' '.join(argv)}\n")
        if argv[0] in self.fail:
            raise RuntimeError(f"{argv[0]} exited 1; see {log_file}")
        if argv[0] == "debootstrap":
            target = Path(argv[-2])
            (target / "var/lib/apt/lists").mkdir(parents=True)
            (target / "var/lib/apt/lists/deb.debian.org_dists_trixie_Release").write_text("lists")
            (target / "etc").mkdir()
            (target / "etc/debian_version").write_text("13.0\n")
        elif argv[0] == "tar":
            tarball = next(a for a in argv if a.startswith("--file=")).split("=", 1)[1]
            Path(tarball).write_bytes(b"not really a tarball")

    def programs(self) -> list[str]:
        return [argv[0] for argv in self.calls]


class RecordingEngine(FakeEngine):
    """A FakeEngine that records when each build starts and ends, and can hold
    chosen builds at a barrier (so a test can prove they run at the same time)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeline: list[tuple[str, str]] = []
        self.nocache_flags: dict[str, bool] = {}
        self.together: set[str] = set()
        self.barrier: threading.Barrier | None = None
        self._timeline_lock = threading.Lock()

    def build(self, context, tag, labels, *, nocache=False, log=None):
        name = tag.rsplit("/", 1)[-1].split(":")[0]
        with self._timeline_lock:
            self.timeline.append(("start", name))
            self.nocache_flags[name] = nocache
        try:
            if self.barrier is not None and name in self.together:
                # Broken (a build failure) unless the others arrive while this one waits.
                self.barrier.wait()
            return super().build(context, tag, labels, nocache=nocache, log=log)
        finally:
            with self._timeline_lock:
                self.timeline.append(("end", name))


def add_current_rootfs(engine: FakeEngine, config: BuildConfig | None = None) -> None:
    config = config or BuildConfig()
    engine.add_image(config.rootfs_ref(), {LABEL_IMAGE_HASH: rootfs_hash(config.base)}, size=50_000)


def make_builder(engine: FakeEngine | None, tmp_path: Path, *, catalogue: Catalogue | None = None,
                 config: BuildConfig | None = None, run: FakeRunner | None = None, **options) -> Builder:
    return Builder(engine, config or BuildConfig(retries=0, threads=2), catalogue or fixture_catalogue(),
                   BuildOptions(work_dir=tmp_path / "work", **options), run=run or FakeRunner())


def built_names(engine: FakeEngine) -> list[str]:
    return [call[1].rsplit("/", 1)[-1].split(":")[0] for call in engine.calls if call[0] == "build"]
