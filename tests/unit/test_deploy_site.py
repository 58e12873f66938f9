"""The operator's configuration: validation errors name file and key; INI merge."""

from __future__ import annotations

import stat

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.deploy.site import ini
from dockyard.deploy.site.passwords import generate_passwords
from dockyard.errors import ConfigError

from .deploy_fixtures import make_site, set_password, site_of


def load(config_dir):
    return site_of(config_dir)[0]


@pytest.mark.parametrize("file, text, fragments", [
    ("globals.yml", "enabled_services: [mariadb\n", ["globals.yml", "line 2", "invalid YAML"]),
    ("globals.yml", "parallelism: many\n", ["globals.yml", "parallelism"]),
    ("globals.yml", "no_such_key: 1\n", ["globals.yml", "no_such_key"]),
    ("globals.yml", "enabled_services: [keystone, nosuch]\n", ["globals.yml", "enabled_services[1]", "nosuch"]),
    ("globals.yml", "services: {nosuch: {}}\n", ["services.nosuch"]),
    ("inventory.yml", "hosts: {a: {address: 1.2.3.4}}\ngroups: {control: [ghost], network: [a], compute: [a]}\n",
     ["inventory.yml", "groups.control[0]", "ghost"]),
    ("inventory.yml", "hosts: {a: {address: 1.2.3.4}}\ngroups: {control: [a], network: [a]}\n",
     ["inventory.yml", "groups.compute"]),
])
def test_invalid_site_names_file_and_key(tmp_path, file, text, fragments):
    config_dir = make_site(tmp_path)
    (config_dir / file).write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(config_dir)
    for fragment in fragments:
        assert fragment in str(exc.value)
    assert exc.value.exit_code == 2


def test_missing_password_names_key_and_advises_genpwd(tmp_path):
    config_dir = make_site(tmp_path)
    set_password(config_dir, "keystone_admin_password", None)
    with pytest.raises(ConfigError) as exc:
        load(config_dir)
    assert "passwords.yml: keystone_admin_password" in str(exc.value) and "genpwd" in str(exc.value)


def test_genpwd_private_random_and_never_overwrites(tmp_path):
    path = tmp_path / "passwords.yml"
    assert sorted(generate_passwords(path, ["a", "b"])) == ["a", "b"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = yaml.safe_load(path.read_text())
    assert first["a"] != first["b"] and len(first["a"]) >= 24
    assert generate_passwords(path, ["a", "b", "c"]) == ["c"]
    second = yaml.safe_load(path.read_text())
    assert second["a"] == first["a"] and second["b"] == first["b"]
    assert generate_passwords(path, ["a", "b", "c"]) == []


def test_all_in_one_defaults(tmp_path):
    from dockyard.deploy.site.loader import write_defaults

    config_dir = make_site(tmp_path)
    (config_dir / "globals.yml").unlink()
    write_defaults(config_dir)
    site = load(config_dir)
    assert [h.name for h in site.inventory.hosts_in("control")] == ["localhost"]
    assert site.globals.internal_address == "127.0.0.1"
    assert "nova" in site.globals.enabled_services


# -- INI ---------------------------------------------------------------------------------

def test_override_replaces_all_values_of_a_multi_valued_key_and_keeps_others():
    base = "[DEFAULT]\ndebug = false\n[filter]\nitem = a\nitem = b\nother = x\n"
    merged = ini.merge(base, ("o.conf", "[filter]\nitem = c\nitem = d\n[new]\nk = v\n"))
    parsed = ini.parse(merged)
    assert parsed.get("filter", "item") == ["c", "d"]
    assert parsed.get("filter", "other") == ["x"]
    assert parsed.get("new", "k") == ["v"]
    assert merged.startswith("[DEFAULT]")


def test_values_keep_equals_percent_and_continuations():
    parsed = ini.parse("[a]\nurl = mysql://u:p%40@h/db?x=1\nlong = first\n    second\n")
    assert parsed.get("a", "url") == ["mysql://u:p%40@h/db?x=1"]
    assert parsed.get("a", "long") == ["first\nsecond"]
    assert ini.parse(ini.render(parsed)).sections == parsed.sections


@pytest.mark.parametrize("text, line", [("key = value\n", 1), ("[a]\nnot an option\n", 2), ("[a\n", 1)])
def test_unparsable_override_names_file_and_line(text, line):
    with pytest.raises(ConfigError) as exc:
        ini.merge("[a]\nx = 1\n", ("config/nova.conf", text))
    assert "config/nova.conf" in str(exc.value) and f"line {line}" in str(exc.value)


keys = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
values = st.lists(st.text(alphabet="abcxyz012=%:/ ", max_size=10).map(str.strip), min_size=1, max_size=3)
inis = st.dictionaries(st.sampled_from(["DEFAULT", "database", "ml2", "filter:x"]),
                       st.dictionaries(keys, values, max_size=4), max_size=4)


def to_text(data) -> str:
    out = []
    for section, options in data.items():
        out.append(f"[{section}]")
        for key, vals in options.items():
            out += [f"{key} = {v}" for v in vals]
    return "\n".join(out) + "\n"


@settings(max_examples=80, deadline=None)
@given(base=inis, override=inis)
def test_merge_properties(base, override):
    b, o = to_text(base), to_text(override)
    once = ini.merge(b, ("o", o))
    assert ini.merge(once, ("o", o)) == once                      # idempotent
    assert ini.merge(b) == ini.render(ini.parse(b))               # empty override is identity
    merged = ini.parse(once)
    for section, options in override.items():
        for key, vals in options.items():
            assert merged.get(section, key) == vals               # every value of a multi-valued key kept
    for section, options in base.items():
        for key, vals in options.items():
            if key not in override.get(section, {}):
                assert merged.get(section, key) == vals
