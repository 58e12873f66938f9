"""The hashes that define a container, kept in its labels.

Only hashes go in labels: files and environment may hold secrets. Keeping one
hash per part lets the planner say *which* part differs.
"""

from __future__ import annotations

import hashlib
import json

from dockyard.engine.driver import ContainerSpec

LABEL_PREFIX = "dockyard.hash."
PARTS = ("image", "files", "env", "command", "volumes", "runtime")


def digest(value) -> str:
    if isinstance(value, bytes):
        data = value
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def files_digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return h.hexdigest()[:16]


def spec_hashes(spec: ContainerSpec, image_id: str, files: dict[str, bytes]) -> dict[str, str]:
    """One hash per part of what defines a container, and the overall one."""
    parts = {
        "image": digest(image_id),
        "files": files_digest(files),
        "env": digest(spec.environment),
        "command": digest(list(spec.command or [])),
        "volumes": digest([(m.source, m.target, m.read_only) for m in spec.mounts]),
        "runtime": digest([spec.network_mode, spec.privileged, spec.pid_mode, spec.user, list(spec.cap_add),
                           spec.healthcheck, spec.restart_policy, list(spec.tmpfs)]),
    }
    parts["all"] = digest(parts)
    return parts


def hash_labels(parts: dict[str, str]) -> dict[str, str]:
    labels = {f"{LABEL_PREFIX}{k}": v for k, v in parts.items() if k != "all"}
    labels["dockyard.config-hash"] = parts["all"]
    return labels


def differing_parts(observed_labels: dict[str, str], wanted_labels: dict[str, str]) -> list[str]:
    return [p for p in PARTS if observed_labels.get(LABEL_PREFIX + p) != wanted_labels.get(LABEL_PREFIX + p)]
