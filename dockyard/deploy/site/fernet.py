"""Keystone's fernet key repository, kept by dockyard: ``fernet-keys.yml``.

The keys that sign and encrypt keystone's tokens are the site's data, like its
passwords: made here with ``secrets``, kept in one 0600 file beside
``passwords.yml``, and delivered to every keystone container as config files
(the same bytes on every host), where keystone reads them from its key
repository folder. A rotation is a change of this file, carried by a deploy.

The repository follows keystone's own layout (keystone-manage fernet_setup and
fernet_rotate): key ``0`` is the *staged* key, the highest index the *primary*
(the one that signs new tokens), every other one a *secondary* (tokens it
signed still validate). A rotation promotes the staged key, which every host
already holds, to primary, makes a new staged key and drops the oldest
secondaries beyond ``max_active_keys``: so no host ever sees a token signed
with a key it lacks, and a token keeps validating for as many rotations as
there are secondaries.

Nothing here ever puts a key in a message: errors name the file and the key's
index, never its value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from dockyard.datafiles import read_mapping
from dockyard.errors import ConfigError

from dockyard.deploy.files import PRIVATE, write_atomic

FERNET_FILE = "fernet-keys.yml"
# The secret's name, as the catalogue and plans name it (passwords.yml does not
# hold it: its value is this file's keys, see KeyRepository.as_secret).
FERNET_SECRET = "keystone_fernet_keys"
# A staged key, a primary and at least one secondary: fewer, and a token signed
# just before a rotation would stop validating at that rotation.
MIN_ACTIVE_KEYS = 3
KEY_BYTES = 32

HEADER = (
    "# keystone's fernet token keys, kept by dockyard (mode 0600). Made by\n"
    "# `dockyard genpwd`, rotated by `dockyard rotate-fernet`, carried to every\n"
    "# keystone host by `dockyard deploy`. Key 0 is the staged key, the highest\n"
    "# index the primary. Do not edit: a key keystone lacks invalidates tokens.\n"
)


def new_key() -> str:
    """A Fernet key: 32 random bytes, URL-safe base64 (what keystone-manage makes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_problem(value: object) -> str | None:
    """Why ``value`` is not a Fernet key, if it is not (never quoting it)."""
    if not isinstance(value, str):
        return "must be text (a Fernet key: 32 bytes, URL-safe base64)"
    try:
        raw = base64.b64decode(value.encode(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return "not URL-safe base64: a Fernet key is 32 bytes, URL-safe base64"
    if len(raw) != KEY_BYTES:
        return f"decodes to {len(raw)} bytes, not {KEY_BYTES}: not a Fernet key"
    return None


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class KeyRepository:
    keys: dict[int, str]              # index -> key: 0 staged, the highest primary, the others secondary
    created: str                      # when the repository was made (UTC)
    rotated: str | None = None        # when it last rotated (UTC); None: never

    @property
    def primary(self) -> int:
        return max(self.keys)

    def as_secret(self) -> str:
        """The repository as one secret value, as the templates read it: a JSON
        object, index -> key, by index. Its keyed hash is the container label
        that says the keys changed; the keystone catalogue renders it into one
        file per key."""
        return json.dumps({str(i): self.keys[i] for i in sorted(self.keys)})

    def summary(self) -> str:
        """One line about the repository, without a key."""
        when = f"last rotated {self.rotated}" if self.rotated else f"never rotated (made {self.created})"
        return f"{when}; {len(self.keys)} keys, primary {self.primary}"


def setup(now: str | None = None) -> KeyRepository:
    """A new repository, as keystone-manage fernet_setup makes one: a staged key
    (0) and a primary (1)."""
    return KeyRepository({0: new_key(), 1: new_key()}, created=now or utc_now())


def rotate(repo: KeyRepository, max_active_keys: int, now: str | None = None) -> KeyRepository:
    """keystone-manage fernet_rotate, on the data: the staged key becomes the
    primary (the next index), a new staged key 0 is made, and the oldest
    secondaries go until ``max_active_keys`` remain (never fewer than
    MIN_ACTIVE_KEYS: the old primary always stays, as a secondary)."""
    if max_active_keys < MIN_ACTIVE_KEYS:
        raise ValueError(f"max_active_keys must be at least {MIN_ACTIVE_KEYS}, not {max_active_keys}")
    keys = dict(repo.keys)
    keys[repo.primary + 1] = keys[0]
    keys[0] = new_key()
    # Key 0 plus the newest max_active_keys - 1 others: the new primary first, then the secondaries.
    kept = sorted((i for i in keys if i != 0), reverse=True)[:max_active_keys - 1]
    return KeyRepository({0: keys[0], **{i: keys[i] for i in sorted(kept)}}, repo.created, now or utc_now())


def fernet_path(passwords_path: Path) -> Path:
    """Where a site keeps its fernet keys: beside its passwords.yml."""
    return Path(passwords_path).with_name(FERNET_FILE)


def load(path: Path) -> KeyRepository:
    """The repository in ``path``. A missing file, one that group or others may
    read, or one that is not a repository raises ConfigError naming the file
    and key (an index, never a value)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"missing: keystone's fernet keys. Run `dockyard genpwd --config-dir {path.parent}` to "
                          f"make them (a site deployed before dockyard kept them gets new ones: the tokens "
                          f"issued before are refused once, and clients log in again)", path=path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ConfigError(f"mode {mode:04o}: readable or writable by group or others, and it holds the keys of "
                          f"every token. Fix: chmod 600 {path}", path=path)
    data = read_mapping(path)
    for name in data:
        if name not in ("keys", "created", "rotated"):
            raise ConfigError("unknown key (known: keys, created, rotated)", path=path, key=str(name))
    raw = data.get("keys")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("must be a mapping of key index to key", path=path, key="keys")
    keys: dict[int, str] = {}
    for index, value in raw.items():
        if isinstance(index, bool) or not isinstance(index, (int, str)) or not str(index).isdigit():
            raise ConfigError("a key's index must be a whole number (0: staged, the highest: primary)", path=path,
                              key=f"keys.{index}")
        problem = key_problem(value)
        if problem:
            raise ConfigError(problem, path=path, key=f"keys.{index}")
        keys[int(index)] = value
    if 0 not in keys or len(keys) < 2:
        raise ConfigError("needs the staged key 0 and a primary (a higher index)", path=path, key="keys")
    created, rotated = data.get("created"), data.get("rotated")
    for name, value in (("created", created), ("rotated", rotated)):
        if value is not None and not isinstance(value, str):
            raise ConfigError("must be a UTC time as text, e.g. '2025-01-31T12:00:00Z'", path=path, key=name)
    return KeyRepository(keys, created or "unknown", rotated)


def save(path: Path, repo: KeyRepository) -> None:
    """Replace ``path`` with ``repo``, atomically and 0600 from its first byte."""
    doc = {"created": repo.created, "rotated": repo.rotated, "keys": {i: repo.keys[i] for i in sorted(repo.keys)}}
    write_atomic(Path(path), HEADER + yaml.safe_dump(doc, default_flow_style=False, sort_keys=False), PRIVATE)


def ensure(path: Path) -> bool:
    """Make the repository when ``path`` has none; True when it was made. An
    existing one keeps its keys (made 0600 if it was not, and checked: a broken
    one raises)."""
    path = Path(path)
    if path.exists():
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, PRIVATE)           # as genpwd does with passwords.yml: private before it is read
        load(path)
        return False
    save(path, setup())
    return True
