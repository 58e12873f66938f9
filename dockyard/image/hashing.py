"""Content hashes of the image tree, known before anything is built.

An image's hash covers its rendered Dockerfile, every file of its build context
(path, mode and bytes) and its parent's hash; the root images use the root
filesystem's hash, which covers debootstrap's inputs. So a change anywhere
changes the hash of exactly that image and everything built on it, and an image
whose ``dockyard.hash`` label equals its hash needs no build.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

from .catalogue import Catalogue
from .config import BaseConfig
from .render import ImageContext


# The byte layout below is the one every image built so far is labelled with:
# changing it would make every existing image look outdated and rebuild the
# whole catalogue from debootstrap. Each context file enters as its path, NUL,
# octal mode, NUL and the SHA-256 of its bytes (paths hold no NUL, digests have
# one length), after the parent's hash (64 hex digits) and the Dockerfile.


def rootfs_hash(base: BaseConfig) -> str:
    """Of (suite, mirror, variant, components): what debootstrap is run with."""
    inputs = {"suite": base.suite, "mirror": base.mirror, "variant": base.variant,
              "components": list(base.components)}
    if base.script:                 # only when set: the hash of every suite with its own script stays as it was
        inputs["script"] = base.script
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def image_hash(context: ImageContext, parent_hash: str) -> str:
    digest = hashlib.sha256()
    digest.update(parent_hash.encode())
    digest.update(context.dockerfile.encode())
    for rel, (data, mode) in sorted(context.files.items()):
        digest.update(f"{rel}\0{mode:o}\0".encode() + hashlib.sha256(data).digest())
    return digest.hexdigest()


def tree_hashes(catalogue: Catalogue, contexts: Mapping[str, ImageContext], root_hash: str) -> dict[str, str]:
    """Hashes of every image in ``contexts`` (which must hold each one's parents)."""
    hashes: dict[str, str] = {}
    for name in catalogue.topological(set(contexts)):
        parent = catalogue.images[name].parent
        hashes[name] = image_hash(contexts[name], hashes[parent] if parent else root_hash)
    return hashes
