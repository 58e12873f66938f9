"""OpenStack releases as data: ``images/releases.yml``, validated.

A release is a name (``2025.1``), the Debian suite its packages come from, how
debootstrap makes that suite's root filesystem (a script of another suite when
debootstrap has none of its own) and what apt needs to read it, the tag its
images carry, the releases it can be upgraded from in one step, and the services
that stay behind on an older release's images (a package the suite lacks).
Images no release owns (the guest image) are pinned to one release, whatever
release a site runs.

The order of the list is the order of the releases: an upgrade goes down it,
never up.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from dockyard import SOURCE_ROOT
from dockyard.datafiles import StrictModel, read_model
from dockyard.errors import ConfigError
from dockyard.reference import check_tag

DEFAULT_PATH = SOURCE_ROOT / "images" / "releases.yml"
_WORD = re.compile(r"[a-z0-9][a-z0-9.+_-]*")
_RELEASE = re.compile(r"[0-9]{4}\.[0-9]+")
# apt's -o syntax, NAME=VALUE; written into an apt.conf.d file of the base image.
_APT_OPTION = re.compile(r"([A-Za-z0-9][A-Za-z0-9:_-]*)=([A-Za-z0-9._/-]+)")


def _text(value: Any, what: str) -> Any:
    # YAML reads 2025.10 as the number 2025.1: refuse rather than guess.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'write the {what} as a quoted string ("{value}"): YAML reads it as a number')
    return value


def _release_name(value: str) -> str:
    if not _RELEASE.fullmatch(value):
        raise ValueError(f"{value!r} is not a release name such as 2025.1")
    return value


class ReleaseDef(StrictModel):
    name: str
    codename: str = ""
    suite: str
    debootstrap_script: str | None = None     # default: the suite's own
    apt_options: list[str] = Field(default_factory=list)
    tag: str
    upgrade_from: list[str] = Field(default_factory=list)
    services: dict[str, str] = Field(default_factory=dict)   # service -> the release it stays on

    @field_validator("name", "tag", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        return _text(value, "value")

    @field_validator("upgrade_from", mode="before")
    @classmethod
    def _quoted_list(cls, value: Any) -> Any:
        return [_text(v, "release") for v in value] if isinstance(value, list) else value

    @field_validator("services", mode="before")
    @classmethod
    def _quoted_map(cls, value: Any) -> Any:
        return {k: _text(v, "release") for k, v in value.items()} if isinstance(value, dict) else value

    _name = field_validator("name")(_release_name)
    _tag = field_validator("tag")(check_tag)

    @field_validator("suite", "debootstrap_script", "codename")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value and not _WORD.fullmatch(value):
            raise ValueError(f"{value!r} is not a suite or code name (lowercase letters, digits, . + _ -)")
        return value

    @field_validator("apt_options")
    @classmethod
    def _apt(cls, value: list[str]) -> list[str]:
        for option in value:
            if not _APT_OPTION.fullmatch(option):
                raise ValueError(f"{option!r} is not an apt option NAME=VALUE (as apt-get -o takes it)")
        return value

    @field_validator("upgrade_from")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [_release_name(v) for v in value]


class ReleasesFile(StrictModel):
    current: str
    upgrade_order: list[str] = Field(default_factory=list)
    pinned_images: dict[str, str] = Field(default_factory=dict)     # image -> the release it is built from
    releases: list[ReleaseDef] = Field(min_length=1)

    @field_validator("current", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        return _text(value, "release")

    @field_validator("pinned_images", mode="before")
    @classmethod
    def _quoted_map(cls, value: Any) -> Any:
        return {k: _text(v, "release") for k, v in value.items()} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _references(self) -> "ReleasesFile":
        names = [r.name for r in self.releases]
        for i, r in enumerate(self.releases):
            if r.name in names[:i]:
                raise ValueError(f"releases[{i}]: release {r.name!r} is listed twice")
            for source in r.upgrade_from:
                if source not in names[:i]:
                    raise ValueError(f"releases[{i}].upgrade_from: {source!r} is not a release listed before "
                                     f"{r.name!r} (an upgrade goes from an older release to a newer one)")
            for service, stays in r.services.items():
                if stays not in names[:i]:
                    raise ValueError(f"releases[{i}].services.{service}: {stays!r} is not a release listed "
                                     f"before {r.name!r} (a service stays behind on an older release)")
        for image, release in self.pinned_images.items():
            if release not in names:
                raise ValueError(f"pinned_images.{image}: {release!r} is not among the releases ({', '.join(names)})")
        if self.current not in names:
            raise ValueError(f"current: {self.current!r} is not among the releases ({', '.join(names)})")
        return self


@dataclass(frozen=True)
class Releases:
    """The releases, oldest first, and the default one."""

    path: Path
    current: str
    by_name: dict[str, ReleaseDef]
    upgrade_order: tuple[str, ...] = ()
    pinned_images: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.by_name)

    def get(self, name: str, key: str = "release", path: Path | None = None) -> ReleaseDef:
        """The release called ``name``; else a ConfigError naming ``key`` (and ``path``)."""
        release = self.by_name.get(str(name))
        if release is None:
            raise ConfigError(f"unknown release {name!r} (known: {', '.join(self.by_name)}; see {self.path})",
                              path=path, key=key)
        return release

    def index(self, name: str) -> int:
        return self.names.index(name)

    def newer(self, a: str, b: str) -> bool:
        """``a`` comes after ``b``."""
        return self.index(a) > self.index(b)

    def release_of_tag(self, tag: str) -> str | None:
        for release in self.by_name.values():
            if release.tag == tag:
                return release.name
        return None

    def service_release(self, release: str, service: str) -> str:
        """The release a service runs when the site runs ``release``: its own, or
        the older one it stays on (images/releases.yml ``services``)."""
        return self.by_name[release].services.get(service, release)

    def image_release(self, image: str, release: str) -> str:
        """The release ``image`` is built from when a site runs ``release``: the one
        it is pinned to (``pinned_images``), else ``release``."""
        return self.pinned_images.get(image, release)

    def held_images(self, release: str, images_of: dict[str, set[str]], parents: dict[str, str | None]) -> set[str]:
        """Images a build of ``release`` leaves out: every service that uses them
        (or an image built on them) stays on an older release. ``images_of``:
        service -> its images; ``parents``: image -> its parent."""
        held = {s for s in self.by_name[release].services}
        users: dict[str, set[str]] = {}
        for service, images in images_of.items():
            for image in images:
                current: str | None = image
                while current is not None:
                    users.setdefault(current, set()).add(service)
                    current = parents.get(current)
        return {image for image, services in users.items() if services and services <= held}


@functools.lru_cache(maxsize=4)
def load_releases(path: Path | None = None) -> Releases:
    """The releases file (default: the catalogue's), read once per process."""
    path = Path(path or DEFAULT_PATH)
    model = read_model(path, ReleasesFile)
    return Releases(path, model.current, {r.name: r for r in model.releases}, tuple(model.upgrade_order),
                    dict(model.pinned_images))
