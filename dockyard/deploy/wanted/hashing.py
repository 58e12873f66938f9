"""The hashes that define a container, kept in its labels.

The WantedState builder calls :func:`spec_hashes` and puts the labels it returns
on the container's spec; the planner compares them with the labels of the running
container. Both sides use this module, so they always agree.

Only hashes ever go in labels: config files and environment may hold secrets.
Keeping one hash per part (and one per config file) is what lets the planner say
*which* part differs ("config-hash differs (keystone.conf changed)") instead of
only "something changed".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePosixPath

from dockyard.engine.driver import ContainerSpec

from dockyard.labels import LABEL_HASH, LABEL_HASH_FILE_PREFIX, LABEL_HASH_PART_PREFIX

# dockyard.config-hash (LABEL_HASH) holds the overall hash; dockyard.hash.<part> the
# parts: the image id (or reference when no id is known), every config file by name
# and content, the environment, the command, the mounts (named volumes and bind
# mounts), and everything else the engine is told. One more per config file.
# The parts, in the order reasons name them.
PARTS = ("image", "files", "env", "command", "volumes", "runtime")


def digest(value: object) -> str:
    """A short stable hash of bytes or of any JSON-able value."""
    if isinstance(value, bytes):
        data = value
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def file_key(path_or_name: str) -> str:
    """The name a config file is known by in labels and reasons: its base name."""
    return PurePosixPath(path_or_name).name or path_or_name


def files_digest(files: Mapping[str, bytes]) -> str:
    """One hash over every file's name and content (names, so a rename counts)."""
    h = hashlib.sha256()
    for key in sorted(files, key=file_key):
        h.update(file_key(key).encode() + b"\0" + hashlib.sha256(files[key]).digest())
    return h.hexdigest()[:16]


def _runtime(spec: ContainerSpec) -> list:
    # The False stands where `privileged` was (never set now), so older hashes hold.
    runtime = [spec.network_mode, False, spec.pid_mode, spec.user, sorted(spec.cap_add),
               spec.healthcheck, spec.restart_policy, sorted(spec.tmpfs)]
    # Added later: only when set, so the hashes of containers that use neither
    # stay what they were (no needless recreate after an upgrade of dockyard).
    if spec.devices or spec.security_opt or spec.writable_proc_sys:
        runtime.append([sorted(spec.devices), sorted(spec.security_opt), spec.writable_proc_sys])
    return runtime


def _parts(spec: ContainerSpec, files: Mapping[str, bytes], image_id: str | None) -> dict[str, str]:
    parts = {
        "image": digest(image_id or spec.image),
        "files": files_digest(files),
        "env": digest(spec.environment),
        "command": digest(list(spec.command) if spec.command is not None else None),
        "volumes": digest([(m.source, m.target, m.read_only, *((m.propagation,) if m.propagation else ()))
                           for m in spec.mounts]),
        "runtime": digest(_runtime(spec)),
    }
    # The overall hash covers the parts; per-file hashes are covered by "files".
    parts["all"] = digest(parts)
    for key, content in files.items():
        parts["file." + file_key(key)] = digest(content)
    return parts


def hash_labels(parts: Mapping[str, str]) -> dict[str, str]:
    """Labels from a parts mapping ("all" becomes dockyard.config-hash)."""
    labels = {LABEL_HASH_PART_PREFIX + k: v for k, v in parts.items() if k != "all"}
    labels[LABEL_HASH] = parts["all"]
    return labels


def spec_hashes(spec: ContainerSpec, file_contents: Mapping[str, bytes],
                image_id: str | None = None) -> dict[str, str]:
    """The hash labels of a container: label name -> hash.

    ``file_contents`` maps each config file the container reads (path or name) to
    its bytes. ``image_id`` should be the id the image reference resolves to now,
    so a rebuilt image under the same tag counts as a change; without it the
    reference itself is hashed. The spec's own labels are not hashed: a new
    dockyard version label must not restart every container.

    The result holds ``dockyard.config-hash`` (the overall hash, also
    ``WantedContainer.hash``), one ``dockyard.hash.<part>`` per part and one
    ``dockyard.hash.file.<name>`` per file.
    """
    return hash_labels(_parts(spec, file_contents, image_id))


def differing_parts(observed: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The parts whose hash labels differ. Empty when the observed container has no
    part labels (made by an older dockyard): then only the overall hash can tell."""
    if not any(k.startswith(LABEL_HASH_PART_PREFIX) for k in observed):
        return []
    return [p for p in PARTS if observed.get(LABEL_HASH_PART_PREFIX + p) != wanted.get(LABEL_HASH_PART_PREFIX + p)]


def differing_files(observed: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """Config file name -> "changed" | "added" | "removed", from the per-file labels."""
    def files(labels: Mapping[str, str]) -> dict[str, str]:
        return {k[len(LABEL_HASH_FILE_PREFIX):]: v for k, v in labels.items() if k.startswith(LABEL_HASH_FILE_PREFIX)}

    old, new = files(observed), files(wanted)
    out: dict[str, str] = {}
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            out[name] = "added"
        elif name not in new:
            out[name] = "removed"
        elif old[name] != new[name]:
            out[name] = "changed"
    return out
