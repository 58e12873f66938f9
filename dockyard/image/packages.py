"""``dockyard images diff``: two tags of the catalogue compared package by package.

Every image records its installed packages in ``/var/lib/dockyard/packages.txt``
(``name=version`` lines, written by ``macros.finish``); reading that file from
both images of each name tells what an upgrade changes, before deploying it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.engine.driver import Engine

from .config import BuildConfig

MANIFEST = "/var/lib/dockyard/packages.txt"


@dataclass
class ImageDiff:
    image: str
    added: dict[str, str] = field(default_factory=dict)               # name -> version in B
    removed: dict[str, str] = field(default_factory=dict)             # name -> version in A
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (A, B)
    error: str = ""                                                    # a package list could not be read

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.error)


@dataclass
class TagsDiff:
    tag_a: str
    tag_b: str
    images: list[ImageDiff]     # images present under both tags
    only_a: list[str]
    only_b: list[str]


def parse_manifest(text: str) -> dict[str, str]:
    """``name=version`` lines; anything else (blank lines, comments) is ignored."""
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            out[name] = version
    return out


def compare(image: str, a: dict[str, str], b: dict[str, str]) -> ImageDiff:
    return ImageDiff(
        image,
        added={k: b[k] for k in sorted(b.keys() - a.keys())},
        removed={k: a[k] for k in sorted(a.keys() - b.keys())},
        changed={k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
    )


def diff_tags(engine: Engine, config: BuildConfig, images: list[str], tag_a: str, tag_b: str) -> TagsDiff:
    """Compare ``images`` (catalogue names) between two tags of ``config``'s
    namespace and registry."""
    diffs, only_a, only_b = [], [], []
    for image in images:
        ref_a, ref_b = config.ref(image, tag_a), config.ref(image, tag_b)
        has_a, has_b = engine.image(ref_a) is not None, engine.image(ref_b) is not None
        if not (has_a and has_b):
            if has_a:
                only_a.append(image)
            elif has_b:
                only_b.append(image)
            continue
        try:
            a = parse_manifest(engine.read_file(ref_a, MANIFEST).decode(errors="replace"))
            b = parse_manifest(engine.read_file(ref_b, MANIFEST).decode(errors="replace"))
        except Exception as exc:  # an image built without the manifest, or an engine error for this one
            diffs.append(ImageDiff(image, error=f"cannot read {MANIFEST}: {exc}"))
            continue
        diffs.append(compare(image, a, b))
    return TagsDiff(tag_a, tag_b, diffs, only_a, only_b)


def format_diff(diff: TagsDiff) -> list[str]:
    """Lines for people: ``+`` added, ``-`` removed, ``~`` changed, per image."""
    lines = []
    for d in diff.images:
        if d.error:
            lines.append(f"{d.image}: {d.error}")
        elif d.empty:
            lines.append(f"{d.image}: same packages")
        else:
            lines.append(f"{d.image}: {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")
            lines += [f"  + {name} {version}" for name, version in d.added.items()]
            lines += [f"  - {name} {version}" for name, version in d.removed.items()]
            lines += [f"  ~ {name} {va} -> {vb}" for name, (va, vb) in d.changed.items()]
    if diff.only_a:
        lines.append(f"only under {diff.tag_a}: {', '.join(diff.only_a)}")
    if diff.only_b:
        lines.append(f"only under {diff.tag_b}: {', '.join(diff.only_b)}")
    return lines
