"""The build configuration file (``build.yml``), validated at the edge.

Everything in it has a default, so the file is optional. Command-line options
override the file and are validated the same way (:meth:`BuildConfig.override`),
so a bad ``--tag`` is refused before anything is built.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from dockyard.datafiles import StrictModel, read_model
from dockyard.errors import ConfigError
from dockyard.reference import check_namespace, check_registry, check_tag, image_ref

#: Where the configuration is looked for when ``--config`` is not given.
CONFIG_DIR_ENV = "DOCKYARD_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path("/etc/dockyard")
FILE_NAME = "build.yml"

# Debian package names (policy 5.6.1), optionally with an architecture
# qualifier or a version pin (name=version), as apt-get accepts them.
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+~:-]+)?$")
WORD_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")
APT_OPTION_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9:_-]*)=([A-Za-z0-9._/-]+)")


def check_packages(names: list[str]) -> list[str]:
    for name in names:
        if not PACKAGE_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a Debian package name")
    return names


class BaseConfig(StrictModel):
    """What debootstrap makes the root filesystem from. Its hash is the rootfs's hash."""

    suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    components: list[str] = Field(default_factory=lambda: ["main"], min_length=1)
    # debootstrap's script for the suite, when it has none of its own (forky: sid's).
    script: str | None = None
    # apt options the suite needs (NAME=VALUE), written into the base image's apt configuration.
    apt_options: list[str] = Field(default_factory=list)

    @field_validator("suite", "variant")
    @classmethod
    def _word(cls, value: str) -> str:
        if not WORD_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a suite or variant name")
        return value

    @field_validator("script")
    @classmethod
    def _script(cls, value: str | None) -> str | None:
        if value is not None and not WORD_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a debootstrap script name (a suite name)")
        return value

    @field_validator("apt_options")
    @classmethod
    def _apt_options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not APT_OPTION_RE.fullmatch(option):
                raise ValueError(f"{option!r} is not an apt option NAME=VALUE")
        return value

    def apt_conf(self) -> list[str]:
        """``apt_options`` as apt.conf lines (``Acquire::Check-Valid-Until "false";``)."""
        # Each was checked against APT_OPTION_RE when the file was read.
        return ['{} "{}";'.format(*o.split("=", 1)) for o in self.apt_options]

    @field_validator("components")
    @classmethod
    def _components(cls, value: list[str]) -> list[str]:
        for item in value:
            if not WORD_RE.fullmatch(item):
                raise ValueError(f"{item!r} is not an archive component")
        return value

    @field_validator("mirror")
    @classmethod
    def _mirror(cls, value: str) -> str:
        if not re.fullmatch(r"(https?|file)://\S+", value):
            raise ValueError(f"{value!r} is not an http(s):// or file:// URL")
        return value


class ImageCustomisation(StrictModel):
    """Per-image package changes, applied to ``packages`` before rendering."""

    packages_append: list[str] = Field(default_factory=list)
    packages_remove: list[str] = Field(default_factory=list)

    @field_validator("packages_append", "packages_remove")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        # These names end up in a RUN line: only package names get through.
        return check_packages(value)


class BuildConfig(StrictModel):
    base: BaseConfig = Field(default_factory=BaseConfig)
    namespace: str = "dockyard"
    tag: str = "2025.1"
    registry: str | None = None
    threads: int | None = Field(default=None, ge=1)
    retries: int = Field(default=1, ge=0)
    images: dict[str, ImageCustomisation] = Field(default_factory=dict)

    @field_validator("tag", mode="before")
    @classmethod
    def _tag_is_text(cls, value: Any) -> Any:
        # YAML reads 2025.10 as the float 2025.1: refuse rather than guess.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f'write the tag as a quoted string (tag: "{value}"): YAML reads it as a number')
        return value

    # The engines' reference grammar, shared with the site (dockyard.reference).
    _tag = field_validator("tag")(check_tag)
    _namespace = field_validator("namespace")(check_namespace)
    _registry = field_validator("registry")(check_registry)

    # -- derived -----------------------------------------------------------------
    @property
    def workers(self) -> int:
        """Parallel builds: ``threads``, else one per core."""
        return self.threads or os.cpu_count() or 1

    def ref(self, image: str, tag: str | None = None) -> str:
        """``[registry/]namespace/image:tag``."""
        return image_ref(self.namespace, image, tag or self.tag, self.registry)

    def rootfs_ref(self) -> str:
        # Local only (never pushed), so no registry prefix.
        return image_ref(self.namespace, "rootfs", self.base.suite)

    def override(self, **options: Any) -> "BuildConfig":
        """A copy with command-line values (None = not given) taking precedence,
        validated like the file; errors name the option (``--tag``)."""
        given = {k: v for k, v in options.items() if v is not None}
        if not given:
            return self
        try:
            return BuildConfig.model_validate({**self.model_dump(), **given})
        except ValidationError as exc:
            err = exc.errors()[0]
            option = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else None
            raise ConfigError(err["msg"].removeprefix("Value error, "), key=option) from None


def default_path() -> Path | None:
    """``$DOCKYARD_CONFIG_DIR/build.yml`` (default dir /etc/dockyard) when it exists."""
    config_dir = Path(os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)
    path = config_dir / FILE_NAME
    return path if path.is_file() else None


def load_build_config(path: Path | None = None, known_images: set[str] | None = None) -> BuildConfig:
    """Read ``path`` (else the default file when present, else the defaults).

    ``known_images`` (the catalogue's names) lets an unknown name under ``images``
    be refused here, naming the file and key, rather than silently ignored."""
    path = Path(path) if path else default_path()
    if path is None:
        return BuildConfig()
    config = read_model(path, BuildConfig)
    if known_images is not None:
        for name in config.images:
            if name not in known_images:
                raise ConfigError(f"unknown image {name!r} (not in the catalogue)", path=path, key=f"images.{name}")
    return config
