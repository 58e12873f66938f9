"""The file from `dockyard export compose` runs under the Compose tool.

A site of memcached alone, bound to 127.0.0.8 so nothing of the main site is
involved: `genconfig` writes its config folder, docker-compose brings the
service up, the engine reports it healthy, and `down` takes it away again.
"""

from __future__ import annotations

import subprocess

import yaml

from .conftest import dockyard, side_site

PROJECT = "dockyarde2eexport"


def test_exported_file_comes_up_healthy_under_compose(built_catalogue, engine, tmp_path):
    site = side_site(tmp_path, "127.0.0.8", ["memcached"])
    compose_file = tmp_path / "compose.yml"
    dockyard("export", "compose", "-o", str(compose_file), "--config-dir", str(site))
    dockyard("genconfig", "--config-dir", str(site))
    doc = yaml.safe_load(compose_file.read_text())
    assert list(doc["services"]) == ["memcached"]

    compose = ["docker-compose", "-p", PROJECT, "-f", str(compose_file)]
    try:
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        engine.wait_healthy("memcached", 120)
        state = engine.container("memcached")
        assert state.running
        assert state.labels.get("com.docker.compose.project") == PROJECT
    finally:
        subprocess.run([*compose, "down"], capture_output=True, timeout=300)
    assert engine.container("memcached") is None
