"""The named volumes a site created: ``<state_dir>/volumes.json``.

Volume names are global on an engine and volumes carry no site label, so this
record is how ``destroy --include-volumes`` knows which volumes are this site's
to delete: only those it created itself, never another site's of the same name.
"""

from __future__ import annotations

import json
from pathlib import Path

from dockyard.deploy.files import write_atomic

RECORD_NAME = "volumes.json"


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_NAME


def load_volumes(state_dir: Path) -> list[str]:
    try:
        data = json.loads(record_path(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return [str(name) for name in data] if isinstance(data, list) else []


def add_volumes(state_dir: Path, names: list[str]) -> None:
    """Remember volumes this site created (kept in order, each once)."""
    if not names:
        return
    merged = list(dict.fromkeys([*load_volumes(state_dir), *names]))
    write_atomic(record_path(state_dir), (json.dumps(merged, indent=2) + "\n").encode(), 0o644)


def forget(state_dir: Path) -> None:
    record_path(state_dir).unlink(missing_ok=True)
