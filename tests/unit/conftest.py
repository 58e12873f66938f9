"""Fixtures shared by the unit tests: the planner and executor tests' small site
(wanted_factory), and a whole site on disk (deploy_fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .deploy_fixtures import copy_services, make_site
from .wanted_factory import Site


# The name the all-in-one reports to OpenStack is this machine's: pinned here, so
# what the tests render does not depend on the machine (nor wait for its DNS).
MACHINE_HOSTNAME = "aio-test.example.org"


@pytest.fixture(autouse=True)
def machine_hostname(monkeypatch) -> str:
    monkeypatch.setattr("dockyard.deploy.site.loader.machine_hostname", lambda path=None: MACHINE_HOSTNAME)
    return MACHINE_HOSTNAME


@pytest.fixture
def site(tmp_path) -> Site:
    """A small site (mariadb, keystone, glance, horizon, memcached) of the wanted-state factory."""
    return Site(tmp_path / "site")


@pytest.fixture
def site_dir(tmp_path) -> Path:
    """A whole site's config folder: every service enabled, passwords generated."""
    return make_site(tmp_path)


@pytest.fixture
def services(tmp_path) -> Path:
    """A private copy of the real service catalogue, to break on purpose."""
    return copy_services(tmp_path)


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"
