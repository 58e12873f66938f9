"""`dockyard genpwd --rotate NAME... / --rotate-all`: new random values for the
named secrets only, the file kept 0600, the old one kept as a 0600 backup;
unknown or refused names exit 2 naming them, with nothing changed."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
import yaml

from dockyard.deploy.site.passwords import HASH_KEY_NAME, rotate_passwords
from dockyard.errors import ConfigError


REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def genpwd(site_dir, *args):
    return subprocess.run([sys.executable, "-m", "dockyard", "genpwd", "--config-dir", str(site_dir), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def site_dir(site_dir):
    path = site_dir / "passwords.yml"
    path.write_text("# the operator's note\n" + path.read_text())
    return site_dir


def snapshot(site_dir):
    return {p.name: p.read_bytes() for p in site_dir.iterdir() if p.is_file()}


def test_rotate_gives_new_values_to_the_named_only_and_keeps_a_private_backup(site_dir):
    path = site_dir / "passwords.yml"
    before = yaml.safe_load(path.read_text())
    old_text = path.read_text()
    proc = genpwd(site_dir, "--rotate", "glance_keystone_password", "--rotate", "rabbitmq_password")
    assert proc.returncode == 0, proc.stderr
    after = yaml.safe_load(path.read_text())
    assert after["glance_keystone_password"] != before["glance_keystone_password"]
    assert after["rabbitmq_password"] != before["rabbitmq_password"]
    assert len(after["rabbitmq_password"]) >= 24
    assert {k: v for k, v in after.items() if k not in ("glance_keystone_password", "rabbitmq_password")} == \
        {k: v for k, v in before.items() if k not in ("glance_keystone_password", "rabbitmq_password")}
    assert path.read_text().startswith("# the operator's note\n")                 # comments stay
    assert mode(path) == 0o600
    backups = list(site_dir.glob("passwords.yml.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == old_text and mode(backups[0]) == 0o600
    assert "dockyard deploy" in proc.stdout
    for value in [*before.values(), *after.values()]:
        assert value not in proc.stdout + proc.stderr                             # never printed


def test_two_rotations_before_a_deploy_keep_both_backups(site_dir):
    path = site_dir / "passwords.yml"
    first = path.read_text()
    rotate_passwords(path, ["horizon_secret_key"], ["horizon_secret_key"])
    second = path.read_text()
    rotate_passwords(path, ["horizon_secret_key"], ["horizon_secret_key"])
    kept = sorted(p.read_text() for p in site_dir.glob("passwords.yml.*.bak"))
    assert kept == sorted([first, second])


def test_rotate_all_rotates_every_secret_but_the_hash_key_and_says_why(site_dir):
    path = site_dir / "passwords.yml"
    before = yaml.safe_load(path.read_text())
    proc = genpwd(site_dir, "--rotate-all")
    assert proc.returncode == 0, proc.stderr
    after = yaml.safe_load(path.read_text())
    assert after[HASH_KEY_NAME] == before[HASH_KEY_NAME]
    assert f"{HASH_KEY_NAME} left as it is" in proc.stdout and "re-keyed" in proc.stdout
    assert all(after[k] != v for k, v in before.items() if k != HASH_KEY_NAME)


def test_the_hash_key_rotates_when_named(site_dir):
    before = yaml.safe_load((site_dir / "passwords.yml").read_text())
    assert genpwd(site_dir, "--rotate", HASH_KEY_NAME).returncode == 0
    assert yaml.safe_load((site_dir / "passwords.yml").read_text())[HASH_KEY_NAME] != before[HASH_KEY_NAME]


@pytest.mark.parametrize("args, named, why", [
    (["--rotate", "glance_keystone_pasword"], "glance_keystone_pasword", "unknown secret"),
    (["--rotate", "horizon_secret_key", "--rotate", "nope"], "nope", "unknown secret"),
    (["--rotate", "keystone_credential_keys"], "keystone_credential_keys", "credential_migrate"),
    (["--rotate", "keystone_fernet_keys"], "keystone_fernet_keys", "dockyard rotate-fernet"),
])
def test_unknown_or_refused_names_exit_2_naming_them_and_change_nothing(site_dir, args, named, why):
    before = snapshot(site_dir)
    proc = genpwd(site_dir, *args)
    assert proc.returncode == 2
    assert named in proc.stderr and why in proc.stderr
    assert snapshot(site_dir) == before                                           # no backup either


def test_rotate_without_a_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="run `dockyard genpwd` first"):
        rotate_passwords(tmp_path / "passwords.yml", ["horizon_secret_key"], ["horizon_secret_key"])
    assert not list(tmp_path.iterdir())


def test_rotate_all_leaves_the_fernet_keys_to_rotate_fernet(site_dir):
    keys = (site_dir / "fernet-keys.yml").read_bytes()
    proc = genpwd(site_dir, "--rotate-all")
    assert proc.returncode == 0, proc.stderr
    assert "keystone_fernet_keys left as it is" in proc.stdout and "dockyard rotate-fernet" in proc.stdout
    assert (site_dir / "fernet-keys.yml").read_bytes() == keys
    assert "keystone_fernet_keys" not in yaml.safe_load((site_dir / "passwords.yml").read_text())
