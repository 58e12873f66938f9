"""build.yml: defaults, loading, errors that name the file and key, CLI overrides."""

from __future__ import annotations

import os

import pytest

from dockyard.image.config import BuildConfig, default_path, load_build_config
from dockyard.errors import ConfigError


def test_defaults():
    config = BuildConfig()
    assert config.base.model_dump() == {"suite": "trixie", "mirror": "http://deb.debian.org/debian",
                                        "variant": "minbase", "components": ["main"], "script": None,
                                        "apt_options": []}
    assert (config.namespace, config.tag, config.registry, config.retries) == ("dockyard", "2025.1", None, 1)
    assert config.workers == (os.cpu_count() or 1)
    assert config.ref("keystone") == "dockyard/keystone:2025.1"
    assert config.rootfs_ref() == "dockyard/rootfs:trixie"


def test_file_values_and_references(tmp_path):
    path = tmp_path / "build.yml"
    path.write_text('base: {suite: forky, components: [main, contrib]}\nnamespace: site/os\ntag: "2025.1-a"\n'
                    'registry: "127.0.0.1:5000"\nthreads: 3\nretries: 0\n'
                    'images:\n  keystone: {packages_append: [vim-tiny]}\n')
    config = load_build_config(path, {"keystone"})
    assert config.workers == 3 and config.retries == 0
    assert config.base.components == ["main", "contrib"]
    assert config.ref("keystone") == "127.0.0.1:5000/site/os/keystone:2025.1-a"
    assert config.ref("keystone", tag="other") == "127.0.0.1:5000/site/os/keystone:other"
    assert config.rootfs_ref() == "site/os/rootfs:forky"  # local only: never pushed
    assert config.images["keystone"].packages_append == ["vim-tiny"]


@pytest.mark.parametrize("text, key, fragment", [
    ("threads: lots\n", "threads", "integer"),
    ("threads: 0\n", "threads", "greater than or equal to 1"),
    ("colour: red\n", "colour", "unknown key"),
    ("base:\n  suite: 'tri xie'\n", "base.suite", "not a suite"),
    ("base:\n  mirror: deb.debian.org\n", "base.mirror", "URL"),
    ("base:\n  components: []\n", "base.components", "at least 1"),
    ("tag: 2025.1\n", "tag", 'quoted string (tag: "2025.1")'),
    ("tag: 'a tag'\n", "tag", "not a valid image tag"),
    ("namespace: Dockyard\n", "namespace", "not a valid image namespace"),
    ("registry: 'http://r:5000'\n", "registry", "host[:port]"),
    ("images:\n  keystone:\n    packages_append: ['vim; rm -rf /']\n", "images.keystone.packages_append",
     "not a Debian package name"),
    ("images:\n  nosuch: {}\n", "images.nosuch", "unknown image"),
    # '$' before a trailing newline must not let one into a Dockerfile's RUN line.
    ("images:\n  keystone:\n    packages_append: [\"vim\\n\"]\n", "images.keystone.packages_append",
     "not a Debian package name"),
    ("base:\n  suite: \"trixie\\n\"\n", "base.suite", "not a suite"),
    ("base:\n  mirror: \"http://deb.debian.org/debian\\n\"\n", "base.mirror", "URL"),
])
def test_errors_name_file_and_key(tmp_path, text, key, fragment):
    path = tmp_path / "build.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_build_config(path, {"keystone"})
    assert exc.value.path == str(path)
    assert exc.value.key is not None and exc.value.key.startswith(key)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("text, fragment", [
    ("- a\n- list\n", "must be a mapping"),
    ("threads: [1\n", "line 2"),
])
def test_file_shape_errors(tmp_path, text, fragment):
    path = tmp_path / "build.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="build.yml") as exc:
        load_build_config(path)
    assert fragment in str(exc.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_build_config(tmp_path / "nope.yml")


def test_default_file_from_the_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path))
    assert default_path() is None
    assert load_build_config() == BuildConfig()
    (tmp_path / "build.yml").write_text("tag: '2026.1'\n")
    assert default_path() == tmp_path / "build.yml"
    assert load_build_config().tag == "2026.1"


def test_command_line_overrides_win_and_are_validated():
    config = BuildConfig(tag="a", threads=4)
    same = config.override(tag=None, threads=None)
    assert same is config
    changed = config.override(tag="b", retries=3)
    assert (changed.tag, changed.threads, changed.retries) == ("b", 4, 3)
    with pytest.raises(ConfigError) as exc:
        config.override(tag="no good")
    assert exc.value.key == "--tag"
    with pytest.raises(ConfigError) as exc:
        config.override(registry="a b")
    assert exc.value.key == "--registry"
