"""The in-container contract: config.json validated, then applied, then the command."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.contract import dockyard_start as ds

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def shared_out():
    """A file the unprivileged service user can write (pytest's tmp dirs are 0700)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="dockyard-contract-")
    os.chmod(d, 0o777)
    out = Path(d) / "out"
    out.touch()
    out.chmod(0o666)
    yield out
    shutil.rmtree(d)


def make_root(tmp_path: Path, config: dict, files: dict[str, str]) -> Path:
    root = tmp_path / "root"
    src = root / "var/lib/dockyard/config_files"
    src.mkdir(parents=True)
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    (src / "config.json").write_text(json.dumps(config))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st_ = p.lstat()
        out[str(p)] = (p.is_dir(), p.read_bytes() if p.is_file() else b"", st_.st_mode, st_.st_uid)
    return out


def run(root: Path, *args: str, env: dict | None = None) -> int:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return ds.main(["--root", str(root), *args])
    finally:
        os.environ.clear()
        os.environ.update(old)


SRC = "/var/lib/dockyard/config_files"


def test_copies_with_owner_and_mode_then_check_passes(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/a.conf", "dest": "/etc/svc/a.conf", "owner": "nobody", "perm": "0640"}]},
        {"a.conf": "x=1\n"})
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    dest = root / "etc/svc/a.conf"
    assert dest.read_text() == "x=1\n"
    assert dest.stat().st_uid == NOBODY.pw_uid
    assert dest.stat().st_mode & 0o7777 == 0o640
    assert run(root, "--check") == 0
    dest.write_text("changed\n")
    assert run(root, "--check") == 1


@pytest.mark.parametrize("config, files, fragment", [
    ({"command": "true", "config_files": [{"source": f"{SRC}/missing", "dest": "/etc/x"}]}, {}, "config_files[0].source"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a", "dest": "/etc/a", "owner": "no-such-user"}]}, {"a": ""}, "unknown user"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a", "dest": "/etc/a", "owner": "nobody:no-such-group"}]}, {"a": ""}, "unknown group"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a", "dest": "/etc/a", "perm": "rw-r--r--"}]}, {"a": ""}, "perm"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a", "dest": "/etc/a", "colour": "blue"}]}, {"a": ""}, "unknown key 'colour'"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a"}]}, {"a": ""}, "missing required key 'dest'"),
    ({"command": "true", "config_files": [{"source": f"{SRC}/a", "dest": "/etc/a", "merge": "yes"}]}, {"a": ""}, "merge"),
    ({"command": "true", "permissions": [{"path": "/var/x", "owner": "nobody", "recurse": 1}]}, {}, "recurse"),
    ({"command": "true", "surprise": 1}, {}, "unknown key 'surprise'"),
    ({"config_files": []}, {}, "command"),
])
def test_invalid_config_is_refused_before_anything_changes(tmp_path, capsys, config, files, fragment):
    good = {"source": f"{SRC}/good", "dest": "/etc/good"}
    config = {**config, "config_files": [good, *config.get("config_files", [])]}
    if "config_files[0]" in fragment:
        fragment = fragment.replace("[0]", "[1]")
    root = make_root(tmp_path, config, {"good": "g", **files})
    before = snapshot(root)
    assert run(root) == 2
    assert fragment in capsys.readouterr().err
    assert snapshot(root) == before


def test_invalid_json_names_line(tmp_path, capsys):
    root = make_root(tmp_path, {}, {})
    (root / SRC.lstrip("/") / "config.json").write_text('{"command": "true",\n  oops}')
    assert run(root) == 2
    assert "invalid JSON at line 2" in capsys.readouterr().err


def test_optional_missing_source_is_skipped(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/absent", "dest": "/etc/absent", "optional": True}]}, {})
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    assert not (root / "etc/absent").exists()


def test_glob_into_directory_and_merge(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/conf.d/*.conf", "dest": "/etc/svc/conf.d/"},
        {"source": f"{SRC}/tree", "dest": "/etc/tree", "merge": True}]},
        {"conf.d/1.conf": "1", "conf.d/2.conf": "2", "tree/new": "n"})
    (root / "etc/tree").mkdir(parents=True)
    (root / "etc/tree/kept").write_text("k")
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    assert sorted(p.name for p in (root / "etc/svc/conf.d").iterdir()) == ["1.conf", "2.conf"]
    assert (root / "etc/tree/kept").read_text() == "k"
    assert (root / "etc/tree/new").read_text() == "n"


def test_directory_without_merge_is_replaced(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/tree", "dest": "/etc/tree"}]}, {"tree/new": "n"})
    (root / "etc/tree").mkdir(parents=True)
    (root / "etc/tree/stale").write_text("s")
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    assert sorted(p.name for p in (root / "etc/tree").iterdir()) == ["new"]


def test_preserve_properties_keeps_source_mode(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/s", "dest": "/etc/s", "preserve_properties": True, "perm": "0600"}]}, {"s": "x"})
    os.chmod(root / SRC.lstrip("/") / "s", 0o751)
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    assert (root / "etc/s").stat().st_mode & 0o7777 == 0o751


def test_permissions_recurse_with_exclude(tmp_path):
    root = make_root(tmp_path, {"command": "true", "permissions": [
        {"path": "/var/lib/svc", "owner": "nobody", "perm": "0750", "recurse": True,
         "exclude": ["/var/lib/svc/keep"]}]}, {})
    for sub in ("a", "keep"):
        (root / "var/lib/svc" / sub).mkdir(parents=True)
    cfg = ds.load_config(str(root / SRC.lstrip("/") / "config.json"), str(root))
    ds.apply_permissions(cfg, str(root))
    assert (root / "var/lib/svc/a").stat().st_uid == NOBODY.pw_uid
    assert (root / "var/lib/svc/a").stat().st_mode & 0o777 == 0o750
    assert (root / "var/lib/svc/keep").stat().st_uid == 0


def test_copy_once_copies_only_the_first_time(tmp_path):
    root = make_root(tmp_path, {"command": "true", "config_files": [
        {"source": f"{SRC}/a", "dest": "/etc/a"}]}, {"a": "first"})
    env = {"DOCKYARD_CONFIG_STRATEGY": "COPY_ONCE", "DOCKYARD_BOOTSTRAP": "1",
           "DOCKYARD_BOOTSTRAP_STEP": "/bin/true"}
    assert run(root, env=env) in (0, 2)  # /bin/true is rebased under root: no step there
    assert (root / "etc/a").read_text() == "first"
    (root / SRC.lstrip("/") / "a").write_text("second")
    run(root, env=env)
    assert (root / "etc/a").read_text() == "first"
    env["DOCKYARD_CONFIG_STRATEGY"] = "COPY_ALWAYS"
    run(root, env=env)
    assert (root / "etc/a").read_text() == "second"


def test_unknown_strategy_is_refused(tmp_path, capsys):
    root = make_root(tmp_path, {"command": "true"}, {})
    assert run(root, env={"DOCKYARD_CONFIG_STRATEGY": "SOMETIMES"}) == 2
    assert "DOCKYARD_CONFIG_STRATEGY" in capsys.readouterr().err


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_bootstrap_mode_runs_the_step_as_the_service_user_and_returns_its_code(shared_out):
    root = make_root(shared_out.parent, {}, {})
    for d in [root, *root.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    out = shared_out
    _script(root / "usr/local/bin/dockyard-bootstrap", f"id -u > {out}\nexit 7\n")
    for d in (root / "usr", root / "usr/local", root / "usr/local/bin"):
        d.chmod(0o755)
    code = run(root, env={"DOCKYARD_BOOTSTRAP": "1", "DOCKYARD_USER": "nobody"})
    assert code == 7
    assert out.read_text().strip() == str(NOBODY.pw_uid)


def test_bootstrap_mode_without_a_step_is_an_error(tmp_path, capsys):
    root = make_root(tmp_path, {}, {})
    assert run(root, env={"DOCKYARD_BOOTSTRAP": "true"}) == 2
    assert "no bootstrap step" in capsys.readouterr().err


def test_failing_start_extension_aborts(tmp_path):
    root = make_root(tmp_path, {"command": "true"}, {})
    _script(root / "usr/local/bin/dockyard-extend-start", "exit 5\n")
    assert run(root) == 5


def test_command_is_execed_as_the_service_user(tmp_path, shared_out):
    out = shared_out
    root = make_root(tmp_path, {"command": f"sh -c 'id -u > {out}; echo $HOME >> {out}'"}, {})
    proc = subprocess.run([sys.executable, ds.__file__, "--root", str(root)],
                          env={**os.environ, "DOCKYARD_USER": "nobody"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    uid, home = out.read_text().split()
    assert uid == str(NOBODY.pw_uid) and home == NOBODY.pw_dir


# -- properties -------------------------------------------------------------------

names = st.text(alphabet="abcdefghij", min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(names, st.tuples(st.binary(max_size=64), st.sampled_from(["0600", "0640", "0644"]),
                                                 st.sampled_from(["root", "nobody"])), min_size=1, max_size=6))
def test_any_valid_config_applies_and_then_checks_clean(tmp_path_factory, entries):
    tmp = tmp_path_factory.mktemp("prop")
    root = tmp / "root"
    src = root / SRC.lstrip("/")
    src.mkdir(parents=True)
    files = []
    for name, (data, perm, owner) in entries.items():
        (src / name).write_bytes(data)
        files.append({"source": f"{SRC}/{name}", "dest": f"/etc/p/{name}.conf", "owner": owner, "perm": perm})
    (src / "config.json").write_text(json.dumps({"command": "true", "config_files": files}))
    cfg = ds.load_config(str(src / "config.json"), str(root))
    ds.copy_files(cfg, str(root))
    assert ds.differences(cfg, str(root)) == []
    for name, (data, perm, _) in entries.items():
        assert (root / f"etc/p/{name}.conf").read_bytes() == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["owner", "perm", "dest", "source", "merge", "extra"]), bad=st.sampled_from(
    [7.5, [], {}, "no-such-user-x", "99999999", "relative/path", ""]))
def test_any_corrupted_field_is_refused_and_nothing_changes(tmp_path_factory, field, bad):
    tmp = tmp_path_factory.mktemp("bad")
    entry = {"source": f"{SRC}/a", "dest": "/etc/a", "owner": "root", "perm": "0600"}
    if field == "extra":
        entry["extra"] = bad
    elif field == "perm" and bad == "99999999":
        entry["perm"] = bad
    elif field in ("owner", "perm") and isinstance(bad, str) and bad and bad != "no-such-user-x":
        entry[field] = "no-such-user-x:x" if field == "owner" else "9z"
    else:
        entry[field] = bad
    root = make_root(tmp, {"command": "true", "config_files": [entry]}, {"a": "data"})
    before = snapshot(root)
    assert run(root) == 2
    assert snapshot(root) == before
