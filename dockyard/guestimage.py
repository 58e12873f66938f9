"""The dockyard guest: a small bootable disk for the cloud's own tests.

The catalogue's ``guest-image`` image carries a qcow2 disk (Debian's kernel,
busybox and dropbear; see docs/images.md) at :data:`DISK_PATH`, with a manifest
at :data:`MANIFEST_PATH`. :func:`export_guest_disk` copies the disk out of the
image to a file, atomically, checked against the manifest's sha256, so it can be
uploaded to Glance::

    from dockyard.engine import connect
    from dockyard.guestimage import export_guest_disk, guest_image_ref

    disk = export_guest_disk(connect(), guest_image_ref(), "/var/tmp/dockyard-guest.qcow2")
    # openstack image create --disk-format qcow2 --container-format bare --file disk.path ...
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.image.config import BuildConfig
    from dockyard.engine.driver import Engine

GUEST_IMAGE = "guest-image"
DISK_PATH = "/guest/dockyard-guest.qcow2"
MANIFEST_PATH = "/guest/guest.json"

#: What the guest prints on its serial console (prefixes, in this order).
CONSOLE_DHCP = "dockyard-guest: dhcp eth0 "
CONSOLE_HOSTNAME = "dockyard-guest: metadata hostname "
CONSOLE_KEYS = "dockyard-guest: metadata keys "
CONSOLE_SSHD = "dockyard-guest: sshd up"

#: Login user (key only, from the metadata's public key).
LOGIN_USER = "root"


@dataclass(frozen=True)
class GuestDisk:
    path: Path
    sha256: str
    size: int                      # bytes of the qcow2 file
    manifest: dict = field(default_factory=dict, compare=False)
    copied: bool = True            # False: the destination already held this disk

    @property
    def disk_format(self) -> str:
        return str(self.manifest.get("format", "qcow2"))


def guest_image_ref(config: BuildConfig | None = None) -> str:
    """The guest image's reference under a build configuration (default:
    ``dockyard/guest-image:2025.1``)."""
    if config is None:
        from dockyard.image.config import BuildConfig

        config = BuildConfig()
    return config.ref(GUEST_IMAGE)


def read_manifest(engine: Engine, image_ref: str) -> dict:
    """The image's ``guest.json``. A missing image says how to build it."""
    if engine.image(image_ref) is None:
        raise DockyardError(f"no guest image {image_ref}: build it with "
                            f"`dockyard build '^{GUEST_IMAGE}$'` (same --tag/--namespace)")
    try:
        manifest = json.loads(engine.read_file(image_ref, MANIFEST_PATH))
    except ValueError as exc:
        raise DockyardError(f"{MANIFEST_PATH} in {image_ref} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise DockyardError(f"{MANIFEST_PATH} in {image_ref} has no sha256")
    return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_guest_disk(engine: Engine, image_ref: str, dest: str | Path) -> GuestDisk:
    """Write the guest disk of ``image_ref`` to ``dest`` and return it.

    The file is written beside ``dest`` under a temporary name, checked against
    the manifest's sha256, flushed, then renamed over ``dest``: a reader never
    sees half a disk, and a failed copy leaves ``dest`` as it was. A ``dest``
    that already holds the same disk is left alone (``copied`` is False).
    """
    dest = Path(dest)
    manifest = read_manifest(engine, image_ref)
    want = manifest["sha256"]
    if dest.is_file() and sha256_of(dest) == want:
        return GuestDisk(dest, want, dest.stat().st_size, manifest, copied=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        size = engine.copy_file(image_ref, DISK_PATH, tmp)
        got = sha256_of(tmp)
        if got != want:
            raise DockyardError(f"{DISK_PATH} copied from {image_ref} has sha256 {got}, "
                                f"its manifest says {want}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a crash once the folder is flushed
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return GuestDisk(dest, got, size, manifest)
