"""The image catalogue: ``images/<name>/image.yml`` discovered into a tree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockyard import SOURCE_ROOT
from dockyard.errors import ConfigError

from .config import load_yaml, validation_error

DEFAULT_ROOT = SOURCE_ROOT / "images"
PROFILES = ("infra", "core", "compute", "network", "all")


class ImageMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent: str | None = None
    profiles: list[str] = Field(default_factory=list)
    packages: list[str] = Field(default_factory=list)
    user: str = "root"
    contract: bool = False


@dataclass(frozen=True)
class ImageDef:
    name: str
    folder: Path
    meta: ImageMeta

    @property
    def parent(self) -> str | None:
        return self.meta.parent


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

    def ancestors(self, name: str) -> list[str]:
        chain = []
        parent = self.images[name].parent
        while parent:
            chain.append(parent)
            parent = self.images[parent].parent
        return chain

    def descendants(self, name: str) -> list[str]:
        out = []
        stack = list(self.children[name])
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(self.children[child])
        return sorted(out)

    def topological(self, names: set[str] | None = None) -> list[str]:
        """Parents before children; siblings by name."""
        order: list[str] = []
        stack = sorted((n for n, i in self.images.items() if not i.parent), reverse=True)
        while stack:
            name = stack.pop()
            order.append(name)
            stack.extend(sorted(self.children[name], reverse=True))
        return [n for n in order if names is None or n in names]

    def leaves(self) -> list[str]:
        return sorted(n for n, kids in self.children.items() if not kids)

    def select(self, patterns: list[str] | None = None, profiles: list[str] | None = None) -> list[str]:
        """Images matching any regex or profile, plus their parents, in build order.

        With neither, everything is selected."""
        if not patterns and not profiles:
            return self.topological()
        chosen: set[str] = set()
        for pattern in patterns or []:
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression {pattern!r}: {exc}", key="IMAGE") from None
            matched = {n for n in self.images if rx.search(n)}
            if not matched:
                raise ConfigError(f"no image matches {pattern!r}", key="IMAGE")
            chosen |= matched
        for profile in profiles or []:
            if profile not in PROFILES:
                raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})", key="--profile")
            if profile == "all":
                chosen |= set(self.images)
            else:
                chosen |= {n for n, i in self.images.items() if profile in i.meta.profiles}
        for name in list(chosen):
            chosen |= set(self.ancestors(name))
        return self.topological(chosen)


def load_catalogue(root: Path | None = None) -> Catalogue:
    root = Path(root or DEFAULT_ROOT)
    if not root.is_dir():
        raise ConfigError("image catalogue folder not found", path=root)
    images: dict[str, ImageDef] = {}
    for meta_path in sorted(root.glob("*/image.yml")):
        data = load_yaml(meta_path) or {}
        if not isinstance(data, dict):
            raise ConfigError("must be a mapping", path=meta_path)
        try:
            meta = ImageMeta.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, meta_path) from None
        folder = meta_path.parent
        if not (folder / "Dockerfile.j2").exists():
            raise ConfigError("Dockerfile.j2 is missing beside it", path=meta_path)
        for profile in meta.profiles:
            if profile not in PROFILES:
                raise ConfigError(f"unknown profile {profile!r}", path=meta_path, key="profiles")
        images[folder.name] = ImageDef(folder.name, folder, meta)
    if not images:
        raise ConfigError("no images (expected <name>/image.yml folders)", path=root)
    for img in images.values():
        if img.parent and img.parent not in images:
            raise ConfigError(f"unknown parent image {img.parent!r}", path=img.folder / "image.yml", key="parent")
    # Cycles: walking up from any image must end at a root.
    for img in images.values():
        seen = {img.name}
        parent = img.parent
        while parent:
            if parent in seen:
                raise ConfigError(f"parent chain loops back to {parent!r}", path=img.folder / "image.yml",
                                  key="parent")
            seen.add(parent)
            parent = images[parent].parent
    return Catalogue(root=root, images=images)
