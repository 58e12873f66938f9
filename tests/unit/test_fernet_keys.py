"""Keystone's fernet key repository as dockyard keeps it (fernet-keys.yml): made
as keystone-manage fernet_setup makes one, rotated as fernet_rotate does, stored
0600, and refused (naming the file and the key's index, never a value) when it
is not a repository."""

from __future__ import annotations

import base64
import stat

import pytest

from dockyard.deploy.site import fernet
from dockyard.deploy.site.passwords import generate_passwords, load_passwords
from dockyard.errors import ConfigError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_key_is_32_random_bytes_urlsafe_base64():
    keys = {fernet.new_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.urlsafe_b64decode(key)) == 32 and fernet.key_problem(key) is None


def test_setup_makes_a_staged_key_and_a_primary():
    repo = fernet.setup(now="2025-01-01T00:00:00Z")
    assert sorted(repo.keys) == [0, 1] and repo.primary == 1
    assert repo.keys[0] != repo.keys[1] and repo.rotated is None


def test_rotation_promotes_the_staged_key_and_makes_a_new_staged_one():
    repo = fernet.setup()
    after = fernet.rotate(repo, 3, now="2025-02-01T00:00:00Z")
    assert sorted(after.keys) == [0, 1, 2]
    assert after.keys[2] == repo.keys[0]            # the staged key, which every keystone holds, signs now
    assert after.keys[1] == repo.keys[1]            # the old primary stays: tokens it signed still validate
    assert after.keys[0] not in repo.keys.values()  # a new staged key
    assert fernet.key_problem(after.keys[0]) is None
    assert after.rotated == "2025-02-01T00:00:00Z" and after.created == repo.created


def test_rotation_prunes_the_oldest_secondaries_beyond_max_active_keys():
    repo = fernet.setup()
    history = [repo]
    for _ in range(5):
        history.append(fernet.rotate(history[-1], 3))
    last = history[-1]
    assert sorted(last.keys) == [0, 5, 6]           # staged, the last primary but one, the primary
    assert last.keys[6] == history[-2].keys[0]
    assert last.keys[5] == history[-2].keys[5]
    bigger = fernet.rotate(last, 5)
    assert sorted(bigger.keys) == [0, 5, 6, 7]      # grows towards max_active_keys, dropping nothing
    smaller = fernet.rotate(fernet.rotate(bigger, 5), 3)
    assert sorted(smaller.keys) == [0, 8, 9]


def test_never_fewer_than_three_keys():
    with pytest.raises(ValueError, match="at least 3"):
        fernet.rotate(fernet.setup(), 2)
    repo = fernet.setup()
    for _ in range(4):
        repo = fernet.rotate(repo, fernet.MIN_ACTIVE_KEYS)
        assert len(repo.keys) == 3 and 0 in repo.keys


def test_a_token_key_outlives_max_active_keys_minus_two_rotations():
    repo = fernet.rotate(fernet.setup(), 4)
    signing = repo.keys[repo.primary]
    for _ in range(4 - 2):
        repo = fernet.rotate(repo, 4)
        assert signing in repo.keys.values()
    assert signing not in fernet.rotate(repo, 4).keys.values()


def test_save_and_load_keep_the_keys_in_a_private_file(tmp_path):
    path = tmp_path / fernet.FERNET_FILE
    repo = fernet.rotate(fernet.setup(), 3)
    fernet.save(path, repo)
    assert mode(path) == 0o600
    assert fernet.load(path) == repo
    assert fernet.ensure(path) is False and fernet.load(path) == repo      # an existing one is kept


def test_ensure_makes_one_when_missing_and_makes_a_readable_one_private(tmp_path):
    path = tmp_path / "site" / fernet.FERNET_FILE
    assert fernet.ensure(path) is True and mode(path) == 0o600
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        fernet.load(path)
    assert fernet.ensure(path) is False and mode(path) == 0o600


@pytest.mark.parametrize("text, key, why", [
    ("keys: {0: 'abc'}\n", "keys.0", "not URL-safe base64|bytes"),
    ("keys: {0: 'YWJj'}\n", "keys.0", "decodes to 3 bytes"),
    ("keys: {x: 'YWJj'}\n", "keys.x", "whole number"),
    ("keys: []\n", "keys", "mapping"),
    ("rotate: x\nkeys: {}\n", "rotate", "unknown key"),
])
def test_a_broken_repository_is_refused_naming_the_index_not_the_value(tmp_path, text, key, why):
    path = tmp_path / fernet.FERNET_FILE
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=why) as err:
        fernet.load(path)
    assert err.value.key == key and "YWJj" not in str(err.value) and "abc" not in str(err.value)


def test_a_repository_without_its_staged_key_is_refused(tmp_path):
    path = tmp_path / fernet.FERNET_FILE
    fernet.save(path, fernet.KeyRepository({1: fernet.new_key(), 2: fernet.new_key()}, "now"))
    with pytest.raises(ConfigError, match="staged key 0"):
        fernet.load(path)


def test_genpwd_makes_the_repository_beside_passwords_and_load_reads_it_as_one_secret(tmp_path):
    path = tmp_path / "passwords.yml"
    added = generate_passwords(path, ["horizon_secret_key", fernet.FERNET_SECRET])
    assert added == ["horizon_secret_key", fernet.FERNET_SECRET]
    keys_file = tmp_path / fernet.FERNET_FILE
    assert mode(keys_file) == 0o600 and fernet.FERNET_SECRET not in path.read_text()
    before = keys_file.read_bytes()
    assert generate_passwords(path, ["horizon_secret_key", fernet.FERNET_SECRET]) == []
    assert keys_file.read_bytes() == before                                 # kept, never made again
    loaded = load_passwords(path, ["horizon_secret_key", fernet.FERNET_SECRET])
    assert loaded[fernet.FERNET_SECRET] == fernet.load(keys_file).as_secret()


def test_a_missing_repository_says_to_run_genpwd(tmp_path):
    path = tmp_path / "passwords.yml"
    generate_passwords(path, ["horizon_secret_key"])
    with pytest.raises(ConfigError, match="dockyard genpwd") as err:
        load_passwords(path, ["horizon_secret_key", fernet.FERNET_SECRET])
    assert err.value.path == str(tmp_path / fernet.FERNET_FILE)
