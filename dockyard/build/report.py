"""The build summary: a table for people, JSON for scripts."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from .builder import Report


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit in ("B", "KB") else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"


def to_json(report: Report) -> str:
    """Schema: {"ok", "seconds", "distinct_bytes", "counts": {status: n},
    "images": [{"image", "status", "seconds", "attempts", "size", "error"}]}"""
    return json.dumps({
        "ok": report.ok,
        "seconds": round(report.seconds, 2),
        "distinct_bytes": report.distinct_bytes,
        "rootfs_built": report.rootfs_built,
        "counts": report.counts(),
        "images": [
            {"image": o.image, "status": o.status, "seconds": round(o.seconds, 2), "attempts": o.attempts,
             "size": o.size, "error": o.error}
            for o in report.outcomes
        ],
    }, indent=2)


STYLE = {"built": "green", "cached": "cyan", "skipped": "cyan", "failed": "red", "unbuildable": "yellow"}


def print_table(report: Report, console: Console) -> None:
    table = Table(title="dockyard build")
    for col in ("image", "status", "time", "size", "attempts", "error"):
        table.add_column(col, justify="right" if col in ("time", "size", "attempts") else "left")
    for o in report.outcomes:
        table.add_row(o.image, f"[{STYLE[o.status]}]{o.status}[/]", f"{o.seconds:.1f}s" if o.seconds else "",
                      human_size(o.size) if o.size else "", str(o.attempts or ""), o.error[:60])
    console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    console.print(f"{counts} in {report.seconds:.1f}s; distinct bytes {human_size(report.distinct_bytes)}")
