"""The record of finished bootstrap jobs: ``<state_dir>/jobs.json``, job name -> hash.

A job whose recorded hash equals its wanted hash is done. The record is rewritten
atomically (temp file + rename) after each successful job, so a run killed at any
moment leaves either the old record or the new one, never half a file. A run
killed between a job's success and its record only runs that job again, which is
harmless: every job is idempotent.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from dockyard.deploy.files import write_atomic

RECORD_NAME = "jobs.json"


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_NAME


def load_jobs(state_dir: Path) -> dict[str, str]:
    """Job name -> hash of its last successful run. Missing or unreadable: empty.

    An unreadable record is treated as empty rather than refused: the only cost
    is that jobs (all idempotent) run again, and the next success rewrites it.
    """
    path = record_path(state_dir)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


class JobsRecord:
    """The record of one site. Thread-safe: jobs finish in parallel."""

    def __init__(self, state_dir: Path):
        self.path = record_path(state_dir)
        self._lock = threading.Lock()

    def load(self) -> dict[str, str]:
        return load_jobs(self.path.parent)

    def is_done(self, name: str, job_hash: str) -> bool:
        return self.load().get(name) == job_hash

    def mark_done(self, name: str, job_hash: str) -> None:
        # Read-modify-write under a lock, so two jobs finishing at once both stay recorded.
        with self._lock:
            record = self.load()
            record[name] = job_hash
            data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
            write_atomic(self.path, data)      # 0600: hashes of files that hold secrets (keyed, all the same)
