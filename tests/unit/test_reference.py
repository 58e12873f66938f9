"""Image references: one grammar for the site and the build, one builder."""

from __future__ import annotations

import pytest

from dockyard.deploy.site.loader import Globals
from dockyard.image.config import BuildConfig
from dockyard.reference import check_namespace, check_registry, check_tag, image_ref


def test_image_ref():
    assert image_ref("dockyard", "keystone", "2025.1") == "dockyard/keystone:2025.1"
    assert image_ref("site/os", "nova-api", "a", "192.0.2.1:5000") == "192.0.2.1:5000/site/os/nova-api:a"


@pytest.mark.parametrize("namespace", ["dockyard", "site/os", "a.b", "a_b", "a__b", "a-b", "a--b", "x/y/z9"])
def test_namespaces_the_engines_accept(namespace):
    assert check_namespace(namespace) == namespace


@pytest.mark.parametrize("namespace", ["Dockyard", "a___b", "-a", "a-", "a/", "/a", "a//b", "a b", "a._b",
                                       "dockyard\n", ""])
def test_namespaces_refused(namespace):
    with pytest.raises(ValueError, match="namespace"):
        check_namespace(namespace)


@pytest.mark.parametrize("tag", ["2025.1", "latest", "_x", "A-1.b_c", "t" * 128])
def test_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["a:b", ".x", "-x", "a b", "t" * 129, "2025.1\n", ""])
def test_tags_refused(tag):
    with pytest.raises(ValueError, match="image tag"):
        check_tag(tag)


@pytest.mark.parametrize("registry", [None, "192.0.2.1:5000", "registry.example.com", "localhost:5000", "r"])
def test_registries(registry):
    assert check_registry(registry) == registry


@pytest.mark.parametrize("registry, hint", [("http://r:5000", ""), ("r:5000/path", "belongs in the namespace"),
                                            ("r:port", ""), ("r:5000\n", ""), ("-r", "")])
def test_registries_refused(registry, hint):
    with pytest.raises(ValueError, match="registry host") as exc:
        check_registry(registry)
    assert hint in str(exc.value)


def test_site_and_build_make_the_same_reference():
    # `dockyard up` builds with the site's values: both sides must name the same image.
    site = Globals(image_namespace="a__b/c", image_tag="t1", image_registry="192.0.2.1:5000")
    build = BuildConfig(namespace="a__b/c", tag="t1", registry="192.0.2.1:5000")
    assert site.image_ref("keystone") == build.ref("keystone") == "192.0.2.1:5000/a__b/c/keystone:t1"
    assert BuildConfig(namespace="x").rootfs_ref() == "x/rootfs:" + BuildConfig().base.suite
