"""Where an operator's INI overrides live, in the order they are merged:
``config/<name>.conf``, ``config/<name>/<component>.conf``, ``config/<host>/<name>.conf``."""

from __future__ import annotations

from pathlib import Path


def find_overrides(config_dir: Path, name: str, component: str, host: str) -> list[Path]:
    base = config_dir / "config"
    candidates = [base / f"{name}.conf", base / name / f"{component}.conf", base / host / f"{name}.conf"]
    return [p for p in candidates if p.is_file()]
