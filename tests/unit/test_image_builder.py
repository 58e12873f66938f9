"""The builder with a FakeEngine: plan, cache, rootfs, order, retries, failures,
push, logs, labels, --template-only."""

from __future__ import annotations

import threading

import pytest

from dockyard.image.builder import BuildOptions, Builder
from dockyard.image.report import to_json
from dockyard.image.catalogue import load_catalogue
from dockyard.image.config import BuildConfig
from dockyard.labels import LABEL_IMAGE_HASH
from dockyard.image.hashing import rootfs_hash
from dockyard.image.rootfs import check_host, run_command
from dockyard.errors import ConfigError, DockyardError, EngineError

from .image_fixtures import (
    TREE,
    FakeRunner,
    RecordingEngine,
    add_current_rootfs,
    built_names,
    copy_catalogue,
    fixture_catalogue,
    make_builder,
)


def statuses(report) -> dict[str, str]:
    return {o.image: o.status for o in report.outcomes}


# -- a first build -----------------------------------------------------------------------------

def test_first_build_makes_the_rootfs_then_every_image_parents_first(tmp_path):
    engine, run = RecordingEngine(), FakeRunner()
    report = make_builder(engine, tmp_path, run=run).run()
    assert report.ok and report.exit_code == 0
    assert statuses(report) == {name: "built" for name in TREE}
    # debootstrap, then tar, then the import; then the images.
    assert run.programs() == ["debootstrap", "tar"]
    debootstrap, tar = run.calls
    assert debootstrap[:4] == ["debootstrap", "--variant=minbase", "--components=main", "trixie"]
    assert debootstrap[-1] == "http://deb.debian.org/debian"
    assert {"--numeric-owner", "--xattrs", "--acls"} <= set(tar)
    assert engine.calls[0] == ("import", "dockyard/rootfs:trixie")
    assert report.rootfs.status == "built" and report.rootfs_built
    rootfs = engine.image("dockyard/rootfs:trixie")
    assert rootfs.labels[LABEL_IMAGE_HASH] == rootfs_hash(BuildConfig().base)
    for child, parent in TREE.items():
        if parent:
            assert engine.timeline.index(("end", parent)) < engine.timeline.index(("start", child))
    # The scratch folder of debootstrap is gone.
    assert not list((tmp_path / "work").glob("rootfs-*"))


def test_labels_logs_and_contexts(tmp_path):
    engine = RecordingEngine()
    builder = make_builder(engine, tmp_path)
    builder.run()
    info = engine.image("dockyard/keystone:2025.1")
    assert set(info.labels) == {"dockyard.version", LABEL_IMAGE_HASH, "dockyard.image", "dockyard.build-time",
                                "dockyard.own-hash"}
    assert info.labels[LABEL_IMAGE_HASH] == builder.hashes["keystone"]
    assert info.labels["dockyard.image"] == "keystone"
    assert info.labels["dockyard.build-time"].endswith("+00:00")
    log = (tmp_path / "work/logs/keystone.log").read_text()
    assert "attempt 1" in log and "fake build of dockyard/keystone:2025.1" in log  # the engine's output lines
    assert "$ debootstrap" in (tmp_path / "work/logs/rootfs.log").read_text()
    context = tmp_path / "work/contexts/keystone"
    assert (context / "Dockerfile").read_text().startswith("\nFROM dockyard/keystone-base:2025.1")
    assert (context / "dockyard-bootstrap").stat().st_mode & 0o111


def test_logs_dir_option(tmp_path):
    make_builder(RecordingEngine(), tmp_path, logs_dir=tmp_path / "elsewhere").run()
    assert sorted(p.stem for p in (tmp_path / "elsewhere").glob("*.log")) == sorted([*TREE, "rootfs"])


def test_independent_images_build_in_parallel(tmp_path):
    engine = RecordingEngine()
    engine.together = {"glance-api", "keystone-base"}
    engine.barrier = threading.Barrier(2, timeout=10)
    add_current_rootfs(engine)
    report = make_builder(engine, tmp_path, config=BuildConfig(threads=2, retries=0)).run()
    assert report.ok, report.outcomes


# -- the cache ---------------------------------------------------------------------------------

def test_second_run_is_all_cached_without_any_build(tmp_path):
    engine = RecordingEngine()
    make_builder(engine, tmp_path).run()
    engine.calls.clear()
    run = FakeRunner()
    report = make_builder(engine, tmp_path, run=run).run()
    assert statuses(report) == {name: "cached" for name in TREE}
    assert report.ok and report.rootfs is None  # not needed: no root image was built
    assert not [c for c in engine.calls if c[0] in ("build", "import", "push")]
    assert run.calls == []
    assert all(o.size == 1000 for o in report.outcomes)


def test_a_change_rebuilds_exactly_its_subtree(tmp_path):
    root = copy_catalogue(tmp_path)
    engine = RecordingEngine()
    make_builder(engine, tmp_path, catalogue=load_catalogue(root)).run()
    (root / "keystone-base/keystone-base.conf").write_text("changed")
    engine.calls.clear()
    report = make_builder(engine, tmp_path, catalogue=load_catalogue(root)).run()
    assert {n for n, s in statuses(report).items() if s == "built"} == {"keystone-base", "keystone"}
    assert sorted(built_names(engine)) == ["keystone", "keystone-base"]


def test_the_rootfs_is_reused_when_current(tmp_path):
    engine, run = RecordingEngine(), FakeRunner()
    add_current_rootfs(engine)
    report = make_builder(engine, tmp_path, run=run).run()
    assert run.calls == [] and report.rootfs.status == "cached"
    assert not [c for c in engine.calls if c[0] == "import"]


def test_a_rootfs_with_other_inputs_is_made_again(tmp_path):
    engine, run = RecordingEngine(), FakeRunner()
    add_current_rootfs(engine)
    config = BuildConfig.model_validate({"base": {"mirror": "http://127.0.0.1/debian"}, "retries": 0})
    report = make_builder(engine, tmp_path, run=run, config=config).run()
    assert run.programs() == ["debootstrap", "tar"] and report.rootfs.status == "built"
    assert run.calls[0][-1] == "http://127.0.0.1/debian"


def test_skip_existing_keeps_tags_whatever_their_hash(tmp_path):
    root = copy_catalogue(tmp_path)
    engine = RecordingEngine()
    make_builder(engine, tmp_path, catalogue=load_catalogue(root)).run()
    (root / "openstack-base/new.conf").write_text("changed")
    engine.calls.clear()
    report = make_builder(engine, tmp_path, catalogue=load_catalogue(root), skip_existing=True).run()
    expected = {name: "cached" for name in TREE}
    expected.update({n: "skipped" for n in ("openstack-base", "glance-api", "keystone-base", "keystone",
                                            "nova-compute")})
    assert statuses(report) == expected and report.ok
    assert built_names(engine) == []


def test_skip_existing_still_builds_what_is_missing(tmp_path):
    engine = RecordingEngine()
    add_current_rootfs(engine)
    for name in ("base", "openstack-base"):
        engine.add_image(f"dockyard/{name}:2025.1", {LABEL_IMAGE_HASH: "old"})
    report = make_builder(engine, tmp_path, skip_existing=True, patterns=["^glance-api$"]).run()
    assert statuses(report) == {"base": "skipped", "openstack-base": "skipped", "glance-api": "built"}


def test_no_cache_rebuilds_everything_without_the_layer_cache(tmp_path):
    engine = RecordingEngine()
    make_builder(engine, tmp_path).run()
    engine.calls.clear()
    run = FakeRunner()
    report = make_builder(engine, tmp_path, run=run, no_cache=True).run()
    assert statuses(report) == {name: "built" for name in TREE}
    assert engine.nocache_flags == {name: True for name in TREE}
    assert run.calls == [] and report.rootfs.status == "cached"  # --no-cache leaves the rootfs alone


def test_rebuild_rootfs_makes_it_again_and_rebuilds_on_it(tmp_path):
    engine = RecordingEngine()
    make_builder(engine, tmp_path).run()
    run = FakeRunner()
    report = make_builder(engine, tmp_path, run=run, rebuild_rootfs=True, patterns=["^memcached$"]).run()
    assert run.programs() == ["debootstrap", "tar"] and report.rootfs.status == "built"
    assert statuses(report) == {"base": "built", "memcached": "built"}


# -- failures ----------------------------------------------------------------------------------

def test_retry_then_built_with_both_attempts_logged(tmp_path):
    engine = RecordingEngine()
    engine.fail_builds["dockyard/keystone:2025.1"] = 1
    report = make_builder(engine, tmp_path, config=BuildConfig(retries=1, threads=2)).run()
    keystone = next(o for o in report.outcomes if o.image == "keystone")
    assert (keystone.status, keystone.attempts) == ("built", 2) and report.ok
    log = (tmp_path / "work/logs/keystone.log").read_text()
    assert "attempt 1 failed: build of dockyard/keystone:2025.1 failed: injected failure" in log
    assert "attempt 2" in log


def test_failure_makes_descendants_unbuildable_and_siblings_build(tmp_path):
    engine = RecordingEngine()
    engine.fail_builds["dockyard/openstack-base:2025.1"] = -1
    report = make_builder(engine, tmp_path, config=BuildConfig(retries=1, threads=2)).run()
    assert statuses(report) == {"base": "built", "memcached": "built", "openstack-base": "failed",
                                "glance-api": "unbuildable", "keystone-base": "unbuildable",
                                "keystone": "unbuildable", "nova-compute": "unbuildable"}
    assert not report.ok and report.exit_code == 1
    assert built_names(engine).count("openstack-base") == 2
    assert not {"glance-api", "keystone-base", "keystone", "nova-compute"} & set(built_names(engine))


def test_a_failed_rootfs_leaves_every_image_unbuildable(tmp_path):
    engine, run = RecordingEngine(), FakeRunner(fail={"debootstrap"})
    report = make_builder(engine, tmp_path, run=run, config=BuildConfig(retries=1)).run()
    assert report.rootfs.status == "failed" and report.rootfs.attempts == 2
    assert "debootstrap exited 1" in report.rootfs.error
    assert set(statuses(report).values()) == {"unbuildable"} and report.exit_code == 1
    assert built_names(engine) == []


def test_missing_debootstrap_is_explained_before_anything_is_built(tmp_path, monkeypatch):
    engine = RecordingEngine()
    builder = Builder(engine, BuildConfig(), fixture_catalogue(), BuildOptions(work_dir=tmp_path))  # real runner
    monkeypatch.setattr("dockyard.image.rootfs.shutil.which", lambda program: None)
    with pytest.raises(DockyardError, match="debootstrap is not installed.*apt-get install debootstrap"):
        builder.run()
    assert built_names(engine) == [] and not [c for c in engine.calls if c[0] == "import"]


def test_not_being_root_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr("dockyard.image.rootfs.shutil.which", lambda program: f"/usr/bin/{program}")
    monkeypatch.setattr("dockyard.image.rootfs.os.geteuid", lambda: 1000)
    with pytest.raises(DockyardError, match="needs root"):
        check_host()


def test_run_command_logs_output_and_names_the_log_on_failure(tmp_path):
    log = tmp_path / "rootfs.log"
    run_command(["sh", "-c", "echo made it"], log)
    assert log.read_text() == "$ sh -c echo made it\nmade it\n"
    with pytest.raises(DockyardError, match=f"sh exited 3; see {log}"):
        run_command(["sh", "-c", "exit 3"], log)
    with pytest.raises(DockyardError, match="no-such-program is not installed"):
        run_command(["no-such-program"], log)


# -- push and references -------------------------------------------------------------------------

def test_push_after_each_build_and_registry_refs(tmp_path):
    engine = RecordingEngine()
    config = BuildConfig(registry="127.0.0.1:5000", retries=0, threads=2)
    report = make_builder(engine, tmp_path, config=config, push=True, patterns=["^memcached$"]).run()
    assert report.ok
    refs = ["127.0.0.1:5000/dockyard/base:2025.1", "127.0.0.1:5000/dockyard/memcached:2025.1"]
    assert [c for c in engine.calls if c[0] in ("build", "push")] == [
        ("build", refs[0]), ("push", refs[0]), ("build", refs[1]), ("push", refs[1])]
    assert engine.calls[0] == ("import", "dockyard/rootfs:trixie")  # the rootfs stays local
    # Cached images are pushed too: the registry may have lost them.
    engine.calls.clear()
    again = make_builder(engine, tmp_path, config=config, push=True, patterns=["^memcached$"]).run()
    assert statuses(again) == {"base": "cached", "memcached": "cached"}
    assert [c for c in engine.calls if c[0] == "push"] == [("push", refs[0]), ("push", refs[1])]


def test_a_failing_push_fails_the_image(tmp_path):
    class NoRegistry(RecordingEngine):
        def push(self, ref, log=None):
            raise EngineError(f"push of {ref} failed: connection refused")

    engine = NoRegistry()
    add_current_rootfs(engine)
    report = make_builder(engine, tmp_path, push=True, patterns=["^base$"]).run()
    assert statuses(report) == {"base": "failed"} and "connection refused" in report.outcomes[0].error


# -- without an engine ---------------------------------------------------------------------------

def test_template_only_writes_the_selection_and_needs_no_engine(tmp_path):
    builder = make_builder(None, tmp_path, patterns=["^keystone$"])
    paths = builder.render_to(tmp_path / "out")
    assert [p.name for p in paths] == ["base", "openstack-base", "keystone-base", "keystone"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["base", "keystone", "keystone-base",
                                                                    "openstack-base"]
    keystone = tmp_path / "out/keystone"
    assert sorted(p.relative_to(keystone).as_posix() for p in keystone.rglob("*") if p.is_file()) == \
        ["Dockerfile", "conf/keystone.conf", "dockyard-bootstrap"]
    assert "RUN apt-get install -y keystone apache2" in (keystone / "Dockerfile").read_text()
    assert (tmp_path / "out/base/contract/dockyard_start.py").exists()


def test_invalid_input_is_refused_before_the_engine_is_asked_anything(tmp_path):
    engine = RecordingEngine()
    bad = tmp_path / "bad.j2"
    bad.write_text("{% extends parent_template %}{% block footer %}")
    with pytest.raises(ConfigError, match="bad.j2"):
        Builder(engine, BuildConfig(), fixture_catalogue(), BuildOptions(work_dir=tmp_path, overrides=[bad]))
    with pytest.raises(ConfigError, match="no image matches"):
        Builder(engine, BuildConfig(), fixture_catalogue(), BuildOptions(work_dir=tmp_path, patterns=["^x$"]))
    assert engine.calls == [] and not (tmp_path / "contexts").exists()


def test_plan_says_what_would_happen(tmp_path):
    engine = RecordingEngine()
    add_current_rootfs(engine)
    builder = make_builder(engine, tmp_path)
    engine.add_image("dockyard/base:2025.1", {LABEL_IMAGE_HASH: builder.hashes["base"]})
    engine.add_image("dockyard/memcached:2025.1", {LABEL_IMAGE_HASH: "stale"})
    plan = builder.plan()
    assert plan.images["base"].action == "cached"
    assert plan.images["memcached"].action == "build"
    assert plan.to_build() == [n for n in builder.selected if n != "base"]
    assert plan.rootfs_action is None  # base is cached: nothing needs the rootfs
    assert engine.calls == []          # planning builds nothing


def test_push_to_the_site_registry_records_digests_and_moves_nothing_the_second_time(tmp_path):
    import json

    from dockyard.engine.fake import FakeRegistry

    registry = FakeRegistry("10.0.0.1:4000")
    engine = RecordingEngine()
    engine.registry = registry
    report = make_builder(engine, tmp_path, push=True, push_to=registry, patterns=["^memcached$"]).run()
    assert report.ok
    pushed = ["10.0.0.1:4000/dockyard/base:2025.1", "10.0.0.1:4000/dockyard/memcached:2025.1"]
    assert registry.pushed == pushed and sorted(report.sent) == ["base", "memcached"]
    # The local names stay; the registry's name is a second tag of the same image.
    for name, ref in zip(("base", "memcached"), pushed):
        local = engine.image(f"dockyard/{name}:2025.1")
        assert engine.image(ref).id == local.id
        found = registry.lookup(f"dockyard/{name}", "2025.1")
        assert found.id == local.id and report.digests[name] == found.digest
    record = json.loads((tmp_path / "work" / "digests.json").read_text())
    assert record[pushed[1]] == {"digest": report.digests["memcached"], "id": engine.image(pushed[1]).id}
    data = json.loads(to_json(report))
    assert [(i["image"], i["sent"]) for i in data["images"]] == [("base", True), ("memcached", True)]
    assert data["images"][1]["digest"] == report.digests["memcached"]
    # Unchanged: nothing is pushed, the digests are the same.
    engine.calls.clear()
    again = make_builder(engine, tmp_path, push=True, push_to=registry, patterns=["^memcached$"]).run()
    assert again.ok and again.sent == [] and again.digests == report.digests
    assert not [c for c in engine.calls if c[0] in ("push", "build")]
    assert registry.pushed == pushed
