"""The build summary: a table for people, JSON for scripts.

The JSON schema (``schema: 1``) is documented in docs/build.md; fields are only
ever added to it, never renamed or removed, without raising ``schema``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from rich.console import Console
from rich.table import Table

from dockyard.engine.driver import ImageInfo
from dockyard.errors import EXIT_FAILED, EXIT_OK

from .scheduler import BUILT, STATUSES, USABLE, Outcome

SCHEMA = 1
STYLE = {"built": "green", "cached": "cyan", "skipped": "blue", "failed": "red", "unbuildable": "yellow"}


@dataclass
class BuildReport:
    outcomes: list[Outcome]            # one per selected image, in build order
    seconds: float
    distinct_bytes: int
    rootfs: Outcome | None = None      # None when no root image had to be built
    refs: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    rootfs_ref: str = ""
    digests: dict[str, str] = field(default_factory=dict)   # --push: image -> manifest digest in the registry
    sent: list[str] = field(default_factory=list)           # --push: images whose bytes were sent
    pushed_to: str = ""                                      # --push: the site's registry (host:port)

    @property
    def ok(self) -> bool:
        return all(o.status in USABLE for o in self.outcomes) and (self.rootfs is None or self.rootfs.status in USABLE)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    @property
    def rootfs_built(self) -> bool:
        return self.rootfs is not None and self.rootfs.status == BUILT

    def counts(self) -> dict[str, int]:
        counts = {status: 0 for status in STATUSES}
        for o in self.outcomes:
            counts[o.status] += 1
        return counts


def distinct_bytes(images: Iterable[tuple[ImageInfo, ImageInfo | None]]) -> int:
    """Bytes a set of images takes, each shared layer counted once.

    ``images``: each image with its parent (None for the root filesystem, or
    when the parent is not in the engine). Engines report an image's size with
    its parent's layers included and give layer digests but not layer sizes;
    so when an image's layers include all its parent's, it adds only its size
    less its parent's. Without layer information: the plain sum of sizes."""
    pairs = list(images)
    seen: set[str] = set()
    total = 0
    with_layers = all(info.layers for info, _ in pairs)
    for info, parent in pairs:
        if info.id in seen:
            continue  # two tags of one image
        seen.add(info.id)
        if with_layers and parent is not None and parent.layers and set(parent.layers) <= set(info.layers):
            total += max(info.size - parent.size, 0)
        else:
            total += info.size
    return total


def _outcome_json(o: Outcome) -> dict:
    return {"status": o.status, "seconds": round(o.seconds, 2), "size": o.size, "attempts": o.attempts,
            "error": o.error or None}


def to_dict(report: BuildReport) -> dict:
    rootfs = None
    if report.rootfs is not None:
        rootfs = {"ref": report.rootfs_ref, **_outcome_json(report.rootfs)}
    return {
        "schema": SCHEMA,
        "ok": report.ok,
        "seconds": round(report.seconds, 2),
        "distinct_bytes": report.distinct_bytes,
        "counts": report.counts(),
        "rootfs": rootfs,
        "rootfs_built": report.rootfs_built,
        "images": [
            {"image": o.image, "ref": report.refs.get(o.image, ""), "hash": report.hashes.get(o.image, ""),
             **_outcome_json(o),
             **({"digest": report.digests.get(o.image), "sent": o.image in report.sent} if report.digests else {})}
            for o in report.outcomes
        ],
    }


def to_json(report: BuildReport) -> str:
    return json.dumps(to_dict(report), indent=2)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "kB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _row(o: Outcome, with_errors: bool) -> list[str]:
    row = [o.image, f"[{STYLE[o.status]}]{o.status}[/]", f"{o.seconds:.1f}s" if o.attempts else "",
           human_size(o.size) if o.size else "", str(o.attempts) if o.attempts else ""]
    if with_errors:
        row.append(o.error.splitlines()[-1][:100] if o.error else "")
    return row


def print_table(report: BuildReport, console: Console) -> None:
    with_errors = any(o.error for o in report.outcomes) or bool(report.rootfs and report.rootfs.error)
    table = Table(title="dockyard build")
    for col in ("image", "status", "time", "size", "attempts") + (("error",) if with_errors else ()):
        table.add_column(col, justify="right" if col in ("time", "size", "attempts") else "left")
    if report.rootfs is not None:
        table.add_row(*_row(Outcome("(rootfs)", report.rootfs.status,
                                    report.rootfs.seconds, report.rootfs.attempts, report.rootfs.error,
                                    report.rootfs.size), with_errors))
    for o in report.outcomes:
        table.add_row(*_row(o, with_errors))
    console.print(table)
    counts = report.counts()
    totals = ", ".join(f"{counts[s]} {s}" for s in STATUSES)
    console.print(f"{totals}; {report.seconds:.1f}s in all; {human_size(report.distinct_bytes)} distinct")
    if report.digests:
        where = f" to {report.pushed_to}" if report.pushed_to else ""
        console.print(f"pushed{where}: {len(report.digests)} images, {len(report.sent)} sent, "
                      f"{len(report.digests) - len(report.sent)} in the registry already")
