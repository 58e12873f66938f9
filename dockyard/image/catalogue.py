"""The image catalogue: ``images/<name>/image.yml`` discovered into a tree.

Every image has one parent (``base`` has none: it is built on the debootstrap
root filesystem), so the catalogue is a forest rooted at the rootfs. Loading
validates all of it, so a broken catalogue is refused before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, field_validator

from dockyard import SOURCE_ROOT
from dockyard.datafiles import StrictModel, read_model
from dockyard.errors import ConfigError

from .config import check_packages

DEFAULT_ROOT = SOURCE_ROOT / "images"
META_FILE = "image.yml"
TEMPLATE_FILE = "Dockerfile.j2"
#: The profile every image belongs to without saying so.
ALL = "all"
#: Not an image name: the node the builder puts above the root images.
RESERVED = ("rootfs",)
# An image name is one component of an image reference (lowercase, no slash).
NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
PROFILE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")


class ImageMeta(StrictModel):
    """The schema of ``image.yml`` (see docs/images.md)."""

    parent: str | None = None
    profiles: list[str] = Field(default_factory=list)
    packages: list[str] = Field(default_factory=list)
    user: str = "root"
    contract: bool = False

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, value: list[str]) -> list[str]:
        for name in value:
            if not PROFILE_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a profile name (lowercase letters, digits, '-')")
        return value

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        return check_packages(value)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not USER_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a user name")
        return value


@dataclass(frozen=True)
class ImageDef:
    name: str
    folder: Path
    meta: ImageMeta

    @property
    def parent(self) -> str | None:
        return self.meta.parent

    @property
    def meta_path(self) -> Path:
        return self.folder / META_FILE


@dataclass
class Catalogue:
    root: Path
    images: dict[str, ImageDef]
    children: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.children = {name: [] for name in self.images}
        for img in self.images.values():
            if img.parent:
                self.children[img.parent].append(img.name)
        for kids in self.children.values():
            kids.sort()

    # -- the tree ----------------------------------------------------------------
    def roots(self) -> list[str]:
        """Images built directly on the root filesystem."""
        return sorted(n for n, i in self.images.items() if not i.parent)

    def ancestors(self, name: str) -> list[str]:
        """Parent first, root last."""
        chain = []
        parent = self.images[name].parent
        while parent:
            chain.append(parent)
            parent = self.images[parent].parent
        return chain

    def descendants(self, name: str) -> list[str]:
        out: list[str] = []
        stack = list(self.children[name])
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(self.children[child])
        return sorted(out)

    def topological(self, names: set[str] | list[str] | None = None) -> list[str]:
        """Parents before children (depth first, siblings by name), optionally
        only those in ``names``."""
        order: list[str] = []
        stack = list(reversed(self.roots()))
        while stack:
            name = stack.pop()
            order.append(name)
            stack.extend(reversed(self.children[name]))
        if names is None:
            return order
        wanted = set(names)
        return [n for n in order if n in wanted]

    def leaves(self) -> list[str]:
        return sorted(n for n, kids in self.children.items() if not kids)

    # -- selection ---------------------------------------------------------------
    def profiles(self) -> list[str]:
        """Every profile named in the catalogue, plus ``all``."""
        names = {p for img in self.images.values() for p in img.meta.profiles}
        return sorted(names | {ALL})

    def in_profile(self, profile: str) -> set[str]:
        if profile == ALL:
            return set(self.images)
        return {n for n, i in self.images.items() if profile in i.meta.profiles}

    def select(self, patterns: list[str] | tuple[str, ...] | None = None,
               profiles: list[str] | tuple[str, ...] | None = None) -> list[str]:
        """Images matching any regular expression (searched in the name, so
        ``nova`` matches every nova image and ``^nova-api$`` just one) or in any
        profile, plus all their parents, in build order. With neither: everything."""
        if not patterns and not profiles:
            return self.topological()
        chosen: set[str] = set()
        for pattern in patterns or []:
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression {pattern!r}: {exc}", key="IMAGE-REGEX") from None
            matched = {n for n in self.images if rx.search(n)}
            if not matched:
                raise ConfigError(f"no image matches {pattern!r} (see: dockyard images)", key="IMAGE-REGEX")
            chosen |= matched
        known = self.profiles()
        for profile in profiles or []:
            if profile not in known:
                raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(known)})", key="--profile")
            chosen |= self.in_profile(profile)
        # An image cannot be built without its parents.
        for name in list(chosen):
            chosen.update(self.ancestors(name))
        return self.topological(chosen)


def _load_image(folder: Path) -> ImageDef:
    meta_path = folder / META_FILE
    if not NAME_RE.fullmatch(folder.name):
        raise ConfigError("the folder name is not a valid image name (lowercase letters, digits, '.', '_', '-')",
                          path=folder)
    if folder.name in RESERVED:
        raise ConfigError(f"{folder.name!r} is reserved for the debootstrap root filesystem", path=folder)
    meta = read_model(meta_path, ImageMeta)
    if not (folder / TEMPLATE_FILE).is_file():
        raise ConfigError(f"{TEMPLATE_FILE} is missing beside it", path=meta_path)
    return ImageDef(folder.name, folder, meta)


def _check_tree(images: dict[str, ImageDef]) -> None:
    for img in images.values():
        if img.parent is not None and img.parent not in images:
            raise ConfigError(f"unknown parent image {img.parent!r}", path=img.meta_path, key="parent")
    # Walking up from any image must reach a root; else the chain loops.
    for img in sorted(images.values(), key=lambda i: i.name):
        seen = [img.name]
        parent = img.parent
        while parent:
            if parent in seen:
                loop = " -> ".join(seen[seen.index(parent):] + [parent])
                raise ConfigError(f"parent chain loops: {loop}", path=img.meta_path, key="parent")
            seen.append(parent)
            parent = images[parent].parent


def load_catalogue(root: Path | str | None = None) -> Catalogue:
    """Discover and validate ``<root>/*/image.yml`` (default: the source tree's images/)."""
    root = Path(root) if root else DEFAULT_ROOT
    if not root.is_dir():
        raise ConfigError("image catalogue folder not found", path=root)
    images: dict[str, ImageDef] = {}
    for meta_path in sorted(root.glob(f"*/{META_FILE}")):
        img = _load_image(meta_path.parent)
        images[img.name] = img
    if not images:
        raise ConfigError(f"no images here (expected <name>/{META_FILE} folders)", path=root)
    _check_tree(images)
    return Catalogue(root=root, images=images)
