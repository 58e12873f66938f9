"""The build configuration file (``build.yml``), validated at the edge."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockyard.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseConfig(Strict):
    suite: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    components: list[str] = Field(default_factory=lambda: ["main"])


class ImageCustomisation(Strict):
    packages_append: list[str] = Field(default_factory=list)
    packages_remove: list[str] = Field(default_factory=list)


class BuildConfig(Strict):
    base: BaseConfig = Field(default_factory=BaseConfig)
    namespace: str = "dockyard"
    tag: str = "2025.1"
    registry: str | None = None
    threads: int | None = Field(default=None, ge=1)
    retries: int = Field(default=1, ge=0)
    images: dict[str, ImageCustomisation] = Field(default_factory=dict)

    @property
    def workers(self) -> int:
        return self.threads or os.cpu_count() or 1

    def ref(self, image: str) -> str:
        name = f"{self.namespace}/{image}:{self.tag}"
        return f"{self.registry}/{name}" if self.registry else name

    def rootfs_ref(self) -> str:
        return f"{self.namespace}/rootfs:{self.base.suite}"


def default_path() -> Path | None:
    config_dir = Path(os.environ.get("DOCKYARD_CONFIG_DIR", "/etc/dockyard"))
    path = config_dir / "build.yml"
    return path if path.exists() else None


def load_yaml(path: Path):
    """YAML from a file, with parse errors naming file, line and column."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}invalid YAML: {getattr(exc, 'problem', exc)}", path=path) from None


def validation_error(exc: ValidationError, path: Path | str) -> ConfigError:
    """The first pydantic error, as the file and dotted key at fault."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or None
    return ConfigError(err["msg"], path=path, key=key)


def load_build_config(path: Path | None = None, known_images: set[str] | None = None) -> BuildConfig:
    path = path or default_path()
    if path is None:
        return BuildConfig()
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping", path=path)
    try:
        config = BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, path) from None
    if known_images is not None:
        for name in config.images:
            if name not in known_images:
                raise ConfigError(f"unknown image {name!r}", path=path, key=f"images.{name}")
    return config
