"""The image catalogue: discovery, the tree, validation errors, selection."""

from __future__ import annotations

import pytest

from dockyard.image.catalogue import load_catalogue
from dockyard.errors import ConfigError

from .image_fixtures import TREE, copy_catalogue, fixture_catalogue


def test_discovers_the_tree():
    cat = fixture_catalogue()
    assert {name: img.parent for name, img in cat.images.items()} == TREE
    assert cat.roots() == ["base"]
    assert cat.children["openstack-base"] == ["glance-api", "keystone-base", "nova-compute"]
    assert cat.ancestors("keystone") == ["keystone-base", "openstack-base", "base"]
    assert cat.ancestors("base") == []
    assert cat.descendants("openstack-base") == ["glance-api", "keystone", "keystone-base", "nova-compute"]
    assert cat.leaves() == ["glance-api", "keystone", "memcached", "nova-compute"]
    assert cat.images["base"].meta.contract is True
    assert cat.images["keystone"].meta.user == "keystone"


def test_topological_order_puts_every_parent_first():
    cat = fixture_catalogue()
    order = cat.topological()
    assert sorted(order) == sorted(TREE)
    for name, parent in TREE.items():
        if parent:
            assert order.index(parent) < order.index(name)
    assert cat.topological({"keystone", "base"}) == ["base", "keystone"]


@pytest.mark.parametrize("patterns, profiles, expected", [
    (["^keystone$"], [], ["base", "openstack-base", "keystone-base", "keystone"]),
    (["keystone"], [], ["base", "openstack-base", "keystone-base", "keystone"]),   # searched, not anchored
    (["^memcached$", "glance"], [], ["base", "memcached", "openstack-base", "glance-api"]),
    ([], ["infra"], ["base", "memcached"]),
    ([], ["compute"], ["base", "openstack-base", "nova-compute"]),
    ([], ["core"], ["base", "openstack-base", "glance-api", "keystone-base", "keystone"]),
    (["^memcached$"], ["compute"], ["base", "memcached", "openstack-base", "nova-compute"]),
])
def test_selection_adds_parents_in_build_order(patterns, profiles, expected):
    assert fixture_catalogue().select(patterns, profiles) == expected


def test_everything_by_default_and_by_profile_all():
    cat = fixture_catalogue()
    assert cat.select() == cat.topological()
    assert cat.select(profiles=["all"]) == cat.topological()
    assert cat.profiles() == ["all", "compute", "core", "infra"]


@pytest.mark.parametrize("patterns, profiles, fragment, key", [
    (["^nothing$"], [], "no image matches '^nothing$'", "IMAGE-REGEX"),
    (["nova-("], [], "invalid regular expression", "IMAGE-REGEX"),
    ([], ["galaxy"], "unknown profile 'galaxy' (known: all, compute, core, infra)", "--profile"),
])
def test_selection_errors(patterns, profiles, fragment, key):
    with pytest.raises(ConfigError) as exc:
        fixture_catalogue().select(patterns, profiles)
    assert fragment in str(exc.value) and exc.value.key == key


def _write(path, text):
    path.write_text(text)


@pytest.mark.parametrize("mutate, file, fragment", [
    (lambda r: _write(r / "keystone/image.yml", "parent: nope\n"), "keystone/image.yml",
     "parent: unknown parent image 'nope'"),
    (lambda r: _write(r / "base/image.yml", "parent: keystone\n"), "image.yml",
     "parent chain loops: "),
    (lambda r: (r / "keystone/Dockerfile.j2").unlink(), "keystone/image.yml", "Dockerfile.j2 is missing"),
    (lambda r: _write(r / "keystone/image.yml", "parent: keystone-base\ncolour: blue\n"), "keystone/image.yml",
     "colour: unknown key"),
    (lambda r: _write(r / "keystone/image.yml", "parent: [keystone-base\n"), "keystone/image.yml",
     "invalid YAML"),
    (lambda r: _write(r / "keystone/image.yml", "- parent\n"), "keystone/image.yml", "must be a mapping"),
    (lambda r: _write(r / "keystone/image.yml", "parent: keystone-base\npackages: ['a;b']\n"),
     "keystone/image.yml", "packages: 'a;b' is not a Debian package name"),
    (lambda r: _write(r / "keystone/image.yml", "parent: keystone-base\nprofiles: [Core]\n"),
     "keystone/image.yml", "profiles: 'Core' is not a profile name"),
    (lambda r: (r / "keystone").rename(r / "Keystone"), "Keystone", "not a valid image name"),
    (lambda r: (r / "keystone").rename(r / "rootfs"), "rootfs", "reserved"),
])
def test_catalogue_errors_name_the_file(tmp_path, mutate, file, fragment):
    root = copy_catalogue(tmp_path)
    mutate(root)
    with pytest.raises(ConfigError) as exc:
        load_catalogue(root)
    assert exc.value.path.endswith(file)
    assert fragment in str(exc.value)


def test_a_loop_is_shown(tmp_path):
    root = copy_catalogue(tmp_path)
    _write(root / "base/image.yml", "parent: keystone\n")
    with pytest.raises(ConfigError) as exc:
        load_catalogue(root)
    assert "base -> keystone -> keystone-base -> openstack-base -> base" in str(exc.value)


def test_missing_or_empty_catalogue(tmp_path):
    with pytest.raises(ConfigError, match="catalogue folder not found"):
        load_catalogue(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images here"):
        load_catalogue(tmp_path / "empty")
