"""Fixtures shared by the planner and executor tests (built on wanted_factory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .wanted_factory import Site


@pytest.fixture
def site(tmp_path) -> Site:
    """A small site (mariadb, keystone, glance, horizon, memcached) of the wanted-state factory."""
    return Site(tmp_path / "site")


@pytest.fixture
def state_dir(tmp_path) -> Path:
    return tmp_path / "state"
