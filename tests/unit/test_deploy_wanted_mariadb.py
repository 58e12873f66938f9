"""mariadb-server's bootstrap step and a databases job, against a real MariaDB
server, with nasty passwords: the SQL and option-file quoting, the root users,
the password on stdin, the shutdown without a password, and the migration of a
site whose root could log in from anywhere.

Skipped unless DOCKYARD_TEST_MARIADB names an unpacked MariaDB (no container,
no system install; nothing listens but on 127.0.0.99 at a free port)::

    apt-get download mariadb-server-core mariadb-client-core
    for f in mariadb-*.deb; do dpkg-deb -x "$f" /tmp/mariadb; done
    DOCKYARD_TEST_MARIADB=/tmp/mariadb python3 -m pytest tests/unit/test_deploy_wanted_mariadb.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from dockyard import SOURCE_ROOT
from dockyard.deploy.files import write_atomic
from dockyard.deploy.wanted.builder import _cnf_string, wanted_state

from .deploy_fixtures import fake_engine, make_site, site_of

ROOT = os.environ.get("DOCKYARD_TEST_MARIADB")
pytestmark = pytest.mark.skipif(not ROOT, reason="DOCKYARD_TEST_MARIADB (an unpacked MariaDB) not set")

DATABASE_PASSWORD = "r00t p#ss: 'it''s' \"q\" $x$$ 100% \\\\ end "
KEYSTONE_PASSWORD = " ks `x` $(y) ; # \\ "


def wrappers(root: Path, bin_dir: Path) -> None:
    """The image's commands, run from the unpacked tree as root (the image runs them as mysql)."""
    bin_dir.mkdir()
    usr = root / "usr"
    scripts = {
        "mariadbd": f'exec {usr}/sbin/mariadbd --no-defaults --basedir={usr} '
                    f'--lc-messages-dir={usr}/share/mysql "${{args[@]}}"',
        "mariadb-install-db": f'PATH={usr}/bin:$PATH exec {usr}/bin/mariadb-install-db --no-defaults '
                              f'--basedir={usr} "${{args[@]}}"',
        "mariadb": f'exec {usr}/bin/mariadb --no-defaults "$@"',
        # Only what the bootstrap asks of it: wait until the server answers.
        "mariadb-admin": 'for a in "$@"; do case $a in --socket=*) s=${a#--socket=};; esac; done\n'
                         f'for i in $(seq 240); do {usr}/bin/mariadb --no-defaults --socket="$s" -uroot -e "select 1" '
                         '>/dev/null 2>&1 && exit 0; sleep 0.25; done; exit 1',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/bash\nargs=("$@"); args=("${{args[@]/--user=mysql/--user=root}}")\n{body}\n')
        path.chmod(0o755)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.99", 0))
        return s.getsockname()[1]


def client(tmp: Path, name: str, user: str, password: str, **where) -> list[str]:
    cnf = tmp / f"{name}.cnf"
    lines = [f"{k} = {v}" for k, v in where.items()] + [f"user = {user}", f"password = {_cnf_string(password)}"]
    cnf.write_text("[client]\n" + "\n".join(lines) + "\n")
    return [f"{ROOT}/usr/bin/mariadb", f"--defaults-extra-file={cnf}", "-N"]


def test_bootstrap_and_databases_job_against_a_real_server(tmp_path):
    site_dir = make_site(tmp_path)
    path = site_dir / "passwords.yml"
    data = yaml.safe_load(path.read_text())
    data.update(database_password=DATABASE_PASSWORD, keystone_database_password=KEYSTONE_PASSWORD)
    write_atomic(path, yaml.safe_dump(data))
    site, catalogue = site_of(site_dir)
    files = {(f.unit, Path(f.path).name): f.content for f in wanted_state(site, catalogue, fake_engine()).state.files}
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for (unit, name), content in files.items():
        if unit in ("mariadb_bootstrap", "keystone_databases"):
            (rendered / f"{unit}.{name}").write_bytes(content)

    bin_dir, data_dir = tmp_path / "bin", tmp_path / "data"
    wrappers(Path(ROOT), bin_dir)
    data_dir.mkdir()
    script = (SOURCE_ROOT / "images" / "mariadb-server" / "dockyard-bootstrap").read_text()
    script = script.replace("datadir=/var/lib/mysql", f"datadir={data_dir}")
    script = script.replace("socket=/run/mysqld/bootstrap.sock", f"socket={tmp_path}/boot.sock")
    (tmp_path / "bootstrap").write_text(script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "DOCKYARD_DB_BOOTSTRAP_SQL": str(rendered / "mariadb_bootstrap.bootstrap.sql")}
    boot = subprocess.run(["bash", str(tmp_path / "bootstrap")], env=env, capture_output=True, text=True, timeout=300)
    assert boot.returncode == 0, boot.stderr[-3000:]
    assert "initialised" in boot.stdout

    port = free_port()
    server = subprocess.Popen([str(bin_dir / "mariadbd"), "--user=mysql", f"--datadir={data_dir}",
                               "--bind-address=127.0.0.99", f"--port={port}", f"--socket={tmp_path}/run.sock",
                               "--skip-name-resolve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        root_socket = client(tmp_path, "socket", "root", DATABASE_PASSWORD, socket=f"{tmp_path}/run.sock")
        for _ in range(120):
            if subprocess.run([*root_socket, "-e", "select 1"], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)

        def run(cmd, sql=None):
            done = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        job = [f"{ROOT}/usr/bin/mariadb", f"--defaults-extra-file={rendered / 'keystone_databases.my.cnf'}",
               f"--port={port}"]
        sql = (rendered / "keystone_databases.create-databases.sql").read_text()
        run(job, sql)
        users = run([*root_socket, "-e", "select user, host from mysql.user where user like '%o%' order by 1, 2"])
        assert users.split("\n")[:-1] == ["keystone\t%", "root\t127.0.0.1", "root\t127.0.0.99", "root\tlocalhost"]
        keystone = client(tmp_path, "keystone", "keystone", KEYSTONE_PASSWORD, host="127.0.0.99", port=port)
        assert run([*keystone, "-e", "select current_user()"]).strip() == "keystone@%"

        # A site bootstrapped before: root@'%' and no other root over TCP. Its
        # databases job logs in as root@'%' and leaves root where it belongs.
        run([*root_socket, "-e", "DROP USER 'root'@'127.0.0.1', 'root'@'127.0.0.99'; CREATE USER 'root'@'%' "
                                 "IDENTIFIED BY 'old-Pw-1'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"])
        old = client(tmp_path, "old", "root", "old-Pw-1", host="127.0.0.99", port=port)
        assert run([*old, "-e", "select current_user()"]).strip() == "root@%"
        run(old, sql)
        users = run([*root_socket, "-e", "select host from mysql.user where user = 'root' order by 1"])
        assert users.split("\n")[:-1] == ["127.0.0.1", "127.0.0.99", "localhost"]
        run(job, sql)                                                          # and again: idempotent
    finally:
        server.terminate()
        server.wait(timeout=60)
