"""The hashes that define a container, kept in its labels.

The WantedState builder calls :func:`spec_hashes` and puts the labels it returns
on the container's spec; the planner compares them with the labels of the running
container. Both sides use this module, so they always agree.

Only hashes ever go in labels: config files and environment may hold secrets.
They are keyed (HMAC-SHA256 with the site's hash key, ``dockyard_hash_key`` in
passwords.yml), so a label reveals nothing about what it covers: an unkeyed hash
of a file that holds only a password would be a hash of that password, for
anyone who can inspect the container to try guesses against. The key's own id
(a keyed hash of a constant) is a label too, so a plan can tell "the hashes were
re-keyed" from "something changed".
Keeping one hash per part (and one per config file) is what lets the planner say
*which* part differs ("config-hash differs (keystone.conf changed)") instead of
only "something changed".
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import PurePosixPath

from dockyard.engine.driver import ContainerSpec

from dockyard.labels import (LABEL_HASH, LABEL_HASH_FILE_PREFIX, LABEL_HASH_KEY, LABEL_HASH_PART_PREFIX,
                             LABEL_HASH_SECRET_PREFIX)

# dockyard.config-hash (LABEL_HASH) holds the overall hash; dockyard.hash.<part> the
# parts: the image id (or reference when no id is known), every config file by name
# and content, the environment, the command, the mounts (named volumes and bind
# mounts), and everything else the engine is told. One more per config file.
# The parts, in the order reasons name them.
PARTS = ("image", "files", "env", "command", "volumes", "runtime")


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:16]


def digest(value: object, key: bytes) -> str:
    """A short stable keyed hash of bytes or of any JSON-able value."""
    if isinstance(value, bytes):
        data = value
    else:
        data = json.dumps(value, sort_keys=True, default=str).encode()
    return _mac(key, data)


def key_id(key: bytes) -> str:
    """Which key made a set of hashes: a keyed hash of a constant (it tells keys
    apart and reveals nothing about them)."""
    return _mac(key, b"dockyard hash key id")


def file_key(path_or_name: str) -> str:
    """The name a config file is known by in labels and reasons: its base name."""
    return PurePosixPath(path_or_name).name or path_or_name


def files_digest(files: Mapping[str, bytes], key: bytes) -> str:
    """One keyed hash over every file's name and content (names, so a rename counts)."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(files, key=file_key):
        h.update(file_key(name).encode() + b"\0" + hashlib.sha256(files[name]).digest())
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


def _parts(spec: ContainerSpec, files: Mapping[str, bytes], image_id: str | None, key: bytes) -> dict[str, str]:
    parts = {
        "image": digest(image_id or spec.image, key),
        "files": files_digest(files, key),
        "env": digest(spec.environment, key),
        "command": digest(list(spec.command) if spec.command is not None else None, key),
        "volumes": digest([(m.source, m.target, m.read_only, *((m.propagation,) if m.propagation else ()))
                           for m in spec.mounts], key),
        "runtime": digest(_runtime(spec), key),
    }
    # The overall hash covers the parts; per-file hashes are covered by "files".
    parts["all"] = digest(parts, key)
    for name, content in files.items():
        parts["file." + file_key(name)] = digest(content, key)
    return parts


def hash_labels(parts: Mapping[str, str]) -> dict[str, str]:
    """Labels from a parts mapping ("all" becomes dockyard.config-hash)."""
    labels = {LABEL_HASH_PART_PREFIX + k: v for k, v in parts.items() if k != "all"}
    labels[LABEL_HASH] = parts["all"]
    return labels


def spec_hashes(spec: ContainerSpec, file_contents: Mapping[str, bytes],
                image_id: str | None = None, *, key: bytes) -> dict[str, str]:
    """The hash labels of a container: label name -> hash.

    ``file_contents`` maps each config file the container reads (path or name) to
    its bytes. ``image_id`` should be the id the image reference resolves to now,
    so a rebuilt image under the same tag counts as a change; without it the
    reference itself is hashed. The spec's own labels are not hashed: a new
    dockyard version label must not restart every container.

    The result holds ``dockyard.config-hash`` (the overall hash, also
    ``WantedContainer.hash``), one ``dockyard.hash.<part>`` per part and one
    ``dockyard.hash.file.<name>`` per file, all keyed with ``key`` (the site's
    hash key), and ``dockyard.hash-key``: the key's id.
    """
    labels = hash_labels(_parts(spec, file_contents, image_id, key))
    labels[LABEL_HASH_KEY] = key_id(key)
    return labels


def rekeyed(observed: Mapping[str, str], wanted: Mapping[str, str]) -> str | None:
    """Why the observed hash labels cannot be compared with the wanted ones, if
    they were made with another key (or none): then every hash differs, whatever
    changed."""
    if observed.get(LABEL_HASH_KEY) == wanted.get(LABEL_HASH_KEY):
        return None
    if LABEL_HASH_KEY not in observed:
        return "hashes re-keyed: its labels hold unkeyed hashes (made by an older dockyard)"
    return "hashes re-keyed: the site's hash key (dockyard_hash_key in passwords.yml) is not the one it was made with"


def job_hash(labels: Mapping[str, str]) -> str:
    """What the jobs record keeps for a job: its key's id and its config-hash, so
    a plan can say a job runs again because the hashes were re-keyed."""
    return f"{labels[LABEL_HASH_KEY]}.{labels[LABEL_HASH]}"


def job_rekeyed(recorded: str, wanted: str) -> str | None:
    """As :func:`rekeyed`, for a job's recorded hash and its wanted one."""
    old, new = recorded.partition(".")[0], wanted.partition(".")[0]
    if "." in recorded and old == new:
        return None
    if "." not in recorded:
        return "hashes re-keyed: its record holds an unkeyed hash (made by an older dockyard)"
    return "hashes re-keyed: the site's hash key (dockyard_hash_key in passwords.yml) is not the one it ran with"


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


# -- which secrets a unit reads -----------------------------------------------------------
# A unit's config files are hashed whole, so a changed password shows as a changed
# file; to say *which* password (by name, never by value), each secret a unit
# reads gets a keyed hash of its own: a label on containers, beside the hash in
# the jobs record for jobs. They are not part of the config-hash (the files
# already are), so adding them recreates nothing.

def secret_labels(values: Mapping[str, str], key: bytes) -> dict[str, str]:
    """``dockyard.hash.secret.<name>`` -> a keyed hash of the name and value."""
    return {LABEL_HASH_SECRET_PREFIX + name: _mac(key, b"dockyard secret\0" + name.encode() + b"\0" + value.encode())
            for name, value in sorted(values.items())}


def secrets_of(labels: Mapping[str, str]) -> dict[str, str]:
    """Secret name -> its keyed hash, from labels (or a jobs record entry)."""
    return {k[len(LABEL_HASH_SECRET_PREFIX):]: v for k, v in labels.items() if k.startswith(LABEL_HASH_SECRET_PREFIX)}


def changed_secrets(observed: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The names of the secrets both sides know whose hashes differ. A secret the
    observed side has no hash of (made by an older dockyard, or newly read) is
    not named: nothing says it changed."""
    return secrets_differing(secrets_of(observed), secrets_of(wanted))


def secrets_differing(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """As :func:`changed_secrets`, for two maps of secret name -> keyed hash."""
    return sorted(name for name in old.keys() & new.keys() if old[name] != new[name])
