"""dockyard-start: config.json is validated whole, then applied, then the command runs.

Each test builds a container's filesystem under a tmp root and runs
``dockyard_start.main(["--root", root])``. In this process the final exec is
replaced by a recorder (it would replace pytest itself); the tests at the end run
the real module in a subprocess so the exec and the drop of privileges are real.
"""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.contract import dockyard_start as ds

SRC = "/var/lib/dockyard/config_files"
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)
UNUSED_ID = 3_999_999_999          # a uid/gid no passwd or group entry has


class Box:
    """A container's filesystem under a tmp root."""

    def __init__(self, root: Path):
        self.root = root
        self.p(SRC).mkdir(parents=True, exist_ok=True)

    def p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, data: bytes | str = b"", mode: int = 0o644) -> str:
        real = self.p(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data.encode() if isinstance(data, str) else data)
        real.chmod(mode)
        return path

    def source(self, name: str, data: bytes | str = b"", mode: int = 0o644) -> str:
        return self.write(f"{SRC}/{name}", data, mode)

    def script(self, path: str, body: str) -> str:
        return self.write(path, "#!/bin/sh\n" + body, 0o755)

    def config(self, doc: dict | str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        self.p(f"{SRC}/config.json").write_text(text)

    def start(self, *args: str, **env: str) -> int:
        environ = {"PATH": os.environ["PATH"], **env}
        return ds.main(["--root", str(self.root), *args], environ=environ)

    def snapshot(self) -> dict[str, tuple]:
        """Everything under the root: kind, bytes, mode, owner."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st_ = os.lstat(path)
                data = Path(path).read_bytes() if stat.S_ISREG(st_.st_mode) else b""
                out[os.path.relpath(path, self.root)] = (stat.S_IFMT(st_.st_mode), data,
                                                         stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid)
        return out


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def owner_of(path: Path) -> tuple[int, int]:
    st_ = path.stat()
    return st_.st_uid, st_.st_gid


@pytest.fixture
def box(tmp_path) -> Box:
    return Box(tmp_path / "root")


@pytest.fixture
def open_box():
    """A Box that an unprivileged user can read, with a world-writable ``out`` file.

    pytest's own tmp dirs are 0700, which a service user cannot enter.
    """
    top = tempfile.mkdtemp(prefix="dockyard-contract-")
    os.chmod(top, 0o755)
    b = Box(Path(top) / "root")
    for d in [b.root, *b.root.rglob("*")]:
        d.chmod(0o755)
    out = Path(top) / "out"
    out.touch()
    out.chmod(0o666)
    b.out = out  # type: ignore[attr-defined]
    yield b
    shutil.rmtree(top)


@pytest.fixture(autouse=True)
def execs(monkeypatch) -> list[tuple]:
    """Record the final exec instead of replacing (and de-privileging) pytest."""
    calls: list[tuple] = []

    def record(command, who, environ):
        calls.append((command, who, dict(environ)))
        return 0

    def refuse(who):
        raise AssertionError("drop_privileges must not run inside pytest")

    monkeypatch.setattr(ds, "exec_command", record)
    monkeypatch.setattr(ds, "drop_privileges", refuse)
    return calls


# -- validation: each field, each error ----------------------------------------------

def _entry(**fields) -> dict:
    return {"source": f"{SRC}/a.conf", "dest": "/etc/svc/a.conf", **fields}


def _perm(**fields) -> dict:
    return {"path": "/var/lib/svc", "owner": "nobody", **fields}


# (test id, config.json document, extra env, text the error must contain). Every
# document keeps a valid first config_files entry, so the broken one is index 1
# and a run that wrongly went ahead would leave /etc/good behind.
INVALID = [
    ("unknown top key", {"surprise": 1}, {}, "config.json: unknown key 'surprise'"),
    ("command missing", {"command": None}, {}, "config.json: command: missing"),
    ("command not a string", {"command": ["true"]}, {}, "config.json: command: must be a string, got a list"),
    ("command empty", {"command": "   "}, {}, "config.json: command: is empty"),
    ("command bad quoting", {"command": "sh -c 'true"}, {}, "config.json: command: cannot be split"),
    ("user unknown", {"user": "dockyard-no-such-user"}, {}, "config.json: user: unknown user 'dockyard-no-such-user'"),
    ("user with group", {"user": "nobody:nogroup"}, {}, "config.json: user: must be a user name or a numeric uid"),
    ("user a bool", {"user": True}, {}, "config.json: user: must be a user name or a numeric uid, got true/false"),
    ("user out of range", {"user": 2**32}, {}, "config.json: user: id 4294967296 is out of range"),
    ("config_files not a list", {"config_files": {"a": 1}}, {}, "config.json: config_files: must be a list, got an object"),
    ("entry not an object", {"extra": "a string"}, {}, "config.json: config_files[1]: must be an object, got a string"),
    ("entry unknown key", {"extra": _entry(colour="blue")}, {}, "config.json: config_files[1]: unknown key 'colour'"),
    ("entry without source", {"extra": {"dest": "/etc/x"}}, {}, "config.json: config_files[1]: missing required key 'source'"),
    ("entry without dest", {"extra": {"source": f"{SRC}/a.conf"}}, {}, "config.json: config_files[1]: missing required key 'dest'"),
    ("source relative", {"extra": _entry(source="a.conf")}, {}, "config.json: config_files[1].source: must be an absolute path"),
    ("source not a string", {"extra": _entry(source=3)}, {}, "config.json: config_files[1].source: must be an absolute path, got a number"),
    ("source missing", {"extra": _entry(source=f"{SRC}/absent")}, {}, f"config.json: config_files[1].source: {SRC}/absent does not exist"),
    ("glob matches nothing", {"extra": _entry(source=f"{SRC}/*.ini", dest="/etc/svc/")}, {}, "config.json: config_files[1].source: " f"{SRC}/*.ini no file matches"),
    ("dest relative", {"extra": _entry(dest="etc/a.conf")}, {}, "config.json: config_files[1].dest: must be an absolute path"),
    ("dest a directory", {"extra": _entry(dest="/etc/existing-dir")}, {}, "config_files[1].dest: "),
    ("glob into a file", {"extra": _entry(source=f"{SRC}/*.conf", dest="/etc/existing-file")}, {}, "is not a directory, so nothing can be copied into it"),
    ("dest under a file", {"extra": _entry(dest="/etc/existing-file/a.conf")}, {}, "config_files[1].dest: "),
    ("owner unknown user", {"extra": _entry(owner="dockyard-no-such-user")}, {}, "config.json: config_files[1].owner: unknown user 'dockyard-no-such-user'"),
    ("owner unknown group", {"extra": _entry(owner="nobody:dockyard-no-such-group")}, {}, "config.json: config_files[1].owner: unknown group 'dockyard-no-such-group'"),
    ("owner empty group", {"extra": _entry(owner="nobody:")}, {}, "config.json: config_files[1].owner: must be 'user', 'user:group' or a numeric uid"),
    ("owner two colons", {"extra": _entry(owner="a:b:c")}, {}, "config.json: config_files[1].owner: must be 'user', 'user:group'"),
    ("owner a list", {"extra": _entry(owner=["nobody"])}, {}, "config.json: config_files[1].owner: must be 'user', 'user:group' or a numeric uid, got a list"),
    ("owner a bool", {"extra": _entry(owner=False)}, {}, "config_files[1].owner: must be 'user', 'user:group' or a numeric uid, got true/false"),
    ("owner uid out of range", {"extra": _entry(owner="4294967295")}, {}, "config_files[1].owner: id 4294967295 is out of range"),
    ("owner gid out of range", {"extra": _entry(owner="0:99999999999")}, {}, "config_files[1].owner: id 99999999999 is out of range"),
    ("perm symbolic", {"extra": _entry(perm="rw-r--r--")}, {}, "config.json: config_files[1].perm: must be an octal mode string such as '0640', got 'rw-r--r--'"),
    ("perm a number", {"extra": _entry(perm=640)}, {}, "config_files[1].perm: must be an octal mode string such as '0640', got a number"),
    ("perm python prefix, no digits", {"extra": _entry(perm="0o")}, {}, "config_files[1].perm: must be an octal mode string"),
    ("perm python prefix, not octal", {"extra": _entry(perm="0o648")}, {}, "config_files[1].perm: must be an octal mode string"),
    ("perm upper-case prefix", {"extra": _entry(perm="0O640")}, {}, "config_files[1].perm: must be an octal mode string"),
    ("perm not octal", {"extra": _entry(perm="0888")}, {}, "config_files[1].perm: must be an octal mode string"),
    ("perm too long", {"extra": _entry(perm="077777")}, {}, "config_files[1].perm: must be an octal mode string"),
    ("merge a string", {"extra": _entry(merge="yes")}, {}, "config.json: config_files[1].merge: must be true or false, got a string"),
    ("preserve a number", {"extra": _entry(preserve_properties=1)}, {}, "config_files[1].preserve_properties: must be true or false, got a number"),
    ("optional null", {"extra": _entry(optional=None)}, {}, "config_files[1].optional: must be true or false, got null"),
    ("permissions not a list", {"permissions": "all"}, {}, "config.json: permissions: must be a list, got a string"),
    ("permission unknown key", {"permissions": [_perm(mode="0644")]}, {}, "config.json: permissions[0]: unknown key 'mode'"),
    ("permission without owner", {"permissions": [{"path": "/var/lib/svc"}]}, {}, "permissions[0]: missing required key 'owner'"),
    ("permission without path", {"permissions": [{"owner": "nobody"}]}, {}, "permissions[0]: missing required key 'path'"),
    ("permission path relative", {"permissions": [_perm(path="var/lib")]}, {}, "config.json: permissions[0].path: must be an absolute path"),
    ("permission owner unknown", {"permissions": [_perm(owner="dockyard-no-such-user")]}, {}, "permissions[0].owner: unknown user 'dockyard-no-such-user'"),
    ("permission perm bad", {"permissions": [_perm(perm="0x1ff")]}, {}, "permissions[0].perm: must be an octal mode string"),
    ("permission recurse a number", {"permissions": [_perm(recurse=1)]}, {}, "permissions[0].recurse: must be true or false, got a number"),
    ("exclude not a list", {"permissions": [_perm(exclude="/var/lib/svc/x")]}, {}, "permissions[0].exclude: must be a list of regular expressions for absolute paths, got a string"),
    ("exclude relative item", {"permissions": [_perm(exclude=["/var/lib/svc/x", "x"])]}, {}, "permissions[0].exclude[1]: must be a regular expression for absolute paths, starting with '/', got 'x'"),
    ("exclude a search pattern", {"permissions": [_perm(exclude=[r"\.log$"])]}, {}, "permissions[0].exclude[0]: must be a regular expression for absolute paths, starting with '/'"),
    ("exclude not a string", {"permissions": [_perm(exclude=[7])]}, {}, "permissions[0].exclude[0]: must be a regular expression for absolute paths, starting with '/', got a number"),
    ("exclude invalid regex", {"permissions": [_perm(exclude=["/var/lib/svc/x", "/var/lib/(svc"])]}, {}, "permissions[0].exclude[1]: '/var/lib/(svc' is not a valid regular expression: missing ), unterminated subpattern at position 9"),
    ("strategy unknown", {}, {"DOCKYARD_CONFIG_STRATEGY": "SOMETIMES"}, "DOCKYARD_CONFIG_STRATEGY: must be COPY_ALWAYS or COPY_ONCE, got 'SOMETIMES'"),
    ("image user unknown", {}, {"DOCKYARD_USER": "dockyard-no-such-user"}, "DOCKYARD_USER: unknown user 'dockyard-no-such-user'"),
    ("bootstrap without a step", {}, {"DOCKYARD_BOOTSTRAP": "1"}, "DOCKYARD_BOOTSTRAP is set, but this image has no executable bootstrap step"),
]


def _invalid_doc(change: dict) -> dict:
    doc = {"command": "true", "config_files": [{"source": f"{SRC}/good.conf", "dest": "/etc/good", "perm": "0600"}],
           "permissions": [_perm()]}
    change = dict(change)
    if "extra" in change:
        doc["config_files"].append(change.pop("extra"))
    doc.update(change)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("change, env, message", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_configuration_is_refused_with_nothing_changed(box, capsys, execs, change, env, message):
    box.source("good.conf", "g")
    box.source("a.conf", "a")
    box.source("b.conf", "b")
    box.p("/etc/existing-dir").mkdir(parents=True)
    box.write("/etc/existing-file", "f")
    box.p("/var/lib/svc").mkdir(parents=True)
    box.config(_invalid_doc(change))
    before = box.snapshot()

    assert box.start(**env) == ds.EXIT_INVALID
    err = capsys.readouterr().err
    assert message in err
    assert all(line.startswith("ERROR ") for line in err.splitlines())
    assert box.snapshot() == before
    assert execs == []


@pytest.mark.parametrize("text, message", [
    ('{"command": "true",\n  oops}', "config.json: invalid JSON at line 2 column 3"),
    ('["command"]', "config.json: must be a JSON object, got a list"),
    ('{"command": "true", "command": "false"}', "config.json: duplicate key 'command'"),
    (b"\xff\xfe{}", "config.json: not UTF-8 text"),
])
def test_unreadable_config_json_is_refused(box, capsys, text, message):
    path = box.p(f"{SRC}/config.json")
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = box.snapshot()
    assert box.start() == ds.EXIT_INVALID
    assert message in capsys.readouterr().err
    assert box.snapshot() == before


def test_missing_config_json_names_its_path(box, capsys):
    assert box.start() == ds.EXIT_INVALID
    assert f"{box.p(SRC)}/config.json: not found" in capsys.readouterr().err


def test_config_file_path_comes_from_the_environment(box, execs):
    box.write("/etc/dockyard/other.json", json.dumps({"command": "other-program"}))
    box.config({"command": "default-program"})
    assert box.start(DOCKYARD_CONFIG_FILE="/etc/dockyard/other.json") == 0
    assert execs[0][0] == ("other-program",)


def test_every_problem_is_reported_at_once(box, capsys):
    box.config({"command": 5, "user": "dockyard-no-such-user",
                "config_files": [_entry(perm="x"), _entry(owner="dockyard-no-such-user", merge="no")]})
    assert box.start() == ds.EXIT_INVALID
    err = capsys.readouterr().err
    for fragment in ("command: must be a string", "user: unknown user", "config_files[0].perm",
                     "config_files[1].owner", "config_files[1].merge", "config_files[0].source"):
        assert fragment in err


def test_messages_never_echo_values_that_might_be_secret(box, capsys):
    box.config({"command": ["mysqld", "--password=hunter2"], "user": {"password": "hunter2"},
                "config_files": [_entry(owner=["hunter2"]), _entry(perm="hunter2" * 20)]})
    assert box.start() == ds.EXIT_INVALID
    assert "hunter2" not in capsys.readouterr().err


# -- copying --------------------------------------------------------------------------

def test_copy_sets_owner_and_mode_and_logs_without_contents(box, capsys, execs):
    box.source("keystone.conf", "password = s3cret\n", 0o644)
    box.config({"command": "keystone-all --debug", "config_files": [
        {"source": f"{SRC}/keystone.conf", "dest": "/etc/keystone/keystone.conf",
         "owner": "nobody:nogroup", "perm": "0640"}]})
    assert box.start() == 0
    dest = box.p("/etc/keystone/keystone.conf")
    assert dest.read_text() == "password = s3cret\n"
    assert owner_of(dest) == (NOBODY.pw_uid, NOGROUP.gr_gid)
    assert mode_of(dest) == 0o640
    err = capsys.readouterr().err
    assert f"INFO copying {box.p(SRC)}/keystone.conf -> {dest}" in err
    assert "s3cret" not in err
    assert "--debug" not in err     # only the program's name is logged
    assert execs[0][0] == ("keystone-all", "--debug")


@pytest.mark.parametrize("perm, mode", [("600", 0o600), ("0600", 0o600), ("0o600", 0o600),
                                        ("2750", 0o2750), ("0o2750", 0o2750)])
def test_perm_forms(box, perm, mode):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry(perm=perm)],
                "permissions": [_perm(perm=perm)]})
    box.p("/var/lib/svc").mkdir(parents=True)
    assert box.start() == 0
    assert mode_of(box.p("/etc/svc/a.conf")) == mode
    assert mode_of(box.p("/var/lib/svc")) == ds.dir_mode(mode)


def test_without_owner_and_perm_the_copy_is_roots_with_the_source_mode(box):
    box.source("a.conf", "a", 0o751)
    os.chown(box.p(f"{SRC}/a.conf"), NOBODY.pw_uid, NOBODY.pw_gid)
    box.config({"command": "true", "config_files": [_entry()]})
    assert box.start() == 0
    assert owner_of(box.p("/etc/svc/a.conf")) == (0, 0)
    assert mode_of(box.p("/etc/svc/a.conf")) == 0o751


@pytest.mark.parametrize("owner, expected", [
    ("nobody", (NOBODY.pw_uid, NOBODY.pw_gid)),
    ("nobody:root", (NOBODY.pw_uid, 0)),
    (NOBODY.pw_uid, (NOBODY.pw_uid, NOBODY.pw_gid)),
    (str(NOBODY.pw_uid), (NOBODY.pw_uid, NOBODY.pw_gid)),
    (f"{UNUSED_ID}", (UNUSED_ID, UNUSED_ID)),
    (f"{UNUSED_ID}:{NOGROUP.gr_name}", (UNUSED_ID, NOGROUP.gr_gid)),
    ("root:12345", (0, 12345)),
])
def test_owner_forms(box, owner, expected):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry(owner=owner)]})
    assert box.start() == 0
    assert owner_of(box.p("/etc/svc/a.conf")) == expected


def test_copy_replaces_the_file_atomically(box):
    box.source("a.conf", "new")
    box.write("/etc/svc/a.conf", "old")
    box.config({"command": "true", "config_files": [_entry(perm="0600")]})
    with open(box.p("/etc/svc/a.conf")) as reader:
        assert box.start() == 0
        # A reader that had the old file open still sees all of it: the new
        # file was renamed over the old one, not written into it.
        assert reader.read() == "old"
    assert box.p("/etc/svc/a.conf").read_text() == "new"
    assert sorted(p.name for p in box.p("/etc/svc").iterdir()) == ["a.conf"]


def test_dest_ending_in_slash_means_into_that_directory(box):
    box.source("a.conf", "a")
    box.source("tree/x", "x")
    box.config({"command": "true", "config_files": [
        _entry(dest="/etc/deep/new/dir/"), _entry(source=f"{SRC}/tree", dest="/etc/deep/")]})
    assert box.start() == 0
    assert box.p("/etc/deep/new/dir/a.conf").read_text() == "a"
    assert box.p("/etc/deep/tree/x").read_text() == "x"


def test_glob_source_copies_each_match_into_dest(box):
    for name in ("1.conf", "2.conf", "3.ini"):
        box.source(f"conf.d/{name}", name)
    box.config({"command": "true", "config_files": [
        {"source": f"{SRC}/conf.d/*.conf", "dest": "/etc/svc/conf.d", "perm": "0600"}]})
    assert box.start() == 0
    assert sorted(p.name for p in box.p("/etc/svc/conf.d").iterdir()) == ["1.conf", "2.conf"]
    assert box.p("/etc/svc/conf.d/2.conf").read_text() == "2.conf"


def test_optional_missing_source_is_skipped(box):
    box.config({"command": "true", "config_files": [
        _entry(source=f"{SRC}/absent", dest="/etc/absent", optional=True),
        _entry(source=f"{SRC}/none-*.conf", dest="/etc/globbed/", optional=True)]})
    assert box.start() == 0
    assert not box.p("/etc/absent").exists()
    assert not box.p("/etc/globbed").exists()
    assert box.start("--check") == 0


def test_optional_present_source_is_copied(box):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry(optional=True)]})
    assert box.start() == 0
    assert box.p("/etc/svc/a.conf").read_text() == "a"


def test_directory_source_replaces_dest_by_default(box):
    box.source("tree/new", "n")
    box.source("tree/sub/deep", "d")
    box.write("/etc/tree/stale", "s")
    box.write("/etc/tree/sub/stale", "s")
    box.config({"command": "true", "config_files": [_entry(source=f"{SRC}/tree", dest="/etc/tree")]})
    assert box.start() == 0
    files = sorted(str(p.relative_to(box.p("/etc/tree"))) for p in box.p("/etc/tree").rglob("*"))
    assert files == ["new", "sub", "sub/deep"]
    assert sorted(p.name for p in box.p("/etc").iterdir()) == ["tree"]   # no temp trees left


def test_merge_keeps_what_dest_already_holds(box):
    box.source("tree/new", "n")
    box.source("tree/same", "from source")
    box.source("tree/sub/deep", "d")
    box.write("/etc/tree/kept", "k")
    box.write("/etc/tree/same", "old")
    box.write("/etc/tree/sub/kept", "k")
    box.config({"command": "true", "config_files": [_entry(source=f"{SRC}/tree", dest="/etc/tree", merge=True)]})
    assert box.start() == 0
    tree = box.p("/etc/tree")
    assert {str(p.relative_to(tree)): p.read_text() for p in tree.rglob("*") if p.is_file()} == {
        "kept": "k", "new": "n", "same": "from source", "sub/deep": "d", "sub/kept": "k"}
    assert box.start("--check") == 0


@pytest.mark.parametrize("on_disk, message", [
    ("file", "{dest}/sub is not a directory, but the source {src}/sub is one"),
    ("dir", "{dest}/z is a directory, but the source {src}/z is a file"),
])
def test_a_clash_inside_a_merged_tree_is_invalid_before_anything_is_copied(box, capsys, on_disk, message):
    box.source("first.conf", "1")
    box.source("tree/a", "a")                  # would be copied before the clash is met
    box.source("tree/sub/f", "f")
    box.source("tree/z", "z")
    if on_disk == "file":
        box.write("/etc/tree/sub", "a file where the source has a directory")
    else:
        box.p("/etc/tree/z").mkdir(parents=True)
    box.config({"command": "true", "config_files": [
        _entry(source=f"{SRC}/first.conf", dest="/etc/first.conf"),
        _entry(source=f"{SRC}/tree", dest="/etc/tree", merge=True)]})
    before = box.snapshot()
    assert box.start() == ds.EXIT_INVALID
    err = capsys.readouterr().err
    expected = message.format(dest=box.p("/etc/tree"), src=box.p(f"{SRC}/tree"))
    assert f"ERROR config.json: config_files[1].dest: {expected}" in err
    assert box.snapshot() == before


@pytest.mark.parametrize("first, second, message", [
    # A file dest that the next entry copies into.
    (_entry(), _entry(source=f"{SRC}/b.conf", dest="/etc/svc/a.conf/b.conf"),
     "{root}/etc/svc/a.conf is not a directory, so nothing can be copied into it (config_files[0] puts a file there)"),
    # The reverse: a directory made by one entry, a file copied over it by the next.
    (_entry(source=f"{SRC}/b.conf", dest="/etc/svc/a.conf/"), _entry(),
     "{root}/etc/svc/a.conf is a directory, but the source {root}" + SRC + "/a.conf is a file "
     "(config_files[0] puts a directory there)"),
    # A file inside a copied tree that the next entry treats as a directory.
    (_entry(source=f"{SRC}/tree", dest="/etc/tree", merge=True), _entry(dest="/etc/tree/sub/"),
     "{root}/etc/tree/sub is not a directory, so nothing can be copied into it (config_files[0] puts a file there)"),
])
def test_entries_whose_dests_clash_are_invalid_before_anything_is_copied(box, capsys, first, second, message):
    box.source("a.conf", "a")
    box.source("b.conf", "b")
    box.source("tree/sub", "a file")
    box.config({"command": "true", "config_files": [first, second]})
    before = box.snapshot()
    assert box.start() == ds.EXIT_INVALID
    assert f"ERROR config.json: config_files[1].dest: {message.format(root=box.root)}" in capsys.readouterr().err
    assert box.snapshot() == before


def test_a_replaced_tree_hides_what_was_on_disk_from_later_entries(box):
    box.source("tree/sub/f", "f")
    box.source("a.conf", "a")
    box.write("/etc/tree/sub", "a file the replaced tree turns into a directory")
    box.config({"command": "true", "config_files": [
        _entry(source=f"{SRC}/tree", dest="/etc/tree"), _entry(dest="/etc/tree/sub/")]})
    assert box.start() == 0
    assert box.p("/etc/tree/sub/f").read_text() == "f"
    assert box.p("/etc/tree/sub/a.conf").read_text() == "a"


def test_perm_on_a_directory_source_lets_readers_search_it(box):
    box.source("tree/sub/f", "f")
    box.config({"command": "true", "config_files": [
        _entry(source=f"{SRC}/tree", dest="/etc/tree", owner="nobody", perm="0640")]})
    assert box.start() == 0
    for d in ("/etc/tree", "/etc/tree/sub"):
        assert mode_of(box.p(d)) == 0o750
        assert owner_of(box.p(d)) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert mode_of(box.p("/etc/tree/sub/f")) == 0o640
    assert box.start("--check") == 0


def test_preserve_properties_keeps_the_sources_owner_and_mode(box):
    box.source("s", "x", 0o751)
    os.chown(box.p(f"{SRC}/s"), NOBODY.pw_uid, 0)
    box.config({"command": "true", "config_files": [
        _entry(source=f"{SRC}/s", dest="/etc/s", preserve_properties=True, perm="0600", owner="root")]})
    assert box.start() == 0
    assert mode_of(box.p("/etc/s")) == 0o751
    assert owner_of(box.p("/etc/s")) == (NOBODY.pw_uid, 0)
    assert box.start("--check") == 0
    box.p("/etc/s").chmod(0o600)
    assert box.start("--check") == 1


# -- strategies -----------------------------------------------------------------------

def test_copy_always_copies_on_every_start(box):
    box.source("a.conf", "first")
    box.config({"command": "true", "config_files": [_entry()]})
    assert box.start() == 0
    box.source("a.conf", "second")
    assert box.start(DOCKYARD_CONFIG_STRATEGY="COPY_ALWAYS") == 0
    assert box.p("/etc/svc/a.conf").read_text() == "second"
    assert not box.p(ds.MARKER).exists()


def test_copy_once_copies_only_on_the_first_start(box, capsys):
    box.source("a.conf", "first")
    box.p("/var/lib/svc").mkdir(parents=True)
    box.config({"command": "true", "config_files": [_entry()], "permissions": [_perm()]})
    assert box.start(DOCKYARD_CONFIG_STRATEGY="COPY_ONCE") == 0
    assert box.p("/etc/svc/a.conf").read_text() == "first"
    assert box.p(ds.MARKER).exists()

    box.source("a.conf", "second")
    os.chown(box.p("/var/lib/svc"), 0, 0)
    capsys.readouterr()
    assert box.start(DOCKYARD_CONFIG_STRATEGY="COPY_ONCE") == 0
    assert box.p("/etc/svc/a.conf").read_text() == "first"
    assert "COPY_ONCE" in capsys.readouterr().err
    # Permissions are still applied: they describe volumes, not copied files.
    assert owner_of(box.p("/var/lib/svc"))[0] == NOBODY.pw_uid


def test_copy_once_leaves_no_marker_when_copying_failed(box, monkeypatch):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry()]})

    def fail(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ds.os, "replace", fail)
    assert box.start(DOCKYARD_CONFIG_STRATEGY="COPY_ONCE") == ds.EXIT_FAILED
    assert not box.p(ds.MARKER).exists()
    assert [p.name for p in box.p("/etc/svc").iterdir()] == []   # the temp file was removed


def test_a_failed_copy_names_the_entry_and_exits_1(box, capsys, monkeypatch, execs):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry(owner="nobody")]})

    def fail(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(ds.os, "chown", fail)
    assert box.start() == ds.EXIT_FAILED
    assert "ERROR config_files[0]: copying" in capsys.readouterr().err
    assert execs == []


# -- permissions ----------------------------------------------------------------------

def test_permissions_recurse_with_exclude(box):
    for path in ("/var/lib/svc/a/f", "/var/lib/svc/keep/f", "/var/lib/svc/keep/sub/f", "/var/lib/svc/top"):
        box.write(path, "x", 0o600)
    box.config({"command": "true", "permissions": [
        _perm(perm="0640", recurse=True, exclude=["/var/lib/svc/keep"])]})
    assert box.start() == 0
    for path in ("/var/lib/svc", "/var/lib/svc/a"):
        assert owner_of(box.p(path))[0] == NOBODY.pw_uid
        assert mode_of(box.p(path)) == 0o750
    for path in ("/var/lib/svc/a/f", "/var/lib/svc/top"):
        assert owner_of(box.p(path))[0] == NOBODY.pw_uid
        assert mode_of(box.p(path)) == 0o640
    for path in ("/var/lib/svc/keep", "/var/lib/svc/keep/f", "/var/lib/svc/keep/sub/f"):
        assert owner_of(box.p(path))[0] == 0


@pytest.mark.parametrize("pattern", [r"/var/lib/svc/keep", "/var/lib/svc/keep/", r"/var/lib/svc/k[e]+p", r"^/var/lib/svc/(keep|other)"])
def test_an_exclude_is_a_regex_over_the_whole_container_path(box, pattern):
    for path in ("/var/lib/svc/keep/f", "/var/lib/svc/keeper/f", "/var/lib/svc/a/keep"):
        box.write(path, "x", 0o600)
    box.config({"command": "true", "permissions": [_perm(recurse=True, exclude=[pattern])]})
    assert box.start() == 0
    assert owner_of(box.p("/var/lib/svc/keep"))[0] == 0
    assert owner_of(box.p("/var/lib/svc/keep/f"))[0] == 0          # pruned with its directory
    # Matched whole: neither a longer name nor the same name elsewhere is excluded.
    for path in ("/var/lib/svc/keeper", "/var/lib/svc/keeper/f", "/var/lib/svc/a/keep"):
        assert owner_of(box.p(path))[0] == NOBODY.pw_uid


def test_an_exclude_regex_leaves_out_matching_files_at_any_depth(box):
    for path in ("/var/lib/svc/a.log", "/var/lib/svc/sub/b.log", "/var/lib/svc/sub/b.conf", "/var/lib/svc/alog"):
        box.write(path, "x", 0o600)
    box.config({"command": "true", "permissions": [_perm(perm="0640", recurse=True, exclude=[r"/var/lib/svc/.*\.log"])]})
    assert box.start() == 0
    for path in ("/var/lib/svc/a.log", "/var/lib/svc/sub/b.log"):
        assert owner_of(box.p(path))[0] == 0 and mode_of(box.p(path)) == 0o600
    for path in ("/var/lib/svc/sub", "/var/lib/svc/sub/b.conf", "/var/lib/svc/alog"):
        assert owner_of(box.p(path))[0] == NOBODY.pw_uid


def test_an_exclude_is_matched_against_the_container_path_not_the_real_one(box):
    box.write("/var/lib/svc/keep/f", "x", 0o600)
    # This matches where the test placed the file on the host, which the container never sees.
    box.config({"command": "true", "permissions": [_perm(recurse=True, exclude=[f"{box.root}/var/lib/svc/keep"])]})
    assert box.start() == 0
    assert owner_of(box.p("/var/lib/svc/keep/f"))[0] == NOBODY.pw_uid


def test_an_excluded_glob_match_is_left_alone(box):
    box.write("/var/log/svc-a.log", "")
    box.write("/var/log/svc-b.log", "")
    box.config({"command": "true", "permissions": [_perm(path="/var/log/svc-*.log", exclude=["/var/log/svc-b.log"])]})
    assert box.start() == 0
    assert owner_of(box.p("/var/log/svc-a.log"))[0] == NOBODY.pw_uid
    assert owner_of(box.p("/var/log/svc-b.log"))[0] == 0


def test_permissions_without_recurse_touch_only_the_path(box):
    box.write("/var/lib/svc/f", "x", 0o600)
    box.config({"command": "true", "permissions": [_perm(owner="nobody:root")]})
    assert box.start() == 0
    assert owner_of(box.p("/var/lib/svc")) == (NOBODY.pw_uid, 0)
    assert owner_of(box.p("/var/lib/svc/f")) == (0, 0)
    assert mode_of(box.p("/var/lib/svc/f")) == 0o600      # no perm given: modes untouched


def test_permissions_do_not_follow_symlinks(box):
    box.write("/outside/secret", "x", 0o600)
    box.p("/var/lib/svc").mkdir(parents=True)
    os.symlink(box.p("/outside/secret"), box.p("/var/lib/svc/link"))
    box.config({"command": "true", "permissions": [_perm(perm="0644", recurse=True)]})
    assert box.start() == 0
    assert os.lstat(box.p("/var/lib/svc/link")).st_uid == NOBODY.pw_uid
    assert owner_of(box.p("/outside/secret")) == (0, 0)
    assert mode_of(box.p("/outside/secret")) == 0o600


def test_permissions_path_may_be_a_glob_and_a_missing_one_is_a_warning(box, capsys):
    box.write("/var/log/svc-a.log", "")
    box.write("/var/log/svc-b.log", "")
    box.config({"command": "true", "permissions": [
        _perm(path="/var/log/svc-*.log"), _perm(path="/var/lib/not-yet")]})
    assert box.start() == 0
    assert owner_of(box.p("/var/log/svc-a.log"))[0] == NOBODY.pw_uid
    assert owner_of(box.p("/var/log/svc-b.log"))[0] == NOBODY.pw_uid
    assert "WARNING permissions[1].path: /var/lib/not-yet does not exist" in capsys.readouterr().err


def test_permissions_apply_after_copying(box):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry(owner="root")],
                "permissions": [_perm(path="/etc/svc", recurse=True)]})
    assert box.start() == 0
    assert owner_of(box.p("/etc/svc/a.conf"))[0] == NOBODY.pw_uid


# -- --check --------------------------------------------------------------------------

def test_check_reports_each_kind_of_difference_and_changes_nothing(box, capsys):
    for name in ("c", "m", "o", "gone", "same"):
        box.source(name, name)
    box.source("tree/f", "f")
    box.config({"config_files": [
        _entry(source=f"{SRC}/{name}", dest=f"/etc/x/{name}", owner="nobody", perm="0640")
        for name in ("c", "m", "o", "gone", "same")] + [_entry(source=f"{SRC}/tree", dest="/etc/tree")],
        "command": "true"})
    assert box.start() == 0
    assert box.start("--check") == 0

    box.p("/etc/x/c").write_text("changed")
    box.p("/etc/x/m").chmod(0o644)
    os.chown(box.p("/etc/x/o"), 0, 0)
    box.p("/etc/x/gone").unlink()
    box.write("/etc/tree/extra", "e")
    capsys.readouterr()
    before = box.snapshot()
    assert box.start("--check") == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{box.p('/etc/x/c')}: content differs", f"{box.p('/etc/x/m')}: mode differs",
                   f"{box.p('/etc/x/o')}: owner differs", f"{box.p('/etc/x/gone')}: missing",
                   f"{box.p('/etc/tree/extra')}: not in {box.p(SRC)}/tree"]
    assert box.snapshot() == before


def test_starting_the_command_records_it_and_check_compares_it(box, capsys, execs):
    box.config({"command": "keystone-all --debug 'two words'"})
    assert box.start() == 0
    record = box.p(ds.COMMAND_RECORD)
    assert json.loads(record.read_text()) == ["keystone-all", "--debug", "two words"]
    assert mode_of(record) == 0o600
    assert box.start("--check") == 0

    box.config({"command": "keystone-all --debug 'two' 'words'"})
    capsys.readouterr()
    before = box.snapshot()
    assert box.start("--check") == 1
    out = capsys.readouterr().out
    assert out.splitlines() == ["command: differs"]
    assert "--debug" not in out                 # arguments are never printed
    assert box.snapshot() == before
    assert len(execs) == 1                      # --check never runs it

    box.config({})                              # no command any more: that differs too
    assert box.start("--check") == 1
    assert capsys.readouterr().out.splitlines() == ["command: differs"]


def test_check_lists_a_changed_command_with_the_files(box, capsys):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry()]})
    assert box.start() == 0
    box.config({"command": "false", "config_files": [_entry()]})
    box.p("/etc/svc/a.conf").write_text("changed")
    capsys.readouterr()
    assert box.start("--check") == 1
    assert capsys.readouterr().out.splitlines() == ["command: differs", f"{box.p('/etc/svc/a.conf')}: content differs"]


def test_a_missing_record_counts_only_when_config_json_has_a_command(box, capsys):
    box.config({"command": "true"})
    assert box.start("--check") == 1
    assert capsys.readouterr().out.splitlines() == [
        f"command: not recorded ({box.p(ds.COMMAND_RECORD)} is missing), so it cannot be compared"]
    box.config({})
    assert box.start("--check") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"INFO command: none in config.json, and none recorded at {box.p(ds.COMMAND_RECORD)}" in captured.err


def test_a_bootstrap_run_records_no_command_and_its_check_compares_none(box, capsys):
    box.script(ds.BOOTSTRAP_STEP, "exit 0\n")
    box.config({"command": "true"})
    assert box.start(DOCKYARD_BOOTSTRAP="1") == 0
    assert not box.p(ds.COMMAND_RECORD).exists()
    capsys.readouterr()
    assert box.start("--check", DOCKYARD_BOOTSTRAP="1") == 0
    assert capsys.readouterr().out == ""


def test_a_record_that_cannot_be_written_is_a_warning_and_check_says_so(box, capsys, execs):
    box.p(ds.COMMAND_RECORD).mkdir(parents=True)       # a directory where the record goes
    box.config({"command": "true"})
    assert box.start() == 0
    assert len(execs) == 1
    assert f"WARNING cannot record the command in {box.p(ds.COMMAND_RECORD)}" in capsys.readouterr().err
    assert box.start("--check") == 1
    assert capsys.readouterr().out.startswith(f"command: the record {box.p(ds.COMMAND_RECORD)} cannot be read")


@pytest.mark.parametrize("text", ['{"argv": ["true"]}', "[1, 2]", "not json"])
def test_a_record_that_is_not_an_argv_counts_as_a_difference(box, capsys, text):
    box.write(ds.COMMAND_RECORD, text)
    box.config({"command": "true"})
    assert box.start("--check") == 1
    assert capsys.readouterr().out.startswith(f"command: the record {box.p(ds.COMMAND_RECORD)} ")


def test_check_does_not_need_a_command_and_refuses_invalid_config(box, capsys):
    box.source("a.conf", "a")
    box.config({"config_files": [_entry()]})
    assert box.start("--check") == 1          # never copied: the dest is missing
    assert "missing" in capsys.readouterr().out
    box.config({"config_files": [_entry(perm="bad")]})
    assert box.start("--check") == ds.EXIT_INVALID


def test_check_finds_a_special_file_where_a_file_belongs(box, capsys):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry()]})
    box.p("/etc/svc").mkdir(parents=True)
    os.mkfifo(box.p("/etc/svc/a.conf"))
    assert box.start("--check") == 1
    assert "a.conf: not a regular file" in capsys.readouterr().out
    assert box.start() == 0                    # copying replaces it
    assert box.start("--check") == 0


def test_a_directory_where_a_file_belongs_is_invalid_even_for_check(box, capsys):
    box.source("a.conf", "a")
    box.config({"command": "true", "config_files": [_entry()]})
    box.p("/etc/svc/a.conf").mkdir(parents=True)
    assert box.start("--check") == ds.EXIT_INVALID
    assert "config_files[0].dest: " in capsys.readouterr().err


# -- the start extension and bootstrap mode -------------------------------------------

def test_start_extension_runs_as_root_after_copying_with_the_environment(box, execs):
    box.source("a.conf", "a")
    out = box.p("/ext-out")
    box.script(ds.EXTEND_START, f'{{ id -u; echo "$SITE"; cat {box.p("/etc/svc/a.conf")}; }} > {out}\n')
    box.config({"command": "true", "config_files": [_entry()]})
    assert box.start(SITE="lab", DOCKYARD_USER="nobody") == 0
    assert out.read_text().split() == ["0", "lab", "a"]
    assert len(execs) == 1


def test_failing_start_extension_aborts_with_its_code(box, execs, capsys):
    box.script(ds.EXTEND_START, "exit 5\n")
    box.config({"command": "true"})
    assert box.start() == 5
    assert "exited 5" in capsys.readouterr().err
    assert execs == []


def test_a_start_extension_that_is_not_executable_is_not_run(box, execs, capsys):
    box.write(ds.EXTEND_START, "#!/bin/sh\nexit 5\n", 0o644)
    box.config({"command": "true"})
    assert box.start() == 0
    assert "not an executable file" in capsys.readouterr().err
    assert len(execs) == 1


def test_bootstrap_runs_the_step_as_the_service_user_and_exits_with_its_code(open_box, execs):
    box, out = open_box, open_box.out
    box.source("a.conf", "a")
    box.script(ds.BOOTSTRAP_STEP, f'{{ id -u; id -g; echo "$HOME"; }} > {out}\nexit 7\n')
    for d in ("/usr", "/usr/local", "/usr/local/bin"):
        box.p(d).chmod(0o755)
    box.config({"config_files": [_entry()]})         # no command: not needed for bootstrap
    assert box.start(DOCKYARD_BOOTSTRAP="1", DOCKYARD_USER="nobody") == 7
    assert out.read_text().split() == [str(NOBODY.pw_uid), str(NOBODY.pw_gid), NOBODY.pw_dir]
    assert box.p("/etc/svc/a.conf").read_text() == "a"   # copied before the step ran
    assert execs == []


@pytest.mark.parametrize("child", [ds.EXTEND_START, ds.BOOTSTRAP_STEP])
def test_a_child_that_cannot_be_run_exits_127_or_126_with_a_message(box, capsys, execs, child):
    box.write(child, "#!/nonexistent/dockyard-interpreter\n", 0o755)
    box.config({"command": "true"})
    env = {"DOCKYARD_BOOTSTRAP": "1"} if child == ds.BOOTSTRAP_STEP else {}
    assert box.start(**env) == 127
    assert f"ERROR {box.p(child)}: not found (or its #! interpreter is not)" in capsys.readouterr().err
    box.write(child, "\x7fELF not really\n", 0o755)
    assert box.start(**env) == 126
    assert f"ERROR {box.p(child)}: Exec format error" in capsys.readouterr().err
    assert execs == []


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", ""])
def test_bootstrap_values_that_mean_off(box, execs, value):
    box.config({"command": "true"})
    assert box.start(DOCKYARD_BOOTSTRAP=value) == 0
    assert len(execs) == 1


def test_user_comes_from_config_then_image_then_root(box, execs):
    box.config({"command": "true", "user": "nobody"})
    box.start(DOCKYARD_USER="root")
    box.config({"command": "true"})
    box.start(DOCKYARD_USER="nobody")
    box.start()
    box.config({"command": "true", "user": str(UNUSED_ID)})
    box.start()
    assert [(who.name, who.uid) for _, who, _ in execs] == [
        ("nobody", NOBODY.pw_uid), ("nobody", NOBODY.pw_uid), ("root", 0), (None, UNUSED_ID)]


# -- the real exec, in a subprocess ---------------------------------------------------

@pytest.fixture(scope="module")
def service_user():
    """A throwaway user with a supplementary group, removed afterwards."""
    name, extra = f"dyk{os.getpid()}", f"dykg{os.getpid()}"
    subprocess.run(["groupadd", extra], check=True, capture_output=True)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", f"/nonexistent/{name}",
                    "--shell", "/usr/sbin/nologin", "--groups", extra, name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name), grp.getgrnam(extra)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", extra], capture_output=True)


# The images run the script with Debian's /usr/bin/python3 (its shebang); so do
# these tests where the host has one, which also lets an unprivileged user run it.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def run_module(root: Path, env: dict[str, str], user: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, ds.__file__, "--root", str(root)],
                          env={"PATH": os.environ["PATH"], **env}, user=user,
                          capture_output=True, text=True, timeout=30)


def test_exec_replaces_the_process_as_the_service_user(open_box, service_user):
    entry, extra = service_user
    box, out = open_box, open_box.out
    box.config({"command": f"""sh -c '{{ id -u; id -g; id -G; echo "$HOME"; echo "$USER"; }} > {out}'"""})
    proc = run_module(box.root, {"DOCKYARD_USER": entry.pw_name, "HOME": "/root", "USER": "root"})
    assert proc.returncode == 0, proc.stderr
    uid, gid, groups, home, user = out.read_text().splitlines()
    assert uid == str(entry.pw_uid) and gid == str(entry.pw_gid)
    assert str(extra.gr_gid) in groups.split()          # supplementary groups via initgroups
    assert (home, user) == (entry.pw_dir, entry.pw_name)
    assert f"INFO running sh as {entry.pw_name}" in proc.stderr
    # Recorded as root, before the drop, for --check.
    assert json.loads(box.p(ds.COMMAND_RECORD).read_text())[:2] == ["sh", "-c"]


def test_exec_keeps_the_pid_of_dockyard_start(open_box):
    box, out = open_box, open_box.out
    # The module writes its own pid through the extension, then the command writes its pid.
    box.script(ds.EXTEND_START, f"echo $PPID > {out}\n")
    box.config({"command": f"sh -c 'echo $$ >> {out}'"})
    proc = run_module(box.root, {"DOCKYARD_USER": "nobody"})
    assert proc.returncode == 0, proc.stderr
    start_pid, command_pid = out.read_text().split()
    assert start_pid == command_pid


def test_exec_as_nobody_without_a_passwd_home(open_box):
    box, out = open_box, open_box.out
    box.config({"command": f"sh -c 'id -u > {out}; id -G >> {out}'", "user": "nobody"})
    proc = run_module(box.root, {"DOCKYARD_USER": "root"})
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == [str(NOBODY.pw_uid), str(NOBODY.pw_gid)]


def test_already_unprivileged_start_skips_the_drop(open_box):
    box, out = open_box, open_box.out
    box.config({"command": f"sh -c 'id -u > {out}'"})
    proc = run_module(box.root, {"DOCKYARD_USER": "root"}, user=NOBODY.pw_uid)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == [str(NOBODY.pw_uid)]
    # It cannot write the command's record under root's /var/lib/dockyard: a warning, not a failure.
    assert "WARNING cannot record the command" in proc.stderr


# A step (or extension) that says it is ready once its handlers are in place,
# then waits on stdin; a stop signal makes it say which and exit (7 unless
# told otherwise). Plain os.write: the signal may come while "ready" is still
# being written.
TRAPPING_CHILD = f"""#!{PYTHON}
import os, signal
def stop(signum, frame):
    os.write(1, b"got %d\\n" % signum)
    os._exit(EXIT)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
os.write(1, b"ready\\n")
os.read(0, 1)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("child", ["bootstrap step", "start extension"])
def test_a_stop_signal_is_passed_on_to_the_child_and_its_code_returned(box, child, signum):
    if child == "bootstrap step":
        box.write(ds.BOOTSTRAP_STEP, TRAPPING_CHILD.replace("EXIT", "7"), 0o755)
        box.config({})
        env = {"DOCKYARD_BOOTSTRAP": "1"}
    else:
        box.write(ds.EXTEND_START, TRAPPING_CHILD.replace("EXIT", "7"), 0o755)
        box.config({"command": "true"})
        env = {}
    code, rest, err = signalled_start(box, signum, env)
    assert (code, rest) == (7, f"got {int(signum)}\n"), err


def signalled_start(box, signum, env: dict | None = None) -> tuple[int, str, str]:
    """Run dockyard-start in ``box``, send it ``signum`` once its trapping child
    says it runs; its exit code, the rest of its stdout, and its stderr."""
    with subprocess.Popen([PYTHON, ds.__file__, "--root", str(box.root)],
                          env={"PATH": os.environ["PATH"], **(env or {})}, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as start:
        try:
            assert start.stdout.readline() == "ready\n"      # the handshake: the child runs, trapping
            start.send_signal(signum)                        # as tini does: to dockyard-start alone
            code = start.wait(timeout=30)
        finally:
            # Only now does the child's stdin close: a child that was never told
            # to stop (left behind by a dockyard-start the signal ended) ends here.
            start.stdin.close()
            if start.poll() is None:
                start.kill()
            rest, err = start.stdout.read(), start.stderr.read()
    return code, rest, err


def test_a_container_stopped_during_its_start_extension_does_not_start_the_command(box):
    box.write(ds.EXTEND_START, TRAPPING_CHILD.replace("EXIT", "0"), 0o755)   # ends "successfully"
    box.config({"command": "sh -c 'echo the command ran'"})
    code, rest, err = signalled_start(box, signal.SIGTERM)
    assert (code, rest) == (128 + signal.SIGTERM, f"got {int(signal.SIGTERM)}\n"), err
    assert "ended after SIGTERM; not starting" in err


def test_a_stop_signal_that_comes_while_the_child_starts_is_passed_on_once_it_runs(monkeypatch):
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen
    before = signal.getsignal(signal.SIGTERM)

    def stopped_while_starting(*args, **kwargs):
        # Without run_child's handler in place this would end pytest itself.
        assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_DFL, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGTERM)     # caught by run_child's handler: there is no child yet
        started.append(real_popen(*args, **kwargs))
        return started[0]

    monkeypatch.setattr(ds.subprocess, "Popen", stopped_while_starting)
    # Only a hang guard: a child never told to stop would wait on stdin for ever.
    guard = threading.Timer(30, lambda: started[0].stdin.close())
    guard.start()
    try:
        ended = ds.run_child([PYTHON, "-c", "import os; os.read(0, 1)"], os.environ, stdin=subprocess.PIPE)
    finally:
        guard.cancel()
        for child in started:
            child.stdin.close()
    assert ended == ds.Ended(128 + signal.SIGTERM, signal.SIGTERM)    # the child died of it
    assert signal.getsignal(signal.SIGTERM) == before    # and the handler was put back


def test_a_missing_program_exits_127(open_box):
    open_box.config({"command": "dockyard-no-such-program --flag"})
    proc = run_module(open_box.root, {})
    assert proc.returncode == 127
    assert "ERROR command: dockyard-no-such-program: not found" in proc.stderr


# -- properties -----------------------------------------------------------------------

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
OWNERS = st.sampled_from([None, "root", "nobody", "nobody:root", NOBODY.pw_uid, f"{UNUSED_ID}"])
PERMS = st.sampled_from([None, "0600", "0640", "0644", "0755", "2750", "02750", "400", "0o640"])


@st.composite
def valid_setups(draw):
    """(files to place under config_files, config.json) that must apply cleanly."""
    files: dict[str, bytes] = {}
    entries: list[dict] = []
    for i, kind in enumerate(draw(st.lists(st.sampled_from(["file", "dir", "glob", "optional"]),
                                           min_size=1, max_size=5))):
        owner, perm = draw(OWNERS), draw(PERMS)
        extra = {k: v for k, v in (("owner", owner), ("perm", perm)) if v is not None}
        if draw(st.booleans()):
            extra["preserve_properties"] = True
        if kind == "file":
            files[f"f{i}"] = draw(st.binary(max_size=64))
            entries.append({"source": f"{SRC}/f{i}", "dest": f"/etc/f{i}/{draw(NAMES)}", **extra})
        elif kind == "dir":
            for name in draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)):
                files[f"d{i}/{name}"] = draw(st.binary(max_size=32))
                files[f"d{i}/sub/{name}"] = draw(st.binary(max_size=32))
            entries.append({"source": f"{SRC}/d{i}", "dest": f"/srv/d{i}", "merge": draw(st.booleans()), **extra})
        elif kind == "glob":
            for name in draw(st.lists(NAMES, min_size=1, max_size=3, unique=True)):
                files[f"g{i}/{name}.conf"] = draw(st.binary(max_size=32))
            entries.append({"source": f"{SRC}/g{i}/*.conf", "dest": f"/etc/g{i}", **extra})
        else:
            entries.append({"source": f"{SRC}/absent{i}", "dest": f"/etc/o{i}", "optional": True, **extra})
    return files, {"command": "true", "config_files": entries}


def _place(root: Path, files: dict[str, bytes], doc: dict) -> Box:
    b = Box(root)
    for name, data in files.items():
        b.source(name, data, 0o640)
    b.config(doc)
    return b


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setup=valid_setups())
def test_any_valid_config_applies_then_checks_clean_and_reapplies_idempotently(setup):
    files, doc = setup
    with tempfile.TemporaryDirectory() as tmp:
        b = _place(Path(tmp) / "root", files, doc)
        assert b.start() == 0
        assert b.start("--check") == 0
        for entry in doc["config_files"]:
            if entry["source"].startswith(f"{SRC}/f"):
                assert b.p(entry["dest"]).read_bytes() == files[entry["source"][len(SRC) + 1:]]
        once = b.snapshot()
        assert b.start() == 0
        assert b.snapshot() == once


# field -> values that are invalid for it, whatever else the entry holds
CORRUPTIONS = {
    "source": [7, "", "relative/a", f"{SRC}/never-there"],
    "dest": [None, [], "relative/a", ""],
    "owner": [True, 1.5, [], "dockyard-no-such-user", "root:dockyard-no-such-group", ":", "a:b:c", -1],
    "perm": [644, "", "0999", "rw-------", "12345", None],
    "merge": ["true", 0, None],
    "preserve_properties": ["false", 1, []],
    "optional": ["yes", 1.0, {}],
    "unknown": ["anything"],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(setup=valid_setups(), data=st.data())
def test_any_config_with_one_corrupted_field_is_refused_with_nothing_changed(setup, data):
    files, doc = setup
    index = data.draw(st.integers(0, len(doc["config_files"]) - 1))
    key = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    bad = data.draw(st.sampled_from(CORRUPTIONS[key]))
    entry = doc["config_files"][index]
    if key == "source" and bad == f"{SRC}/never-there":
        entry.pop("optional", None)
    entry[key] = bad
    with tempfile.TemporaryDirectory() as tmp:
        b = _place(Path(tmp) / "root", files, doc)
        before = b.snapshot()
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            code = b.start()
        assert code == ds.EXIT_INVALID
        where = f"config_files[{index}]" + ("" if key == "unknown" else f".{key}")
        assert f"config.json: {where}" in captured.getvalue()
        assert b.snapshot() == before
