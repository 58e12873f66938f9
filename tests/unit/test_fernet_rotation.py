"""`dockyard rotate-fernet`, then a deploy (fake engine): the keys rotate as
keystone-manage fernet_rotate does, the plan carries them to keystone naming the
secret (never a key), a pruned key leaves the host's disk, a second plan has
nothing to do, a rotation not yet deployed blocks the next one, and `dockyard
status` says when the keys last rotated."""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass

import pytest

from dockyard.cli import _register, cli, run
from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.site import fernet
from dockyard.errors import ConfigError

from .deploy_fixtures import converge_site, fake_engine, make_site, quiet, set_globals, write_inventory

_register()


def keys_file(site_dir):
    return site_dir / fernet.FERNET_FILE


def all_keys(site_dir) -> set[str]:
    return set(fernet.load(keys_file(site_dir)).keys.values())


@dataclass
class Ran:
    exit_code: int
    output: str                 # stdout and stderr


@pytest.fixture
def dockyard(monkeypatch, capsys):
    """The dockyard command as `python3 -m dockyard` runs it (exit codes, error
    messages), in this process: its engine is the test's fake one."""
    def call(*args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["dockyard", *args])
        with pytest.raises(SystemExit) as done:
            run(cli)
        out = capsys.readouterr()
        return Ran(done.value.code, out.out + out.err)
    return call


@pytest.fixture
def site(site_dir, monkeypatch):
    """A converged all-in-one on the fake engine; the CLI's engine is that one."""
    engine = converge_site(site_dir)
    monkeypatch.setattr(api, "connect", lambda *_a, **_k: engine)
    return site_dir, engine


@pytest.fixture
def rotate_fernet(dockyard):
    return lambda site_dir, *args: dockyard("rotate-fernet", "--config-dir", str(site_dir), *args)


def dry_run(site_dir, engine):
    return api.deploy(site_dir, engine=engine, dry_run=True, say=quiet)


def test_the_keys_reach_keystone_as_files_of_its_key_repository(site):
    site_dir, _ = site
    repo = fernet.load(keys_file(site_dir))
    folder = site_dir / "generated" / "keystone"
    for index, key in repo.keys.items():
        path = folder / f"fernet-keys.{index}"
        assert path.read_text() == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = {e["dest"]: e for e in json.loads((folder / "config.json").read_text())["config_files"]}
    for index in repo.keys:
        entry = entries[f"/etc/keystone/fernet-keys/{index}"]
        assert entry["source"] == f"/var/lib/dockyard/config_files/fernet-keys.{index}"
        assert (entry["owner"], entry["perm"]) == ("keystone", "0600")
    conf = (folder / "keystone.conf").read_text()
    assert "key_repository = /etc/keystone/fernet-keys/" in conf
    assert "max_active_keys = 3" in conf and "expiration = 3600" in conf


def test_rotate_fernet_then_deploy_carries_the_keys_and_a_second_plan_is_empty(site, rotate_fernet):
    site_dir, engine = site
    before = fernet.load(keys_file(site_dir))
    proc = rotate_fernet(site_dir)
    assert proc.exit_code == 0, proc.output
    after = fernet.load(keys_file(site_dir))
    assert after.keys[2] == before.keys[0] and after.rotated
    assert stat.S_IMODE(keys_file(site_dir).stat().st_mode) == 0o600
    assert "dockyard deploy" in proc.output
    assert not [k for k in [*before.keys.values(), *after.keys.values()] if k in proc.output]   # no key printed

    plan = dry_run(site_dir, engine)
    assert set(plan.secrets) == {fernet.FERNET_SECRET}
    assert "recreate:keystone" in plan.secrets[fernet.FERNET_SECRET]
    reasons = {a.id: a.reason for a in plan.actions}
    assert "secret keystone_fernet_keys changed" in reasons["recreate:keystone"]
    assert "job:keystone_admin" in reasons                       # keystone-manage needs the keys in place
    assert "job:keystone_bootstrap" not in reasons               # it gets none: a rotation does not run it
    assert {a.service for a in plan.actions if a.changes_something} == {"keystone"}
    text = plan.render() + plan.to_json()
    assert "secret keystone_fernet_keys changed:" in text
    assert not [k for k in after.keys.values() if k in text]

    converge_site(site_dir, engine)
    assert (site_dir / "generated/keystone/fernet-keys.2").read_text() == after.keys[2]
    again = dry_run(site_dir, engine)
    assert again.changes() == 0, again.render()


def test_a_pruned_key_leaves_the_hosts_disk(site, rotate_fernet):
    site_dir, engine = site
    for _ in range(2):
        assert rotate_fernet(site_dir).exit_code == 0
        converge_site(site_dir, engine)
    # Keys 0, 2, 3 now: key 1 (the first primary) went with the second rotation.
    assert sorted(fernet.load(keys_file(site_dir)).keys) == [0, 2, 3]
    for unit in ("keystone", "keystone_admin"):
        assert not (site_dir / "generated" / unit / "fernet-keys.1").exists()
        assert (site_dir / "generated" / unit / "fernet-keys.3").exists()
    assert dry_run(site_dir, engine).changes() == 0


def test_the_removal_of_a_pruned_key_waits_for_keystone_recreated(site, rotate_fernet):
    site_dir, engine = site
    rotate_fernet(site_dir)
    converge_site(site_dir, engine)
    rotate_fernet(site_dir)
    plan = dry_run(site_dir, engine)
    removal = plan.by_id()[f"remove_file:{site_dir.absolute() / 'generated/keystone/fernet-keys.1'}"]
    assert removal.reason == "not a file of keystone any more"
    assert removal.deps == ("wait_healthy:keystone",)


def test_a_rotation_not_yet_deployed_blocks_the_next_one(site, rotate_fernet):
    site_dir, engine = site
    assert rotate_fernet(site_dir).exit_code == 0
    once = keys_file(site_dir).read_bytes()
    proc = rotate_fernet(site_dir)
    assert proc.exit_code == 2
    assert "not deployed yet" in proc.output and "keystone@" in proc.output and "dockyard deploy" in proc.output
    assert keys_file(site_dir).read_bytes() == once
    assert rotate_fernet(site_dir, "--force").exit_code == 0
    assert keys_file(site_dir).read_bytes() != once


def test_rotate_fernet_without_keystone_or_without_keys_exits_2(site, rotate_fernet):
    site_dir, _ = site
    keys_file(site_dir).unlink()
    proc = rotate_fernet(site_dir)
    assert proc.exit_code == 2 and "dockyard genpwd" in proc.output
    set_globals(site_dir, enabled_services=["memcached"])
    proc = rotate_fernet(site_dir)
    assert proc.exit_code == 2 and "keystone is not among the enabled services" in proc.output
    assert not keys_file(site_dir).exists()


def test_max_active_keys_comes_from_keystones_options(site, rotate_fernet):
    site_dir, engine = site
    set_globals(site_dir, services={"keystone": {"max_active_keys": 4, "token_expiration": 7200}})
    converge_site(site_dir, engine)
    conf = (site_dir / "generated/keystone/keystone.conf").read_text()
    assert "max_active_keys = 4" in conf and "expiration = 7200" in conf
    for _ in range(3):
        assert rotate_fernet(site_dir).exit_code == 0
        converge_site(site_dir, engine)
    assert sorted(fernet.load(keys_file(site_dir)).keys) == [0, 2, 3, 4]
    set_globals(site_dir, services={"keystone": {"max_active_keys": 2, "token_expiration": 7200}})
    with pytest.raises(ConfigError) as err:
        api.rotate_fernet(site_dir, engine=engine)
    assert err.value.key == "services.keystone.max_active_keys"


def test_status_says_when_the_keys_last_rotated(site, rotate_fernet, dockyard):
    site_dir, _ = site
    assert api.status_notes(site_dir) == [
        f"keystone fernet keys: never rotated (made {fernet.load(keys_file(site_dir)).created}); 2 keys, "
        f"primary 1 ({keys_file(site_dir)})"]
    rotate_fernet(site_dir)
    (line,) = api.status_notes(site_dir)
    assert line.startswith(f"keystone fernet keys: last rotated {fernet.load(keys_file(site_dir)).rotated}; 3 keys")
    assert not [k for k in all_keys(site_dir) if k in line]
    proc = dockyard("status", "--config-dir", str(site_dir))
    assert proc.exit_code == 0 and "keystone fernet keys: last rotated" in proc.output


def test_every_keystone_host_gets_the_same_keys(tmp_path):
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"h1": {"address": "127.0.0.97", "engine": "unix:///run/a.sock"},
                                 "h2": {"address": "127.0.0.96", "engine": "unix:///run/b.sock"}})
    wanted = api.prepare(config_dir, SiteEngines({"h1": fake_engine(), "h2": fake_engine()})).wanted
    keys = {(f.host, f.path.rsplit("/", 1)[1]): f.content for f in wanted.files
            if f.unit == "keystone" and "/fernet-keys." in f.path}
    repo = fernet.load(keys_file(config_dir))
    for index, key in repo.keys.items():
        assert keys[("h1", f"fernet-keys.{index}")] == keys[("h2", f"fernet-keys.{index}")] == key.encode()
