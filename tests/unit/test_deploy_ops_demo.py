"""`dockyard demo`'s guest image: no release's, so a site's move to another
release neither renames it nor rebuilds it from the new release's suite. And
where its client namespace is wired: the first network host, through its engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import guestimage
from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.engine.fake import FakeEngine
from dockyard.errors import DockyardError

from .deploy_fixtures import fake_engine, quiet, remote, set_globals, write_inventory


class Stop(Exception):
    """Raised where the test has seen enough: before the demo reaches a cloud."""


@pytest.fixture
def builds(monkeypatch) -> list[tuple[list[str], str]]:
    """What api.demo asks to build: (images, from which release: the site's unless
    told); every build fails, so the demo stops there."""
    asked: list[tuple[list[str], str]] = []

    def build_images(site, engine, names, say, threads=None, **options):
        asked.append((names, options.get("release") or site.globals.site_release))
        return False

    monkeypatch.setattr(api, "build_images", build_images)
    return asked


@pytest.mark.parametrize("release", ["2025.1", "2026.1"])
def test_a_missing_guest_image_is_built_from_its_own_release_whatever_the_sites(site_dir, builds, release):
    set_globals(site_dir, release=release)
    engine = FakeEngine()
    with pytest.raises(DockyardError, match="the guest image did not build"):
        api.demo(site_dir, engine=engine, say=quiet)
    assert builds == [(["guest-image"], "2025.1")]


def test_a_site_on_2026_1_uses_the_guest_image_it_already_has(site_dir, builds, monkeypatch):
    set_globals(site_dir, release="2026.1")
    engine = FakeEngine()
    engine.add_image("dockyard/guest-image:2025.1")
    exported: list[str] = []

    def export(engine, ref: str, dest: Path):
        exported.append(ref)
        raise Stop

    monkeypatch.setattr(guestimage, "export_guest_disk", export)
    with pytest.raises(Stop):
        api.demo(site_dir, engine=engine, say=quiet)
    assert builds == [] and exported == ["dockyard/guest-image:2025.1"]


# -- where the client namespace is wired ------------------------------------------------------

@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A demo with no cloud: the guest disk export recorded (which engine), and
    an openstacksdk connection that finds nothing and creates everything."""
    from unittest import mock

    import openstack

    exported: list = []

    def export(engine, ref: str, dest: Path):
        exported.append(engine)
        return guestimage.GuestDisk(tmp_path / "guest.qcow2", "0" * 64, 1)

    conn = mock.MagicMock()
    conn.compute.find_keypair.return_value = None
    monkeypatch.setattr(guestimage, "export_guest_disk", export)
    monkeypatch.setattr(openstack, "connect", lambda **auth: conn)
    return exported


def with_guest(engine: FakeEngine) -> FakeEngine:
    engine.add_image("dockyard/guest-image:2025.1")
    return engine


def wiring_jobs(engine: FakeEngine) -> list[str]:
    return [name for name in engine.jobs_run if name == "dockyard_demo_external"]


def test_on_a_site_of_several_hosts_the_namespace_is_wired_on_the_first_network_host(site_dir, offline):
    write_inventory(site_dir, {"ctl1": remote("192.0.2.11"), "net1": remote("192.0.2.31"),
                               "net2": remote("192.0.2.32"), "cmp1": remote("192.0.2.21")},
                    {"control": ["ctl1"], "network": ["net1", "net2"], "compute": ["cmp1"]})
    hosts = {name: fake_engine() for name in ("ctl1", "net1", "net2", "cmp1")}
    local = with_guest(FakeEngine("unix://local"))
    lines: list[str] = []
    api.demo(site_dir, engine=SiteEngines(hosts, default=local), say=lines.append)
    assert wiring_jobs(hosts["net1"]) == ["dockyard_demo_external"]
    assert [name for name, e in {**hosts, "local": local}.items() if wiring_jobs(e)] == ["net1"]
    assert offline == [local]                              # the guest image: this machine's engine
    assert "  wired    namespace dockyard-external (203.0.113.1) into br-ex on host net1" in lines
    assert any(line.startswith("  # on host net1 (192.0.2.31), where dockyard-external is") for line in lines)


def test_on_the_all_in_one_the_namespace_is_wired_through_the_local_engine(site_dir, offline):
    local = with_guest(fake_engine())
    lines: list[str] = []
    api.demo(site_dir, engine=local, say=lines.append)
    assert wiring_jobs(local) == ["dockyard_demo_external"] and offline == [local]
    assert "  wired    namespace dockyard-external (203.0.113.1) into br-ex" in lines
    assert not [line for line in lines if "on host" in line]


def test_a_network_host_whose_engine_is_down_stops_the_demo_before_it_starts(site_dir, offline):
    from dockyard.errors import EXIT_ENGINE

    write_inventory(site_dir, {"ctl1": remote("192.0.2.11"), "net1": remote("192.0.2.31")},
                    {"control": ["ctl1"], "network": ["net1"], "compute": ["ctl1"]})
    hosts = {name: fake_engine() for name in ("ctl1", "net1")}
    hosts["net1"].down = True
    with pytest.raises(DockyardError) as err:
        api.demo(site_dir, engine=SiteEngines(hosts, default=with_guest(FakeEngine())), say=quiet)
    assert err.value.exit_code == EXIT_ENGINE and offline == []


def test_a_failed_wiring_names_the_host(site_dir, offline):
    from dockyard.engine.driver import JobResult

    write_inventory(site_dir, {"ctl1": remote("192.0.2.11"), "net1": remote("192.0.2.31")},
                    {"control": ["ctl1"], "network": ["net1"], "compute": ["ctl1"]})
    hosts = {name: fake_engine() for name in ("ctl1", "net1")}
    hosts["net1"].job_results["dockyard_demo_external"] = JobResult(1, "RTNETLINK answers: File exists\n")
    with pytest.raises(DockyardError, match="to br-ex on host net1 failed \\(exit code 1\\): RTNETLINK"):
        api.demo(site_dir, engine=SiteEngines(hosts, default=with_guest(FakeEngine())), say=quiet)
