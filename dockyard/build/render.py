"""Rendering Dockerfile templates and build contexts.

Operator overrides chain: override N is the entry template and extends
``parent_template``, which is override N-1, down to the image's own template.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from dockyard import __version__
from dockyard.errors import ConfigError

from .catalogue import Catalogue, ImageDef
from .config import BuildConfig

CONTRACT_DIR = Path(__file__).resolve().parent.parent / "contract"
CONTRACT_FILES = ("dockyard_start.py", "dockyard_healthcheck.py")
SKIP = {"image.yml", "Dockerfile.j2"}
EXTENDS_PARENT = re.compile(r"\{%-?\s*extends\s+parent_template\s*-?%\}")


@dataclass(frozen=True)
class Rendered:
    name: str
    dockerfile: str
    files: dict[str, tuple[bytes, int]]  # context path -> (content, mode), all but the Dockerfile
    hash: str                            # covers the Dockerfile, the files and the parent's hash


class Renderer:
    def __init__(self, catalogue: Catalogue, config: BuildConfig, overrides: list[Path] | None = None):
        self.catalogue = catalogue
        self.config = config
        self.overrides = [Path(o).resolve() for o in overrides or []]
        for path in self.overrides:
            if not path.is_file():
                raise ConfigError("template override not found", path=path)
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([
                jinja2.FunctionLoader(self._load_override),
                jinja2.FileSystemLoader(str(catalogue.root)),
            ]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        users_file = catalogue.root / "base" / "users.yml"
        self.users = yaml.safe_load(users_file.read_text()) if users_file.exists() else {}
        for name in config.images:
            if name not in catalogue.images:
                raise ConfigError(f"unknown image {name!r}", key=f"images.{name}")

    def packages(self, image: ImageDef) -> list[str]:
        custom = self.config.images.get(image.name)
        packages = list(image.meta.packages)
        if custom:
            packages = [p for p in packages if p not in custom.packages_remove]
            packages += [p for p in custom.packages_append if p not in packages]
        return packages

    def parent_ref(self, image: ImageDef) -> str:
        return self.config.ref(image.parent) if image.parent else self.config.rootfs_ref()

    def dockerfile(self, image: ImageDef) -> str:
        context = dict(
            parent_ref=self.parent_ref(image), image_name=image.name, packages=self.packages(image),
            user=image.meta.user, users=self.users, namespace=self.config.namespace, tag=self.config.tag,
            registry=self.config.registry, dockyard_version=__version__,
        )
        try:
            return self._chain(f"{image.name}/Dockerfile.j2").render(**context)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"line {exc.lineno}: {exc.message}", path=exc.filename or exc.name) from None
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(f"template not found: {exc.name}", path=self._blame(exc)) from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"rendering {image.name}: {exc}", path=self._blame(exc)) from None

    def _load_override(self, name: str):
        """Serve ``override:<i>:<image template>``: override i, whose
        ``{% extends parent_template %}`` names the template before it in the chain."""
        if not name.startswith("override:"):
            return None
        _, index, base = name.split(":", 2)
        i = int(index)
        parent = base if i == 0 else f"override:{i - 1}:{base}"
        path = self.overrides[i]
        source = EXTENDS_PARENT.sub(lambda m: m.group(0).replace("parent_template", repr(parent)), path.read_text())
        return source, str(path), lambda: True

    def _chain(self, base_name: str) -> jinja2.Template:
        """The image's template, then each override extending the one before it."""
        if not self.overrides:
            return self.env.get_template(base_name)
        return self.env.get_template(f"override:{len(self.overrides) - 1}:{base_name}")

    def _blame(self, exc: Exception) -> str | None:
        # Undefined names and the like come from the last override when there is one.
        return str(self.overrides[-1]) if self.overrides else None

    def context_files(self, image: ImageDef) -> dict[str, tuple[bytes, int]]:
        files = {}
        for path in sorted(image.folder.rglob("*")):
            rel = path.relative_to(image.folder).as_posix()
            if path.is_file() and rel not in SKIP:
                files[rel] = (path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
        if image.meta.contract:
            for name in CONTRACT_FILES:
                files[f"contract/{name}"] = ((CONTRACT_DIR / name).read_bytes(), 0o755)
        return files

    def render_all(self, names: list[str], rootfs_hash: str) -> dict[str, Rendered]:
        """Render every named image (parents first), with hashes down the tree."""
        out: dict[str, Rendered] = {}
        for name in self.catalogue.topological(set(names) | {a for n in names for a in self.catalogue.ancestors(n)}):
            image = self.catalogue.images[name]
            dockerfile = self.dockerfile(image)
            files = self.context_files(image)
            parent_hash = out[image.parent].hash if image.parent else rootfs_hash
            digest = hashlib.sha256()
            digest.update(parent_hash.encode())
            digest.update(dockerfile.encode())
            for rel, (data, mode) in sorted(files.items()):
                digest.update(f"{rel}\0{mode:o}\0".encode() + hashlib.sha256(data).digest())
            out[name] = Rendered(name, dockerfile, files, digest.hexdigest())
        return out


def write_context(rendered: Rendered, directory: Path) -> Path:
    """Write one build context (Dockerfile plus files) into ``directory``."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(rendered.dockerfile)
    for rel, (data, mode) in rendered.files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)  # the build COPYs modes as they are: scripts stay executable
    return directory
