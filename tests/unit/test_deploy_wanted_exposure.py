"""Least exposure: listeners on the host's address, root from where it is needed,
tokens in memcached encrypted, no password in any process's arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dockyard import SOURCE_ROOT
from dockyard.deploy.site import ini
from dockyard.deploy.wanted.builder import wanted_state

from .deploy_fixtures import fake_engine, make_site, set_globals, site_of
from .test_deploy_wanted_formats import oslo_read, sql_literals

INVENTORY = ("hosts: {ctl1: {address: 127.0.0.98}, cmp1: {address: 127.0.0.97}}\n"
             "groups: {control: [ctl1], network: [ctl1], compute: [cmp1]}\n")


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    site_dir = make_site(tmp_path_factory.mktemp("multi"))
    (site_dir / "inventory.yml").write_text(INVENTORY)
    set_globals(site_dir, internal_address="127.0.0.98")          # the control host's
    site, catalogue = site_of(site_dir)
    return site, wanted_state(site, catalogue, fake_engine()).state


def files_named(wanted, name: str) -> dict[str, str]:
    return {f.unit: f.content.decode() for f in wanted.files if Path(f.path).name == name}


def test_erlang_distribution_listens_on_the_hosts_address_only(multi):
    _, wanted = multi
    env = files_named(wanted, "rabbitmq-env.conf")["rabbitmq"]
    assert 'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,98}"' in env.splitlines()
    rabbit = next(c for c in wanted.containers if c.name == "rabbitmq")
    assert rabbit.spec.environment["ERL_EPMD_ADDRESS"] == "127.0.0.98"


def test_mariadb_root_logs_in_over_the_socket_and_from_the_database_host_only(multi):
    site, wanted = multi
    bootstrap = files_named(wanted, "bootstrap.sql")["mariadb_bootstrap"]
    users = re.findall(r"(?:ALTER|CREATE) USER (?:IF NOT EXISTS )?'root'@('[^']*')", bootstrap)
    # 127.0.0.98 is a loopback address on no interface: the kernel connects from 127.0.0.1.
    assert users == ["'localhost'", "'127.0.0.98'", "'127.0.0.1'"]
    assert sql_literals(bootstrap).count(site.passwords["database_password"]) == 3
    for unit, sql in files_named(wanted, "create-databases.sql").items():
        assert re.findall(r"'root'@('[^']*')", sql) == ["'127.0.0.98'", "'127.0.0.98'", "'127.0.0.1'", "'127.0.0.1'",
                                                       "'%'"], unit
        assert "DROP USER IF EXISTS 'root'@'%';" in sql          # what an older bootstrap made
        assert "TO 'root'@'%'" not in sql
    # The databases jobs connect from that address: the database host's.
    for unit, cnf in files_named(wanted, "my.cnf").items():
        assert "host = 127.0.0.98" in cnf.splitlines(), unit
        assert next(j for j in wanted.jobs if j.name == unit).host == "ctl1"


def test_every_token_cache_is_encrypted_with_the_memcache_secret_key(multi, tmp_path):
    site, wanted = multi
    seen = set()
    for f in wanted.files:
        if not f.path.endswith((".conf", ".ini")):
            continue
        text = f.content.decode()
        if "[keystone_authtoken]" not in text:
            continue
        assert ini.parse(text).get("keystone_authtoken", "memcache_security_strategy") == ["ENCRYPT"], f.path
        got = oslo_read(text, tmp_path, [("keystone_authtoken", "memcache_secret_key")])
        assert got[("keystone_authtoken", "memcache_secret_key")] == site.passwords["memcache_secret_key"], f.path
        seen.add(f.service)
    assert {"glance", "placement", "nova", "neutron", "nova-compute"} <= seen


# --password anywhere; -p<password> given to a MariaDB client; a password
# variable set from anything but a file read (keystone-admin's $(cat FILE)).
PASSWORD_ARGUMENT = re.compile(r"(--password\b|\b(mariadb|mysql|mariadb-admin|mysqladmin)\b[^|;&]*\s-p\S"
                               r"|PASSWORD=[^$(])")


def test_no_password_on_a_command_line():
    # In the images' scripts and the catalogue: options that take a password.
    offenders = []
    for root in (SOURCE_ROOT / "images", SOURCE_ROOT / "services"):
        for path in sorted(root.rglob("*")):
            if path.is_file():
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if PASSWORD_ARGUMENT.search(line) and not line.lstrip().startswith("#"):
                        offenders.append(f"{path.relative_to(SOURCE_ROOT)}:{n}")
    assert offenders == []
    bootstrap = (SOURCE_ROOT / "images" / "mariadb-server" / "dockyard-bootstrap").read_text()
    assert 'mariadb --socket="$socket" -uroot < "$sql_file"' in bootstrap      # the SQL on stdin


def test_no_rendered_command_holds_a_password_option(multi):
    site, wanted = multi
    for f in wanted.files:
        if Path(f.path).name == "config.json":
            command = json.loads(f.content).get("command", "")
            assert not PASSWORD_ARGUMENT.search(" " + command), f.unit
            assert not [v for v in site.passwords.values() if v in command], f.unit


def test_root_at_a_routable_database_address_only(tmp_path):
    site_dir = make_site(tmp_path)
    (site_dir / "inventory.yml").write_text(INVENTORY.replace("127.0.0.98", "192.0.2.98"))
    set_globals(site_dir, internal_address="192.0.2.98")
    site, catalogue = site_of(site_dir)
    wanted = wanted_state(site, catalogue, fake_engine()).state
    bootstrap = files_named(wanted, "bootstrap.sql")["mariadb_bootstrap"]
    assert re.findall(r"USER (?:IF NOT EXISTS )?'root'@('[^']*')", bootstrap) == ["'localhost'", "'192.0.2.98'"]
