"""The root of the image tree: a Debian root filesystem made with debootstrap.

No registry and no pulled base image: debootstrap installs the suite into a
folder under the work dir, tar packs it (numeric owners, modes, extended
attributes and ACLs kept) and the engine imports it as
``<namespace>/rootfs:<suite>``, labelled with the hash of debootstrap's inputs.
While an image with that label exists it is not made again.

Every command runs through a :data:`Runner` (``argv, log file``), so unit tests
replace the two commands with a function that needs neither root nor network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from dockyard import __version__
from dockyard.engine.driver import Engine
from dockyard.errors import DockyardError

from .config import BuildConfig
from dockyard.labels import LABEL_BUILD_TIME, LABEL_IMAGE_HASH, LABEL_IMAGE_NAME, LABEL_VERSION
from .hashing import rootfs_hash

Runner = Callable[[list[str], Path], None]
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


def check_host() -> None:
    """Refuse early, before any image is built, when this host cannot make the
    root filesystem: debootstrap and tar must be installed and we must be root."""
    for program in ("debootstrap", "tar"):
        if shutil.which(program) is None:
            raise DockyardError(f"{program} is not installed; the root filesystem needs it: "
                                f"apt-get install {program} (the README's set-up installs it)")
    if os.geteuid() != 0:
        raise DockyardError("making the root filesystem needs root (debootstrap creates device nodes and "
                            "files owned by other users): run dockyard build as root")


def run_command(argv: list[str], log_file: Path) -> None:
    """Run a command with its output appended to ``log_file``."""
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DockyardError(f"{argv[0]} is not installed: apt-get install {argv[0]}") from None
    if proc.returncode != 0:
        raise DockyardError(f"{argv[0]} exited {proc.returncode}; see {log_file}")


def debootstrap_argv(config: BuildConfig, target: Path) -> list[str]:
    base = config.base
    argv = ["debootstrap", f"--variant={base.variant}", f"--components={','.join(base.components)}",
            base.suite, str(target), base.mirror]
    if base.script:                 # a suite debootstrap has no script for is made with another's
        argv.append(str(DEBOOTSTRAP_SCRIPTS / base.script))
    return argv


def tar_argv(source: Path, tarball: Path) -> list[str]:
    # --one-file-system: never descend into a mount a failed debootstrap left behind.
    return ["tar", "--create", f"--file={tarball}", "--numeric-owner", "--xattrs", "--xattrs-include=*",
            "--acls", "--sparse", "--one-file-system", f"--directory={source}", "."]


def is_current(engine: Engine, config: BuildConfig) -> bool:
    """The engine holds the rootfs made from the configured inputs."""
    info = engine.image(config.rootfs_ref())
    return info is not None and info.labels.get(LABEL_IMAGE_HASH) == rootfs_hash(config.base)


def _drop_apt_leftovers(target: Path) -> None:
    # Downloaded packages and package lists are not part of the image.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (target / leftover).glob("*"):
            if item.is_file() and not item.is_symlink():
                item.unlink()


_OCTAL = re.compile(r"\\([0-7]{3})")


def _mounts_under(folder: Path) -> list[str]:
    """Mount points inside ``folder`` (debootstrap mounts proc and sys in its target)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(folder.resolve()) + "/"
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 1:
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[1])  # the kernel writes a space as \040
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, reverse=True)  # deepest first


def _remove(folder: Path, run: Runner, log_file: Path) -> None:
    """Delete the scratch folder, unmounting anything left mounted in it first:
    deleting through a mount of /proc or /dev would reach the host's."""
    for point in _mounts_under(folder):
        run(["umount", "--lazy", point], log_file)
    left = _mounts_under(folder)
    if left:
        raise DockyardError(f"{folder} still has mounts ({', '.join(left)}); unmount them and delete it by hand")
    shutil.rmtree(folder, ignore_errors=True)


def make_rootfs(engine: Engine, config: BuildConfig, work_dir: Path, log_file: Path,
                run: Runner = run_command) -> str:
    """debootstrap, tar, import. Returns the image id."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=work_dir, prefix="rootfs-"))
    try:
        target = scratch / "rootfs"
        run(debootstrap_argv(config, target), log_file)
        _drop_apt_leftovers(target)
        tarball = scratch / "rootfs.tar"
        run(tar_argv(target, tarball), log_file)
        labels = {
            LABEL_IMAGE_HASH: rootfs_hash(config.base),
            LABEL_VERSION: __version__,
            LABEL_IMAGE_NAME: "rootfs",
            LABEL_BUILD_TIME: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with open(log_file, "a") as log:
            log.write(f"# importing {tarball} as {config.rootfs_ref()}\n")
        return engine.import_rootfs(tarball, config.rootfs_ref(), labels)
    finally:
        _remove(scratch, run, log_file)
