"""Compare two tags of the catalogue package by package."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.engine.driver import Engine
from dockyard.errors import DockyardError

MANIFEST = "/var/lib/dockyard/packages.txt"


@dataclass
class ImageDiff:
    image: str
    added: dict[str, str]
    removed: dict[str, str]
    changed: dict[str, tuple[str, str]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def parse_manifest(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("=")
        if sep:
            out[name] = version
    return out


def diff_tags(engine: Engine, namespace: str, images: list[str], tag_a: str, tag_b: str,
              registry: str | None = None) -> list[ImageDiff]:
    prefix = f"{registry}/" if registry else ""
    diffs = []
    for image in images:
        ref_a, ref_b = f"{prefix}{namespace}/{image}:{tag_a}", f"{prefix}{namespace}/{image}:{tag_b}"
        if engine.image(ref_a) is None or engine.image(ref_b) is None:
            continue
        try:
            a = parse_manifest(engine.read_file(ref_a, MANIFEST).decode())
            b = parse_manifest(engine.read_file(ref_b, MANIFEST).decode())
        except DockyardError:
            continue
        diffs.append(ImageDiff(
            image,
            added={k: v for k, v in b.items() if k not in a},
            removed={k: v for k, v in a.items() if k not in b},
            changed={k: (a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k]},
        ))
    return diffs
