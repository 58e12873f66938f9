"""`dockyard demo`'s guest image: no release's, so a site's move to another
release neither renames it nor rebuilds it from the new release's suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import guestimage
from dockyard.deploy import api
from dockyard.engine.fake import FakeEngine
from dockyard.errors import DockyardError

from .deploy_fixtures import quiet, set_globals


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
