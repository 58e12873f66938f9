"""The root of the image tree: a Debian root filesystem made with debootstrap.

No registry is needed: the rootfs is built locally and imported into the engine.
It is rebuilt only when its inputs (suite, mirror, variant, components) change or
when asked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from dockyard import __version__
from dockyard.engine.driver import Engine
from dockyard.errors import DockyardError

from .config import BuildConfig

Runner = Callable[[list[str], Path], None]


def rootfs_hash(config: BuildConfig) -> str:
    inputs = config.base.model_dump()
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def run_logged(argv: list[str], log_file: Path) -> None:
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise DockyardError(f"{argv[0]} exited {proc.returncode}; see {log_file}")


def debootstrap(config: BuildConfig, target: Path, log_file: Path, run: Runner = run_logged) -> None:
    if shutil.which("debootstrap") is None:
        raise DockyardError("debootstrap is not installed: run scripts/setup (or apt-get install debootstrap)")
    base = config.base
    run(["debootstrap", f"--variant={base.variant}", f"--components={','.join(base.components)}",
         base.suite, str(target), base.mirror], log_file)
    # Downloaded packages and lists are not part of the image.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (target / leftover).glob("*"):
            if item.is_file():
                item.unlink()


def ensure_rootfs(engine: Engine, config: BuildConfig, work_dir: Path, log_file: Path, *,
                  rebuild: bool = False, run: Runner = run_logged) -> tuple[str, bool]:
    """Return (hash, built_now). Skips the work when the engine already has it."""
    digest = rootfs_hash(config)
    ref = config.rootfs_ref()
    existing = engine.image(ref)
    if existing and existing.labels.get("dockyard.hash") == digest and not rebuild:
        return digest, False
    log_file.parent.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rootfs-") as tmp:
        target = Path(tmp) / "rootfs"
        debootstrap(config, target, log_file, run)
        tarball = Path(tmp) / "rootfs.tar"
        with tarfile.open(tarball, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(target, arcname=".", recursive=True)
        engine.import_rootfs(tarball, ref, {"dockyard.hash": digest, "dockyard.version": __version__,
                                            "dockyard.image": "rootfs"})
    return digest, True
