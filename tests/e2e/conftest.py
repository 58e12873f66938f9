"""End-to-end fixtures: the real Docker Engine, real images, a real cloud.

These tests are slow by nature (a cold build of the whole catalogue, then a full
all-in-one deploy), so the expensive steps are session fixtures shared by every
e2e test. Run only the fast tests with ``pytest tests/unit``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("DOCKYARD_E2E_WORK", "/var/tmp/dockyard-e2e"))
CONFIG_DIR = WORK / "site"

# The summary line of a run that changed nothing, matched as a whole line: a
# run's "10 changes, ..." or a host's "  h1: 0 changes, ..." must not pass for it.
NO_CHANGES = re.compile(r"^0 changes, 0 failed, 0 skipped in [0-9.]+s$", re.M)


def changed_nothing(output: str) -> bool:
    return NO_CHANGES.search(output) is not None


LAST_MODULE = "test_70_upgrade.py"     # leaves the session's cloud on the next release


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    # The upgrade story runs after everything else, whatever the files are named
    # or the order they were given on the command line in: every other test
    # expects the cloud on the release `dockyard up` made. (A stable sort: every
    # other test keeps its place.)
    items[:] = sorted(items, key=lambda item: Path(str(item.fspath)).name == LAST_MODULE)


def dockyard(*args: str, check: bool = True, timeout: float = 3600, env: dict | None = None,
             input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real ``dockyard`` command as an operator would."""
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, **(env or {})}, input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"dockyard {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def side_site(folder: Path, address: str, services: list[str]) -> Path:
    """A small site of its own beside the main one: bound to ``address`` (a
    loopback address of its own), only ``services`` enabled, passwords made."""
    site = folder / "site"
    site.mkdir()
    (site / "globals.yml").write_text(yaml.safe_dump({"internal_address": address, "enabled_services": services}))
    dockyard("genpwd", "--config-dir", str(site))
    return site


@pytest.fixture(scope="session")
def engine():
    from dockyard.engine import connect

    eng = connect()
    eng.ping()
    return eng


@pytest.fixture(scope="session")
def built_catalogue(engine) -> dict:
    """Build every image of the catalogue once (cached images are reused)."""
    WORK.mkdir(parents=True, exist_ok=True)
    proc = dockyard("build", "--format", "json", "--work-dir", str(WORK / "build"), timeout=5400)
    report = json.loads(proc.stdout)
    return report


NASTY_PASSWORDS = {
    "database_password": "d8#b: 'q' \"w\" $HOME 100% ;x \\ y",
    "keystone_admin_password": "k#e: 'v' \"$(id)\" 50%;& ok",
}


@pytest.fixture(scope="session")
def cloud(built_catalogue, engine):
    """A fresh all-in-one cloud from ``dockyard up``, shared by every test after it
    and destroyed (volumes too) when the session ends."""
    if CONFIG_DIR.exists():
        dockyard("destroy", "--yes", "--include-volumes", "--config-dir", str(CONFIG_DIR), check=False)
        shutil.rmtree(CONFIG_DIR)
    # Passwords an operator may choose, which break naive quoting: YAML, SQL,
    # oslo.config's $-interpolation, INI comments, shell. `up` keeps them and
    # generates the rest.
    CONFIG_DIR.mkdir(parents=True)
    passwords = CONFIG_DIR / "passwords.yml"
    passwords.write_text(yaml.safe_dump(NASTY_PASSWORDS))
    passwords.chmod(0o600)
    proc = dockyard("up", "--config-dir", str(CONFIG_DIR), timeout=3600)
    yield proc
    dockyard("destroy", "--yes", "--include-volumes", "--config-dir", str(CONFIG_DIR), check=False)


@pytest.fixture(scope="session")
def demo(cloud):
    """``dockyard demo`` run twice on the cloud (the second must change nothing):
    the guest image, networks, router, keypair and the provider network's far side."""
    first = dockyard("demo", "--config-dir", str(CONFIG_DIR), timeout=1800)
    again = dockyard("demo", "--config-dir", str(CONFIG_DIR), timeout=600)
    return first, again


def inventory_entry_of(host) -> dict:
    """A testbed host's entry in inventory.yml: its address, its engine reached
    over TLS with the testbed's client certificate."""
    tls = host.layout.client_dir
    return {"address": host.address, "engine": host.engine_url,
            "tls": {"ca": str(tls / "ca.pem"), "cert": str(tls / "cert.pem"), "key": str(tls / "key.pem")}}


def write_testbed_site(config: Path, hosts: list, **globals_yml) -> None:
    """A site's inventory.yml and globals.yml for testbed hosts: each reached over
    TLS with the testbed's client certificate; memcached on both (control),
    network and compute on the first; ``globals_yml`` added to its globals."""
    inventory = {
        "hosts": {f"h{h.index}": inventory_entry_of(h) for h in hosts},
        "groups": {"control": ["h1", "h2"], "network": ["h1"], "compute": ["h1"]},
    }
    (config / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (config / "globals.yml").write_text(yaml.safe_dump({"enabled_services": ["memcached"],
                                                        "internal_address": hosts[0].address, **globals_yml}))
