"""Hash labels are keyed with the site's key: they reveal nothing about the files
(some hold nothing but a password), and a new key is named as the reason of the
recreates it causes."""

from __future__ import annotations

import hashlib
import stat

import pytest
import yaml
from click.testing import CliRunner

from dockyard.cli import _register, cli
from dockyard.deploy import api
from dockyard.deploy.plan.observe import observe
from dockyard.deploy.plan.planner import make_plan
from dockyard.deploy.site.passwords import HASH_KEY_NAME
from dockyard.deploy.wanted.builder import wanted_state
from dockyard.deploy.wanted.hashing import spec_hashes
from dockyard.engine.driver import ContainerSpec
from dockyard.errors import ConfigError
from dockyard.labels import LABEL_HASH, LABEL_HASH_FILE_PREFIX, LABEL_HASH_KEY

from .deploy_fixtures import converge_site, fake_engine, leaks, make_site, quiet, set_password, site_of


def test_a_file_label_is_no_hash_of_the_file_and_depends_on_the_key():
    spec = ContainerSpec(name="x", image="img:1")
    content = b"the-root-password"
    one = spec_hashes(spec, {"/c/root_password": content}, "sha256:1", key=b"key one")
    two = spec_hashes(spec, {"/c/root_password": content}, "sha256:1", key=b"key two")
    label = LABEL_HASH_FILE_PREFIX + "root_password"
    assert one[label] not in hashlib.sha256(content).hexdigest()
    assert one[label] != two[label] and one[LABEL_HASH] != two[LABEL_HASH]
    assert one[LABEL_HASH_KEY] != two[LABEL_HASH_KEY]
    assert spec_hashes(spec, {"/c/root_password": content}, "sha256:1", key=b"key one") == one


def test_genpwd_and_up_make_the_key_and_a_deploy_uses_it(tmp_path):
    site_dir = make_site(tmp_path)                  # genpwd's list: the catalogue's
    site, catalogue = site_of(site_dir)
    key = site.passwords[HASH_KEY_NAME]
    assert len(key) >= 32
    wanted = wanted_state(site, catalogue, fake_engine()).state
    labels = [c.spec.labels for c in wanted.containers]
    assert len({lab[LABEL_HASH_KEY] for lab in labels}) == 1
    assert not leaks(str(labels), [key])


def test_a_new_key_recreates_everything_and_says_why(site_dir):
    engine = converge_site(site_dir)
    set_password(site_dir, HASH_KEY_NAME, "another-key-of-32-characters-xyz")
    site, catalogue = site_of(site_dir)
    wanted = wanted_state(site, catalogue, engine).state
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    recreates = [a for a in plan.actions if a.kind == "recreate"]
    assert {a.target for a in recreates} == {c.name for c in wanted.containers}
    assert all("hashes re-keyed" in a.reason for a in recreates), {a.reason for a in recreates}
    jobs = [a for a in plan.actions if a.kind == "run_job"]
    assert jobs and all("hashes re-keyed" in a.reason for a in jobs), {a.reason for a in jobs}


def test_unkeyed_labels_of_an_older_dockyard_are_named_as_such(site_dir):
    engine = converge_site(site_dir)
    for c in engine.containers():                    # what an older dockyard left
        c.labels.pop(LABEL_HASH_KEY)
        c.labels[LABEL_HASH] = "0123456789abcdef"
    site, catalogue = site_of(site_dir)
    wanted = wanted_state(site, catalogue, engine).state
    plan = make_plan(wanted, observe(engine, wanted, site.state_dir))
    reasons = {a.reason for a in plan.actions if a.kind == "recreate"}
    assert reasons == {"config-hash differs (hashes re-keyed: its labels hold unkeyed hashes (made by an older "
                       "dockyard))"}


def test_a_missing_key_on_a_deployed_site_refuses_and_says_what_genpwd_will_cause(site_dir):
    engine = converge_site(site_dir)
    set_password(site_dir, HASH_KEY_NAME, None)
    engine.calls.clear()
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    assert exc.value.exit_code == 2 and exc.value.key == HASH_KEY_NAME
    assert "genpwd" in str(exc.value) and "re-keyed" in str(exc.value)
    assert not [c for c in engine.calls if c[0] in ("create", "remove", "job", "stop")]


def test_private_records_and_the_compose_export_are_0600(site_dir, tmp_path):
    converge_site(site_dir)
    assert stat.S_IMODE((site_dir / "state" / "jobs.json").stat().st_mode) == 0o600
    out = tmp_path / "compose.yml"
    _register()
    result = CliRunner().invoke(cli, ["export", "compose", "--config-dir", str(site_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    site, _ = site_of(site_dir)
    assert not leaks(out.read_text(), list(site.passwords.values()))


def test_the_genpwd_command_makes_the_key_and_keeps_it(tmp_path):
    from dockyard.cli.passwords import genpwd

    folder = tmp_path / "site"
    assert CliRunner().invoke(genpwd, ["--config-dir", str(folder)]).exit_code == 0
    key = yaml.safe_load((folder / "passwords.yml").read_text())[HASH_KEY_NAME]
    assert len(key) == 32
    assert CliRunner().invoke(genpwd, ["--config-dir", str(folder)]).exit_code == 0
    assert yaml.safe_load((folder / "passwords.yml").read_text())[HASH_KEY_NAME] == key
