"""passwords.yml: genpwd makes private, strong, stable values; loading checks them."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dockyard.deploy.site import passwords
from dockyard.deploy.site.passwords import generate_passwords, load_passwords, new_password, write_private
from dockyard.errors import ConfigError

SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{31}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture
def no_chmod(monkeypatch):
    """The file must be created private, not made private afterwards."""
    def refuse(*args, **kwargs):
        raise AssertionError("chmod called: the file was not created 0600")
    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)


@pytest.fixture
def open_umask():
    old = os.umask(0)          # the widest umask: whatever 0600 comes out is the code's doing
    yield
    os.umask(old)


def test_new_file_is_0600_from_creation_with_a_header(tmp_path, no_chmod, open_umask):
    path = tmp_path / "site" / "passwords.yml"
    assert generate_passwords(path, ["a", "b", "c"]) == ["a", "b", "c"]
    assert mode(path) == 0o600
    assert path.read_text().startswith("# dockyard passwords")
    assert list(values(path)) == ["a", "b", "c"]
    assert [p.name for p in path.parent.iterdir()] == ["passwords.yml"]     # no temporary file left


def test_values_are_strong_distinct_and_safe_in_urls_ini_and_shell():
    generated = {new_password() for _ in range(300)}
    assert len(generated) == 300
    for value in generated:
        assert SAFE.fullmatch(value), value          # no % : @ / and never a leading '-'


def test_generated_values_differ_per_name(tmp_path):
    path = tmp_path / "passwords.yml"
    generate_passwords(path, [f"p{i}" for i in range(20)])
    got = values(path)
    assert len(set(got.values())) == 20 and all(SAFE.fullmatch(v) for v in got.values())


def test_existing_values_comments_and_order_are_kept(tmp_path):
    path = tmp_path / "passwords.yml"
    original = "# my notes\nzeta: chosen-by-me\n\n# database\nalpha: 'with spaces and %'\n"
    path.write_text(original)
    assert generate_passwords(path, ["alpha", "beta", "zeta"]) == ["beta"]
    text = path.read_text()
    assert text.startswith(original)                        # appended, nothing above it touched
    got = values(path)
    assert (got["zeta"], got["alpha"]) == ("chosen-by-me", "with spaces and %")
    assert SAFE.fullmatch(got["beta"])
    assert mode(path) == 0o600


def test_second_run_changes_nothing(tmp_path):
    path = tmp_path / "passwords.yml"
    generate_passwords(path, ["a", "b"])
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    assert generate_passwords(path, ["b", "a"]) == []
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_only_missing_names_are_added_and_names_given_twice_once(tmp_path):
    path = tmp_path / "passwords.yml"
    generate_passwords(path, ["a"])
    first = values(path)
    assert generate_passwords(path, ["a", "b", "b", "c"]) == ["b", "c"]
    second = values(path)
    assert second["a"] == first["a"] and set(second) == {"a", "b", "c"}


def test_empty_values_count_as_missing_without_repeating_a_key(tmp_path):
    path = tmp_path / "passwords.yml"
    path.write_text("a: keep\nb:\nc: ''\n")
    assert generate_passwords(path, ["a", "b", "c"]) == ["b", "c"]
    got = load_passwords(path, ["a", "b", "c"])      # the strict reader: a repeated key would fail here
    assert got["a"] == "keep" and SAFE.fullmatch(got["b"]) and SAFE.fullmatch(got["c"])


def test_a_value_of_another_type_is_not_overwritten(tmp_path):
    path = tmp_path / "passwords.yml"
    path.write_text("a: 12345\n")
    assert generate_passwords(path, ["a"]) == []
    assert path.read_text() == "a: 12345\n"


def test_an_empty_file_gets_the_header(tmp_path):
    path = tmp_path / "passwords.yml"
    path.write_text("")
    assert generate_passwords(path, ["a"]) == ["a"]
    assert path.read_text().startswith("# dockyard passwords")


def test_no_names_still_creates_the_file(tmp_path):
    path = tmp_path / "passwords.yml"
    assert generate_passwords(path, []) == []
    assert path.exists() and mode(path) == 0o600 and values(path) is None


@pytest.mark.parametrize("text", ["a: [unclosed\n", "a: x\na: y\n", "- a\n"])
def test_a_broken_file_is_reported_and_left_alone(tmp_path, text):
    path = tmp_path / "passwords.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        generate_passwords(path, ["a", "b"])
    assert exc.value.path == str(path)
    assert path.read_text() == text


def test_a_symlinked_file_is_written_where_it_points(tmp_path):
    real = tmp_path / "vault" / "passwords.yml"
    real.parent.mkdir()
    real.write_text("a: x\n")
    link = tmp_path / "passwords.yml"
    link.symlink_to(real)
    generate_passwords(link, ["a", "b"])
    assert link.is_symlink() and set(values(real)) == {"a", "b"}


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "passwords.yml"
    path.write_text("a: old\n")

    def crash(*args):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_private(path, "a: new\n")
    assert path.read_text() == "a: old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["passwords.yml"]


# -- loading ---------------------------------------------------------------------------------

def test_load_returns_every_value(tmp_path):
    path = tmp_path / "passwords.yml"
    path.write_text("a: x\nb: y\nextra: z\nunset:\n")
    path.chmod(0o600)
    assert load_passwords(path, ["a", "b"]) == {"a": "x", "b": "y", "extra": "z"}


def test_load_names_the_missing_key_and_advises_genpwd(tmp_path):
    path = tmp_path / "site" / "passwords.yml"
    path.parent.mkdir()
    path.write_text("a: value-of-a\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as exc:
        load_passwords(path, ["a", "b"])
    assert exc.value.key == "b" and exc.value.path == str(path)
    assert f"dockyard genpwd --config-dir {path.parent}" in str(exc.value)
    assert "value-of-a" not in str(exc.value)


def test_load_without_a_file(tmp_path):
    assert load_passwords(tmp_path / "passwords.yml", []) == {}
    with pytest.raises(ConfigError) as exc:
        load_passwords(tmp_path / "passwords.yml", ["a"])
    assert exc.value.key == "a"


def test_what_genpwd_writes_loads(tmp_path):
    path = tmp_path / "passwords.yml"
    names = list(passwords.DEFAULT_PASSWORD_NAMES)
    generate_passwords(path, names)
    assert sorted(load_passwords(path, names)) == sorted(names)


# -- the command -----------------------------------------------------------------------------

def run_genpwd(*args, env=None):
    from dockyard.cli.passwords import genpwd
    return CliRunner().invoke(genpwd, list(args), env=env or {}, catch_exceptions=False)


def test_genpwd_command_creates_the_folder_and_prints_no_value(tmp_path):
    folder = tmp_path / "new" / "site"
    result = run_genpwd("--config-dir", str(folder))
    assert result.exit_code == 0
    path = folder / "passwords.yml"
    assert mode(path) == 0o600
    got = values(path)
    assert f"{len(got)} passwords added, 0 already set" in result.output
    assert not any(value in result.output for value in got.values())
    again = run_genpwd("--config-dir", str(folder))
    assert again.exit_code == 0 and f"0 passwords added, {len(got)} already set" in again.output
    assert values(path) == got


def test_genpwd_command_reads_the_folder_from_the_environment(tmp_path):
    result = run_genpwd(env={"DOCKYARD_CONFIG_DIR": str(tmp_path / "from-env")})
    assert result.exit_code == 0 and (tmp_path / "from-env" / "passwords.yml").exists()


def test_genpwd_covers_every_password_the_catalogue_requires():
    # Otherwise a deploy would ask for a password genpwd never makes.
    from dockyard.cli.passwords import password_names
    from dockyard.deploy.wanted.catalogue import load_services
    names = password_names()
    assert set(load_services().all_passwords()) <= set(names)
    assert set(passwords.DEFAULT_PASSWORD_NAMES) <= set(names)
    assert len(names) == len(set(names))


def test_genpwd_is_registered_on_the_dockyard_group():
    from dockyard.cli import cli
    from dockyard.cli.passwords import genpwd
    assert cli.commands["genpwd"] is genpwd


# -- a file others can read ------------------------------------------------------------------

def test_a_file_others_can_read_is_refused_naming_file_mode_and_fix(tmp_path):
    path = tmp_path / "passwords.yml"
    path.write_text("a: value-of-a\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        load_passwords(path, ["a"])
    assert exc.value.exit_code == 2 and exc.value.path == str(path)
    assert "mode 0644" in str(exc.value) and f"chmod 600 {path}" in str(exc.value)
    assert "value-of-a" not in str(exc.value)
    assert load_passwords(path, []) == {"a": "value-of-a"}      # nothing needed from it: not refused


def test_genpwd_puts_the_mode_back_to_0600_and_says_so(tmp_path):
    folder = tmp_path / "site"
    assert run_genpwd("--config-dir", str(folder)).exit_code == 0
    path = folder / "passwords.yml"
    path.chmod(0o644)
    result = run_genpwd("--config-dir", str(folder))
    assert result.exit_code == 0 and mode(path) == 0o600
    assert f"{path} was mode 0644 (readable by group or others): now 0600" in result.output
    again = run_genpwd("--config-dir", str(folder))
    assert "was mode" not in again.output


def test_deploy_refuses_and_prechecks_fail_on_a_file_others_can_read(tmp_path):
    from dockyard.deploy import api
    from dockyard.deploy.ops.prechecks import FAIL, run_prechecks

    from .deploy_fixtures import fake_engine, make_site, quiet

    site_dir = make_site(tmp_path)
    path = site_dir / "passwords.yml"
    path.chmod(0o640)
    engine = fake_engine()
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    assert exc.value.exit_code == 2 and "mode 0640" in str(exc.value)
    assert not engine.calls and not (site_dir / "state").exists() and not (site_dir / "generated").exists()
    checks = [c for c in run_prechecks(site_dir, engine) if c.name == "passwords"]
    assert [(c.status, c.message, c.advice) for c in checks] == [
        (FAIL, f"{path}: mode 0640: readable or writable by group or others, and it holds every secret of the site",
         f"chmod 600 {path} (or run `dockyard genpwd --config-dir {site_dir}`, which does it)")]
