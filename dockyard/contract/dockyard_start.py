#!/usr/bin/python3
"""dockyard-start: the entrypoint of every dockyard image.

Reads config.json (Kolla's fields) and validates all of it, then copies the
config files into place with their owners and modes, applies permissions, runs
the image's optional start extension, and either runs the image's bootstrap step
(bootstrap mode) or execs the command as the service user.

It runs inside the images (Debian's python3), so it uses the standard library
only and stays compatible with Python 3.11 to 3.13.

Exit codes: 0 ok; 1 an action failed, or --check found differences; 2 invalid
configuration (nothing was changed). In bootstrap mode, the bootstrap step's code.
"""

from __future__ import annotations

import argparse
import glob
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# Paths inside the container. A ``root`` other than "/" places all of them
# (and every path config.json names) under that directory, for tests.
CONFIG_FILE = "/var/lib/dockyard/config_files/config.json"
MARKER = "/var/lib/dockyard/.configured"
# The command this container last started (not a bootstrap step), as a JSON
# argv, for --check to compare with config.json's. Beside MARKER, in the
# container's own filesystem rather than under /run: whether /run is a tmpfs
# depends on the engine (Podman mounts one, Docker does not), and the record
# must live exactly as long as the container under every engine: kept across
# its restarts, gone with it, never inherited by a new container.
COMMAND_RECORD = "/var/lib/dockyard/.command.json"
EXTEND_START = "/usr/local/bin/dockyard-extend-start"
BOOTSTRAP_STEP = "/usr/local/bin/dockyard-bootstrap"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

STRATEGIES = ("COPY_ALWAYS", "COPY_ONCE")
TOP_KEYS = frozenset({"command", "user", "config_files", "permissions"})
FILE_KEYS = frozenset({"source", "dest", "owner", "perm", "merge", "preserve_properties", "optional"})
PERM_KEYS = frozenset({"path", "owner", "perm", "recurse", "exclude"})

DIGITS = re.compile(r"[0-9]+")
# "640", "0640", "2775", "02775", and Python's and YAML 1.2's "0o640", "0o2775".
OCTAL_MODE = re.compile(r"(?:0o|0)?[0-7]{3,4}")
MAX_ID = 2**32 - 2          # (uid_t)-1 means "leave unchanged" to chown(2)
FALSE_WORDS = ("", "0", "false", "no", "off")
# What a stop sends (tini passes it to dockyard-start alone), passed on to a child it waits for.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# -- errors and logging ---------------------------------------------------------------

class Invalid(Exception):
    """The configuration is wrong. Raised before anything is changed; holds every problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Bad(ValueError):
    """One value is wrong. The caller adds where it is (file and key)."""


class ActionFailed(Exception):
    """Applying a valid configuration failed (a disk error, a failed chown...)."""


def _say(level: str, message: str) -> None:
    print(f"{level} {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    _say("INFO", message)


def warn(message: str) -> None:
    _say("WARNING", message)


def error(message: str) -> None:
    _say("ERROR", message)


def rebase(root: str, path: str) -> str:
    """The real location of container path ``path`` when the container's / is ``root``.

    The path is normalised first, so ``..`` can never climb out of ``root``.
    """
    path = _clean(path)
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/")) if path != "/" else root


def _clean(path: str) -> str:
    # One leading slash first: POSIX normpath keeps a leading "//" as it is.
    return os.path.normpath("/" + path.lstrip("/"))


def container_path(root: str, real: str) -> str:
    """The container path of real path ``real``: what ``rebase`` maps to it."""
    if root in ("", "/"):
        return _clean(real)
    rel = os.path.relpath(real, root)
    return "/" if rel == "." else _clean(rel)


def _rebase_pattern(root: str, pattern: str) -> str:
    # The root is a literal directory: its own characters must not act as wildcards.
    if root in ("", "/"):
        return _clean(pattern)
    return os.path.join(glob.escape(root), _clean(pattern).lstrip("/"))


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


# -- parsing single values ------------------------------------------------------------

def _kind(value: object) -> str:
    """A value's JSON type, for messages (never the value: it might be a secret)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _short(value: object) -> str:
    # Names, modes and paths are safe to echo; anything else is described by type.
    if isinstance(value, str) and len(value) <= 64:
        return repr(value)
    return _kind(value)


def _id_in_range(number: int) -> int:
    if not 0 <= number <= MAX_ID:
        raise Bad(f"id {number} is out of range (0-{MAX_ID})")
    return number


@dataclass(frozen=True)
class Identity:
    """Who a process runs as."""

    name: str | None         # None: a numeric uid with no passwd entry
    uid: int
    gid: int
    home: str

    def groups(self) -> list[int]:
        if self.name is None:
            return [self.gid]
        return os.getgrouplist(self.name, self.gid)


ROOT_IDENTITY = Identity("root", 0, 0, "/root")


def resolve_user(value: object) -> Identity:
    """A user name or numeric uid (string or number) -> Identity. Raises Bad."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Bad(f"must be a user name or a numeric uid, got {_kind(value)}")
    text = str(value)
    if DIGITS.fullmatch(text):
        uid = _id_in_range(int(text))
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            # An arbitrary uid (as OpenShift-style runtimes use) is allowed.
            return Identity(None, uid, uid, "/")
    else:
        if not text or ":" in text:
            raise Bad(f"must be a user name or a numeric uid, got {_short(value)}")
        try:
            entry = pwd.getpwnam(text)
        except (KeyError, ValueError):
            raise Bad(f"unknown user {text!r}") from None
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir or "/")


def resolve_group(text: str) -> int:
    if DIGITS.fullmatch(text):
        return _id_in_range(int(text))
    try:
        return grp.getgrnam(text).gr_gid
    except (KeyError, ValueError):
        raise Bad(f"unknown group {text!r}") from None


def parse_owner(value: object) -> tuple[int, int]:
    """'user', 'user:group', a numeric uid ('1000' or 1000) -> (uid, gid).

    Without a group, the user's primary group (or, for a uid with no passwd
    entry, the gid of the same number).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Bad(f"must be 'user', 'user:group' or a numeric uid, got {_kind(value)}")
    text = str(value)
    user, colon, group = text.partition(":")
    if not user or (colon and not group) or ":" in group:
        raise Bad(f"must be 'user', 'user:group' or a numeric uid, got {_short(value)}")
    identity = resolve_user(user)
    return identity.uid, resolve_group(group) if group else identity.gid


def parse_perm(value: object) -> int:
    """An octal mode string ('0640', '755', '2775', '0o640') -> int. Raises Bad."""
    if not isinstance(value, str) or not OCTAL_MODE.fullmatch(value):
        raise Bad(f"must be an octal mode string such as '0640', got {_short(value)}")
    return int(value, 8)


def parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"must be true or false, got {_kind(value)}")
    return value


def parse_abs_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise Bad(f"must be an absolute path, got {_short(value)}")
    return value


def parse_command(value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise Bad(f"must be a string, got {_kind(value)}")
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise Bad(f"cannot be split into words: {exc}") from None
    if not argv:
        raise Bad("is empty")
    return argv


def dir_mode(perm: int) -> int:
    """The mode a directory gets from a file mode: each read bit also grants search.

    Without it, a ``perm: "0640"`` applied to a tree would lock its owner out of
    its own directories.
    """
    return perm | ((perm & 0o444) >> 2)


# -- the validated configuration ------------------------------------------------------

@dataclass(frozen=True)
class FileSpec:
    """One config_files entry, validated. ``pairs`` are real (rebased) paths."""

    where: str                               # e.g. "config_files[2]"
    source: str                              # as written in config.json
    dest: str
    owner: tuple[int, int] | None
    perm: int | None
    merge: bool
    preserve: bool
    optional: bool
    pairs: tuple[tuple[str, str], ...]       # (source, dest) to copy, in order


@dataclass(frozen=True)
class PermSpec:
    """One permissions entry, validated."""

    where: str
    path: str                                # as written (may be a glob)
    pattern: str                             # real (rebased) glob pattern
    owner: tuple[int, int]
    perm: int | None
    recurse: bool
    exclude: tuple[re.Pattern[str], ...]     # full-matched against container paths
    root: str                                # where the container's / is, to find those


@dataclass(frozen=True)
class Config:
    command: tuple[str, ...] | None
    user: Identity | None
    files: tuple[FileSpec, ...]
    permissions: tuple[PermSpec, ...]


class _Problems:
    """Collects every problem of one file, so an operator fixes them in one go."""

    def __init__(self, name: str):
        self.name = name
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        text = f"{self.name}: {where}: {message}" if where else f"{self.name}: {message}"
        if text not in self.items:      # e.g. each match of a glob copied into the same file
            self.items.append(text)

    def value(self, where: str, parse: Callable, value: object):
        try:
            return parse(value)
        except Bad as exc:
            self.add(where, str(exc))
            return None

    def entry(self, where: str, entry: object, allowed: frozenset[str], required: tuple[str, ...]) -> bool:
        """Check an entry's shape; False when it is too broken to look inside."""
        if not isinstance(entry, dict):
            self.add(where, f"must be an object, got {_kind(entry)}")
            return False
        ok = True
        for key in sorted(set(entry) - allowed):
            self.add(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in entry:
                self.add(where, f"missing required key {key!r}")
                ok = False
        return ok

    def list_of(self, raw: dict, key: str) -> list:
        value = raw.get(key, [])
        if not isinstance(value, list):
            self.add(key, f"must be a list, got {_kind(value)}")
            return []
        return value


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # JSON allows a key twice and keeps the last: almost always a mistake here.
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise Bad(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_json(path: str) -> object:
    """config.json's document. Raises Invalid naming the file when it cannot be read."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, object_pairs_hook=_no_duplicate_keys)
    except FileNotFoundError:
        raise Invalid([f"{path}: not found (mount the container's configuration at "
                       f"{os.path.dirname(path)})"]) from None
    except json.JSONDecodeError as exc:
        raise Invalid([f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except UnicodeDecodeError:
        raise Invalid([f"{name}: not UTF-8 text"]) from None
    except Bad as exc:
        raise Invalid([f"{name}: {exc}"]) from None
    except OSError as exc:
        raise Invalid([f"{path}: cannot be read: {exc.strerror or exc}"]) from None


def _file_pairs(p: _Problems, where: str, source: str, dest: str, optional: bool,
                root: str) -> tuple[tuple[str, str], ...]:
    sources = sorted(glob.glob(_rebase_pattern(root, source)))
    if not sources:
        if not optional:
            what = "no file matches" if _is_glob(source) else "does not exist"
            p.add(f"{where}.source", f"{source} {what} (mark the entry \"optional\": true if it may be absent)")
        return ()
    # A trailing "/" or a glob source means "into that directory".
    into = dest.endswith("/") or _is_glob(source)
    real_dest = rebase(root, dest)
    # Whether each target clashes with what is (or will be) there is checked
    # once every entry is known: see _Layout.
    return tuple((src, os.path.join(real_dest, os.path.basename(src)) if into else real_dest)
                 for src in sources)


def _parse_file_entry(p: _Problems, i: int, entry: object, root: str) -> FileSpec | None:
    where = f"config_files[{i}]"
    if not p.entry(where, entry, FILE_KEYS, ("source", "dest")):
        return None
    assert isinstance(entry, dict)
    before = len(p.items)
    source = p.value(f"{where}.source", parse_abs_path, entry["source"])
    dest = p.value(f"{where}.dest", parse_abs_path, entry["dest"])
    owner = p.value(f"{where}.owner", parse_owner, entry["owner"]) if "owner" in entry else None
    perm = p.value(f"{where}.perm", parse_perm, entry["perm"]) if "perm" in entry else None
    flags = {key: p.value(f"{where}.{key}", parse_bool, entry.get(key, False))
             for key in ("merge", "preserve_properties", "optional")}
    if source is None or dest is None:
        return None
    pairs = _file_pairs(p, where, source, dest, bool(flags["optional"]), root)
    if len(p.items) != before:
        return None
    return FileSpec(where, source, dest, owner, perm, flags["merge"], flags["preserve_properties"],
                    flags["optional"], pairs)


# -- the destination tree: file/directory clashes --------------------------------------

Kind = tuple[bool, str | None]            # (is a directory, the entry that puts it there; None: on disk now)


def _under(path: str, top: str) -> bool:
    return path != top and path.startswith(top.rstrip("/") + "/")


def _parents(path: str) -> list[str]:
    """The directories above ``path``, outermost first."""
    parents = []
    while (parent := os.path.dirname(path)) != path:
        parents.append(parent)
        path = parent
    return parents[::-1]


class _Layout:
    """The destination tree as copying the entries in order will leave it.

    A path an earlier entry puts somewhere counts over what is on disk now, and
    a directory an entry replaces hides what was under it on disk. Validation
    checks every target against this, so a file where a directory must go (or
    the reverse), whether on disk or from another entry, is refused before
    anything is copied, rather than stopping the copy half-way.
    """

    def __init__(self) -> None:
        self.planned: dict[str, Kind] = {}
        self.replaced: list[str] = []

    def kind(self, path: str) -> Kind | None:
        """What will be at ``path`` when the next entry is copied; None: nothing."""
        if path in self.planned:
            return self.planned[path]
        if any(_under(path, top) for top in self.replaced) or not os.path.lexists(path):
            return None
        return os.path.isdir(path), None

    def put(self, path: str, is_dir: bool, where: str) -> None:
        self.planned[path] = (is_dir, where)

    def replace_tree(self, top: str) -> None:
        for path in [p for p in self.planned if _under(p, top)]:
            del self.planned[path]
        self.replaced.append(top)


def _by(kind: Kind) -> str:
    is_dir, where = kind
    return f" ({where} puts {'a directory' if is_dir else 'a file'} there)" if where else ""


def _place(p: _Problems, layout: _Layout, spec: FileSpec, source: str, target: str) -> None:
    """Check one (source, target) pair against the layout, then add it there."""
    where = f"{spec.where}.dest"
    for parent in _parents(target):
        found = layout.kind(parent)
        if found is None:
            layout.put(parent, True, spec.where)          # made by os.makedirs
        elif not found[0]:
            p.add(where, f"{parent} is not a directory, so nothing can be copied into it{_by(found)}")
            return
    _place_tree(p, layout, spec, source, target, top=True)


def _place_tree(p: _Problems, layout: _Layout, spec: FileSpec, source: str, target: str, top: bool) -> None:
    is_dir = os.path.isdir(source)
    found = layout.kind(target)
    # Refuse to swap a file for a directory (or back): one missing "/" must not
    # wipe out a whole directory such as /etc/keystone; and inside a merged tree
    # the copy could not do it anyway.
    if found is not None and found[0] != is_dir:
        if is_dir:
            p.add(f"{spec.where}.dest", f"{target} is not a directory, but the source {source} is one{_by(found)}")
        else:
            hint = " (end dest with '/' to copy into it)" if top else ""
            p.add(f"{spec.where}.dest", f"{target} is a directory, but the source {source} is a file{_by(found)}{hint}")
        return
    if not is_dir:
        layout.put(target, False, spec.where)
        return
    if top and not spec.merge:
        layout.replace_tree(target)
    layout.put(target, True, spec.where)
    try:
        children = _children(source, warn_skipped=False)
    except OSError as exc:
        p.add(f"{spec.where}.source", f"{source} cannot be read: {exc.strerror or exc}")
        return
    for name, _ in children:
        _place_tree(p, layout, spec, os.path.join(source, name), os.path.join(target, name), top=False)


def check_layout(p: _Problems, files: list[FileSpec]) -> None:
    """Add a problem for each file/directory clash copying ``files`` in order would meet."""
    layout = _Layout()
    for spec in files:
        for source, target in spec.pairs:
            _place(p, layout, spec, source, target)


def parse_exclude(value: object) -> re.Pattern[str]:
    """One ``exclude`` item: a regular expression for whole container paths. Raises Bad.

    Kolla's excludes are regular expressions too; a plain absolute path is one
    that matches itself. The pattern must begin with "/" (or "^/"): it is matched
    against the whole path, so one written to be searched for ("\\.log$") would
    otherwise match nothing, silently.
    """
    if not isinstance(value, str) or not value.startswith(("/", "^/")):
        raise Bad(f"must be a regular expression for absolute paths, starting with '/', got {_short(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise Bad(f"{_short(value)} is not a valid regular expression: {exc.msg} at position {exc.pos}") from None


def _parse_excludes(p: _Problems, where: str, value: object) -> tuple[re.Pattern[str], ...] | None:
    if not isinstance(value, list):
        p.add(where, f"must be a list of regular expressions for absolute paths, got {_kind(value)}")
        return None
    patterns = []
    for j, item in enumerate(value):
        pattern = p.value(f"{where}[{j}]", parse_exclude, item)
        if pattern is not None:
            patterns.append(pattern)
    return tuple(patterns)


def _parse_perm_entry(p: _Problems, i: int, entry: object, root: str) -> PermSpec | None:
    where = f"permissions[{i}]"
    if not p.entry(where, entry, PERM_KEYS, ("path", "owner")):
        return None
    assert isinstance(entry, dict)
    before = len(p.items)
    path = p.value(f"{where}.path", parse_abs_path, entry["path"])
    owner = p.value(f"{where}.owner", parse_owner, entry["owner"])
    perm = p.value(f"{where}.perm", parse_perm, entry["perm"]) if "perm" in entry else None
    recurse = p.value(f"{where}.recurse", parse_bool, entry.get("recurse", False))
    exclude = _parse_excludes(p, f"{where}.exclude", entry.get("exclude", []))
    if len(p.items) != before or exclude is None:
        return None
    return PermSpec(where, path, _rebase_pattern(root, path), owner, perm, recurse, exclude, root)


def parse_config(raw: object, root: str = "/", need_command: bool = True,
                 name: str = "config.json") -> Config:
    """Validate config.json's document completely. Raises Invalid listing every problem."""
    p = _Problems(name)
    if not isinstance(raw, dict):
        raise Invalid([f"{name}: must be a JSON object, got {_kind(raw)}"])
    for key in sorted(set(raw) - TOP_KEYS):
        p.add("", f"unknown key {key!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    command = None
    if "command" in raw:
        command = p.value("command", parse_command, raw["command"])
    elif need_command:
        p.add("command", "missing (required unless DOCKYARD_BOOTSTRAP is set)")
    user = p.value("user", resolve_user, raw["user"]) if "user" in raw else None
    files = [_parse_file_entry(p, i, e, root) for i, e in enumerate(p.list_of(raw, "config_files"))]
    known = [spec for spec in files if spec is not None]
    if len(known) == len(files):
        # Only with every entry known: a broken one could hide what another clashes with.
        check_layout(p, known)
    perms = [_parse_perm_entry(p, i, e, root) for i, e in enumerate(p.list_of(raw, "permissions"))]
    if p.items:
        raise Invalid(p.items)
    return Config(command, user, tuple(files), tuple(perms))  # type: ignore[arg-type]


def load_config(path: str, root: str = "/", need_command: bool = True) -> Config:
    """Read and validate config.json at ``path`` (a real path). Raises Invalid."""
    return parse_config(read_json(path), root, need_command, os.path.basename(path))


# -- copying --------------------------------------------------------------------------

def _wanted(spec: FileSpec, source_st: os.stat_result, is_dir: bool) -> tuple[tuple[int, int] | None, int | None]:
    """(owner, mode) a copied path must have; None where config.json leaves it open."""
    if spec.preserve:
        return (source_st.st_uid, source_st.st_gid), stat.S_IMODE(source_st.st_mode)
    mode = spec.perm
    if mode is not None and is_dir:
        mode = dir_mode(mode)
    return spec.owner, mode


def _set_props(path: str, spec: FileSpec, source_st: os.stat_result, is_dir: bool) -> None:
    owner, mode = _wanted(spec, source_st, is_dir)
    if owner is not None:
        os.chown(path, *owner)
    # Chmod after chown: chown clears setuid/setgid bits. Without a perm, the
    # copy keeps the source's mode, as cp does.
    os.chmod(path, mode if mode is not None else stat.S_IMODE(source_st.st_mode))


def _copy_file(source: str, dest: str, spec: FileSpec) -> None:
    """Replace ``dest`` atomically: readers see the old file or the new one, whole."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".dockyard-")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            source_st = os.fstat(src.fileno())
        # Owner and mode are set before the rename, so the file is never
        # visible with looser permissions than asked for.
        _set_props(tmp, spec, source_st, is_dir=False)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _children(source: str, warn_skipped: bool = True) -> list[tuple[str, bool]]:
    """(name, is_dir) of the regular files and directories in ``source``."""
    out = []
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        if entry.is_dir():
            out.append((entry.name, True))
        elif entry.is_file():
            out.append((entry.name, False))
        elif warn_skipped:
            warn(f"skipping {entry.path}: not a regular file or directory")
    return out


def _fill_dir(source: str, dest: str, spec: FileSpec) -> None:
    """Copy the contents of ``source`` into the directory ``dest`` (made if missing)."""
    os.makedirs(dest, exist_ok=True)
    _set_props(dest, spec, os.stat(source), is_dir=True)
    for name, is_dir in _children(source):
        s, d = os.path.join(source, name), os.path.join(dest, name)
        if is_dir:
            _fill_dir(s, d, spec)
        else:
            _copy_file(s, d, spec)


def _replace_dir(source: str, dest: str, spec: FileSpec) -> None:
    """Build the new tree beside ``dest``, then swap it in with two renames."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    new = tempfile.mkdtemp(dir=parent, prefix=".dockyard-new-")
    old = None
    try:
        _fill_dir(source, new, spec)
        if os.path.lexists(dest):
            old = tempfile.mkdtemp(dir=parent, prefix=".dockyard-old-")
            os.rename(dest, os.path.join(old, "tree"))
        os.rename(new, dest)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        if old and os.path.lexists(os.path.join(old, "tree")) and not os.path.lexists(dest):
            os.rename(os.path.join(old, "tree"), dest)      # put the old tree back
        raise
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)


def copy_files(config: Config) -> None:
    """Copy every config_files entry into place. Raises ActionFailed."""
    for spec in config.files:
        for source, dest in spec.pairs:
            info(f"copying {source} -> {dest}")
            try:
                if not os.path.isdir(source):
                    _copy_file(source, dest, spec)
                elif spec.merge:
                    _fill_dir(source, dest, spec)
                else:
                    _replace_dir(source, dest, spec)
            except OSError as exc:
                raise ActionFailed(f"{spec.where}: copying {source} -> {dest}: "
                                   f"{exc.strerror or exc}") from None


# -- permissions ----------------------------------------------------------------------

def excluded(spec: PermSpec, real: str) -> bool:
    """Whether ``exclude`` leaves the path at ``real`` (and what is under it) alone.

    A directory is also tried with a trailing "/", so "/var/lib/svc/cache/"
    names the directory, as a plain path with a trailing slash always did.
    """
    if not spec.exclude:
        return False
    path = container_path(spec.root, real)
    candidates = [path, path.rstrip("/") + "/"] if os.path.isdir(real) and not os.path.islink(real) else [path]
    return any(pattern.fullmatch(c) for pattern in spec.exclude for c in candidates)


def _walk(top: str, spec: PermSpec):
    """``top`` and everything under it, not following symlinks, pruning what ``spec`` excludes."""
    yield top
    if os.path.isdir(top) and not os.path.islink(top):
        for name in sorted(os.listdir(top)):
            child = os.path.join(top, name)
            if not excluded(spec, child):
                yield from _walk(child, spec)


def apply_permissions(config: Config) -> None:
    """Set owner (and mode) of each permissions path. Raises ActionFailed."""
    for spec in config.permissions:
        matches = sorted(glob.glob(spec.pattern))
        if not matches:
            # Paths on volumes may appear later; a typo shows up here.
            warn(f"{spec.where}.path: {spec.path} does not exist; skipped")
        for top in matches:
            if excluded(spec, top):
                continue
            info(f"setting permissions on {top}" + (" recursively" if spec.recurse else ""))
            for path in (_walk(top, spec) if spec.recurse else [top]):
                try:
                    os.chown(path, *spec.owner, follow_symlinks=False)
                    st = os.lstat(path)
                    if spec.perm is not None and not stat.S_ISLNK(st.st_mode):
                        os.chmod(path, dir_mode(spec.perm) if stat.S_ISDIR(st.st_mode) else spec.perm)
                except OSError as exc:
                    raise ActionFailed(f"{spec.where}: {path}: {exc.strerror or exc}") from None


# -- checking -------------------------------------------------------------------------

def _same_bytes(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 16), fb.read(1 << 16)
            if x != y:
                return False
            if not x:
                return True


def _compare(source: str, dest: str, spec: FileSpec, found: list[str]) -> None:
    is_dir = os.path.isdir(source)
    if not os.path.lexists(dest):
        found.append(f"{dest}: missing")
        return
    if is_dir != os.path.isdir(dest) or (not is_dir and not os.path.isfile(dest)):
        found.append(f"{dest}: {'not a directory' if is_dir else 'not a regular file'}")
        return
    reasons = []
    if not is_dir and not _same_bytes(source, dest):
        reasons.append("content")
    owner, mode = _wanted(spec, os.stat(source), is_dir)
    st = os.stat(dest)
    if owner is not None and (st.st_uid, st.st_gid) != owner:
        reasons.append("owner")
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        reasons.append("mode")
    if reasons:
        found.append(f"{dest}: {', '.join(reasons)} differ{'s' if len(reasons) == 1 else ''}")
    if is_dir:
        names = set()
        for name, _ in _children(source):
            names.add(name)
            _compare(os.path.join(source, name), os.path.join(dest, name), spec, found)
        if not spec.merge:
            for extra in sorted(set(os.listdir(dest)) - names):
                found.append(f"{os.path.join(dest, extra)}: not in {source}")


def differences(config: Config) -> list[str]:
    """One line per copied path that differs from its source; empty when all match."""
    found: list[str] = []
    for spec in config.files:
        for source, dest in spec.pairs:
            _compare(source, dest, spec, found)
    return found


# -- running --------------------------------------------------------------------------

def _is_set(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in FALSE_WORDS


def _exit_code(returncode: int) -> int:
    # A child killed by a signal reports -N; shells say 128+N.
    return 128 - returncode if returncode < 0 else returncode


def user_environment(environ: Mapping[str, str], who: Identity) -> dict[str, str]:
    """The environment for a process running as ``who``."""
    env = dict(environ)
    if os.getuid() == 0 and who.uid != 0:
        env["HOME"] = who.home
        if who.name:
            env["USER"] = env["LOGNAME"] = who.name
    return env


def drop_privileges(who: Identity) -> None:
    """Become ``who`` for good. A process that is not root already stays as it is."""
    if os.getuid() != 0 or who.uid == 0:
        return
    if who.name is not None:
        os.initgroups(who.name, who.gid)
    else:
        os.setgroups([])
    os.setgid(who.gid)
    os.setuid(who.uid)


class _Forwarder:
    """A signal handler that passes the signal on to the child, once there is one.

    It is installed before the child starts: a signal that comes while the
    child is being started is held, then passed on, where the default action
    would end dockyard-start and leave the child running, orphaned, until the
    engine kills it.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.pending: list[int] = []
        self.first: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.first is None:
            self.first = signum
        if self.child is None:
            self.pending.append(signum)
        else:
            self.child.send_signal(signum)     # a no-op once the child has been reaped


@dataclass(frozen=True)
class Ended:
    """How a child that dockyard-start waited for ended."""

    code: int                  # its exit code; 128+N when signal N killed it
    stop: int | None           # the first stop signal passed on to it, if one came


def run_child(argv: list[str], env: Mapping[str, str], **popen: Any) -> Ended:
    """Run ``argv``, passing SIGTERM and SIGINT on to it, and wait for it.

    A child that handles the signal ends as it chooses, with its own exit
    code; one that does not dies of it (128+N).
    """
    forwarder = _Forwarder()
    previous = {signum: signal.signal(signum, forwarder) for signum in FORWARDED_SIGNALS}
    try:
        try:
            forwarder.child = subprocess.Popen(argv, env=dict(env), **popen)
        except FileNotFoundError:
            error(f"{argv[0]}: not found (or its #! interpreter is not)")
            return Ended(127, forwarder.first)
        except OSError as exc:
            error(f"{argv[0]}: {exc.strerror or exc}")
            return Ended(126, forwarder.first)
        for signum in forwarder.pending:
            forwarder.child.send_signal(signum)
        code = _exit_code(forwarder.child.wait())
        return Ended(code, forwarder.first)
    finally:
        for signum, handler in previous.items():
            if handler is not None:            # None: set outside Python, cannot be put back
                signal.signal(signum, handler)


def run_as(argv: list[str], who: Identity, environ: Mapping[str, str]) -> int:
    """Run ``argv`` as ``who`` and wait, passing stop signals on; its exit code."""
    kwargs: dict = {}
    if os.getuid() == 0 and who.uid != 0:
        kwargs = {"user": who.uid, "group": who.gid, "extra_groups": who.groups()}
    return run_child(argv, user_environment(environ, who), **kwargs).code


@dataclass(frozen=True)
class Settings:
    """Where things are and how to start, from the environment."""

    root: str = "/"
    config_file: str = CONFIG_FILE
    marker: str = MARKER
    command_record: str = COMMAND_RECORD
    extend_start: str = EXTEND_START
    bootstrap_step: str = BOOTSTRAP_STEP
    strategy: str = "COPY_ALWAYS"
    bootstrap: bool = False
    default_user: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], root: str = "/") -> Settings:
        return cls(root=root,
                   config_file=environ.get("DOCKYARD_CONFIG_FILE") or CONFIG_FILE,
                   strategy=environ.get("DOCKYARD_CONFIG_STRATEGY") or "COPY_ALWAYS",
                   bootstrap=_is_set(environ.get("DOCKYARD_BOOTSTRAP")),
                   default_user=environ.get("DOCKYARD_USER") or None)

    def real(self, path: str) -> str:
        return rebase(self.root, path)


@dataclass(frozen=True)
class Start:
    """Everything validated, ready to act."""

    config: Config
    user: Identity
    settings: Settings


def prepare(settings: Settings, check: bool = False) -> Start:
    """Validate config.json and the environment. Raises Invalid; changes nothing."""
    problems = []
    if settings.strategy not in STRATEGIES:
        problems.append(f"DOCKYARD_CONFIG_STRATEGY: must be {' or '.join(STRATEGIES)}, got {_short(settings.strategy)}")
    try:
        config = load_config(settings.real(settings.config_file), settings.root,
                             need_command=not (settings.bootstrap or check))
    except Invalid as exc:
        problems.extend(exc.problems)
        config = None
    user = config.user if config else None
    if user is None and settings.default_user:
        try:
            user = resolve_user(settings.default_user)
        except Bad as exc:
            problems.append(f"DOCKYARD_USER: {exc}")
    step = settings.real(settings.bootstrap_step)
    if settings.bootstrap and not check and not (os.path.isfile(step) and os.access(step, os.X_OK)):
        problems.append(f"DOCKYARD_BOOTSTRAP is set, but this image has no executable bootstrap step {step}")
    if problems:
        raise Invalid(problems)
    assert config is not None
    return Start(config, user or ROOT_IDENTITY, settings)


def configure(start: Start) -> None:
    """Copy (as the strategy says) and apply permissions. Raises ActionFailed."""
    settings = start.settings
    marker = settings.real(settings.marker)
    if settings.strategy == "COPY_ONCE" and os.path.exists(marker):
        info(f"COPY_ONCE: this container was configured before ({marker}); not copying")
    else:
        copy_files(start.config)
    # Permissions are applied on every start: they describe volumes, which may
    # have been replaced since the last one.
    apply_permissions(start.config)
    if settings.strategy == "COPY_ONCE" and not os.path.exists(marker):
        try:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "w"):
                pass
        except OSError as exc:
            raise ActionFailed(f"writing {marker}: {exc.strerror or exc}") from None


def _write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``, mode 0600: readers see the old file or the new one."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".dockyard-")     # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def record_command(start: Start) -> None:
    """Record the command about to run, for --check.

    Failing to is a warning, not a failed start: the record only serves --check,
    which then says the command is not recorded (a dockyard-start that is not
    root, for instance, cannot write under /var/lib/dockyard).
    """
    assert start.config.command is not None
    path = start.settings.real(start.settings.command_record)
    try:
        _write_atomically(path, json.dumps(list(start.config.command)) + "\n")
    except OSError as exc:
        warn(f"cannot record the command in {path} ({exc.strerror or exc}); --check will say it is not recorded")


def run_extension(start: Start, environ: Mapping[str, str]) -> int:
    """The image's start extension, as root, when it has one. 0: go on; else the code to exit with."""
    path = start.settings.real(start.settings.extend_start)
    if not os.path.lexists(path):
        return EXIT_OK
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        warn(f"{path} exists but is not an executable file; not run")
        return EXIT_OK
    info(f"running {path}")
    ended = run_child([path], environ)
    if ended.code != EXIT_OK:
        error(f"{path} exited {ended.code}; not starting")
        return ended.code
    if ended.stop is not None:
        # The container is being stopped: a command started now would only be
        # killed when the engine's grace period ran out.
        info(f"{path} ended after {signal.Signals(ended.stop).name}; not starting")
        return _exit_code(-ended.stop)
    return EXIT_OK


def _describe(who: Identity) -> str:
    return who.name or f"uid {who.uid}"


def exec_command(command: tuple[str, ...], who: Identity, environ: Mapping[str, str]) -> int:
    """Replace this process with the command as ``who``; returns only on failure."""
    env = user_environment(environ, who)
    # Only the program is logged: its arguments may hold secrets.
    info(f"running {command[0]} as {_describe(who)}")
    drop_privileges(who)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), env)
    except FileNotFoundError:
        error(f"command: {command[0]}: not found")
        return 127
    except OSError as exc:
        error(f"command: {command[0]}: {exc.strerror or exc}")
        return 126
    return EXIT_FAILED  # not reached: exec does not return


def command_difference(start: Start) -> str | None:
    """A --check line when config.json's command is not the one this container started."""
    if start.settings.bootstrap:
        return None           # a bootstrap container runs its step, never the command
    path = start.settings.real(start.settings.command_record)
    try:
        with open(path, encoding="utf-8") as fh:
            recorded = json.load(fh)
    except FileNotFoundError:
        if start.config.command is None:
            info(f"command: none in config.json, and none recorded at {path}")
            return None
        # Started by a dockyard-start that kept no record, or one that could not write it.
        return f"command: not recorded ({path} is missing), so it cannot be compared"
    except (OSError, ValueError) as exc:
        return f"command: the record {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
    if not (isinstance(recorded, list) and all(isinstance(word, str) for word in recorded)):
        return f"command: the record {path} is not a JSON list of strings"
    # Only that it differs: the arguments are never printed (nor logged).
    return None if tuple(recorded) == start.config.command else "command: differs"


def run_check(start: Start) -> int:
    command = command_difference(start)
    diffs = ([command] if command else []) + differences(start.config)
    for line in diffs:
        print(line)
    sys.stdout.flush()
    return EXIT_FAILED if diffs else EXIT_OK


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dockyard-start",
        description="Configure this container from config.json, then run its command as the service user.")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 listing what differs from config.json: the files in place, "
                             "and the command this container started; change nothing")
    # Tests place the container's / elsewhere; images never pass it.
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ

    try:
        start = prepare(Settings.from_environ(environ, args.root), check=args.check)
    except Invalid as exc:
        for problem in exc.problems:
            error(problem)
        return EXIT_INVALID
    if args.check:
        return run_check(start)

    try:
        configure(start)
    except ActionFailed as exc:
        error(str(exc))
        return EXIT_FAILED
    code = run_extension(start, environ)
    if code != EXIT_OK:
        return code

    if start.settings.bootstrap:
        step = start.settings.real(start.settings.bootstrap_step)
        info(f"bootstrap: running {step} as {_describe(start.user)}")
        code = run_as([step], start.user, environ)
        info(f"bootstrap: {step} exited {code}")
        return code
    assert start.config.command is not None
    record_command(start)
    return exec_command(start.config.command, start.user, environ)


if __name__ == "__main__":
    sys.exit(main())
