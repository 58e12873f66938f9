"""The records a site keeps of what its volumes hold, forgotten together when
``dockyard destroy --include-volumes`` removes the volumes: which jobs are done
(jobs.json), which volumes the site made (volumes.json), and a release upgrade
under way (upgrade.json)."""

from __future__ import annotations

from pathlib import Path

from . import jobs_record, volumes_record

UPGRADE_RECORD = "upgrade.json"


def forget_all(state_dir: Path) -> list[str]:
    """Remove the records; returns the names of those that were there."""
    paths = [jobs_record.record_path(state_dir), volumes_record.record_path(state_dir),
             Path(state_dir) / UPGRADE_RECORD]
    gone = [p.name for p in paths if p.exists()]
    for path in paths:
        path.unlink(missing_ok=True)
    return gone
