"""In-place updates: a container kept running when its image was rebuilt
without a change to what its process is made of.

The same release rebuilt with newer packages gives every image a new id, so
every container has a new config-hash. For most containers the recreate that
follows is a restart of seconds. For the data plane it is more: recreating Open
vSwitch drops the guests' traffic until the switch and the agent have rebuilt
the flows, and recreating libvirt ends every guest it runs. So a container may
name in its catalogue entry (``restart_packages``) the Debian packages its
running process is made of, and every image lists its packages
(``/var/lib/dockyard/packages.txt``, :mod:`dockyard.image.packages`).

When the image is the only part of a running container that differs, its image
reference and release are the same, every package that matters has the same
version in both images, and the image's own files (its Dockerfile and the files
beside it, e.g. nova-libvirt's qemu hook) are the same (``dockyard.own-hash``),
the container is kept: the plan says so, with the versions. Otherwise it is
recreated, and the plan names what changed. An image built before that label
existed cannot be compared, so its container is recreated once.

Observation reads the two lists (:mod:`dockyard.deploy.plan.observe`), only
for the containers where they decide (:func:`rebuilt_only`): a no-op deploy
reads none. The decision (:func:`verdict`) is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dockyard.deploy.wanted.hashing import differing_parts, rekeyed
from dockyard.deploy.wanted.model import WantedContainer
from dockyard.engine.driver import ContainerState
from dockyard.labels import LABEL_HASH, LABEL_OWN_HASH, LABEL_RELEASE

# Versions a reason lists before it says "and N more".
LISTED_VERSIONS = 3


@dataclass(frozen=True)
class PackageVersions:
    """The versions of the packages that matter to one container (its
    ``restart_packages``), in the image it runs and in the wanted one; ``error``
    says why they could not be read (then nothing is compared)."""

    running: Mapping[str, str] = field(default_factory=dict)
    wanted: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    # The images' own-file hashes (LABEL_OWN_HASH); "" when an image has none.
    own_running: str = ""
    own_wanted: str = ""


@dataclass(frozen=True)
class Verdict:
    """``keep``: the container stays as it runs. ``reason``: when kept, why; when
    not, what the recreate's reason adds (the package that changed)."""

    keep: bool
    reason: str


def matching(manifest: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """The packages of ``manifest`` (name -> version) that one of ``patterns`` names."""
    patterns = tuple(patterns)
    return {name: version for name, version in sorted(manifest.items())
            if any(fnmatchcase(name, p) for p in patterns)}


def rebuilt_only(c: WantedContainer, current: ContainerState | None) -> bool:
    """Whether the package versions decide for ``c``: it names packages, runs,
    and differs from what is wanted by its image alone, an image of the same
    reference and release with another id (the same release rebuilt). Labels
    only: no engine is asked."""
    if not c.restart_packages or current is None or not current.running:
        return False
    labels, wanted = current.labels, c.spec.labels
    return (LABEL_HASH in labels and labels[LABEL_HASH] != c.hash and rekeyed(labels, wanted) is None
            and differing_parts(labels, wanted) == ["image"]
            and current.image == c.spec.image and labels.get(LABEL_RELEASE) == wanted.get(LABEL_RELEASE)
            and bool(c.image_id) and current.image_id != c.image_id)


def verdict(c: WantedContainer, current: ContainerState | None, versions: PackageVersions | None,
            forced: bool = False) -> Verdict | None:
    """Keep or recreate, when the package versions decide; None when they do not
    (the usual rules apply). ``forced``: the operator asked for the recreate
    (``deploy --recreate``)."""
    if not rebuilt_only(c, current):
        return None
    if versions is None:
        return Verdict(False, "its packages were not read")
    if versions.error:
        return Verdict(False, f"its packages could not be compared: {versions.error}")
    if not versions.running and not versions.wanted:
        return Verdict(False, f"none of its restart_packages ({', '.join(c.restart_packages)}) is in its images")
    changes = changed(versions.running, versions.wanted)
    if changes:
        return Verdict(False, "rebuilt with " + ", ".join(changes))
    if not versions.own_running or not versions.own_wanted:
        return Verdict(False, f"its image's own files cannot be compared (an image without {LABEL_OWN_HASH})")
    if versions.own_running != versions.own_wanted:
        return Verdict(False, "its image's own files changed")
    same = listed(versions.wanted)
    if forced:
        return Verdict(False, f"recreated as asked (--recreate), though {same} unchanged")
    return Verdict(True, f"image rebuilt, {same} unchanged: kept running")


def changed(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Each package that differs, with both versions (``qemu-system-x86 1:10.0.2+ds-2 -> 1:10.0.2+ds-3``)."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            out.append(f"{name} {new[name]} added")
        elif name not in new:
            out.append(f"{name} {old[name]} removed")
        elif old[name] != new[name]:
            out.append(f"{name} {old[name]} -> {new[name]}")
    return out


def listed(versions: Mapping[str, str]) -> str:
    """``a 1.0, b 2.0 and c 3.0`` (past LISTED_VERSIONS: ``and N more``)."""
    shown = [f"{name} {version}" for name, version in list(versions.items())[:LISTED_VERSIONS]]
    more = len(versions) - len(shown)
    if more:
        return f"{', '.join(shown)} and {more} more"
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
