"""Bad input is exit 2 with the file and key named, and nothing changed: no
container, no volume, no file (not even the state folder or the lock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.deploy import api
from dockyard.deploy.ops.prechecks import FAIL, run_prechecks
from dockyard.deploy.wanted.builder import wanted_state
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.errors import ConfigError

from .deploy_fixtures import acting_calls, fake_engine, quiet, set_globals, site_of


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(site_dir: Path) -> ConfigError:
    """Deploy the site: it must be refused, with nothing done or written."""
    engine = fake_engine()
    before = snapshot(site_dir)
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    assert exc.value.exit_code == 2
    assert not acting_calls(engine)
    assert snapshot(site_dir) == before          # no state/, no lock, no generated/
    return exc.value


def test_an_override_that_is_not_utf8_names_the_file(site_dir):
    path = site_dir / "config" / "nova.conf"
    path.write_bytes(b"[DEFAULT]\ndebug = caf\xe9\n")
    error = refused(site_dir)
    assert error.path == str(path) and "not UTF-8" in str(error)


@pytest.mark.parametrize("key", ["state_dir", "generated_dir"])
def test_a_folder_that_is_a_file_or_under_one(site_dir, key):
    (site_dir / "plain-file").write_text("x\n")
    set_globals(site_dir, **{key: "plain-file"})
    error = refused(site_dir)
    assert error.key == key and error.path == str(site_dir / "globals.yml")
    assert f"{site_dir.absolute() / 'plain-file'} is a file, not a folder" in str(error)
    set_globals(site_dir, **{key: "plain-file/below"})
    error = refused(site_dir)
    assert error.key == key and f"is under {site_dir.absolute() / 'plain-file'}, which is a file" in str(error)


@pytest.mark.parametrize("key", ["state_dir", "generated_dir"])
def test_an_empty_folder_is_refused_not_taken_for_the_config_folder(site_dir, key):
    set_globals(site_dir, **{key: ""})
    error = refused(site_dir)
    assert error.key == key and "must not be empty" in str(error)


@pytest.mark.parametrize("options, key, words", [
    ({"nova": {"wokers": 4}}, "services.nova.wokers", "unknown option (did you mean 'workers'?"),
    ({"nova": {"workers": "many"}}, "services.nova.workers", "must be an integer from 1 to 64, but YAML read text"),
    ({"nova": {"workers": 0}}, "services.nova.workers", "must be an integer from 1 to 64"),
    ({"memcached": {"memory_mb": True}}, "services.memcached.memory_mb", "YAML read true/false"),
    ({"openvswitch": {"datapath": "fast"}}, "services.openvswitch.datapath", "one of auto, system, netdev"),
    ({"neutron-agents": {"external_cidr": "203.0.113.0/33"}}, "services.neutron-agents.external_cidr",
     "an IPv4 network"),
    ({"mariadb": {"buffer_pool": "lots"}}, "services.mariadb.buffer_pool", "matching"),
])
def test_unknown_or_mistyped_service_options(site_dir, options, key, words):
    set_globals(site_dir, services=options)
    error = refused(site_dir)
    assert error.key == key and error.path == str(site_dir / "globals.yml")
    assert words in error.detail, error.detail
    checks = {c.name: c for c in run_prechecks(site_dir, fake_engine())}
    assert checks["configuration"].status == FAIL and key in checks["configuration"].message


def test_templates_read_the_validated_options_with_their_defaults(site_dir):
    set_globals(site_dir, services={"nova": {"workers": 3}})
    site, catalogue = site_of(site_dir)
    files = {Path(f.path).relative_to(site.generated_dir).as_posix(): f.content.decode()
             for f in wanted_state(site, catalogue, fake_engine()).state.files}
    assert "workers = 3" in files["nova_conductor/nova.conf"].splitlines()
    assert "processes = 2" in files["keystone/keystone-uwsgi.ini"].splitlines()          # the default
    assert "innodb_buffer_pool_size = 256M" in files["mariadb/dockyard.cnf"].splitlines()


def test_every_option_a_template_reads_is_declared_with_a_valid_default():
    from dockyard.deploy.wanted.catalogue import OptionDef

    catalogue = load_services()
    assert catalogue.services["nova"].spec.options["workers"].default == 2
    with pytest.raises(ValueError, match="default"):
        OptionDef(type="integer", description="x", default="two")


def test_a_misnamed_override_is_said_to_be_ignored(site_dir):
    (site_dir / "config" / "nova.ini").write_text("[DEFAULT]\ndebug = True\n")
    (site_dir / "config" / "keystone.conf.orig").write_text("[DEFAULT]\ndebug = True\n")
    lines: list[str] = []
    assert api.deploy(site_dir, engine=fake_engine(), say=lines.append).ok
    for name, meant in (("nova.ini", "nova.conf"), ("keystone.conf.orig", "keystone.conf")):
        path = site_dir / "config" / name
        assert f"warning: {path} is ignored: overrides are .conf files (did you mean {meant}?)" in lines


def test_a_dry_run_creates_nothing_on_disk(site_dir):
    before = snapshot(site_dir)
    lines: list[str] = []
    api.deploy(site_dir, engine=fake_engine(), dry_run=True, say=lines.append)
    assert "dry run: nothing done" in lines[-1]
    assert snapshot(site_dir) == before and not (site_dir / "state").exists()
