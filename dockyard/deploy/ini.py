"""OpenStack INI files: parse, merge, render, keeping multi-valued options.

oslo.config writes a multi-valued option as the same key repeated in a section,
which configparser cannot hold; so this is a small parser of our own. An override
that sets a key replaces every value of that key in that section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import ConfigError

Section = dict[str, list[str]]   # key -> values, in order


@dataclass
class Ini:
    sections: dict[str, Section] = field(default_factory=dict)

    def set(self, section: str, key: str, values: list[str]) -> None:
        self.sections.setdefault(section, {})[key] = list(values)

    def get(self, section: str, key: str) -> list[str] | None:
        return self.sections.get(section, {}).get(key)


def parse(text: str, source: str = "<ini>") -> Ini:
    ini = Ini()
    section: str | None = None
    last_key: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if raw[:1] in (" ", "\t") and last_key is not None and section is not None:
            values = ini.sections[section][last_key]
            values[-1] = f"{values[-1]}\n{stripped}"  # continuation line
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]") or len(stripped) < 3 or "[" in stripped[1:-1] or "]" in stripped[1:-1]:
                raise ConfigError(f"line {lineno}: malformed section header {stripped!r}", path=source)
            section = stripped[1:-1].strip()
            ini.sections.setdefault(section, {})
            last_key = None
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"line {lineno}: expected 'key = value', got {stripped!r}", path=source)
        if section is None:
            raise ConfigError(f"line {lineno}: option {key.strip()!r} before any [section]", path=source)
        key = key.strip()
        ini.sections[section].setdefault(key, []).append(value.strip())
        last_key = key
    return ini


def merge_into(base: Ini, override: Ini) -> Ini:
    merged = Ini({name: {k: list(v) for k, v in sec.items()} for name, sec in base.sections.items()})
    for name, sec in override.sections.items():
        target = merged.sections.setdefault(name, {})
        for key, values in sec.items():
            target[key] = list(values)
    return merged


def render(ini: Ini) -> str:
    names = sorted(ini.sections, key=lambda n: n != "DEFAULT")  # DEFAULT first, others in order
    out = []
    for name in names:
        out.append(f"[{name}]")
        for key, values in ini.sections[name].items():
            for value in values:
                value = value.replace("\n", "\n    ")
                out.append(f"{key} = {value}" if value else f"{key} =")
        out.append("")
    return "\n".join(out)


def merge(base_text: str, *overrides: tuple[str, str], base_name: str = "<generated>") -> str:
    """Merge overrides (each as (source name, text)) over a generated INI file."""
    result = parse(base_text, base_name)
    for name, text in overrides:
        result = merge_into(result, parse(text, name))
    return render(result)
