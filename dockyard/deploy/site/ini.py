"""OpenStack INI files: parse, merge, render, keeping multi-valued options.

oslo.config writes a multi-valued option (MultiStrOpt) as the same key repeated
in a section, which ``configparser`` cannot hold; so this is a small parser of
our own that reads lines the way oslo.config's own parser does:

- ``[name]`` starts a section; a section named twice is one section;
- ``key = value`` or ``key: value`` (the first ``=`` or ``:`` splits, so values
  may hold both, and ``%``: there is no interpolation); keys are case-sensitive;
- a line starting with a space or tab continues the value above it (the lines
  are joined with newlines); a blank line ends a value;
- a line starting with ``#`` or ``;`` is a comment (comments are not kept);
- values are kept as written (quotes included), so rendering changes nothing
  oslo.config would read.

Merging: an override that sets a key replaces every value of that key in that
section with all of the override's values, in order; other keys stay where they
are; new keys go at the end of their section, new sections at the end, and
``[DEFAULT]`` is always rendered first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import ConfigError

DEFAULT_SECTION = "DEFAULT"
Section = dict[str, list[str]]   # key -> its values, in order


@dataclass
class Ini:
    """Sections in order, each holding keys in order, each with all its values."""

    sections: dict[str, Section] = field(default_factory=dict)

    def set(self, section: str, key: str, values: list[str]) -> None:
        self.sections.setdefault(section, {})[key] = list(values)

    def get(self, section: str, key: str) -> list[str] | None:
        return self.sections.get(section, {}).get(key)

    def copy(self) -> Ini:
        return Ini({name: {key: list(values) for key, values in sec.items()} for name, sec in self.sections.items()})


def _fail(source: str, lineno: int, problem: str) -> ConfigError:
    # The offending line is not quoted back: it may hold a password.
    return ConfigError(f"line {lineno}: {problem}", path=source)


def _split_option(line: str) -> tuple[str, str] | None:
    """``key = value`` / ``key: value`` split at whichever separator comes first."""
    cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
    if cut < 0:
        return None
    return line[:cut].strip(), line[cut + 1:].strip()


def parse(text: str, source: str = "<ini>") -> Ini:
    """Parse INI text; ``source`` names it in errors (a ConfigError with the line)."""
    ini = Ini()
    section: str | None = None
    key: str | None = None                 # the option a continuation line extends
    for lineno, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.rstrip()
        if not line:
            key = None
            continue
        if line[0] in " \t":
            if key is not None and section is not None:     # a key is only ever set inside a section
                values = ini.sections[section][key]
                values[-1] = f"{values[-1]}\n{line.strip()}"
                continue
            if line.lstrip()[0] in "#;":
                continue                   # an indented comment, with no value to continue
            raise _fail(source, lineno, "indented line continues no option (remove the leading spaces?)")
        key = None
        if line[0] in "#;":
            continue
        if line[0] == "[":
            name = line[1:-1].strip() if line.endswith("]") else ""
            if not line.endswith("]"):
                raise _fail(source, lineno, "section header without its closing ']'")
            if not name:
                raise _fail(source, lineno, "section header without a name")
            section = name
            ini.sections.setdefault(section, {})
            continue
        option = _split_option(line)
        if option is None:
            raise _fail(source, lineno, "expected 'key = value', a [section] header or a # comment")
        name, value = option
        if not name:
            raise _fail(source, lineno, "option without a name before its '='")
        if section is None:
            raise _fail(source, lineno, f"option {name!r} before any [section] header")
        ini.sections[section].setdefault(name, []).append(value)
        key = name
    return ini


def merge_into(base: Ini, override: Ini) -> Ini:
    """A new Ini: ``base`` with every key the override sets replaced by its values."""
    merged = base.copy()
    for name, sec in override.sections.items():
        target = merged.sections.setdefault(name, {})
        for key, values in sec.items():
            target[key] = list(values)
    return merged


def render(ini: Ini) -> str:
    """INI text that :func:`parse` reads back as the same Ini ([DEFAULT] first)."""
    names = sorted(ini.sections, key=lambda n: n != DEFAULT_SECTION)   # stable: others keep their order
    blocks = []
    for name in names:
        lines = [f"[{name}]"]
        for key, values in ini.sections[name].items():
            for value in values:
                first, *rest = value.split("\n")
                lines.append(f"{key} = {first}".rstrip())
                lines += [f"    {more}" for more in rest]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def normalise(text: str, source: str = "<ini>") -> str:
    """The text as :func:`merge` writes it: comments gone, one layout."""
    return render(parse(text, source))


def merge(base_text: str, *overrides: tuple[str, str], base_name: str = "<generated>") -> str:
    """Merge overrides, each given as ``(source name, text)``, over a generated
    INI file, in the order given. Any text that does not parse raises a
    ConfigError naming its source and line; nothing is merged then."""
    result = parse(base_text, base_name)
    parsed = [parse(text, name) for name, text in overrides]
    for override in parsed:
        result = merge_into(result, override)
    return render(result)
