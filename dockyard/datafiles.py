"""Reading the declarative files (images, services, the operator's site) strictly,
with every error naming the file and the place in it.

PyYAML lets a repeated key silently win over the first one; in a hand-edited
``globals.yml`` that hides a mistake (two ``internal_address`` lines, the one the
operator looked at being ignored), so a repeated key is an error here. YAML
errors name the line and column; pydantic's errors name the dotted key
(``hosts.ctl1.address``) and suggest the key a misspelt one was meant to be.
Values are never echoed: ``passwords.yml`` is read through here too.
"""

from __future__ import annotations

import datetime
import difflib
from pathlib import Path
from typing import Any, Iterable, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from dockyard.errors import ConfigError


class StrictModel(BaseModel):
    """The base of every model read from a declarative file (images, build.yml,
    services, the site): an unknown key is an error (and names the nearest known
    one), and a value once read is not changed in place."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# libyaml's parser when the system has it: every command reads the whole
# service catalogue first. Construction stays in Python, so the check below holds.
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BASE_LOADER):  # type: ignore[misc, valid-type]
    """A safe loader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merge keys may repeat
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable key: SafeLoader reports it itself
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first on line {first + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def strict_load(text: str):
    """Parse YAML text as :func:`read_yaml` does; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path):
    """The document in ``path`` (None when empty). Raises ConfigError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    try:
        return strict_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{where}invalid YAML: {problem}", path=path) from None


def read_mapping(path: Path, missing_ok: bool = True) -> dict:
    """A top-level mapping; an absent (when ``missing_ok``) or empty file is ``{}``."""
    if missing_ok and not path.exists():
        return {}
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping of keys to values, not a {_kind(data)}", path=path)
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"keys must be text; {key!r} is a {_kind(key)} (quote it)", path=path)
    return data


Model = TypeVar("Model", bound=BaseModel)


def read_model(path: Path, model: type[Model], missing_ok: bool = False) -> Model:
    """``path`` read as :func:`read_mapping` does and validated as ``model``; an empty
    (or, when ``missing_ok``, absent) file gives the model's defaults. Every error is
    a ConfigError naming the file and key, with "did you mean" for a misspelt key."""
    data = read_mapping(path, missing_ok)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, path, model) from None


def _kind(value) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__)


# -- pydantic's errors, as the operator reads them --------------------------------

def key_path(loc: Iterable[str | int]) -> str:
    """pydantic's error location as the operator reads it: ``hosts.ctl1.address``,
    ``groups.control[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model whose keys are valid at ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _yaml_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return None


def _describe(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        allowed = _model_at(model, loc[:-1]) if model else None
        names = list(allowed.model_fields) if allowed else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(names)}"
        return f"unknown key ({hint})"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error") or error["msg"])
    if kind == "string_type" and _yaml_kind(error.get("input")):
        return f"must be text, but YAML read {_yaml_kind(error['input'])} here: quote the value"
    if kind == "missing":
        return "required key missing"
    return error["msg"]


def validation_error(exc: ValidationError, path: Path | str, model: type[BaseModel] | None = None) -> ConfigError:
    """Every problem pydantic found, the first one's key as the error's key.
    Values are not repeated back (pydantic's own message would)."""
    # An unknown key first: `adress` explains the missing `address` that follows.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    problems = [(key_path(e["loc"]), _describe(e, model)) for e in errors]
    key, message = problems[0]
    others = [f"{k}: {m}" for k, m in problems[1:6]]
    if others:
        message += "; also " + "; ".join(others) + ("; ..." if len(problems) > 6 else "")
    return ConfigError(message, path=path, key=key or None)
