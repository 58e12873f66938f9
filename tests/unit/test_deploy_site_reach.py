"""A site of several hosts calls its API services, and pulls its images, at
addresses every host reaches: internal_address is a control host's, and no
loopback address stands where another host must reach it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dockyard.deploy.site.loader import load_site
from dockyard.errors import EXIT_INVALID, ConfigError

KNOWN = {"memcached"}
THREE = {"hosts": {"ctl1": {"address": "192.0.2.11"}, "ctl2": {"address": "192.0.2.12"},
                   "cmp1": {"address": "192.0.2.21"}},
         "groups": {"control": ["ctl1", "ctl2"], "network": ["ctl1"], "compute": ["cmp1"]}}


def site(tmp_path: Path, globals_yml: dict, inventory: dict | None = THREE) -> Path:
    folder = tmp_path / "site"
    folder.mkdir(parents=True)
    (folder / "globals.yml").write_text(yaml.safe_dump({"enabled_services": ["memcached"], **globals_yml}))
    if inventory is not None:
        (folder / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return folder


def refused(folder: Path) -> ConfigError:
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError) as err:
        load_site(folder, KNOWN, [])
    assert err.value.exit_code == EXIT_INVALID and err.value.path == str(folder / "globals.yml")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before        # nothing written
    return err.value


@pytest.mark.parametrize("address", [None, "127.0.0.1", "192.0.2.21", "192.0.2.99"])
def test_an_internal_address_no_control_host_has_is_refused(tmp_path, address):
    # None: the default, 127.0.0.1; a compute host's; a host nobody listed.
    err = refused(site(tmp_path, {} if address is None else {"internal_address": address}))
    assert err.key == "internal_address"
    assert f"{address or '127.0.0.1'} is not the address of a control host" in err.detail
    assert "(ctl1 192.0.2.11, ctl2 192.0.2.12)" in err.detail


@pytest.mark.parametrize("address", ["192.0.2.11", "192.0.2.12"])
def test_any_control_hosts_address_is_accepted(tmp_path, address):
    loaded = load_site(site(tmp_path, {"internal_address": address}), KNOWN, [])
    assert loaded.globals.internal_address == address and len(loaded.inventory.hosts) == 3


def test_a_single_host_site_is_not_checked(tmp_path):
    # The all-in-one (no inventory) on loopback, and a one-host inventory whose
    # host's address is not the internal address: both load as before.
    aio = load_site(site(tmp_path / "aio", {"registry": {"address": "127.0.0.1"}}, None), KNOWN, [])
    assert aio.globals.internal_address == "127.0.0.1" and aio.globals.registry_address == "127.0.0.1:4000"
    one = {"hosts": {"ctl1": {"address": "192.0.2.11"}},
           "groups": {"control": ["ctl1"], "network": ["ctl1"], "compute": ["ctl1"]}}
    assert load_site(site(tmp_path / "one", {}, one), KNOWN, []).globals.internal_address == "127.0.0.1"


def test_a_loopback_control_host_beside_a_host_elsewhere_is_refused(tmp_path):
    inventory = {"hosts": {"localhost": {"address": "127.0.0.1"}, "cmp1": {"address": "192.0.2.21"}},
                 "groups": {"control": ["localhost"], "network": ["localhost"], "compute": ["cmp1"]}}
    err = refused(site(tmp_path, {}, inventory))
    assert err.key == "internal_address"
    assert "127.0.0.1 is a loopback address, which hosts cmp1 cannot reach" in err.detail


def test_hosts_all_on_loopback_share_this_machine_and_may_use_it(tmp_path):
    inventory = {"hosts": {"h1": {"address": "127.0.0.97", "engine": "unix:///run/a.sock"},
                           "h2": {"address": "127.0.0.96", "engine": "unix:///run/b.sock"}},
                 "groups": {"control": ["h1", "h2"], "network": ["h1"], "compute": ["h1"]}}
    loaded = load_site(site(tmp_path, {"internal_address": "127.0.0.97", "registry": {}}, inventory), KNOWN, [])
    assert loaded.globals.registry_address == "127.0.0.97:4000"


def test_the_registry_defaults_to_the_control_hosts_address(tmp_path):
    loaded = load_site(site(tmp_path, {"internal_address": "192.0.2.11", "registry": {}}), KNOWN, [])
    assert loaded.globals.registry_address == "192.0.2.11:4000"
    other = load_site(site(tmp_path / "b", {"internal_address": "192.0.2.11",
                                            "registry": {"address": "192.0.2.1", "port": 4100}}), KNOWN, [])
    assert other.globals.registry_address == "192.0.2.1:4100"


def test_a_loopback_registry_on_a_site_of_several_hosts_is_refused(tmp_path):
    err = refused(site(tmp_path, {"internal_address": "192.0.2.11", "registry": {"address": "127.0.0.1"}}))
    assert err.key == "registry.address"
    assert "127.0.0.1 is a loopback address, which hosts cmp1, ctl1, ctl2 cannot pull from" in err.detail
    assert "set registry.address" in err.detail


def test_the_command_says_so_and_leaves_with_exit_2(tmp_path):
    folder = site(tmp_path, {})
    proc = subprocess.run([sys.executable, "-m", "dockyard", "genconfig", "--config-dir", str(folder)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {folder / 'globals.yml'}: internal_address: 127.0.0.1 is not the address of a control host" \
        in proc.stderr
