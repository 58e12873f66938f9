#!/usr/bin/python3
"""dockyard-start: the entrypoint of every dockyard image.

Reads config.json (Kolla's fields), validates all of it, copies the config files
into place with their owners and modes, applies permissions, runs the image's
optional start extension, then either runs the image's bootstrap step (bootstrap
mode) or execs the command as the service user.

Standard library only: it runs inside the images (Debian's python3).
Exit codes: 0 ok, 1 --check found differences, 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import glob
import grp
import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile

CONFIG_FILE = "/var/lib/dockyard/config_files/config.json"
MARKER = "/var/lib/dockyard/.configured"
EXTEND_START = "/usr/local/bin/dockyard-extend-start"
BOOTSTRAP = "/usr/local/bin/dockyard-bootstrap"

TOP_KEYS = {"command", "user", "config_files", "permissions"}
FILE_KEYS = {"source", "dest", "owner", "perm", "merge", "preserve_properties", "optional"}
PERM_KEYS = {"path", "owner", "perm", "recurse", "exclude"}
STRATEGIES = ("COPY_ALWAYS", "COPY_ONCE")


class Invalid(Exception):
    """config.json is wrong; raised before anything is changed."""


def log(message: str) -> None:
    print(f"INFO {message}", file=sys.stderr, flush=True)


def rebase(root: str, path: str) -> str:
    """Place an absolute container path under ``root`` (``/`` in a real container)."""
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


# -- validation ----------------------------------------------------------------

def parse_owner(value, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where}: owner must be 'user' or 'user:group', got {value!r}")
    user, _, group = value.partition(":")
    try:
        if user.isdigit():
            uid = int(user)
            default_gid = uid
        else:
            entry = pwd.getpwnam(user)
            uid, default_gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        raise Invalid(f"{where}: unknown user {user!r}") from None
    if not group:
        return uid, default_gid
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise Invalid(f"{where}: unknown group {group!r}") from None
    return uid, gid


def parse_perm(value, where: str) -> int:
    if not isinstance(value, str):
        raise Invalid(f"{where}: perm must be an octal string like '0640', got {value!r}")
    try:
        mode = int(value, 8)
    except ValueError:
        raise Invalid(f"{where}: perm must be an octal string like '0640', got {value!r}") from None
    if not 0 <= mode <= 0o7777:
        raise Invalid(f"{where}: perm {value!r} is out of range")
    return mode


def _check_keys(entry, allowed: set[str], required: set[str], where: str) -> None:
    if not isinstance(entry, dict):
        raise Invalid(f"{where}: must be an object")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise Invalid(f"{where}: unknown key {unknown[0]!r}")
    for key in sorted(required):
        if key not in entry:
            raise Invalid(f"{where}: missing required key {key!r}")


def _check_bool(entry: dict, key: str, where: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise Invalid(f"{where}.{key}: must be true or false, got {value!r}")
    return value


def load_config(path: str, root: str = "/", need_command: bool = True) -> dict:
    """Read and validate config.json completely. Returns a normalised plan."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise Invalid(f"{path}: not found (mount the container's config at {os.path.dirname(path)})") from None
    except json.JSONDecodeError as exc:
        raise Invalid(f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    _check_keys(raw, TOP_KEYS, set(), name)
    command = raw.get("command")
    if command is not None and not isinstance(command, str):
        raise Invalid(f"{name}: command: must be a string")
    if need_command and not command:
        raise Invalid(f"{name}: command: missing")
    user = raw.get("user")
    if user is not None:
        parse_owner(user, f"{name}: user")

    files = []
    entries = raw.get("config_files", [])
    if not isinstance(entries, list):
        raise Invalid(f"{name}: config_files: must be a list")
    for i, entry in enumerate(entries):
        where = f"{name}: config_files[{i}]"
        _check_keys(entry, FILE_KEYS, {"source", "dest"}, where)
        for key in ("source", "dest"):
            if not isinstance(entry[key], str) or not entry[key].startswith("/"):
                raise Invalid(f"{where}.{key}: must be an absolute path")
        optional = _check_bool(entry, "optional", where)
        merge = _check_bool(entry, "merge", where)
        preserve = _check_bool(entry, "preserve_properties", where)
        owner = parse_owner(entry["owner"], f"{where}.owner") if "owner" in entry else None
        perm = parse_perm(entry["perm"], f"{where}.perm") if "perm" in entry else None
        sources = sorted(glob.glob(rebase(root, entry["source"])))
        if not sources and not optional:
            raise Invalid(f"{where}.source: {entry['source']} does not exist")
        files.append({"sources": sources, "dest": entry["dest"], "owner": owner, "perm": perm,
                      "merge": merge, "preserve": preserve, "glob": any(c in entry["source"] for c in "*?[")})

    perms = []
    entries = raw.get("permissions", [])
    if not isinstance(entries, list):
        raise Invalid(f"{name}: permissions: must be a list")
    for i, entry in enumerate(entries):
        where = f"{name}: permissions[{i}]"
        _check_keys(entry, PERM_KEYS, {"path", "owner"}, where)
        if not isinstance(entry["path"], str) or not entry["path"].startswith("/"):
            raise Invalid(f"{where}.path: must be an absolute path")
        exclude = entry.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise Invalid(f"{where}.exclude: must be a list of paths")
        perms.append({
            "path": entry["path"],
            "owner": parse_owner(entry["owner"], f"{where}.owner"),
            "perm": parse_perm(entry["perm"], f"{where}.perm") if "perm" in entry else None,
            "recurse": _check_bool(entry, "recurse", where),
            "exclude": [rebase(root, e) for e in exclude],
        })
    return {"command": command, "user": user, "files": files, "permissions": perms}


# -- applying ----------------------------------------------------------------------

def _targets(spec: dict, root: str) -> list[tuple[str, str]]:
    """(source, dest) pairs of one config_files entry."""
    dest = rebase(root, spec["dest"])
    pairs = []
    for source in spec["sources"]:
        if spec["dest"].endswith("/") or spec["glob"]:
            pairs.append((source, os.path.join(dest, os.path.basename(source))))
        else:
            pairs.append((source, dest))
    return pairs


def _set_properties(path: str, spec: dict, source: str) -> None:
    if spec["preserve"]:
        st = os.stat(source)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        return
    if spec["owner"] is not None:
        os.chown(path, *spec["owner"])
    if spec["perm"] is not None:
        os.chmod(path, spec["perm"])


def _copy_file(source: str, dest: str, spec: dict) -> None:
    os.makedirs(os.path.dirname(dest) or "/", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".dockyard-")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o600)
        _set_properties(tmp, spec, source)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _copy_tree(source: str, dest: str, spec: dict) -> None:
    if os.path.isdir(dest) and not spec["merge"]:
        shutil.rmtree(dest)
    os.makedirs(dest, exist_ok=True)
    _set_properties(dest, spec, source)
    for entry in sorted(os.listdir(source)):
        s, d = os.path.join(source, entry), os.path.join(dest, entry)
        if os.path.isdir(s):
            _copy_tree(s, d, spec)
        else:
            _copy_file(s, d, spec)


def copy_files(config: dict, root: str = "/") -> None:
    for spec in config["files"]:
        for source, dest in _targets(spec, root):
            log(f"copying {source} -> {dest}")
            if os.path.isdir(source):
                _copy_tree(source, dest, spec)
            else:
                _copy_file(source, dest, spec)


def _walk(path: str, exclude: list[str]):
    yield path
    if os.path.isdir(path) and not os.path.islink(path):
        for entry in sorted(os.listdir(path)):
            child = os.path.join(path, entry)
            if child in exclude:
                continue
            yield from _walk(child, exclude)


def apply_permissions(config: dict, root: str = "/") -> None:
    for spec in config["permissions"]:
        for path in sorted(glob.glob(rebase(root, spec["path"]))):
            log(f"setting permissions on {path}")
            paths = _walk(path, spec["exclude"]) if spec["recurse"] else [path]
            for p in paths:
                os.chown(p, *spec["owner"], follow_symlinks=False)
                if spec["perm"] is not None and not os.path.islink(p):
                    os.chmod(p, spec["perm"])


def differences(config: dict, root: str = "/") -> list[str]:
    """Files whose content (or owner/mode, when given) differs from their source."""
    found = []

    def compare(source: str, dest: str, spec: dict) -> None:
        if os.path.isdir(source):
            for entry in sorted(os.listdir(source)):
                compare(os.path.join(source, entry), os.path.join(dest, entry), spec)
            return
        if not os.path.exists(dest):
            found.append(f"{dest}: missing")
            return
        with open(source, "rb") as a, open(dest, "rb") as b:
            if a.read() != b.read():
                found.append(f"{dest}: content differs")
                return
        st = os.stat(dest)
        if not spec["preserve"]:
            if spec["owner"] is not None and (st.st_uid, st.st_gid) != spec["owner"]:
                found.append(f"{dest}: owner differs")
            if spec["perm"] is not None and stat.S_IMODE(st.st_mode) != spec["perm"]:
                found.append(f"{dest}: mode differs")

    for spec in config["files"]:
        for source, dest in _targets(spec, root):
            compare(source, dest, spec)
    return found


# -- running ----------------------------------------------------------------------

def _truthy(value: str | None) -> bool:
    return bool(value) and value.strip().lower() not in ("0", "false", "no")


def drop_privileges(user: str | None) -> None:
    if os.getuid() != 0 or not user or user in ("root", "0"):
        return
    entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    os.environ["USER"] = entry.pw_name


def run_as(argv: list[str], user: str | None) -> int:
    return subprocess.call(argv, preexec_fn=lambda: drop_privileges(user))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-start", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the files in place differ from the mounted ones; change nothing")
    parser.add_argument("--root", default=os.environ.get("DOCKYARD_ROOT", "/"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root
    config_path = os.environ.get("DOCKYARD_CONFIG_FILE", rebase(root, CONFIG_FILE))
    bootstrap = _truthy(os.environ.get("DOCKYARD_BOOTSTRAP"))
    strategy = os.environ.get("DOCKYARD_CONFIG_STRATEGY", "COPY_ALWAYS")
    try:
        if strategy not in STRATEGIES:
            raise Invalid(f"DOCKYARD_CONFIG_STRATEGY: must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        config = load_config(config_path, root, need_command=not (bootstrap or args.check))
    except Invalid as exc:
        print(f"ERROR {exc}", file=sys.stderr, flush=True)
        return 2

    if args.check:
        diffs = differences(config, root)
        for line in diffs:
            print(line)
        return 1 if diffs else 0

    marker = rebase(root, os.environ.get("DOCKYARD_MARKER", MARKER))
    if strategy == "COPY_ONCE" and os.path.exists(marker):
        log("COPY_ONCE: configuration already in place, not copying")
    else:
        copy_files(config, root)
        apply_permissions(config, root)
        if strategy == "COPY_ONCE":
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            open(marker, "w").close()

    user = config["user"] or os.environ.get("DOCKYARD_USER") or "root"
    extend = rebase(root, os.environ.get("DOCKYARD_EXTEND_START", EXTEND_START))
    if os.access(extend, os.X_OK):
        log(f"running {extend}")
        code = subprocess.call([extend])
        if code != 0:
            print(f"ERROR {extend} exited {code}", file=sys.stderr, flush=True)
            return code

    if bootstrap:
        step = rebase(root, os.environ.get("DOCKYARD_BOOTSTRAP_STEP", BOOTSTRAP))
        if not os.access(step, os.X_OK):
            print(f"ERROR bootstrap mode, but this image has no bootstrap step ({step})", file=sys.stderr)
            return 2
        log(f"bootstrap: running {step} as {user}")
        return run_as([step], user)

    command = shlex.split(config["command"])
    log(f"running {command[0]} as {user}")
    drop_privileges(user)
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
