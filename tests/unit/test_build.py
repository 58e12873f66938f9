"""The builder with a fake engine: rendering, overrides, tree, hashes, scheduling."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.build.builder import Builder, BuildOptions
from dockyard.build.catalogue import load_catalogue
from dockyard.build.config import BuildConfig, ImageCustomisation, load_build_config
from dockyard.build.packages import diff_tags
from dockyard.build.render import Renderer
from dockyard.build.report import to_json
from dockyard.build.scheduler import Scheduler
from dockyard.engine.fake import FakeEngine
from dockyard.errors import ConfigError

TEMPLATE = """{{% import "macros.j2" as macros %}}
FROM {{{{ parent_ref }}}}
{{% block header %}}{{% endblock %}}
{{% block {block}_install %}}
{{{{ macros.install_packages(packages) }}}}
{{% endblock %}}
{{% block footer %}}{{% endblock %}}
{{{{ macros.finish(user) }}}}
"""
MACROS = """{% macro install_packages(packages) %}RUN install {{ packages | join(' ') }}{% endmacro %}
{% macro finish(user) %}ENV DOCKYARD_USER={{ user }}{% endmacro %}
"""

TREE = {  # name: (parent, profiles, packages)
    "base": (None, ["infra"], ["tini"]),
    "openstack-base": ("base", [], ["python3"]),
    "keystone": ("openstack-base", ["core"], ["keystone"]),
    "glance-api": ("openstack-base", ["core"], ["glance-api"]),
    "memcached": ("base", ["infra"], ["memcached"]),
}


def make_catalogue(root: Path, tree=TREE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "macros.j2").write_text(MACROS)
    for name, (parent, profiles, packages) in tree.items():
        d = root / name
        d.mkdir()
        (d / "image.yml").write_text(json.dumps({"parent": parent, "profiles": profiles, "packages": packages,
                                                 "user": name.split("-")[0]}))
        (d / "Dockerfile.j2").write_text(TEMPLATE.format(block=name.replace("-", "_")))
    (root / "keystone" / "dockyard-bootstrap").write_text("#!/bin/sh\n")
    (root / "keystone" / "dockyard-bootstrap").chmod(0o755)
    return root


@pytest.fixture
def cat(tmp_path):
    return load_catalogue(make_catalogue(tmp_path / "images"))


def fake_run(argv, log):  # stands in for debootstrap
    Path(argv[-2]).mkdir(parents=True, exist_ok=True)


def builder(cat, engine, tmp_path, config=None, **opts):
    return Builder(engine, config or BuildConfig(retries=0), cat,
                   BuildOptions(work_dir=tmp_path / "work", **opts), run=fake_run)


# -- catalogue -----------------------------------------------------------------------

def test_tree_order_and_selection(cat):
    order = cat.topological()
    assert order.index("base") < order.index("openstack-base") < order.index("keystone")
    assert cat.select(["^keystone$"]) == ["base", "openstack-base", "keystone"]
    assert set(cat.select(profiles=["infra"])) == {"base", "memcached"}
    assert set(cat.select(profiles=["all"])) == set(TREE)
    assert cat.descendants("openstack-base") == ["glance-api", "keystone"]


def test_real_catalogue_loads_and_has_the_required_images():
    cat = load_catalogue()
    required = {"mariadb-server", "rabbitmq", "memcached", "toolbox", "keystone", "glance-api", "placement-api",
                "nova-api", "nova-conductor", "nova-scheduler", "nova-novncproxy", "nova-compute", "nova-libvirt",
                "neutron-server", "neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
                "neutron-metadata-agent", "openvswitch-db-server", "openvswitch-vswitchd", "horizon"}
    assert required <= set(cat.images)
    assert cat.ancestors("nova-api") == ["nova-base", "openstack-base", "base"]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: (r / "keystone" / "image.yml").write_text('{"parent": "nope"}'), "unknown parent image 'nope'"),
    (lambda r: (r / "base" / "image.yml").write_text('{"parent": "keystone"}'), "loops back"),
    (lambda r: (r / "keystone" / "Dockerfile.j2").unlink(), "Dockerfile.j2 is missing"),
    (lambda r: (r / "keystone" / "image.yml").write_text('{"colour": 1}'), "colour"),
    (lambda r: (r / "keystone" / "image.yml").write_text('parent: [base\n'), "invalid YAML"),
])
def test_catalogue_errors_name_the_file(tmp_path, mutate, fragment):
    root = make_catalogue(tmp_path / "images")
    mutate(root)
    with pytest.raises(ConfigError) as exc:
        load_catalogue(root)
    assert fragment in str(exc.value)
    assert "image.yml" in str(exc.value)


def test_unknown_pattern_and_profile(cat):
    with pytest.raises(ConfigError, match="no image matches"):
        cat.select(["^nothing$"])
    with pytest.raises(ConfigError, match="unknown profile"):
        cat.select(profiles=["galaxy"])


# -- rendering -----------------------------------------------------------------------

def test_render_packages_append_and_remove(cat):
    config = BuildConfig(images={"keystone": ImageCustomisation(packages_append=["vim"], packages_remove=["keystone"])})
    text = Renderer(cat, config).dockerfile(cat.images["keystone"])
    assert "RUN install vim" in text and "keystone" not in text.split("RUN install")[1].split("\n")[0]
    assert "FROM dockyard/openstack-base:2025.1" in text


def test_override_chain_replaces_blocks_with_super(cat, tmp_path):
    first = tmp_path / "first.j2"
    first.write_text("{% extends parent_template %}{% block footer %}RUN echo first{% endblock %}")
    second = tmp_path / "second.j2"
    second.write_text("{% extends parent_template %}"
                      "{% block keystone_install %}{{ super() }}\nRUN echo extra{% endblock %}")
    text = Renderer(cat, BuildConfig(), [first, second]).dockerfile(cat.images["keystone"])
    assert "RUN echo first" in text
    assert "RUN install keystone" in text  # super() kept the catalogue's install step
    assert text.index("RUN install keystone") < text.index("RUN echo extra")
    other = Renderer(cat, BuildConfig(), [first, second]).dockerfile(cat.images["memcached"])
    assert "RUN echo first" in other and "extra" not in other


def test_broken_override_names_file_and_line(cat, tmp_path):
    bad = tmp_path / "bad.j2"
    bad.write_text("{% extends parent_template %}\n{% block footer %}RUN true\n")
    with pytest.raises(ConfigError) as exc:
        Renderer(cat, BuildConfig(), [bad]).dockerfile(cat.images["keystone"])
    assert str(bad) in str(exc.value) and "line" in str(exc.value)


def test_missing_override_file(cat, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Renderer(cat, BuildConfig(), [tmp_path / "nope.j2"])


def test_hash_changes_only_in_the_changed_subtree(tmp_path):
    root = make_catalogue(tmp_path / "images")
    before = Renderer(load_catalogue(root), BuildConfig()).render_all(list(TREE), "r")
    (root / "openstack-base" / "extra.conf").write_text("x")
    after = Renderer(load_catalogue(root), BuildConfig()).render_all(list(TREE), "r")
    changed = {n for n in TREE if before[n].hash != after[n].hash}
    assert changed == {"openstack-base", "keystone", "glance-api"}


def test_template_only_writes_contexts_with_modes(cat, tmp_path):
    b = builder(cat, None, tmp_path, patterns=["keystone"])
    paths = b.render_to(tmp_path / "out")
    assert [p.name for p in paths] == ["base", "openstack-base", "keystone"]
    assert (tmp_path / "out/keystone/Dockerfile").read_text().startswith("\nFROM") or \
        "FROM dockyard/openstack-base" in (tmp_path / "out/keystone/Dockerfile").read_text()
    assert (tmp_path / "out/keystone/dockyard-bootstrap").stat().st_mode & 0o111


# -- building ------------------------------------------------------------------------

def test_build_all_then_everything_cached(cat, tmp_path):
    engine = FakeEngine()
    report = builder(cat, engine, tmp_path).run()
    assert report.ok and report.counts()["built"] == len(TREE)
    assert engine.image("dockyard/rootfs:trixie") is not None
    assert engine.image("dockyard/keystone:2025.1").labels["dockyard.hash"]
    assert (tmp_path / "work/logs/keystone.log").exists()
    engine.calls.clear()
    again = builder(cat, engine, tmp_path).run()
    assert again.counts()["cached"] == len(TREE)
    assert not [c for c in engine.calls if c[0] in ("build", "import")]


def test_no_cache_and_skip_existing(cat, tmp_path):
    engine = FakeEngine()
    builder(cat, engine, tmp_path).run()
    assert builder(cat, engine, tmp_path, no_cache=True).run().counts()["built"] == len(TREE)
    (cat.root / "keystone" / "new.conf").write_text("changed")
    cat2 = load_catalogue(cat.root)
    assert builder(cat2, engine, tmp_path, skip_existing=True).run().counts()["skipped"] == len(TREE)
    report = builder(cat2, engine, tmp_path).run()
    assert {o.image for o in report.outcomes if o.status == "built"} == {"keystone"}


def test_retry_then_success(cat, tmp_path):
    engine = FakeEngine()
    engine.fail_builds["dockyard/keystone:2025.1"] = 1
    report = builder(cat, engine, tmp_path, config=BuildConfig(retries=1)).run()
    ks = next(o for o in report.outcomes if o.image == "keystone")
    assert ks.status == "built" and ks.attempts == 2


def test_failure_marks_descendants_unbuildable_and_siblings_build(cat, tmp_path):
    engine = FakeEngine()
    engine.fail_builds["dockyard/openstack-base:2025.1"] = -1
    report = builder(cat, engine, tmp_path, config=BuildConfig(retries=1, threads=2)).run()
    status = {o.image: o.status for o in report.outcomes}
    assert status == {"base": "built", "openstack-base": "failed", "keystone": "unbuildable",
                      "glance-api": "unbuildable", "memcached": "built"}
    assert not report.ok
    data = json.loads(to_json(report))
    assert data["counts"]["unbuildable"] == 2 and data["ok"] is False


def test_children_start_only_after_parents_and_siblings_run_in_parallel():
    parents = {"base": None, "a": "base", "b": "base", "c": "a"}
    both_running = threading.Barrier(2, timeout=10)
    order: list[tuple[str, str]] = []
    lock = threading.Lock()

    def build(name: str, attempt: int) -> int:
        with lock:
            order.append(("start", name))
        if name in ("a", "b"):
            both_running.wait()  # deadlocks (times out) unless a and b are in flight together
        with lock:
            order.append(("end", name))
        return 1

    results = Scheduler(parents, build, workers=2).run()
    assert all(o.status == "built" for o in results.values())
    for child, parent in parents.items():
        if parent:
            assert order.index(("end", parent)) < order.index(("start", child))


def test_images_diff(tmp_path):
    engine = FakeEngine()
    for tag, manifest in (("a", "x=1\ny=1\nz=1\n"), ("b", "x=1\ny=2\nw=1\n")):
        engine.add_image(f"dockyard/keystone:{tag}")
        engine.files[(f"dockyard/keystone:{tag}", "/var/lib/dockyard/packages.txt")] = manifest.encode()
    [d] = diff_tags(engine, "dockyard", ["keystone", "glance-api"], "a", "b")
    assert d.added == {"w": "1"} and d.removed == {"z": "1"} and d.changed == {"y": ("1", "2")}


def test_build_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "build.yml"
    path.write_text("threads: lots\n")
    with pytest.raises(ConfigError) as exc:
        load_build_config(path)
    assert "build.yml" in str(exc.value) and "threads" in str(exc.value)
    path.write_text("images:\n  nosuch: {}\n")
    with pytest.raises(ConfigError, match="images.nosuch"):
        load_build_config(path, {"keystone"})


def test_cli_build_json_and_exit_codes(cat, tmp_path, monkeypatch):
    from dockyard.cli import _register, cli
    import dockyard.build.builder as builder_mod
    import dockyard.cli.build as cli_build

    _register()
    engine = FakeEngine()
    monkeypatch.setattr(cli_build, "connect", lambda: engine)
    monkeypatch.setattr(builder_mod, "run_logged", fake_run)
    monkeypatch.setattr(builder_mod.Builder.__init__, "__defaults__", (fake_run,))
    runner = CliRunner()
    args = ["build", "--catalogue", str(cat.root), "--work-dir", str(tmp_path / "w"), "--format", "json"]
    res = runner.invoke(cli, args, standalone_mode=False)
    assert res.exception is None, res.output
    assert res.return_value == 0
    engine.fail_builds["dockyard/memcached:2025.1"] = -1
    res = runner.invoke(cli, args + ["--no-cache", "--retries", "0"], standalone_mode=False)
    assert res.return_value == 1
