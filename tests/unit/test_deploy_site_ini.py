"""INI parse/render/merge: oslo.config's reading rules, multi-valued options kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.deploy.site import ini
from dockyard.errors import ConfigError


def shape(parsed: ini.Ini) -> list:
    """Sections, keys and values *in order* (dict equality would ignore order)."""
    return [(name, list(sec.items())) for name, sec in parsed.sections.items()]


# -- reading ---------------------------------------------------------------------------------

def test_repeated_keys_are_all_kept_in_order():
    parsed = ini.parse("[filter:x]\nitem = b\nother = 1\nitem = a\n[ml2]\nmechanism_drivers = openvswitch\n"
                       "mechanism_drivers = l2population\n")
    assert parsed.get("filter:x", "item") == ["b", "a"]
    assert parsed.get("ml2", "mechanism_drivers") == ["openvswitch", "l2population"]
    assert list(parsed.sections["filter:x"]) == ["item", "other"]


def test_values_are_kept_as_written():
    parsed = ini.parse("[database]\nconnection = mysql+pymysql://nova:p%40ss=w:rd@db/nova?charset=utf8\n"
                       "quoted = \"a b\"\ninline = x # not a comment in oslo.config\nempty =\n")
    assert parsed.get("database", "connection") == ["mysql+pymysql://nova:p%40ss=w:rd@db/nova?charset=utf8"]
    assert parsed.get("database", "quoted") == ['"a b"']
    assert parsed.get("database", "inline") == ["x # not a comment in oslo.config"]
    assert parsed.get("database", "empty") == [""]


def test_colon_separates_like_in_oslo_config_and_the_first_separator_wins():
    parsed = ini.parse("[composite:osapi]\n/v2.1: api_v21\nuse = call:nova.api:factory\n")
    assert parsed.get("composite:osapi", "/v2.1") == ["api_v21"]
    assert parsed.get("composite:osapi", "use") == ["call:nova.api:factory"]


def test_keys_are_case_sensitive():
    parsed = ini.parse("[DEFAULT]\nDebug = a\ndebug = b\n")
    assert parsed.get("DEFAULT", "Debug") == ["a"] and parsed.get("DEFAULT", "debug") == ["b"]


def test_continuation_lines_join_until_a_blank_line():
    parsed = ini.parse("[a]\nlong = first\n    second\n\t# third, still the value\nnext = 1\n\n[b]\n")
    assert parsed.get("a", "long") == ["first\nsecond\n# third, still the value"]
    assert parsed.get("a", "next") == ["1"]


def test_comments_blank_lines_bom_and_crlf_are_ignored():
    parsed = ini.parse("\ufeff# head\r\n[a]\r\n; note\r\nk = v\r\n\r\n   # indented comment\r\n")
    assert shape(parsed) == [("a", [("k", ["v"])])]


def test_a_section_named_twice_is_one_section():
    parsed = ini.parse("[a]\nk = 1\n[b]\nx = y\n[a]\nk = 2\nj = 3\n")
    assert shape(parsed) == [("a", [("k", ["1", "2"]), ("j", ["3"])]), ("b", [("x", ["y"])])]


@pytest.mark.parametrize("text, line, words", [
    ("key = value\n", 1, "before any [section]"),
    ("[a]\nnot an option\n", 2, "expected 'key = value'"),
    ("[a\n", 1, "closing ']'"),
    ("[]\n", 1, "without a name"),
    ("[a]\n= value\n", 2, "without a name"),
    ("[a]\n\n    orphan\n", 3, "continues no option"),
    ("[a]\nk = v\n\n\nthis is not ini\n[[[\n", 5, "expected 'key = value'"),
])
def test_an_unparsable_override_names_its_file_and_line(text, line, words):
    with pytest.raises(ConfigError) as exc:
        ini.merge("[a]\nx = 1\n", ("/etc/dockyard/config/nova.conf", text))
    message = str(exc.value)
    assert message.startswith("/etc/dockyard/config/nova.conf: ")
    assert f"line {line}:" in message and words in message
    assert exc.value.exit_code == 2


def test_errors_do_not_repeat_the_offending_line():
    # A mistyped line in an override may be a password: it is not echoed.
    with pytest.raises(ConfigError) as exc:
        ini.parse("[database]\npassword s3cret-Value\n", "nova.conf")
    assert "s3cret" not in str(exc.value)


def test_a_broken_second_override_stops_the_merge_before_anything_is_merged():
    with pytest.raises(ConfigError) as exc:
        ini.merge("[a]\nx = 1\n", ("first.conf", "[a]\nx = 2\n"), ("second.conf", "junk\n"))
    assert "second.conf" in str(exc.value) and "first.conf" not in str(exc.value)


# -- merging ---------------------------------------------------------------------------------

def test_override_replaces_every_value_of_a_key_and_leaves_the_rest_in_place():
    base = ("[DEFAULT]\ndebug = false\nlog_dir = /var/log\n[filter_scheduler]\n"
            "enabled_filters = A\nenabled_filters = B\nweight = 1\n")
    override = "[filter_scheduler]\nenabled_filters = C\nenabled_filters = D\nenabled_filters = E\n"
    merged = ini.parse(ini.merge(base, ("o.conf", override)))
    assert shape(merged) == [
        ("DEFAULT", [("debug", ["false"]), ("log_dir", ["/var/log"])]),
        ("filter_scheduler", [("enabled_filters", ["C", "D", "E"]), ("weight", ["1"])]),
    ]


def test_new_keys_go_last_in_their_section_and_new_sections_last_with_default_first():
    base = "[database]\nconnection = x\n[keystone_authtoken]\nauth_url = y\n"
    merged = ini.merge(base, ("o.conf", "[oslo_messaging_notifications]\ndriver = noop\n"
                                        "[database]\nmax_retries = -1\n[DEFAULT]\ndebug = true\n"))
    assert merged == ("[DEFAULT]\ndebug = true\n\n"
                      "[database]\nconnection = x\nmax_retries = -1\n\n"
                      "[keystone_authtoken]\nauth_url = y\n\n"
                      "[oslo_messaging_notifications]\ndriver = noop\n")


def test_later_overrides_win_over_earlier_ones():
    merged = ini.merge("[DEFAULT]\ndebug = false\n", ("service.conf", "[DEFAULT]\ndebug = true\nx = 1\n"),
                       ("host.conf", "[DEFAULT]\ndebug = false\n"))
    assert ini.parse(merged).get("DEFAULT", "debug") == ["false"]
    assert ini.parse(merged).get("DEFAULT", "x") == ["1"]


def test_merge_does_not_change_its_inputs():
    base, override = ini.parse("[a]\nk = 1\n"), ini.parse("[a]\nk = 2\n[b]\nj = 3\n")
    ini.merge_into(base, override)
    assert shape(base) == [("a", [("k", ["1"])])]


# -- properties ------------------------------------------------------------------------------

SECTIONS = ["DEFAULT", "database", "ml2", "filter:authtoken", "composite:osapi"]
key_text = st.text(alphabet="abcdefgXYZ_.-/0", min_size=1, max_size=8)
keys = key_text.filter(lambda k: k[0] not in "#;[")
# One line of a value: anything but newlines, as parse leaves it (stripped).
value_line = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12) \
    .map(str.strip)
values = st.builds(lambda first, rest: "\n".join([first, *rest]),
                   value_line, st.lists(value_line.filter(bool), max_size=2))
sections = st.dictionaries(keys, st.lists(values, min_size=1, max_size=3), max_size=3)


@st.composite
def models(draw) -> ini.Ini:
    names = draw(st.lists(st.sampled_from(SECTIONS), unique=True, max_size=4))
    names.sort(key=lambda n: n != "DEFAULT")           # as render orders them
    return ini.Ini({name: draw(sections) for name in names})


@st.composite
def texts(draw) -> str:
    """INI text with the noise operators write: comments, blank lines, repeated
    sections, odd spacing. The noise comes from one drawn Random: cheap to draw."""
    noise = draw(st.randoms(use_true_random=False))
    lines = []
    for name in draw(st.lists(st.sampled_from(SECTIONS), max_size=4)):
        lines.append(f"[{name}]")
        for key, vals in draw(sections).items():
            for value in vals:
                if noise.random() < 0.3:
                    lines.append(noise.choice(["# a comment", "; another", "", "  # indented"]))
                first, *rest = value.split("\n")
                lines.append(f"{key}{noise.choice([' = ', '=', ' =  ', ': '])}{first}")
                lines += [f"{noise.choice(['  ', chr(9)])}{more}" for more in rest]
    return "\n".join(lines) + noise.choice(["", "\n", "\n\n"])


@settings(max_examples=60, deadline=None)
@given(models())
def test_parse_of_render_is_identity(model):
    assert shape(ini.parse(ini.render(model))) == shape(model)


@settings(max_examples=40, deadline=None)
@given(texts())
def test_normalising_is_a_fixed_point(text):
    once = ini.normalise(text)
    assert ini.normalise(once) == once


@settings(max_examples=40, deadline=None)
@given(texts())
def test_merging_an_empty_or_comment_only_override_is_identity(base):
    normal = ini.normalise(base)
    assert ini.merge(base) == normal
    assert ini.merge(base, ("empty.conf", "")) == normal
    assert ini.merge(base, ("comments.conf", "# nothing here\n\n; really\n")) == normal


@settings(max_examples=40, deadline=None)
@given(texts(), texts())
def test_merging_an_override_twice_changes_nothing_more(base, override):
    once = ini.merge(base, ("o.conf", override))
    assert ini.merge(once, ("o.conf", override)) == once
    assert ini.merge(base, ("o.conf", override), ("o.conf", override)) == once
    assert ini.merge(override, ("o.conf", override)) == ini.normalise(override)


@settings(max_examples=60, deadline=None)
@given(texts(), texts())
def test_merge_keeps_every_value_of_multi_valued_options(base_text, override_text):
    base, override = ini.parse(base_text), ini.parse(override_text)
    merged = ini.parse(ini.merge(base_text, ("o.conf", override_text)))
    for name, sec in override.sections.items():
        for key, vals in sec.items():
            assert merged.get(name, key) == vals                        # all of the override's, in order
    for name, sec in base.sections.items():
        untouched = [key for key in sec if key not in override.sections.get(name, {})]
        for key in untouched:
            assert merged.get(name, key) == sec[key]                     # the base's, all of them
        assert [k for k in merged.sections[name] if k in sec] == list(sec)   # base order kept
    expected_sections = list(dict.fromkeys([*base.sections, *override.sections]))
    assert sorted(merged.sections) == sorted(expected_sections)
    assert [n for n in merged.sections if n != "DEFAULT"] == [n for n in expected_sections if n != "DEFAULT"]
