"""Image references, ``[registry/]namespace/name:tag``: one grammar, one builder.

The grammar is the container engines' (distribution/reference), kept strict so a
value can never smuggle anything into a reference or a Dockerfile. Every pattern
is used with ``fullmatch`` (``$`` would let a trailing newline through).
"""

from __future__ import annotations

import re

# A path component: lowercase letters and digits, separated by '.', '_', '__' or dashes.
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAMESPACE_RE = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# host[:port]; a path after it belongs in the namespace.
REGISTRY_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")


def image_ref(namespace: str, name: str, tag: str, registry: str | None = None) -> str:
    """``[registry/]namespace/name:tag``, from values the patterns above accepted."""
    ref = f"{namespace}/{name}:{tag}"
    return f"{registry}/{ref}" if registry else ref


# The checks name no value (a message may be shown beside the site's passwords).
def check_namespace(value: str) -> str:
    if not NAMESPACE_RE.fullmatch(value):
        raise ValueError("not a valid image namespace (lowercase letters, digits, '.', '_', '-', '/'; e.g. dockyard)")
    return value


def check_tag(value: str) -> str:
    if not TAG_RE.fullmatch(value):
        raise ValueError('not a valid image tag (letters, digits, "_", ".", "-"; at most 128; e.g. "2025.1")')
    return value


def check_registry(value: str | None) -> str | None:
    if value is not None and not REGISTRY_RE.fullmatch(value):
        hint = "; a path after it belongs in the namespace" if "/" in value and "://" not in value else ""
        raise ValueError(f"not a registry host[:port] (e.g. 192.0.2.1:5000){hint}")
    return value
