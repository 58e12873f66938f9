"""Content hashes of the image tree, known before anything is built.

An image's hash covers its rendered Dockerfile, every file of its build context
(path, mode and bytes) and its parent's hash; the root images use the root
filesystem's hash, which covers debootstrap's inputs. So a change anywhere
changes the hash of exactly that image and everything built on it, and an image
whose ``dockyard.hash`` label equals its hash needs no build.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from .catalogue import Catalogue
from .config import BaseConfig
from .render import ImageContext

HASH_LABEL = "dockyard.hash"


def _feed(digest: "hashlib._Hash", *parts: bytes) -> None:
    # Length-prefixed, so no two different inputs can run together into one.
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)


def rootfs_hash(base: BaseConfig) -> str:
    """Of (suite, mirror, variant, components): what debootstrap is run with."""
    digest = hashlib.sha256()
    _feed(digest, b"dockyard-rootfs-1", base.suite.encode(), base.mirror.encode(), base.variant.encode(),
          ",".join(base.components).encode())
    return digest.hexdigest()


def image_hash(context: ImageContext, parent_hash: str) -> str:
    digest = hashlib.sha256()
    _feed(digest, b"dockyard-image-1", parent_hash.encode(), context.dockerfile.encode())
    for rel, (data, mode) in sorted(context.files.items()):
        _feed(digest, rel.encode(), f"{mode:o}".encode(), data)
    return digest.hexdigest()


def tree_hashes(catalogue: Catalogue, contexts: Mapping[str, ImageContext], root_hash: str) -> dict[str, str]:
    """Hashes of every image in ``contexts`` (which must hold each one's parents)."""
    hashes: dict[str, str] = {}
    for name in catalogue.topological(set(contexts)):
        parent = catalogue.images[name].parent
        hashes[name] = image_hash(contexts[name], hashes[parent] if parent else root_hash)
    return hashes
