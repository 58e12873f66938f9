"""Where an operator's INI overrides live, and the order they are merged in.

Under ``<config_dir>/config/``, from the widest to the narrowest, so the narrower
one wins a key both set:

1. ``<service>.conf``              every container of the service, on every host
2. ``<service>/<component>.conf``  one component (e.g. ``nova/nova-api.conf``)
3. ``<host>/<service>.conf``       every component of the service on one host

``<service>`` is the name of the generated file the override applies to (the
catalogue's ``override`` name: ``glance`` for ``glance-api.conf``, ``ml2_conf``
for neutron's ML2 file), ``<component>`` the container or job (dashes), and
``<host>`` the inventory host name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from dockyard.errors import ConfigError

OVERRIDES_DIR = "config"


def _one_component(name: str, what: str) -> str:
    # Names come from the catalogue and the validated inventory; a slash or a
    # dot-dot here would reach outside config/, so it is a bug, not input.
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{what} {name!r} cannot be part of an override path")
    return name


def candidates(config_dir: Path, service: str, component: str, host: str) -> list[Path]:
    """Every path an override for this file may have, in merge order."""
    base = Path(config_dir) / OVERRIDES_DIR
    service = _one_component(service, "service")
    component = _one_component(component, "component")
    host = _one_component(host, "host")
    return [base / f"{service}.conf", base / service / f"{component}.conf", base / host / f"{service}.conf"]


def find(config_dir: Path, service: str, component: str, host: str) -> list[Path]:
    """The override files that exist for this file, in merge order."""
    return [path for path in candidates(config_dir, service, component, host) if path.is_file()]


def unmatched(config_dir: Path, used: Iterable[Path]) -> list[Path]:
    """``.conf`` files under config/ that no generated file merged: most likely
    a typo (``config/nvoa.conf``) the operator would want to hear about."""
    base = Path(config_dir) / OVERRIDES_DIR
    if not base.is_dir():
        return []
    used_set = {Path(p) for p in used}
    return sorted(p for p in base.rglob("*.conf") if p.is_file() and p not in used_set)


def ignored(config_dir: Path) -> list[Path]:
    """Files under config/ that are not ``.conf`` files (``config/nova.ini``):
    never merged, whatever their name, so the operator should hear it."""
    base = Path(config_dir) / OVERRIDES_DIR
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and p.suffix != ".conf" and not p.name.startswith("."))


def read(path: Path) -> str:
    """An override's text; one that is not UTF-8 is bad input (exit 2), named."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): save it as UTF-8", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", path=path) from None
