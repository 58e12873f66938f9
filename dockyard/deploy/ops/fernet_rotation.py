"""``dockyard rotate-fernet``: one rotation of keystone's fernet keys, on the data.

The rotation itself is :func:`dockyard.deploy.site.fernet.rotate`; a deploy
then carries the new files to every keystone container (a config change, with
the secret named in the plan). What this module adds is the one check a
rotation needs: that the last one was deployed. The staged key a rotation
promotes is safe to sign with only because every keystone already holds it;
a second rotation before a deploy would promote a key no running keystone has,
and could drop the one they sign with now.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import ConfigError

from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.site import fernet
from dockyard.deploy.site.loader import GLOBALS_FILE, Site
from dockyard.deploy.site.passwords import HASH_KEY_NAME, PASSWORDS_FILE
from dockyard.deploy.wanted.catalogue import IDENTITY_SERVICE, ServiceCatalogue
from dockyard.deploy.wanted.hashing import secret_labels
from dockyard.labels import LABEL_HOST, LABEL_JOB, LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE


@dataclass(frozen=True)
class Rotation:
    path: Path                        # the repository file, rewritten
    before: fernet.KeyRepository
    after: fernet.KeyRepository
    max_active_keys: int

    @property
    def pruned(self) -> list[int]:
        """The indices of the secondaries the rotation dropped."""
        return sorted(set(self.before.keys) - set(self.after.keys))


def keystone_options(site: Site, catalogue: ServiceCatalogue) -> dict:
    """Keystone's options (globals.yml ``services.keystone``), checked, defaults
    filled in. Refused when the site does not run keystone."""
    globals_path = Path(site.config_dir) / GLOBALS_FILE
    if IDENTITY_SERVICE not in catalogue.closure(site.globals.enabled_services):
        raise ConfigError(f"{IDENTITY_SERVICE} is not among the enabled services: there are no fernet keys to "
                          f"rotate", path=globals_path, key="enabled_services")
    service = catalogue.services[IDENTITY_SERVICE]
    return service.options(site.globals.services.get(IDENTITY_SERVICE, {}), globals_path)


def keystones_behind(site: Site, site_label: str, engines: SiteEngines, repo: fernet.KeyRepository
                     ) -> list[str]:
    """The keystone containers (``name@host``) whose labels say they run other
    keys than ``repo``'s, and the hosts whose engine does not answer (they may).
    Labels hold keyed hashes only: no key is read from a container. A container
    without the label (made before dockyard kept the keys) runs keys this file
    never held: nothing a rotation could make worse."""
    label = secret_labels({fernet.FERNET_SECRET: repo.as_secret()}, site.passwords[HASH_KEY_NAME].encode())
    name, wanted = next(iter(label.items()))
    hosts = list(site.inventory.hosts)
    behind: list[str] = []
    for i, result in engines.each(hosts, lambda engine, _: engine.containers(label=f"{LABEL_MANAGED}=true")).items():
        if isinstance(result, Exception):
            behind += [f"host {h} (its engine does not answer)" for h in engines.groups(hosts)[i][1]]
            continue
        for c in result:
            labels = c.labels
            if labels.get(LABEL_SERVICE) != IDENTITY_SERVICE or labels.get(LABEL_JOB) or \
                    labels.get(LABEL_SITE) != site_label:
                continue
            if name in labels and labels[name] != wanted:
                behind.append(f"{c.name}@{labels.get(LABEL_HOST, '?')}")
    return sorted(behind)


def rotate(site: Site, catalogue: ServiceCatalogue, engines: SiteEngines | None, site_label: str,
           force: bool = False) -> Rotation:
    """Rotate the site's repository once and write it (atomically, 0600). Unless
    ``force``, refused (nothing written) while a keystone container runs keys
    other than the file's, or may (its host's engine does not answer)."""
    options = keystone_options(site, catalogue)
    path = fernet.fernet_path(Path(site.config_dir) / PASSWORDS_FILE)
    before = fernet.load(path)
    if not force:
        behind = keystones_behind(site, site_label, engines, before) if engines is not None else []
        if behind:
            raise ConfigError(
                f"the last rotation is not deployed yet ({', '.join(behind)} not running these keys): run "
                f"`dockyard deploy` first. A second rotation would make a key no running keystone holds the one "
                f"that signs, and could drop the one they sign with now (--force rotates anyway)", path=path)
    max_active = options["max_active_keys"]
    after = fernet.rotate(before, max_active)
    fernet.save(path, after)
    return Rotation(path, before, after, max_active)


def status_line(site: Site, catalogue: ServiceCatalogue) -> str | None:
    """``dockyard status``'s line about the keys: when they last rotated. None
    when the site runs no keystone."""
    if IDENTITY_SERVICE not in catalogue.closure(site.globals.enabled_services):
        return None
    path = fernet.fernet_path(Path(site.config_dir) / PASSWORDS_FILE)
    try:
        repo = fernet.load(path)
    except ConfigError as exc:
        return f"keystone fernet keys: {exc.detail.split('.')[0]} ({path})"
    return f"keystone fernet keys: {repo.summary()} ({path})"
