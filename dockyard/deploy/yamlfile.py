"""Reading the operator's YAML files strictly.

PyYAML lets a repeated key silently win over the first one; in a hand-edited
``globals.yml`` that hides a mistake (two ``internal_address`` lines, the one the
operator looked at being ignored), so a repeated key is an error here. Every
error names the file, and the line and column when the parser knows them.
Values are never echoed: ``passwords.yml`` is read through here too.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dockyard.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping."""

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


def _kind(value) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__)
