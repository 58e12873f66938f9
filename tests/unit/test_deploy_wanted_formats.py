"""Any password an operator chooses reaches every file format intact.

Each value is rendered by dockyard's filters (or the file it goes in is written
whole), then read back with the parser of the program that reads it:

- oslo.config INI files: oslo.config itself (its parser, quotes and ``$``
  interpolation);
- YAML (clouds.yaml): yaml.safe_load; JSON (RabbitMQ's definitions): json.loads;
- URLs (database and transport URLs): urllib.parse, as SQLAlchemy and
  oslo.messaging split and unquote them;
- shell (admin-openrc.sh): shlex.split; keystone's admin_password file: a real
  ``sh`` reading it as keystone-admin's command does;
- MariaDB's SQL string literals and option files: no server here, so both are
  read by the grammars MariaDB documents, written out below (string literals:
  the KB's "String Literals" escapes; option files: mysys/my_default.c, as the
  KB's "Configuring MariaDB with Option Files" describes it).

Passwords are printable ASCII without a backslash before a dollar (passwords.yml
refuses the rest, with the reason); the property tests draw from exactly that.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dockyard.deploy import api
from dockyard.deploy.ops import postdeploy
from dockyard.deploy.site import fernet, ini
from dockyard.deploy.site.loader import Globals, Inventory, Site
from dockyard.deploy.site.passwords import HASH_KEY_NAME, load_passwords
from dockyard.deploy.wanted.builder import _environment, wanted_state
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.errors import ConfigError

from .deploy_fixtures import edit_yaml, fake_engine, make_site, set_password, site_of

cfg = pytest.importorskip("oslo_config.cfg")

NASTY = ["p#ss: word", "it's", 'say "hi"', "$HOME $$ ${x} $", "100%", "back\\slash\\", " lead", "trail ",
         "  both  ", "'quoted'", '"dq"', "#start", ";semi", "a=b:c", "--option", "key: value", "[section]",
         "{{ jinja }}", "%(interp)s", "\\", "'", '"', "$", "@/?&=+,;", "a b", "`cmd` $(cmd)", "\\n\\t\\s\\0",
         "'\"'\"", "- item", "&anchor *alias !tag", "null", "~", "|", ">", "%2F%25"]
PASSWORD = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40
                   ).filter(lambda s: "\\$" not in s)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENV = _environment(str(load_services().templates))


def render(text: str, **variables) -> str:
    return ENV.from_string(text).render(**variables)


def examples(test):
    for value in NASTY:
        test = example(value)(test)
    return test


# -- the readers ------------------------------------------------------------------------------

def oslo_read(text: str, tmp_path: Path, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Values as oslo.config reads them: (section, key) -> value."""
    path = tmp_path / "oslo.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    for section, key in wanted:
        conf.register_opt(cfg.StrOpt(key), group=None if section == "DEFAULT" else section)
    conf(args=[], project="dockyard-test", default_config_files=[str(path)], default_config_dirs=[])
    out = {}
    for section, key in wanted:
        group = conf if section == "DEFAULT" else conf[section]
        out[(section, key)] = group[key]
    return out


SQL_ESCAPES = {"0": "\0", "'": "'", '"': '"', "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a",
               "\\": "\\", "%": "\\%", "_": "\\_"}


def sql_literals(text: str) -> list[str]:
    """Every single-quoted string literal in ``text`` as MariaDB reads it (sql_mode
    without NO_BACKSLASH_ESCAPES): a backslash escapes the next character (the
    table above; any other character stands for itself), ``''`` is one quote.
    Comments (``--`` to the end of the line) are skipped."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("--", i):
            i = text.index("\n", i) if "\n" in text[i:] else len(text)
        elif text[i] == "`":
            i = text.index("`", i + 1) + 1
        elif text[i] == "'":
            chars, i = [], i + 1
            while True:
                c = text[i]
                if c == "\\":
                    chars.append(SQL_ESCAPES.get(text[i + 1], text[i + 1]))
                    i += 2
                elif c == "'" and text[i + 1:i + 2] == "'":
                    chars.append("'")
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            out.append("".join(chars))
        else:
            i += 1
    return out


def cnf_value(line: str) -> str:
    """A ``key = value`` line of a MariaDB option file as mysys reads it: the
    value ends at a ``#`` outside quotes; spaces around it go; one pair of
    matching quotes around it goes; then ``\\n \\t \\r \\b \\s \\" \\' \\\\`` are
    escapes (a backslash before anything else stays)."""
    value = line.split("=", 1)[1]
    quote, escape = None, False
    for i, c in enumerate(value):             # remove_end_comment
        if c in "'\"" and not escape:
            quote = c if quote is None else (None if quote == c else quote)
        if quote is None and c == "#":
            value = value[:i]
            break
        escape = bool(quote) and c == "\\" and not escape
    value = value.strip(" \t\r\n")
    if len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", '"': '"', "'": "'", "\\": "\\"}
    while i < len(value):
        if value[i] == "\\" and i != len(value) - 1:
            out.append(escapes.get(value[i + 1], "\\" + value[i + 1]))
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def url_password(url: str) -> str:
    return unquote(urlsplit(url).password or "")


def rabbitmq_hash_matches(stored: str, password: str) -> bool:
    raw = base64.b64decode(stored)
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def sh_reads(path: Path) -> str:
    """What keystone-admin's `OS_BOOTSTRAP_PASSWORD=$(cat FILE)` gives the command."""
    return subprocess.run(["sh", "-c", 'P=$(cat "$1"); printf %s "$P"', "sh", str(path)], check=True,
                          capture_output=True, text=True).stdout


def fake_site(passwords: dict[str, str]) -> Site:
    return Site(Path("/nonexistent"), Globals(), Inventory.all_in_one("127.0.0.1"), passwords)


# -- each filter, any password ----------------------------------------------------------------

@PROPERTY
@given(password=PASSWORD)
@examples
def test_ini_filter_reads_back_through_oslo_config(tmp_path_factory, password):
    text = render("[keystone_authtoken]\npassword = {{ pw | ini }}\nother = x\n", pw=password)
    got = oslo_read(text, tmp_path_factory.mktemp("oslo"), [("keystone_authtoken", "password")])
    assert got[("keystone_authtoken", "password")] == password
    # dockyard's own INI merge (an override present) keeps it as written.
    merged = ini.merge(text, ("override", "[keystone_authtoken]\nother = y\n"))
    assert oslo_read(merged, tmp_path_factory.mktemp("oslo"), [("keystone_authtoken", "password")]
                     )[("keystone_authtoken", "password")] == password


@PROPERTY
@given(password=PASSWORD)
@examples
def test_sql_filter_reads_back_as_one_string_literal(password):
    text = render("ALTER USER 'u'@'%' IDENTIFIED BY {{ pw | sql }};\n", pw=password)
    assert sql_literals(text) == ["u", "%", password]


@PROPERTY
@given(password=PASSWORD)
@examples
def test_cnf_filter_reads_back_through_the_option_file_grammar(password):
    line = render("password = {{ pw | cnf }}", pw=password)
    assert cnf_value(line) == password


@PROPERTY
@given(password=PASSWORD)
@examples
def test_url_filter_reads_back_from_database_and_transport_urls(password):
    for url in (render("mysql+pymysql://nova:{{ pw | url }}@192.0.2.1:3306/nova?charset=utf8", pw=password),
                render("rabbit://openstack:{{ pw | url }}@192.0.2.1:5672//", pw=password)):
        assert url_password(url) == password
        assert "$" not in url            # so oslo.config's interpolation never sees one


@PROPERTY
@given(password=PASSWORD)
@examples
def test_yaml_json_and_shell_files_read_back(password):
    clouds = yaml.safe_load(render(Path(ENV.loader.searchpath[0], "common/clouds.yaml.j2").read_text(),
                                   internal_address="192.0.2.1", region="RegionOne",
                                   passwords={"keystone_admin_password": password}))
    assert clouds["clouds"]["dockyard"]["auth"]["password"] == password
    site = fake_site({"keystone_admin_password": password})
    assert yaml.safe_load(postdeploy.clouds_yaml(site))["clouds"]["dockyard"]["auth"]["password"] == password
    words = shlex.split(postdeploy.openrc(site), comments=True)
    assert f"OS_PASSWORD={password}" in words
    doc = json.loads(render('{"h": {{ pw | rabbitmq_hash | tojson }}, "p": {{ pw | tojson }}}', pw=password))
    assert rabbitmq_hash_matches(doc["h"], password) and doc["p"] == password


# -- passwords.yml: what cannot work is refused, with the reason -------------------------------

@pytest.mark.parametrize("value, words", [("pässword", "printable ASCII"), ("tab\there", "printable ASCII"),
                                           ("two\nlines", "printable ASCII"), ("a\\$b", "backslash")])
def test_passwords_that_no_format_could_carry_are_refused(tmp_path, value, words):
    path = tmp_path / "passwords.yml"
    path.write_text(yaml.safe_dump({"p1": "fine", "p2": value}))
    path.chmod(0o600)
    with pytest.raises(ConfigError) as exc:
        load_passwords(path, ["p1", "p2"])
    assert exc.value.key == "p2" and words in str(exc.value) and exc.value.exit_code == 2


# -- the whole site, nasty passwords everywhere -----------------------------------------------

SECRET_KEYS = {"password", "memcache_secret_key", "metadata_proxy_shared_secret", "connection", "transport_url"}


def nasty_site(tmp_path) -> tuple[Path, dict[str, str]]:
    site_dir = make_site(tmp_path)

    def make_nasty(data: dict) -> None:
        for i, name in enumerate(sorted(n for n in data if n != HASH_KEY_NAME)):
            nasty = NASTY[i % len(NASTY)]
            data[name] = f"{nasty}{i}{nasty}"
    data = edit_yaml(site_dir / "passwords.yml", make_nasty)
    (site_dir / "config" / "nova.conf").write_text("[DEFAULT]\ndebug = True\n")   # a merge, too
    return site_dir, data


def read_secrets(name: str, content: str, tmp_path: Path) -> list[str]:
    """Every secret a program would read from this generated file."""
    if name.endswith((".conf", ".ini")) and not name.startswith(("rabbitmq", "libvirtd", "qemu", "virtlogd",
                                                                  "dockyard.cnf")):
        parsed = ini.parse(content)
        wanted = [(s, k) for s, keys in parsed.sections.items() for k in keys if k in SECRET_KEYS]
        values = oslo_read(content, tmp_path, wanted)
        return [url_password(v) if "://" in v else v for v in values.values()]
    if name == "my.cnf":
        return [cnf_value(line) for line in content.splitlines() if line.startswith("password")]
    if name.endswith(".sql"):
        return [lit for lit in sql_literals(content) if lit not in ("%", "localhost") and not
                re.fullmatch(r"[a-z_]+|[0-9.]+", lit)]
    if name == "clouds.yaml":
        return [yaml.safe_load(content)["clouds"]["dockyard"]["auth"]["password"]]
    if name in ("register.py", "local_settings.py"):
        tree = ast.parse(content)
        return [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) in ("PASSWORD", "SECRET_KEY")]
    if name == "admin_password":
        path = tmp_path / name
        path.write_text(content)
        return [sh_reads(path)]
    if name == "erlang.cookie":
        return [content]
    return []


def test_every_generated_file_reads_back_every_nasty_password(tmp_path):
    site_dir, passwords = nasty_site(tmp_path)
    site, catalogue = site_of(site_dir)
    wanted = wanted_state(site, catalogue, fake_engine()).state
    fernet_keys = fernet.load(site_dir / fernet.FERNET_FILE).keys
    found: dict[str, set[str]] = {}
    for f in wanted.files:
        name = Path(f.path).name
        if name == "definitions.json":
            user = json.loads(f.content)["users"][0]
            assert rabbitmq_hash_matches(user["password_hash"], passwords["rabbitmq_password"])
            found.setdefault("rabbitmq_password", set()).add(name)
            continue
        if name.startswith("fernet-keys."):               # not in passwords.yml: fernet-keys.yml's keys
            assert f.content.decode() == fernet_keys[int(name.split(".")[1])]
            found.setdefault(fernet.FERNET_SECRET, set()).add(name)
            continue
        folder = tmp_path / "read" / f.unit
        folder.mkdir(parents=True, exist_ok=True)
        for value in read_secrets(name, f.content.decode(), folder):
            owners = [n for n, v in passwords.items() if v == value]
            assert owners, f"{f.unit}/{name}: a secret read back as none of the passwords"
            found.setdefault(owners[0], set()).add(name)
    # Every password the services use was found, intact, somewhere.
    used = set(catalogue.required_passwords(catalogue.closure(site.globals.enabled_services))) - {HASH_KEY_NAME}
    assert used <= set(found), used - set(found)


def test_client_files_read_back_a_nasty_admin_password(tmp_path):
    site_dir, passwords = nasty_site(tmp_path)
    for path in api.post_deploy(site_dir):
        text = path.read_text()
        if path.name == "clouds.yaml":
            assert yaml.safe_load(text)["clouds"]["dockyard"]["auth"]["password"] == \
                passwords["keystone_admin_password"]
        else:
            assert f"OS_PASSWORD={passwords['keystone_admin_password']}" in shlex.split(text, comments=True)


def test_a_refused_value_stops_no_stop_and_fails_the_prechecks(tmp_path):
    from dockyard.deploy.ops.prechecks import FAIL, run_prechecks

    site_dir = make_site(tmp_path)
    set_password(site_dir, "rabbitmq_password", "naïve")
    assert load_passwords(site_dir / "passwords.yml", [])["rabbitmq_password"] == "naïve"    # stop, destroy need none
    checks = [c for c in run_prechecks(site_dir, fake_engine()) if c.name == "passwords"]
    assert [c.status for c in checks] == [FAIL] and "rabbitmq_password" in checks[0].message
