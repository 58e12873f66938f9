"""Tree hashes: a change anywhere changes exactly that image and everything built on it."""

from __future__ import annotations

from pathlib import Path

from dockyard.image.catalogue import load_catalogue
from dockyard.image.config import BaseConfig, BuildConfig
from dockyard.image.hashing import image_hash, rootfs_hash, tree_hashes
from dockyard.image.render import ImageContext, Renderer

from .image_fixtures import TREE, copy_catalogue, fixture_catalogue


def hashes(root: Path | None = None, config: BuildConfig | None = None, overrides=None) -> dict[str, str]:
    cat = load_catalogue(root) if root else fixture_catalogue()
    config = config or BuildConfig()
    contexts = Renderer(cat, config, overrides).render_all(list(cat.images))
    return tree_hashes(cat, contexts, rootfs_hash(config.base))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_the_established_hash_format_is_kept():
    # Images already built carry hashes in this format: if it changed, every one
    # of them would be rebuilt from debootstrap. These values must never change.
    assert rootfs_hash(BaseConfig()) == "62e6319d975ca0dc0b3940a3e5c53318058778a8fc5b53267181ab0499e27714"
    context = ImageContext("x", "FROM dockyard/base:2025.1\n", {"run.sh": (b"#!/bin/sh\n", 0o755)})
    assert image_hash(context, "0" * 64) == "a4163d7797fd4641fb19f5d8d1a908246d8a3751995b37908982c8c33598f950"


def test_hashes_are_stable_and_distinct():
    first, second = hashes(), hashes()
    assert first == second
    assert set(first) == set(TREE)
    assert len(set(first.values())) == len(TREE)


def test_a_file_changed_in_a_parent_changes_its_subtree_and_nothing_else(tmp_path):
    root = copy_catalogue(tmp_path)
    before = hashes(root)
    (root / "openstack-base/extra.conf").write_text("new file")
    after = hashes(root)
    assert changed(before, after) == {"openstack-base", "glance-api", "keystone-base", "keystone", "nova-compute"}


def test_a_changed_leaf_changes_only_itself(tmp_path):
    root = copy_catalogue(tmp_path)
    before = hashes(root)
    (root / "keystone/conf/keystone.conf").write_text("[DEFAULT]\ndebug = true\n")
    assert changed(before, hashes(root)) == {"keystone"}


def test_a_mode_change_counts(tmp_path):
    root = copy_catalogue(tmp_path)
    before = hashes(root)
    (root / "keystone/conf/keystone.conf").chmod(0o755)
    assert changed(before, hashes(root)) == {"keystone"}


def test_packages_for_one_image_change_its_subtree(tmp_path):
    before = hashes()
    after = hashes(config=BuildConfig.model_validate({"images": {"keystone-base": {"packages_append": ["vim"]}}}))
    assert changed(before, after) == {"keystone-base", "keystone"}


def test_rootfs_inputs_change_every_hash():
    before = hashes()
    after = hashes(config=BuildConfig(base=BaseConfig(mirror="http://127.0.0.1/debian")))
    assert changed(before, after) == set(TREE)


def test_an_override_of_a_common_block_changes_everything_of_an_image_block_one_subtree(tmp_path):
    footer = tmp_path / "footer.j2"
    footer.write_text("{% extends parent_template %}{% block footer %}RUN echo hi{% endblock %}")
    install = tmp_path / "install.j2"
    install.write_text("{% extends parent_template %}{% block keystone_base_install %}RUN true{% endblock %}")
    before = hashes()
    assert changed(before, hashes(overrides=[footer])) == set(TREE)
    assert changed(before, hashes(overrides=[install])) == {"keystone-base", "keystone"}


def test_rootfs_hash_covers_each_input():
    base = BaseConfig()
    variants = [base, base.model_copy(update={"suite": "forky"}), base.model_copy(update={"variant": "buildd"}),
                base.model_copy(update={"mirror": "http://127.0.0.1/d"}),
                base.model_copy(update={"components": ["main", "contrib"]})]
    assert len({rootfs_hash(b) for b in variants}) == len(variants)


def test_moving_bytes_between_fields_changes_the_hash():
    # A file enters as name, mode and the digest of its bytes: moving bytes
    # between a name and its content, or between two files, cannot collide.
    contexts = [
        ImageContext("x", "FROM p\n", {"ab": (b"c", 0o644)}),
        ImageContext("x", "FROM p\n", {"a": (b"bc", 0o644)}),
        ImageContext("x", "FROM p\n", {"a": (b"b", 0o644), "c": (b"", 0o644)}),
        ImageContext("x", "FROM p\n", {"a": (b"", 0o644), "bc": (b"", 0o644)}),
        ImageContext("x", "FROM p\n", {"ab": (b"c", 0o755)}),
        ImageContext("x", "FROM p\nRUN true\n", {"ab": (b"c", 0o644)}),
        ImageContext("x", "FROM p\n", {}),
    ]
    assert len({image_hash(c, "parent") for c in contexts}) == len(contexts)
    assert image_hash(contexts[0], "parent") != image_hash(contexts[0], "parent2")
