"""A real OpenStack client (python-openstackclient from PyPI) pointed at the cloud
``dockyard post-deploy`` described in ``clouds.yaml``."""

from __future__ import annotations

import json
import os
import subprocess

from .conftest import CONFIG_DIR


def openstack(*args: str, cloud: str = "dockyard", check: bool = True, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["openstack", "--os-cloud", cloud, *args],
        # No stdin: `image create` without --file would read one as the image's data.
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(CONFIG_DIR / "clouds.yaml"), **env},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def openstack_json(*args: str, **kw):
    return json.loads(openstack(*args, "-f", "json", **kw).stdout)


def container_facts(engine) -> dict[str, tuple[str, str]]:
    """name -> (container id, start time) of every dockyard container."""
    return {c.name: (c.id, c.started_at) for c in engine.containers(label="dockyard.managed=true")}
