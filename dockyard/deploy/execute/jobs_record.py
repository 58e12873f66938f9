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
# Beside the hashes: job name -> {secret name: keyed hash} of the secrets its last
# successful run read (hashing.secret_labels), so a plan can say which secret a
# job runs again for. Not a job name: unit names have no "@".
SECRETS_KEY = "@secrets"


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
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def load_job_secrets(state_dir: Path) -> dict[str, dict[str, str]]:
    """Job name -> {secret name: keyed hash} of its last success (empty when unknown)."""
    try:
        data = json.loads(record_path(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    secrets = data.get(SECRETS_KEY) if isinstance(data, dict) else None
    if not isinstance(secrets, dict):
        return {}
    return {str(job): {str(k): str(v) for k, v in found.items()} for job, found in secrets.items()
            if isinstance(found, dict)}


class JobsRecord:
    """The record of one site. Thread-safe: jobs finish in parallel."""

    def __init__(self, state_dir: Path):
        self.path = record_path(state_dir)
        self._lock = threading.Lock()

    def load(self) -> dict[str, str]:
        return load_jobs(self.path.parent)

    def is_done(self, name: str, job_hash: str) -> bool:
        return self.load().get(name) == job_hash

    def mark_done(self, name: str, job_hash: str, secrets: dict[str, str] | None = None) -> None:
        # Read-modify-write under a lock, so two jobs finishing at once both stay recorded.
        with self._lock:
            record: dict = self.load()
            record[name] = job_hash
            kept = load_job_secrets(self.path.parent)
            if secrets:
                kept[name] = dict(secrets)
            else:
                kept.pop(name, None)
            if kept:
                record[SECRETS_KEY] = kept
            data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
            write_atomic(self.path, data)      # 0600: hashes of files that hold secrets (keyed, all the same)
