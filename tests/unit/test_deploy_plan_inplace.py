"""In-place updates: a container that names the packages its process is made of
(``restart_packages``) is kept running when its image was rebuilt (same
reference and release) with none of them changed; the plan says so, with the
versions, and recreates it, naming the package, when one did change."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from rich.console import Console

from dockyard.deploy import api
from dockyard.deploy.ops.status import render, status
from dockyard.deploy.plan.observe import observe
from dockyard.deploy.plan.planner import ActionKind, Plan, make_plan
from dockyard.engine.fake import FakeEngine
from dockyard.errors import ConfigError
from dockyard.image.packages import MANIFEST
from dockyard.labels import LABEL_OWN_HASH, LABEL_RELEASE

from .deploy_fixtures import converge_site, full_engine, quiet, remote, set_globals, write_inventory
from .wanted_factory import IMAGES, Site, converge, fake_engine, make_wanted

# memcached stands for a data-plane container here: it names its packages.
MEMCACHED_PACKAGES = ("memcached", "libevent-*", "libc6")
BUILT = {"memcached": "1.6.38-1", "libevent-2.1-7t64": "2.1.12-stable-10", "libc6": "2.41-12",
         "python3": "3.13.5-1", "ca-certificates": "20250419"}


def write_manifest(engine: FakeEngine, image_id: str, packages: dict[str, str]) -> None:
    engine.files[(image_id, MANIFEST)] = "".join(f"{name}={version}\n" for name, version in packages.items()).encode()


def reads(engine: FakeEngine) -> list[tuple]:
    return [c for c in engine.calls if c[0] == "read_file"]


@pytest.fixture
def deployed(site: Site, state_dir):
    """The small site converged, memcached naming its packages; its running
    image and every image of the site list BUILT."""
    site.restart_packages["memcached"] = MEMCACHED_PACKAGES
    engine = fake_engine(RecordingReads)
    converge(engine, make_wanted(site), state_dir)
    for tag, info in engine.images_by_tag.items():
        write_manifest(engine, info.id, BUILT)
        engine.images_by_tag[tag] = replace(info, labels={**info.labels, LABEL_OWN_HASH: f"own-{tag}"})
    engine.calls.clear()
    return engine


class RecordingReads(FakeEngine):
    """The fake engine, with its reads of image files in ``calls`` too."""

    def read_file(self, image: str, path: str) -> bytes:
        self._record("read_file", image, path)
        return super().read_file(image, path)


def rebuild(site: Site, engine: FakeEngine, image: str, versions: dict[str, str | None] | None = None,
            own_hash: str | None = None) -> str:
    """``image`` rebuilt: a new id (what the wanted state resolves), whose package
    list is BUILT with ``versions`` changed (None: the package is gone), and whose
    own-file hash is ``own_hash`` ("": no label; None: as before). Returns its id."""
    new_id = f"sha256:{image}-rebuilt"
    site.image_ids[image] = new_id
    before = engine.images_by_tag[IMAGES[image]]
    labels = dict(before.labels)
    if own_hash is not None:
        labels.pop(LABEL_OWN_HASH, None)
        labels.update({LABEL_OWN_HASH: own_hash} if own_hash else {})
    engine.images_by_tag[f"{IMAGES[image]}-rebuilt"] = replace(before, id=new_id, labels=labels)
    packages = {**BUILT, **(versions or {})}
    write_manifest(engine, new_id, {name: v for name, v in packages.items() if v is not None})
    return new_id


def plan_of(engine: FakeEngine, site: Site, state_dir, **options) -> Plan:
    wanted = make_wanted(site)
    return make_plan(wanted, observe(engine, wanted, state_dir), **options)


# -- kept ----------------------------------------------------------------------------------

def test_a_rebuild_that_changes_none_of_its_packages_keeps_it_running(site, state_dir, deployed):
    # python3 and ca-certificates moved: layers of the image its process does not use.
    rebuild(site, deployed, "memcached", {"python3": "3.13.5-2", "ca-certificates": "20250420"})
    rebuild(site, deployed, "glance")                     # glance_api names no packages
    plan = plan_of(deployed, site, state_dir)
    kinds = {a.id: a.kind for a in plan.actions}
    assert "recreate:memcached" not in kinds and "start:memcached" not in kinds
    assert kinds["recreate:glance_api"] == ActionKind.RECREATE            # recreated as before
    assert plan.by_id()["recreate:glance_api"].reason == "config-hash differs (image)"
    [kept] = plan.kept
    assert (kept.name, kept.service, kept.host) == ("memcached", "memcached", "aio")
    assert kept.reason == ("image rebuilt, libc6 2.41-12, libevent-2.1-7t64 2.1.12-stable-10 and memcached "
                           "1.6.38-1 unchanged: kept running")
    text = plan.render()
    assert "memcached:\n  keep " in text and "kept running" in text
    assert text.splitlines()[-1].endswith("; 1 container kept running")
    assert json.loads(plan.to_json())["kept"] == [{"name": "memcached", "service": "memcached", "host": "aio",
                                                   "reason": kept.reason}]


def test_a_kept_container_stays_the_same_container_and_the_next_plan_keeps_it_again(site, state_dir, deployed):
    before = deployed.container("memcached").id
    rebuild(site, deployed, "memcached", {"python3": "3.13.5-2"})
    converge(deployed, make_wanted(site), state_dir)
    assert deployed.container("memcached").id == before
    again = plan_of(deployed, site, state_dir)
    assert again.is_empty() and [k.name for k in again.kept] == ["memcached"]
    assert again.render().endswith("nothing to do: everything is as wanted (1 container kept running)")


def test_dependants_of_a_kept_container_wait_for_nothing_of_it(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    rebuild(site, deployed, "keystone")
    plan = plan_of(deployed, site, state_dir)
    assert not any("memcached" in d for d in plan.by_id()["recreate:keystone"].deps)


# -- recreated -----------------------------------------------------------------------------

def test_a_changed_package_that_matters_recreates_it_naming_both_versions(site, state_dir, deployed):
    rebuild(site, deployed, "memcached", {"libc6": "2.41-13", "python3": "3.13.5-2"})
    plan = plan_of(deployed, site, state_dir)
    assert plan.by_id()["recreate:memcached"].reason == \
        "config-hash differs (image): rebuilt with libc6 2.41-12 -> 2.41-13"
    assert plan.kept == []


def test_a_change_to_the_images_own_files_recreates_it(site, state_dir, deployed):
    # nova-libvirt's qemu hook is a file of its own image, in no package.
    rebuild(site, deployed, "memcached", own_hash="own-changed")
    plan = plan_of(deployed, site, state_dir)
    assert plan.by_id()["recreate:memcached"].reason == "config-hash differs (image): its image's own files changed"
    assert plan.kept == []


def test_an_image_without_an_own_hash_cannot_be_compared_and_is_recreated(site, state_dir, deployed):
    rebuild(site, deployed, "memcached", own_hash="")
    reason = plan_of(deployed, site, state_dir).by_id()["recreate:memcached"].reason
    assert reason == ("config-hash differs (image): its image's own files cannot be compared "
                      "(an image without dockyard.own-hash)")


def test_a_package_that_matters_added_or_gone_is_named(site, state_dir, deployed):
    rebuild(site, deployed, "memcached", {"libevent-2.1-7t64": None, "libevent-2.2-1": "2.2.1-1"})
    reason = plan_of(deployed, site, state_dir).by_id()["recreate:memcached"].reason
    assert reason == ("config-hash differs (image): rebuilt with libevent-2.1-7t64 2.1.12-stable-10 removed, "
                      "libevent-2.2-1 2.2.1-1 added")


def test_a_config_change_recreates_it_whatever_its_packages_and_reads_no_image(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    site.config["memcached.conf"] = "-l 127.0.0.1 -m 128\n"
    plan = plan_of(deployed, site, state_dir)
    assert plan.by_id()["recreate:memcached"].reason == "config-hash differs (image, memcached.conf changed)"
    assert plan.kept == [] and reads(deployed) == []


def test_a_command_change_recreates_it(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    site.environment["memcached"] = {"MEMCACHED_EXTRA": "-v"}
    plan = plan_of(deployed, site, state_dir)
    assert plan.by_id()["recreate:memcached"].reason == "config-hash differs (image, environment)"


def test_recreate_forces_it_and_says_so(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    plan = plan_of(deployed, site, state_dir, recreate={"memcached"})
    assert plan.by_id()["recreate:memcached"].reason.startswith(
        "config-hash differs (image): recreated as asked (--recreate), though libc6 2.41-12")
    assert plan.kept == []
    # What is not named is still kept, and what did not change is not recreated.
    untouched = plan_of(deployed, site, state_dir, recreate={"keystone"})
    assert [k.name for k in untouched.kept] == ["memcached"] and untouched.is_empty()


def test_an_unreadable_package_list_recreates_it_with_the_reason(site, state_dir, deployed):
    new_id = rebuild(site, deployed, "memcached")
    del deployed.files[(new_id, MANIFEST)]          # an image built without its list
    reason = plan_of(deployed, site, state_dir).by_id()["recreate:memcached"].reason
    assert reason.startswith("config-hash differs (image): its packages could not be compared: cannot read "
                             f"{MANIFEST} of image sha256:memcached-r")


def test_images_that_hold_none_of_its_packages_recreate_it(site, state_dir, deployed):
    site.restart_packages["memcached"] = ("no-such-package*",)
    converge(deployed, make_wanted(site), state_dir)
    rebuild(site, deployed, "memcached")
    reason = plan_of(deployed, site, state_dir).by_id()["recreate:memcached"].reason
    assert reason == "config-hash differs (image): none of its restart_packages (no-such-package*) is in its images"


def test_a_stopped_container_is_recreated_not_kept(site, state_dir, deployed):
    deployed.stop("memcached")
    rebuild(site, deployed, "memcached")
    plan = plan_of(deployed, site, state_dir)
    assert plan.by_id()["recreate:memcached"].kind == ActionKind.RECREATE and plan.kept == []
    assert reads(deployed) == []


def test_another_release_or_reference_is_never_kept_and_reads_nothing(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    wanted = make_wanted(site)
    memcached = next(c for c in wanted.containers if c.name == "memcached")
    moved = replace(memcached, spec=replace(memcached.spec, labels={**memcached.spec.labels,
                                                                    LABEL_RELEASE: "2026.1"}))
    wanted.containers[wanted.containers.index(memcached)] = moved
    plan = make_plan(wanted, observe(deployed, wanted, state_dir))
    assert plan.by_id()["recreate:memcached"].reason == "config-hash differs (image)"
    other_tag = replace(memcached, spec=replace(memcached.spec, image=IMAGES["memcached"] + "-site"))
    wanted.containers[wanted.containers.index(moved)] = other_tag
    plan = make_plan(wanted, observe(deployed, wanted, state_dir))
    assert "recreate:memcached" in plan.by_id() and plan.kept == []
    assert reads(deployed) == []


# -- what observation reads ----------------------------------------------------------------

def test_a_converged_site_reads_no_package_list(site, state_dir, deployed):
    plan = plan_of(deployed, site, state_dir)
    assert plan.is_empty() and plan.kept == [] and reads(deployed) == []


def test_only_the_images_of_the_rebuilt_container_are_read_each_once(site, state_dir, deployed):
    new_id = rebuild(site, deployed, "memcached")
    rebuild(site, deployed, "glance")
    wanted = make_wanted(site)
    observed = observe(deployed, wanted, state_dir)
    running_id = deployed.container("memcached").image_id
    assert sorted(c[1] for c in reads(deployed)) == sorted([running_id, new_id])
    versions = observed.packages["memcached"]
    assert dict(versions.running) == dict(versions.wanted) == {"libc6": "2.41-12",
                                                               "libevent-2.1-7t64": "2.1.12-stable-10",
                                                               "memcached": "1.6.38-1"}
    assert set(observed.packages) == {"memcached"}


# -- status --------------------------------------------------------------------------------

def test_status_shows_a_kept_container_as_kept_with_why(site, state_dir, deployed):
    rebuild(site, deployed, "memcached")
    rows = {r.container: r for r in status(deployed, make_wanted(site))}
    assert rows["memcached"].up_to_date and rows["memcached"].kept.startswith("image rebuilt, libc6 2.41-12")
    assert rows["keystone"].kept == ""
    console = Console(record=True, width=300)
    render(list(rows.values()), console)
    assert "kept (image rebuilt, libc6 2.41-12" in console.export_text()
    rebuild(site, deployed, "memcached", {"memcached": "1.6.38-2"})
    changed = {r.container: r for r in status(deployed, make_wanted(site))}["memcached"]
    assert not changed.up_to_date and changed.kept == ""
    assert changed.reason == "recreate: config-hash differs (image): rebuilt with memcached 1.6.38-1 -> 1.6.38-2"


# -- the whole site, with the real catalogue ----------------------------------------------

DATA_PLANE = {"nova_libvirt", "nova_virtlogd", "openvswitch_vswitchd", "openvswitch_db_server"}
REBUILT = ("nova-libvirt", "openvswitch-vswitchd", "openvswitch-db-server", "nova-compute")
SITE_PACKAGES = {"libvirt-daemon-system": "11.3.0-3", "libvirt-daemon-driver-qemu": "11.3.0-3",
                 "libvirt0": "11.3.0-3", "qemu-system-x86": "1:10.0.2+ds-2", "qemu-system-common": "1:10.0.2+ds-2",
                 "openvswitch-switch": "3.5.0-1", "openvswitch-common": "3.5.0-1", "libc6": "2.41-12",
                 "python3": "3.13.5-1"}


def rebuild_site_images(engine: FakeEngine, **versions: str) -> None:
    """The data plane's images and nova-compute's rebuilt under their tags: new ids."""
    for name in REBUILT:
        ref = f"dockyard/{name}:2025.1"
        old = replace(engine.images_by_tag[ref], labels={**engine.images_by_tag[ref].labels,
                                                         LABEL_OWN_HASH: f"own-{name}"})
        new = replace(old, id=f"{old.id}-rebuilt")
        engine.images_by_tag[ref] = new
        engine.images_by_tag[f"{ref}-previous"] = old     # untagged, kept while a container uses it
        write_manifest(engine, old.id, SITE_PACKAGES)
        write_manifest(engine, new.id, {**SITE_PACKAGES, "python3": "3.13.5-2", **versions})


@pytest.fixture
def aio(site_dir):
    return site_dir, converge_site(site_dir, full_engine())


def test_the_all_in_one_keeps_libvirt_and_open_vswitch_and_recreates_nova_compute(aio):
    site_dir, engine = aio
    rebuild_site_images(engine)
    lines: list[str] = []
    plan = api.deploy(site_dir, engine=engine, dry_run=True, say=lines.append)
    assert {k.name for k in plan.kept} == DATA_PLANE
    recreated = {a.target for a in plan.actions if a.kind == ActionKind.RECREATE}
    assert recreated == {"nova_compute"}
    libvirt = next(k for k in plan.kept if k.name == "nova_libvirt")
    assert libvirt.reason == ("image rebuilt, libc6 2.41-12, libvirt-daemon-driver-qemu 11.3.0-3, "
                              "libvirt-daemon-system 11.3.0-3 and 3 more unchanged: kept running")
    assert "  keep " in "\n".join(lines)


def test_the_all_in_one_recreates_libvirt_when_qemu_changed_and_on_request(aio):
    site_dir, engine = aio
    rebuild_site_images(engine, **{"qemu-system-x86": "1:10.0.2+ds-3"})
    plan = api.deploy(site_dir, engine=engine, dry_run=True, say=quiet)
    assert plan.by_id()["recreate:nova_libvirt"].reason == \
        "config-hash differs (image): rebuilt with qemu-system-x86 1:10.0.2+ds-2 -> 1:10.0.2+ds-3"
    assert {k.name for k in plan.kept} == DATA_PLANE - {"nova_libvirt"}
    forced = api.deploy(site_dir, engine=engine, dry_run=True, say=quiet, recreate={"openvswitch"})
    assert {"recreate:openvswitch_vswitchd", "recreate:openvswitch_db_server"} <= set(forced.by_id())
    assert {k.name for k in forced.kept} == {"nova_virtlogd"}
    by_container = api.deploy(site_dir, engine=engine, dry_run=True, say=quiet, recreate={"nova-virtlogd"})
    assert "recreate:nova_virtlogd" in by_container.by_id()


def test_a_real_run_says_what_it_keeps_and_leaves_it_running(aio):
    site_dir, engine = aio
    rebuild_site_images(engine)
    before = {name: engine.container(name).id for name in DATA_PLANE}
    lines: list[str] = []
    result = api.deploy(site_dir, engine=engine, say=lines.append)
    assert result.ok
    assert {name: engine.container(name).id for name in DATA_PLANE} == before
    assert any(line.startswith("keep nova_libvirt: image rebuilt") for line in lines)
    assert engine.container("nova_compute").image_id.endswith("-rebuilt")


def test_recreate_names_an_enabled_service_or_container(aio):
    site_dir, engine = aio
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, dry_run=True, say=quiet, recreate={"nova-libvrit"})
    assert exc.value.key == "--recreate" and "'nova-libvrit'" in str(exc.value)


def test_deploy_and_reconfigure_document_recreate():
    from click.testing import CliRunner

    from dockyard.cli import _register, cli

    _register()
    for command in ("deploy", "reconfigure"):
        out = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
        assert "--recreate A,B" in out and "restart_packages" in out, command


def test_a_changed_command_recreates_libvirt_whatever_its_packages(aio, tmp_path):
    import shutil

    from dockyard import SOURCE_ROOT

    site_dir, engine = aio
    services = tmp_path / "services"
    shutil.copytree(SOURCE_ROOT / "services", services, symlinks=True)
    path = services / "nova-compute.yml"
    text = path.read_text()
    path.write_text(text.replace("    command: libvirtd\n", "    command: libvirtd --verbose\n"))
    rebuild_site_images(engine)
    plan = api.deploy(site_dir, engine=engine, dry_run=True, say=quiet, services_root=services)
    assert plan.by_id()["recreate:nova_libvirt"].reason == "config-hash differs (image, config.json changed)"
    assert "nova_libvirt" not in {k.name for k in plan.kept}


# -- several hosts -------------------------------------------------------------------------

def test_each_host_compares_its_own_images_and_an_engine_failing_the_read_recreates(tmp_path, monkeypatch):
    from dockyard.deploy.engines import SiteEngines
    from dockyard.errors import EngineUnavailable

    from .deploy_fixtures import fake_engine as catalogue_engine, make_site

    config_dir = make_site(tmp_path)
    set_globals(config_dir, enabled_services=["openvswitch"])
    write_inventory(config_dir, {"net1": remote("192.0.2.11"), "cmp1": remote("192.0.2.12")},
                    {"control": ["net1"], "network": ["net1"], "compute": ["cmp1"]})
    net1, cmp1 = catalogue_engine(), catalogue_engine()
    engines = SiteEngines({"net1": net1, "cmp1": cmp1}, urls={"net1": "tcp://192.0.2.11:2376",
                                                               "cmp1": "tcp://192.0.2.12:2376"})
    assert api.deploy(config_dir, engine=engines, say=quiet).ok
    ref = "dockyard/openvswitch-vswitchd:2025.1"
    for engine, switch in ((net1, "3.5.0-1"), (cmp1, "3.5.0-2")):
        old = replace(engine.images_by_tag[ref], labels={LABEL_OWN_HASH: "own-openvswitch-vswitchd"})
        engine.images_by_tag[ref] = replace(old, id=f"{old.id}-rebuilt")
        engine.images_by_tag[f"{ref}-previous"] = old
        write_manifest(engine, old.id, SITE_PACKAGES)
        write_manifest(engine, f"{old.id}-rebuilt", {**SITE_PACKAGES, "openvswitch-switch": switch})
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    assert [k.name for k in plan.kept] == ["openvswitch_vswitchd@net1"]
    assert plan.by_id()["recreate:openvswitch_vswitchd@cmp1"].reason == \
        "config-hash differs (image): rebuilt with openvswitch-switch 3.5.0-1 -> 3.5.0-2"

    def gone(image, path):
        raise EngineUnavailable("cannot reach the container engine", "Connection reset by peer")

    monkeypatch.setattr(net1, "read_file", gone)
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    assert plan.kept == []
    assert plan.by_id()["recreate:openvswitch_vswitchd@net1"].reason == (
        "config-hash differs (image): its packages could not be compared: the engine did not answer: "
        "Connection reset by peer")
