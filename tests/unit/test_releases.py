"""Releases as data (images/releases.yml), what `dockyard build --release` makes
of them, the services' upgrade blocks, and globals.yml's release keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cli.build import held_back, release_config
from dockyard.deploy.site.loader import load_globals
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.errors import ConfigError
from dockyard.image.builder import Builder, BuildOptions
from dockyard.image.catalogue import load_catalogue
from dockyard.image.config import BuildConfig
from dockyard.image.hashing import rootfs_hash
from dockyard.image.rootfs import debootstrap_argv
from dockyard.releases import load_releases

from .deploy_fixtures import edit_service

CATALOGUE = load_catalogue()
SERVICES = set(load_services().services)


def test_the_releases_file_loads():
    releases = load_releases()
    assert releases.current == "2025.1" and releases.names == ["2025.1", "2026.1"]
    forky = releases.by_name["2026.1"]
    assert (forky.suite, forky.debootstrap_script, forky.tag) == ("forky", "sid", "2026.1")
    assert forky.apt_options == ["Acquire::Check-Valid-Until=false"]
    assert forky.upgrade_from == ["2025.1"] and forky.services == {"glance": "2025.1"}
    assert releases.service_release("2026.1", "glance") == "2025.1"
    assert releases.service_release("2026.1", "nova") == "2026.1"
    assert set(releases.upgrade_order) <= SERVICES
    # The guest image is no release's: built from 2025.1 whatever release a site runs.
    assert releases.pinned_images == {"guest-image": "2025.1"} and set(releases.pinned_images) <= set(CATALOGUE.images)
    assert releases.image_release("guest-image", "2026.1") == "2025.1"
    assert releases.image_release("keystone", "2026.1") == "2026.1"


@pytest.mark.parametrize("text, words", [
    ('current: "2025.1"\nreleases: [{name: 2025.1, suite: trixie, tag: "2025.1"}]', ["releases[0].name", "quoted"]),
    ('current: "2025.1"\nreleases: [{name: "2025.1", suite: trixie, tag: "2025.1", upgrade_from: ["2026.1"]}]',
     ["upgrade_from", "not a release listed before"]),
    ('current: "2025.1"\nreleases: [{name: "2025.1", suite: trixie, tag: "2025.1", apt_options: ["x y"]}]',
     ["apt_options", "NAME=VALUE"]),
    ('current: "2024.1"\nreleases: [{name: "2025.1", suite: trixie, tag: "2025.1"}]', ["current", "2024.1"]),
    ('current: "2025.1"\nreleases: [{name: "2025.1", suite: trixie, tag: "2025.1", sutie: x}]', ["sutie"]),
    ('current: "2025.1"\npinned_images: {guest-image: "2024.1"}\nreleases: [{name: "2025.1", suite: trixie, '
     'tag: "2025.1"}]', ["pinned_images.guest-image", "2024.1"]),
    ('current: "2025.1"\npinned_images: {guest-image: 2025.1}\nreleases: [{name: "2025.1", suite: trixie, '
     'tag: "2025.1"}]', ["pinned_images", "quoted"]),
])
def test_a_bad_releases_file_names_the_file_and_key(tmp_path, text, words):
    path = tmp_path / "releases.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_releases(path)
    assert str(path) in str(exc.value)
    for word in words:
        assert word in str(exc.value)


def test_a_release_build_uses_its_suite_script_apt_options_and_tag():
    config = release_config(BuildConfig(), load_releases().get("2026.1"))
    assert config.tag == "2026.1" and config.rootfs_ref() == "dockyard/rootfs:forky"
    assert debootstrap_argv(config, Path("/t"))[-2:] == ["http://deb.debian.org/debian",
                                                          "/usr/share/debootstrap/scripts/sid"]
    base = Builder(None, config, CATALOGUE, BuildOptions(patterns=["^base$"])).contexts["base"].dockerfile
    assert "FROM dockyard/rootfs:forky" in base
    assert """'Acquire::Check-Valid-Until "false";' > /etc/apt/apt.conf.d/91dockyard-release""" in base


def test_the_default_release_builds_what_it_built_before():
    config = release_config(BuildConfig(), load_releases().get("2025.1"))
    assert config == BuildConfig().override(base={**BuildConfig().base.model_dump(), "script": None})
    assert rootfs_hash(config.base) == rootfs_hash(BuildConfig().base)
    assert debootstrap_argv(config, Path("/t"))[-1] == "http://deb.debian.org/debian"
    builder = Builder(None, config, CATALOGUE, BuildOptions(patterns=["^base$"]))
    assert "91dockyard-release" not in builder.contexts["base"].dockerfile
    assert builder.hashes == Builder(None, BuildConfig(), CATALOGUE, BuildOptions(patterns=["^base$"])).hashes


def test_a_release_leaves_out_the_images_only_held_back_services_use():
    held = held_back(CATALOGUE, load_releases().get("2026.1"))
    assert held == {"glance-api", "glance-base", "guest-image"}
    assert held_back(CATALOGUE, load_releases().get("2025.1")) == set()
    builder = Builder(None, BuildConfig(), CATALOGUE, BuildOptions(patterns=["glance", "^keystone$"], exclude=held))
    assert "glance-api" not in builder.selected and "keystone" in builder.selected


def test_a_release_build_leaves_the_guest_image_out(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dockyard.cli import cli

    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path / "etc"))      # no build.yml of this machine
    args = ["--template-only", "--work-dir", str(tmp_path / "out"), "^guest-image$"]
    current = CliRunner().invoke(cli, ["build", *args], standalone_mode=False)
    assert current.exception is None and "guest-image" in current.output
    forky = CliRunner().invoke(cli, ["build", "--release", "2026.1", *args], standalone_mode=False)
    assert forky.exception is None and "guest-image" not in forky.output and "base" in forky.output


# -- globals.yml ---------------------------------------------------------------------

def write_globals(tmp_path: Path, text: str) -> Path:
    (tmp_path / "globals.yml").write_text(text)
    return tmp_path


def test_nothing_set_is_2025_1_everywhere(tmp_path):
    g = load_globals(write_globals(tmp_path, ""), SERVICES)
    assert (g.site_release, g.image_tag, g.service_tag("nova"), g.service_tag("glance")) == \
        ("2025.1", "2025.1", "2025.1", "2025.1")


def test_a_release_sets_each_services_tag(tmp_path):
    g = load_globals(write_globals(tmp_path, 'image_tag: "2025.1"\nrelease: "2026.1"\n'), SERVICES)
    assert (g.image_tag, g.service_tag("nova"), g.service_tag("glance")) == ("2026.1", "2026.1", "2025.1")
    g = load_globals(write_globals(tmp_path, 'image_tag: "2026.1-site"\nrelease: "2026.1"\n'
                                             'service_releases: {horizon: "2025.1"}\n'), SERVICES)
    assert (g.service_tag("nova"), g.service_tag("horizon"), g.service_release("horizon")) == \
        ("2026.1-site", "2025.1", "2025.1")


@pytest.mark.parametrize("text, key", [
    ('release: "2030.1"\n', "release"),
    ("release: 2026.1\n", "release"),
    ('service_releases: {glance: "1999.1"}\n', "service_releases"),
    ('service_releases: {glanse: "2025.1"}\n', "service_releases.glanse"),
])
def test_bad_release_keys_name_the_file_and_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as exc:
        load_globals(write_globals(tmp_path, text), SERVICES)
    assert f"globals.yml: {key}" in str(exc.value)


# -- the services' upgrade blocks ----------------------------------------------------------

def test_the_catalogue_upgrade_steps():
    services = load_services().services
    steps = {name: [s for s, _ in svc.spec.upgrade.steps()] for name, svc in services.items() if svc.spec.upgrade}
    assert steps["keystone"] == ["check", "expand", "migrate", "contract"]
    assert steps["nova"] == ["check", "expand", "migrate", "online_migrations"]
    assert steps["neutron"] == ["expand", "contract"]
    assert steps["rabbitmq"] == ["prepare"] and steps["mariadb"] == ["post"]
    assert services["nova"].spec.upgrade.contract_after == ["nova-compute"]
    assert services["keystone"].upgrade_unit("expand") == "keystone_upgrade_expand"


@pytest.mark.parametrize("change, key, words", [
    (lambda u: u.update(config=["nope.conf"]), "upgrade.config", ["unknown config file 'nope.conf'"]),
    (lambda u: u.update(contract_after=["horizon"]), "upgrade.contract_after[0]", ["does not depend on"]),
    (lambda u: u.update(contract_after=["nova-computer"]), "upgrade.contract_after[0]", ["unknown service"]),
    (lambda u: u.update(contrat="x"), "upgrade.contrat", ["contrat"]),
    (lambda u: u.update(environment={"X": "{{ passwords.nova_database_password }}"}), "upgrade.environment.X",
     ["secrets never go in the environment"]),
])
def test_a_bad_upgrade_block_names_the_file_and_key(services, change, key, words):
    edit_service(services, "nova", lambda d: change(d["upgrade"]))
    with pytest.raises(ConfigError) as exc:
        load_services(services)
    assert exc.value.path.endswith("nova.yml") and key in str(exc.value)
    for word in words:
        assert word in str(exc.value)
