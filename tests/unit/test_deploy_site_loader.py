"""Loading and validating the site's configuration folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dockyard.deploy.site.passwords import DEFAULT_PASSWORD_NAMES
from dockyard.datafiles import key_path
from dockyard.deploy.site import hostfacts
from dockyard.deploy.site.loader import Globals, Host, config_dir_from, load_site, write_defaults
from dockyard.errors import EXIT_INVALID, ConfigError

from .conftest import MACHINE_HOSTNAME

KNOWN = {"mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova", "neutron", "horizon",
         "openvswitch", "neutron-agents", "nova-compute", "cinder"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
INVENTORY = ("hosts: {ctl1: {address: 192.0.2.11}, cmp1: {address: 192.0.2.21}}\n"
             "groups: {control: [ctl1], network: [ctl1], compute: [cmp1, ctl1]}\n")
# A site of several hosts calls its API services at a control host's address.
AT_CTL1 = "internal_address: 192.0.2.11\n"


def make_site(tmp_path: Path, **files: str) -> Path:
    """A folder with a password for every required name plus the given files
    (keyword: file name with dots as underscores)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "passwords.yml").write_text("".join(f"{n}: pw-{n}\n" for n in ["p1", "p2"]))
    (folder / "passwords.yml").chmod(0o600)       # else refused: others could read it
    for name, text in files.items():
        (folder / name.replace("_yml", ".yml")).write_text(text)
    return folder


def load(folder: Path):
    return load_site(folder, KNOWN, ["p1", "p2"])


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- every kind of error names the file and the key ------------------------------------------

BAD = {
    # case: (file, text, key, words in the message)
    "malformed yaml": ("globals.yml", "region: RegionOne\nenabled_services: [mariadb\n", None,
                       ["line 3, column 1", "invalid YAML"]),
    "malformed yaml tab": ("globals.yml", "region:\n\t- x\n", None, ["line 2, column 1", "invalid YAML"]),
    "repeated key": ("globals.yml", "parallelism: 4\nregion: R\nparallelism: 8\n", None,
                     ["line 3, column 1", "'parallelism' appears twice (first on line 1)"]),
    "not a mapping": ("globals.yml", "- nova\n", None, ["mapping", "not a list"]),
    "wrong type": ("globals.yml", "parallelism: many\n", "parallelism", ["integer"]),
    "bool for a number": ("globals.yml", "parallelism: true\n", "parallelism", ["integer"]),
    "number for text": ("globals.yml", "image_tag: 2025.1\n", "image_tag", ["quote the value", "a number"]),
    "date for text": ("globals.yml", "region: 2025-01-01\n", "region", ["quote the value", "a date"]),
    "list item type": ("globals.yml", "enabled_services: [nova, 3]\n", "enabled_services[1]",
                       ["quote the value"]),
    "unknown key": ("globals.yml", "no_such_key: 1\n", "no_such_key", ["unknown key", "known keys:"]),
    "misspelt key": ("globals.yml", "enabled_service: [nova]\n", "enabled_service",
                     ["did you mean 'enabled_services'?"]),
    "unknown service": ("globals.yml", "enabled_services: [keystone, nosuch]\n", "enabled_services[1]",
                        ["unknown service 'nosuch'", "known: cinder, glance, horizon"]),
    "misspelt service": ("globals.yml", "enabled_services: [nvoa]\n", "enabled_services[0]",
                         ["did you mean 'nova'?"]),
    "service twice": ("globals.yml", "enabled_services: [nova, keystone, nova]\n", "enabled_services[2]",
                      ["'nova' is listed twice"]),
    "options of unknown service": ("globals.yml", "services: {nosuch: {workers: 2}}\n", "services.nosuch",
                                   ["unknown service 'nosuch'"]),
    "options not a mapping": ("globals.yml", "services: {nova: 2}\n", "services.nova", ["dictionary"]),
    "engine": ("globals.yml", "engine: lxc\n", "engine", ["must be docker, got 'lxc'"]),
    "podman": ("globals.yml", "engine: podman\n", "engine",
               ["podman is not supported: dockyard is tested with the Docker Engine only"]),
    "internal address": ("globals.yml", "internal_address: localhost\n", "internal_address", ["IPv4"]),
    "ipv6": ("globals.yml", "internal_address: '::1'\n", "internal_address", ["IPv6 is not supported"]),
    "external address": ("globals.yml", "external_address: 'a b'\n", "external_address", ["DNS name"]),
    "parallelism zero": ("globals.yml", "parallelism: 0\n", "parallelism", ["greater than or equal to 1"]),
    "health timeout": ("globals.yml", "health_timeout: -1\n", "health_timeout", ["greater than 0"]),
    "tag": ("globals.yml", "image_tag: 'a:b'\n", "image_tag", ["image tag"]),
    "namespace": ("globals.yml", "image_namespace: Dockyard\n", "image_namespace", ["namespace"]),
    "registry": ("globals.yml", "image_registry: 'http://r:5000'\n", "image_registry", ["registry"]),
    "region": ("globals.yml", "region: 'Region One'\n", "region", ["region name"]),
    "several problems": ("globals.yml", "parallelism: 0\nengine: lxc\n", "engine",
                         ["must be docker", "also parallelism:"]),
    "inventory not a mapping": ("inventory.yml", "[ctl1]\n", None, ["mapping"]),
    "inventory unknown key": ("inventory.yml", INVENTORY + "children: {}\n", "children", ["unknown key"]),
    "host unknown key": ("inventory.yml", INVENTORY.replace("address: 192.0.2.11", "adress: 192.0.2.11"),
                         "hosts.ctl1.adress", ["did you mean 'address'?", "also hosts.ctl1.address: required"]),
    "host address": ("inventory.yml", INVENTORY.replace("192.0.2.11", "ctl1.example"), "hosts.ctl1.address",
                     ["IPv4"]),
    "host without address": ("inventory.yml", INVENTORY.replace("{address: 192.0.2.21}", "{}"),
                             "hosts.cmp1.address", ["required key missing"]),
    "group member not a host": ("inventory.yml", INVENTORY.replace("compute: [cmp1, ctl1]", "compute: [cmp1, ghost]"),
                                "groups.compute[1]", ["'ghost' is not defined under hosts", "ctl1, cmp1"]),
    "group missing": ("inventory.yml", INVENTORY.replace("network: [ctl1], ", ""), "groups.network",
                      ["'network' is missing"]),
    "group empty": ("inventory.yml", INVENTORY.replace("control: [ctl1]", "control: []"), "groups.control",
                    ["'control' is empty"]),
    "group not a list": ("inventory.yml", INVENTORY.replace("control: [ctl1]", "control: ctl1"), "groups.control",
                         ["list"]),
    "member twice": ("inventory.yml", INVENTORY.replace("[cmp1, ctl1]", "[cmp1, cmp1]"), "groups.compute[1]",
                     ["listed twice"]),
    "no hosts": ("inventory.yml", "hosts: {}\ngroups: {control: [a], network: [a], compute: [a]}\n", "hosts",
                 ["no hosts"]),
    "host name": ("inventory.yml", INVENTORY.replace("cmp1", "cmp/1"), "hosts.cmp/1", ["host names are"]),
    "host named like a service": ("inventory.yml", INVENTORY.replace("cmp1", "nova"), "hosts.nova",
                                  ["named like a service"]),
    "two hosts, one address": ("inventory.yml", INVENTORY.replace("192.0.2.21", "192.0.2.11"),
                               "hosts.cmp1.address", ["'ctl1' has the same address"]),
    "password missing": ("passwords.yml", "p1: x\n", "p2", ["password missing", "dockyard genpwd --config-dir"]),
    "password empty": ("passwords.yml", "p1: x\np2: ''\n", "p2", ["password missing"]),
    "password not text": ("passwords.yml", "p1: 12345\np2: y\n", "p1", ["quote the value"]),
    "passwords not a mapping": ("passwords.yml", "just text\n", None, ["mapping", "not a string"]),
    "password key not text": ("passwords.yml", "p1: x\np2: y\n1: z\n", None, ["keys must be text"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_input_names_file_and_key_and_changes_nothing(tmp_path, case):
    file, text, key, words = BAD[case]
    folder = make_site(tmp_path)
    (folder / file).write_text(text)
    before = snapshot(folder)
    with pytest.raises(ConfigError) as exc:
        load(folder)
    error = exc.value
    assert error.path == str(folder / file)
    assert error.key == key
    assert str(error).startswith(f"{folder / file}: {key + ': ' if key else ''}")
    for word in words:
        assert word in error.detail, str(error)
    assert error.exit_code == EXIT_INVALID
    assert snapshot(folder) == before


def test_password_errors_never_show_a_value(tmp_path):
    folder = make_site(tmp_path)
    (folder / "passwords.yml").write_text("p1: Secret-Value-1\np2: 99887766\n")
    with pytest.raises(ConfigError) as exc:
        load(folder)
    assert exc.value.key == "p2" and "99887766" not in str(exc.value) and "Secret-Value-1" not in str(exc.value)


def test_every_missing_password_is_counted_and_the_first_is_the_key(tmp_path):
    folder = make_site(tmp_path)
    (folder / "passwords.yml").unlink()
    with pytest.raises(ConfigError) as exc:
        load_site(folder, KNOWN, ["a", "b", "c"])
    assert exc.value.key == "a" and "(and 2 more: b, c)" in str(exc.value)


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path / "nowhere")
    assert exc.value.path == str(tmp_path / "nowhere")


# -- what loads ------------------------------------------------------------------------------

def test_without_files_the_site_is_all_in_one_with_the_defaults(tmp_path):
    folder = make_site(tmp_path)
    site = load(folder)
    assert site.globals.enabled_services == ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement",
                                             "nova", "neutron", "horizon", "openvswitch", "neutron-agents",
                                             "nova-compute"]
    assert (site.globals.internal_address, site.globals.external_address) == ("127.0.0.1", "127.0.0.1")
    assert (site.globals.image_namespace, site.globals.image_tag, site.globals.image_registry) == \
        ("dockyard", "2025.1", None)
    assert (site.globals.engine, site.globals.region, site.globals.parallelism, site.globals.health_timeout) == \
        ("docker", "RegionOne", 4, 300)
    assert site.generated_dir == folder.absolute() / "generated"
    assert site.state_dir == folder.absolute() / "state"
    for group in ("control", "network", "compute"):
        assert site.inventory.hosts_in(group) == [Host("localhost", "127.0.0.1", hostname=MACHINE_HOSTNAME)]
    assert site.passwords == {"p1": "pw-p1", "p2": "pw-p2"}


def test_empty_files_mean_the_defaults(tmp_path):
    folder = make_site(tmp_path, globals_yml="# nothing yet\n", inventory_yml="")
    site = load(folder)
    assert site.globals.region == "RegionOne"
    assert [h.name for h in site.inventory.hosts_in("compute")] == ["localhost"]


def test_all_in_one_host_follows_the_internal_address(tmp_path):
    site = load(make_site(tmp_path, globals_yml="internal_address: 192.0.2.5\n"))
    assert site.inventory.hosts_in("network") == [Host("localhost", "192.0.2.5", hostname=MACHINE_HOSTNAME)]
    assert site.external_address == "192.0.2.5"


def test_openstack_knows_each_host_by_its_inventory_name_and_localhost_by_the_machines(tmp_path):
    assert load(make_site(tmp_path)).inventory.hosts["localhost"].hostname == MACHINE_HOSTNAME
    (tmp_path / "named").mkdir()
    (tmp_path / "local").mkdir()
    named = load(make_site(tmp_path / "named", inventory_yml=INVENTORY, globals_yml=AT_CTL1)).inventory
    assert {name: h.hostname for name, h in named.hosts.items()} == {"ctl1": "ctl1", "cmp1": "cmp1"}
    # An inventory may call the local engine's host localhost too: still this machine.
    local = load(make_site(tmp_path / "local", inventory_yml=INVENTORY.replace("ctl1", "localhost"),
                           globals_yml=AT_CTL1)).inventory
    assert {name: h.hostname for name, h in local.hosts.items()} == {"localhost": MACHINE_HOSTNAME, "cmp1": "cmp1"}
    assert Host("cmp9", "192.0.2.9").hostname == "cmp9"


def test_a_machine_name_that_cannot_be_used_is_invalid_input(tmp_path, monkeypatch):
    monkeypatch.setattr("dockyard.deploy.site.loader.machine_hostname", hostfacts.machine_hostname)
    monkeypatch.setattr("socket.gethostname", lambda: "no good")
    folder = make_site(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load(folder)
    assert exc.value.exit_code == EXIT_INVALID
    assert (exc.value.path, exc.value.key) == (str(folder / "inventory.yml"), "hosts")


def test_globals_as_written(tmp_path):
    folder = make_site(tmp_path, globals_yml=(
        "enabled_services: [keystone, cinder]\ninternal_address: 10.1.0.5\nexternal_address: cloud.example.com\n"
        "image_registry: registry.example.com:5000\nimage_tag: '2025.1-1'\nengine: docker\nregion: Lab_2\n"
        "generated_dir: out\nstate_dir: /var/lib/dockyard/state\nparallelism: 8\nhealth_timeout: 60.5\n"
        "services: {keystone: {workers: 2, token: {expiration: 7200}}}\n"))
    g = load(folder).globals
    assert g.enabled_services == ["keystone", "cinder"]
    assert (g.internal_address, g.external_address) == ("10.1.0.5", "cloud.example.com")
    assert g.image_ref("keystone") == "registry.example.com:5000/dockyard/keystone:2025.1-1"
    assert (g.engine, g.region, g.parallelism, g.health_timeout) == ("docker", "Lab_2", 8, 60.5)
    assert g.generated_dir == folder.absolute() / "out"               # relative to the folder
    assert g.state_dir == Path("/var/lib/dockyard/state")
    assert g.services == {"keystone": {"workers": 2, "token": {"expiration": 7200}}}


def test_inventory_keeps_order_and_allows_custom_groups(tmp_path):
    folder = make_site(tmp_path, inventory_yml=INVENTORY.replace("[cmp1, ctl1]}", "[cmp1, ctl1], storage: [cmp1]}"),
                       globals_yml=AT_CTL1)
    inventory = load(folder).inventory
    assert list(inventory.groups) == ["control", "network", "compute", "storage"]
    assert [h.name for h in inventory.hosts_in("compute")] == ["cmp1", "ctl1"]
    assert inventory.hosts_in("storage") == [Host("cmp1", "192.0.2.21")]
    assert inventory.hosts_in("nosuch") == []


def test_default_required_passwords_are_the_default_list(tmp_path):
    folder = make_site(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_site(folder, KNOWN)
    assert exc.value.key == DEFAULT_PASSWORD_NAMES[0]
    (folder / "passwords.yml").write_text("".join(f"{n}: v-{n}\n" for n in DEFAULT_PASSWORD_NAMES))
    assert set(load_site(folder, KNOWN).passwords) == set(DEFAULT_PASSWORD_NAMES)


def test_no_required_passwords_needs_no_passwords_file(tmp_path):
    folder = make_site(tmp_path)
    (folder / "passwords.yml").unlink()
    assert load_site(folder, KNOWN, []).passwords == {}


def test_a_site_never_shows_its_passwords(tmp_path):
    site = load(make_site(tmp_path))
    assert "pw-p1" not in repr(site) and "pw-p1" not in str(site)


def test_the_site_is_immutable(tmp_path):
    site = load(make_site(tmp_path))
    with pytest.raises(AttributeError):
        site.globals = Globals()
    with pytest.raises(ValidationError):
        site.globals.parallelism = 9


def test_config_dir_option_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", "/srv/site")
    assert config_dir_from("/opt/other") == Path("/opt/other")
    assert config_dir_from(None) == Path("/srv/site")
    monkeypatch.delenv("DOCKYARD_CONFIG_DIR")
    assert config_dir_from(None) == Path("/etc/dockyard")


def test_key_path_reads_like_the_file():
    assert key_path(("hosts", "ctl1", "address")) == "hosts.ctl1.address"
    assert key_path(("groups", "control", 0)) == "groups.control[0]"
    assert key_path(()) == ""


# -- a fresh machine -------------------------------------------------------------------------

def test_write_defaults_makes_a_commented_all_in_one_site(tmp_path):
    folder = tmp_path / "etc" / "dockyard"
    assert write_defaults(folder) == [folder / "globals.yml"]
    assert (folder / "config").is_dir()
    text = (folder / "globals.yml").read_text()
    assert text.startswith("#")
    written = yaml.safe_load(text)
    defaults = Globals().model_dump(mode="json")
    assert {k: defaults[k] for k in written} == written              # the values are the defaults
    for name in Globals.model_fields:                               # every key is spelled out
        assert re.search(rf"^#? ?{name}:", text, re.M), name
    (folder / "passwords.yml").write_text("p1: a\np2: b\n")
    (folder / "passwords.yml").chmod(0o600)
    assert load(folder).globals == load_site(make_site(tmp_path), KNOWN, ["p1", "p2"]).globals.model_copy(
        update={"generated_dir": folder.absolute() / "generated", "state_dir": folder.absolute() / "state"})


def test_write_defaults_never_overwrites(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "globals.yml").write_text("region: Mine\n")
    (folder / "config").mkdir()
    (folder / "config" / "nova.conf").write_text("[DEFAULT]\ndebug = true\n")
    before = snapshot(folder)
    assert write_defaults(folder) == []
    assert snapshot(folder) == before


def test_write_defaults_honours_the_umask_for_an_ordinary_file(tmp_path):
    old = os.umask(0o022)
    try:
        write_defaults(tmp_path / "site")
    finally:
        os.umask(old)
    assert (tmp_path / "site" / "globals.yml").stat().st_mode & 0o777 == 0o644


def test_every_globals_key_is_documented():
    docs = DOCS.read_text()
    for name in Globals.model_fields:
        assert f"`{name}`" in docs, name
