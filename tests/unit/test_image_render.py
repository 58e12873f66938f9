"""Rendering: template variables and blocks, package changes, chained overrides,
errors naming the file and line, build contexts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.image.catalogue import load_catalogue
from dockyard.image.config import BuildConfig, ImageCustomisation
from dockyard.image.render import CONTRACT_DIR, ImageContext, Renderer, write_context
from dockyard.errors import ConfigError

from .image_fixtures import copy_catalogue, fixture_catalogue


def render(name: str, config: BuildConfig | None = None, overrides: list[Path] | None = None, catalogue=None) -> str:
    cat = catalogue or fixture_catalogue()
    return Renderer(cat, config or BuildConfig(), overrides).dockerfile(cat.images[name])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_variables_reach_the_template():
    keystone = lines(render("keystone", BuildConfig(tag="t1", registry="127.0.0.1:5000", namespace="ns")))
    assert keystone == ["FROM 127.0.0.1:5000/ns/keystone-base:t1",
                        "RUN apt-get install -y keystone apache2",
                        "RUN dpkg-query -W > /var/lib/dockyard/packages.txt",
                        "ENV DOCKYARD_USER=keystone"]
    # base is built on the imported root filesystem, and creates the service users.
    base = render("base")
    assert lines(base)[0] == "FROM dockyard/rootfs:trixie"
    assert ("RUN useradd --uid 42401 keystone && useradd --uid 42402 glance && useradd --uid 42403 memcache"
            " && useradd --uid 42404 nova && true") in base


def test_users_are_empty_without_users_yml(tmp_path):
    root = copy_catalogue(tmp_path)
    (root / "base/users.yml").unlink()
    assert "RUN true" in render("base", catalogue=load_catalogue(root))


@pytest.mark.parametrize("text, key", [
    ("keystone: forty\n", "keystone"),
    ("keystone: 0\n", "keystone"),
    ("keystone: 5\nglance: 5\n", "glance"),
    ("Bad Name: 5\n", "Bad Name"),
])
def test_bad_users_yml_names_file_and_key(tmp_path, text, key):
    root = copy_catalogue(tmp_path)
    (root / "base/users.yml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        Renderer(load_catalogue(root), BuildConfig())
    assert exc.value.path.endswith("base/users.yml") and exc.value.key == key


def test_packages_append_and_remove():
    config = BuildConfig(images={"keystone": ImageCustomisation(packages_append=["vim-tiny", "keystone"],
                                                                packages_remove=["apache2"])})
    assert "RUN apt-get install -y keystone vim-tiny\n" in render("keystone", config)
    # Other images are untouched.
    assert "RUN apt-get install -y glance-api\n" in render("glance-api", config)


def test_customising_an_unknown_image_is_refused():
    with pytest.raises(ConfigError, match="images.nosuch"):
        Renderer(fixture_catalogue(), BuildConfig(images={"nosuch": ImageCustomisation()}))


# -- overrides -----------------------------------------------------------------------------

@pytest.fixture
def chain(tmp_path):
    first = tmp_path / "first.j2"
    first.write_text("{% extends parent_template %}\n"
                     "{% block footer %}RUN echo site footer{% endblock %}\n"
                     "{% block keystone_install %}{{ super() }}\nRUN echo first{% endblock %}\n")
    second = tmp_path / "second.j2"
    second.write_text("{%- extends parent_template -%}\n"
                      "{% block keystone_install %}{{ super() }}\nRUN echo second{% endblock %}\n"
                      "{% block header %}LABEL site=yes{% endblock %}\n")
    return first, second


def test_two_overrides_chain_each_extending_the_one_before(chain):
    keystone = lines(render("keystone", overrides=list(chain)))
    assert keystone == ["FROM dockyard/keystone-base:2025.1",
                        "LABEL site=yes",                           # second's header
                        "RUN apt-get install -y keystone apache2",  # the catalogue's block, through two super()s
                        "RUN echo first",
                        "RUN echo second",
                        "RUN echo site footer",                     # first's footer, kept by second
                        "RUN dpkg-query -W > /var/lib/dockyard/packages.txt",
                        "ENV DOCKYARD_USER=keystone"]


def test_common_blocks_reach_every_image_and_image_blocks_only_theirs(chain):
    memcached = render("memcached", overrides=list(chain))
    assert "LABEL site=yes" in memcached and "RUN echo site footer" in memcached
    assert "first" not in memcached and "second" not in memcached


def test_the_order_of_overrides_decides_which_wins(tmp_path):
    a = tmp_path / "a.j2"
    a.write_text("{% extends parent_template %}{% block footer %}RUN echo a{% endblock %}")
    b = tmp_path / "b.j2"
    b.write_text("{% extends parent_template %}{% block footer %}RUN echo b{% endblock %}")
    assert "RUN echo b" in render("glance-api", overrides=[a, b])
    assert "RUN echo a" not in render("glance-api", overrides=[a, b])
    assert "RUN echo a" in render("glance-api", overrides=[b, a])


def test_a_block_replaced_without_super_drops_the_catalogue_step(tmp_path):
    override = tmp_path / "o.j2"
    override.write_text("{% extends parent_template %}{% block keystone_install %}RUN true{% endblock %}")
    text = render("keystone", overrides=[override])
    assert "apt-get install" not in text and "RUN true" in text


@pytest.mark.parametrize("text, line, fragment", [
    ("{% extends parent_template %}\n\n{% block footer %}RUN true\n", 3, "endblock"),      # unclosed block
    ("{% extends parent_template %}\n{% block keystone_header %}{{ nope }}{% endblock %}\n", 2,
     "'nope' is undefined"),
    ("{% extends parent_template %}\n{% import 'missing.j2' as m %}\n", 2, "template not found: missing.j2"),
    ("{% extends parent_template %}\n{% block keystone_header %}{{ 1 | nosuchfilter }}{% endblock %}\n", 2,
     "nosuchfilter"),
])
def test_broken_override_names_file_and_line(tmp_path, text, line, fragment):
    good = tmp_path / "good.j2"
    good.write_text("{% extends parent_template %}{% block footer %}RUN true{% endblock %}")
    bad = tmp_path / "bad.j2"
    bad.write_text(text)
    for overrides in ([bad], [bad, good]):  # also when another override comes after it
        with pytest.raises(ConfigError) as exc:
            render("keystone", overrides=overrides)
        assert exc.value.path == str(bad)
        assert f"line {line}:" in str(exc.value) and fragment in str(exc.value)


def test_missing_override_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as exc:
        Renderer(fixture_catalogue(), BuildConfig(), [tmp_path / "nope.j2"])
    assert exc.value.path == str(tmp_path / "nope.j2") and "not found" in str(exc.value)


def test_an_error_in_the_catalogue_template_names_that_template(tmp_path):
    root = copy_catalogue(tmp_path)
    template = root / "glance-api/Dockerfile.j2"
    template.write_text(template.read_text().replace("FROM {{ parent_ref }}", "FROM {{ parent_reference }}"))
    with pytest.raises(ConfigError) as exc:
        render("glance-api", catalogue=load_catalogue(root))
    assert exc.value.path == str(template) and "line 2:" in str(exc.value)


# -- contexts --------------------------------------------------------------------------------

def test_context_files_with_modes_and_the_contract():
    cat = fixture_catalogue()
    renderer = Renderer(cat, BuildConfig())
    base = renderer.context_files(cat.images["base"])
    contract = sorted(p.name for p in CONTRACT_DIR.glob("*.py") if p.name != "__init__.py")
    assert contract and {f"contract/{n}" for n in contract} <= set(base)
    assert all(base[f"contract/{n}"][1] == 0o755 for n in contract)
    assert "contract/__init__.py" not in base  # the package marker is no part of the contract
    assert base["policy-rc.d"][1] == 0o755 and base["users.yml"][1] == 0o644
    assert "image.yml" not in base and "Dockerfile.j2" not in base
    keystone = renderer.context_files(cat.images["keystone"])
    assert set(keystone) == {"dockyard-bootstrap", "conf/keystone.conf"}
    assert keystone["dockyard-bootstrap"] == (b"#!/bin/sh\nkeystone-manage db_sync\n", 0o755)
    # Only images that ask for the contract get it.
    assert not any(k.startswith("contract/") for k in keystone)


def test_write_context_writes_everything_and_replaces_an_old_context(tmp_path):
    ctx = ImageContext("x", "FROM scratch\n", {"bin/run": (b"#!/bin/sh\n", 0o755), "a.conf": (b"a", 0o644)})
    target = tmp_path / "x"
    write_context(ctx, target)
    (target / "stale").write_text("from an earlier render")
    write_context(ctx, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == \
        ["Dockerfile", "a.conf", "bin/run"]
    assert (target / "Dockerfile").read_text() == "FROM scratch\n"
    assert (target / "bin/run").stat().st_mode & 0o777 == 0o755
    assert (target / "a.conf").stat().st_mode & 0o777 == 0o644


def test_write_context_never_replaces_a_folder_that_is_not_a_context(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a build context"):
        write_context(ImageContext("x", "FROM scratch\n", {}), precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_the_real_base_image_lets_dpkg_skip_fsync_while_building():
    cat = load_catalogue()
    renderer = Renderer(cat, BuildConfig())
    dpkg_cfg = renderer.context_files(cat.images["base"])["dpkg.cfg"][0].decode()
    assert "force-unsafe-io" in [line.strip() for line in dpkg_cfg.splitlines()]
    assert "COPY dpkg.cfg /etc/dpkg/dpkg.cfg.d/" in renderer.dockerfile(cat.images["base"])
