"""Rendering Dockerfile templates and gathering build contexts (docs/images.md).

Operator overrides chain: with ``--template-override A --template-override B``,
B is the template rendered; its ``{% extends parent_template %}`` means A, and
A's means the image's own ``<image>/Dockerfile.j2``. Each override therefore
replaces blocks of everything before it and can call ``super()``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import jinja2
import jinja2.ext
from jinja2.lexer import Token, TokenStream

from dockyard import __version__
from dockyard.datafiles import read_yaml
from dockyard.errors import ConfigError

from .catalogue import META_FILE, TEMPLATE_FILE, USER_RE, Catalogue, ImageDef
from .config import BuildConfig

CONTRACT_DIR = Path(__file__).resolve().parent.parent / "contract"
USERS_FILE = Path("base") / "users.yml"
#: Files of an image folder that are inputs of rendering, not of the build.
NOT_IN_CONTEXT = {META_FILE, TEMPLATE_FILE}
OVERRIDE_PREFIX = "override:"


@dataclass(frozen=True)
class ImageContext:
    """One image's build context: the rendered Dockerfile and every other file."""

    name: str
    dockerfile: str
    files: dict[str, tuple[bytes, int]]  # context path -> (content, mode); the Dockerfile is not among them


# -- the override chain ----------------------------------------------------------------

def _override_name(index: int, base: str) -> str:
    return f"{OVERRIDE_PREFIX}{index}:{base}"


def _parent_of_override(name: str | None) -> str | None:
    """``override:2:keystone/Dockerfile.j2`` -> ``override:1:...``; override 0 -> the image's own."""
    if not name or not name.startswith(OVERRIDE_PREFIX):
        return None
    index, _, base = name[len(OVERRIDE_PREFIX):].partition(":")
    return base if index == "0" else _override_name(int(index) - 1, base)


class ParentTemplate(jinja2.ext.Extension):
    """Turns ``{% extends parent_template %}`` in override N into an extends of
    the template before it in the chain.

    A variable cannot do this: every template of an inheritance chain renders
    with the same context, so ``parent_template`` would name one template for
    all of them. Rewriting the token keeps the override's own line numbers."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        parent = _parent_of_override(stream.name)
        if parent is None:
            yield from stream
            return
        before: list[Token] = []  # the two tokens before this one
        for token in stream:
            if (token.type == "name" and token.value == "parent_template" and len(before) == 2
                    and before[0].type == "block_begin" and before[1].test("name:extends")):
                token = Token(token.lineno, "string", parent)
            yield token
            before = (before + [token])[-2:]


def _template_location(exc: BaseException) -> tuple[str | None, int | None]:
    """The template file and line an error was raised at.

    Jinja rewrites a render error's traceback so template frames carry the
    template's file name and line; the innermost one is where the fault is."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    where: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.endswith(".py") and not filename.startswith("<"):
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _render_error(exc: jinja2.TemplateError, image: str) -> ConfigError:
    path, line = _template_location(exc)
    if isinstance(exc, jinja2.TemplateNotFound):
        what = f"template not found: {exc.name}"
    else:
        what = getattr(exc, "message", None) or str(exc)
    at = f"line {line}: " if line else ""
    return ConfigError(f"{at}{what} (rendering {image})", path=path)


# -- users -----------------------------------------------------------------------------

def load_users(catalogue_root: Path) -> dict[str, int]:
    """``base/users.yml``: service user -> fixed UID (its group has the same id)."""
    path = catalogue_root / USERS_FILE
    if not path.is_file():
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of user name to UID", path=path)
    seen: dict[int, str] = {}
    for name, uid in data.items():
        if not isinstance(name, str) or not USER_RE.fullmatch(name):
            raise ConfigError("not a user name", path=path, key=str(name))
        if isinstance(uid, bool) or not isinstance(uid, int) or not 1 <= uid <= 65533:
            raise ConfigError(f"UID must be a number from 1 to 65533, got {uid!r}", path=path, key=name)
        if uid in seen:
            raise ConfigError(f"UID {uid} is also {seen[uid]!r}'s", path=path, key=name)
        seen[uid] = name
    return dict(data)


def contract_files() -> list[Path]:
    """The contract's programs: ``dockyard/contract/*.py`` but the package marker."""
    return [p for p in sorted(CONTRACT_DIR.glob("*.py")) if not p.name.startswith("__")]


# -- the renderer ----------------------------------------------------------------------

class Renderer:
    """Renders the images of one catalogue with one build configuration."""

    def __init__(self, catalogue: Catalogue, config: BuildConfig, overrides: list[Path] | None = None):
        self.catalogue = catalogue
        self.config = config
        self.overrides = [Path(o).resolve() for o in overrides or []]
        for path in self.overrides:
            if not path.is_file():
                raise ConfigError("template override not found", path=path, key="--template-override")
        for name in config.images:
            if name not in catalogue.images:
                raise ConfigError(f"unknown image {name!r} (not in the catalogue)", key=f"images.{name}")
        self.users = load_users(catalogue.root)
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([
                jinja2.FunctionLoader(self._load_override),
                jinja2.FileSystemLoader(str(catalogue.root)),
            ]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            extensions=[ParentTemplate],
            autoescape=False,  # Dockerfiles, not HTML
        )

    def _load_override(self, name: str):
        if not name.startswith(OVERRIDE_PREFIX):
            return None  # not ours: the catalogue's loader serves it
        index = int(name[len(OVERRIDE_PREFIX):].partition(":")[0])
        path = self.overrides[index]
        try:
            source = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read template override: {exc.strerror}", path=path) from None
        return source, str(path), lambda: True

    def packages(self, image: ImageDef) -> list[str]:
        """``image.yml`` packages, less ``packages_remove``, plus ``packages_append``."""
        custom = self.config.images.get(image.name)
        packages = list(image.meta.packages)
        if custom:
            packages = [p for p in packages if p not in custom.packages_remove]
            packages += [p for p in custom.packages_append if p not in packages]
        return packages

    def parent_ref(self, image: ImageDef) -> str:
        return self.config.ref(image.parent) if image.parent else self.config.rootfs_ref()

    def variables(self, image: ImageDef) -> dict:
        """What a template sees (the table in docs/images.md)."""
        return {
            "parent_ref": self.parent_ref(image),
            "image_name": image.name,
            "packages": self.packages(image),
            "user": image.meta.user,
            "users": dict(self.users),
            "namespace": self.config.namespace,
            "tag": self.config.tag,
            "registry": self.config.registry,
            "dockyard_version": __version__,
            "apt_conf": self.config.base.apt_conf(),
        }

    def entry_template(self, image: ImageDef) -> str:
        own = f"{image.name}/{TEMPLATE_FILE}"
        return _override_name(len(self.overrides) - 1, own) if self.overrides else own

    def dockerfile(self, image: ImageDef) -> str:
        try:
            template = self.env.get_template(self.entry_template(image))
            return template.render(**self.variables(image))
        except jinja2.TemplateError as exc:
            raise _render_error(exc, image.name) from None

    def context_files(self, image: ImageDef) -> dict[str, tuple[bytes, int]]:
        """Every file of the image folder but its rendering inputs, with modes
        (the build COPYs modes as they are: scripts stay executable); plus the
        container contract under ``contract/`` when the image asks for it."""
        files: dict[str, tuple[bytes, int]] = {}
        for path in sorted(image.folder.rglob("*")):
            rel = path.relative_to(image.folder).as_posix()
            if not path.is_file() or rel in NOT_IN_CONTEXT:
                continue
            if rel == "Dockerfile":
                raise ConfigError("a file named Dockerfile would be replaced by the rendered template", path=path)
            files[rel] = (path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
        if image.meta.contract:
            for path in contract_files():
                rel = f"contract/{path.name}"
                if rel in files:
                    raise ConfigError(f"{rel} clashes with the contract copied there", path=image.folder / rel)
                files[rel] = (path.read_bytes(), 0o755)
        return files

    def render(self, name: str) -> ImageContext:
        image = self.catalogue.images[name]
        return ImageContext(name, self.dockerfile(image), self.context_files(image))

    def render_all(self, names: list[str]) -> dict[str, ImageContext]:
        """Render the named images and their parents (their hashes are needed),
        in build order. Every template is rendered before anything is written or
        built, so a fault stops the run before it changes anything."""
        wanted = set(names)
        for name in names:
            wanted.update(self.catalogue.ancestors(name))
        return {name: self.render(name) for name in self.catalogue.topological(wanted)}


# -- writing a context -----------------------------------------------------------------

def write_context(context: ImageContext, directory: Path) -> Path:
    """Write one build context (Dockerfile plus files) into ``directory``,
    replacing an earlier context there (never a folder that is not one)."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir() or (any(directory.iterdir()) and not (directory / "Dockerfile").is_file()):
            raise ConfigError("exists and is not a build context: refusing to replace it", path=directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(context.dockerfile)
    for rel, (data, mode) in sorted(context.files.items()):
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    return directory

