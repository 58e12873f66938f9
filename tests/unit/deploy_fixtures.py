"""What the deploy tests stand on: a site on disk and the ways to change it, fake
engines holding the catalogue's images, a fake host's /, and small helpers to
read what a run did."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import yaml

from dockyard import SOURCE_ROOT
from dockyard.deploy import api
from dockyard.deploy.site.loader import Site, load_site, write_defaults
from dockyard.deploy.wanted.builder import wanted_state
from dockyard.deploy.wanted.catalogue import ServiceCatalogue, load_services
from dockyard.deploy.wanted.model import WantedState
from dockyard.deploy.site.passwords import generate_passwords
from dockyard.engine.fake import FakeEngine


# -- a site on disk, and the ways to change it -----------------------------------------------------

def make_site(tmp_path: Path, globals_text: str | None = None) -> Path:
    """A whole site's config folder, tmp_path/site: the defaults, every password generated."""
    config_dir = tmp_path / "site"
    write_defaults(config_dir)
    # An address nothing listens on: the port checks bind for real, and must not
    # collide with whatever runs on this machine.
    text = (config_dir / "globals.yml").read_text().replace("internal_address: 127.0.0.1",
                                                            "internal_address: 127.0.0.99")
    (config_dir / "globals.yml").write_text(text)
    if globals_text is not None:
        (config_dir / "globals.yml").write_text(globals_text)
    generate_passwords(config_dir / "passwords.yml", load_services().all_passwords())
    return config_dir


def edit_yaml(path: Path, change: Callable[[dict], object]) -> dict:
    """Load the YAML mapping in ``path``, let ``change`` change it in place, write it
    back; the mapping. Its comments go: what is read of it is the data."""
    data = yaml.safe_load(path.read_text()) or {}
    change(data)
    path.write_text(yaml.safe_dump(data))
    return data


def assign(**values) -> Callable[[dict], None]:
    """A change for edit_yaml: set each key to its value, or remove it where the value is None."""
    def change(data: dict) -> None:
        for key, value in values.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
    return change


def set_globals(site_dir: Path, **values) -> None:
    """Set keys of the site's globals.yml (None: remove the key)."""
    edit_yaml(site_dir / "globals.yml", assign(**values))


def set_password(site_dir: Path, name: str, value: str | None) -> None:
    """Set one secret in the site's passwords.yml (None: remove it); the file stays private."""
    path = site_dir / "passwords.yml"
    edit_yaml(path, assign(**{name: value}))
    path.chmod(0o600)


def write_inventory(config_dir: Path, hosts: dict, groups: dict | None = None) -> None:
    """The site's inventory.yml: ``hosts`` (name -> entry), in ``groups`` (default: all
    of them control, the first network and compute); and stand-ins for the TLS
    files remote() names, which no fake engine reads. With several hosts, the
    site's internal_address becomes the first control host's."""
    tls = config_dir / "tls"
    tls.mkdir(exist_ok=True)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tls / name).write_text("not checked here\n")
    groups = groups or {"control": list(hosts), "network": [next(iter(hosts))], "compute": [next(iter(hosts))]}
    (config_dir / "inventory.yml").write_text(yaml.safe_dump({"hosts": hosts, "groups": groups}))
    if len(hosts) > 1 and (config_dir / "globals.yml").exists():
        # The loader wants a site of several hosts to call its API services at a
        # control host's address (dockyard.deploy.site.reach): the first one's.
        set_globals(config_dir, internal_address=hosts[groups["control"][0]]["address"])


def remote(address: str) -> dict:
    """An inventory host reached over TCP with TLS client certificates."""
    return {"address": address, "engine": f"tcp://{address}:2376",
            "tls": {"ca": "tls/ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"}}


# -- the service catalogue, and what a site wants of it --------------------------------------------

def copy_services(tmp_path: Path, copy_templates: bool = False) -> Path:
    """A private copy of the real service catalogue, to change on purpose. Its
    templates are the real ones, linked (so read only), unless ``copy_templates``."""
    root = tmp_path / "services"
    root.mkdir()
    for path in (SOURCE_ROOT / "services").glob("*.yml"):
        shutil.copy(path, root)
    if copy_templates:
        shutil.copytree(SOURCE_ROOT / "services" / "templates", root / "templates")
    else:
        (root / "templates").symlink_to(SOURCE_ROOT / "services" / "templates")
    return root


def edit_service(root: Path, service: str, change: Callable[[dict], object]) -> None:
    """Change one service's definition in a catalogue copied by copy_services."""
    edit_yaml(root / f"{service}.yml", change)


def site_of(config_dir: Path, catalogue: ServiceCatalogue | None = None) -> tuple[Site, ServiceCatalogue]:
    """The site as a deploy loads it (every password the catalogue names), and the
    catalogue (default: the real one)."""
    catalogue = load_services() if catalogue is None else catalogue
    return load_site(config_dir, set(catalogue.services), catalogue.all_passwords()), catalogue


def wanted_of(config_dir: Path, engine: FakeEngine | None = None, catalogue: ServiceCatalogue | None = None
              ) -> tuple[Site, WantedState]:
    """The site and its wanted state on ``engine`` (default: a full_engine()), which
    must hold every image it needs."""
    site, catalogue = site_of(config_dir, catalogue)
    wanted = wanted_state(site, catalogue, full_engine() if engine is None else engine)
    assert not wanted.missing_images
    return site, wanted.state


# -- fake engines, and a fake host -----------------------------------------------------------------

IMAGES = ["mariadb-server", "memcached", "rabbitmq", "toolbox", "keystone", "glance-api", "placement-api",
          "nova-api", "nova-conductor", "nova-scheduler", "nova-novncproxy", "neutron-server", "horizon",
          "openvswitch-db-server", "openvswitch-vswitchd", "neutron-openvswitch-agent", "neutron-dhcp-agent",
          "neutron-l3-agent", "neutron-metadata-agent", "nova-libvirt", "nova-compute"]


def fake_engine() -> FakeEngine:
    """A fake engine holding the images of the default services (IMAGES), tagged 2025.1."""
    engine = FakeEngine()
    for image in IMAGES:
        engine.add_image(f"dockyard/{image}:2025.1")
    return engine


@cache
def every_image() -> tuple[str, ...]:
    catalogue = load_services()
    return tuple(catalogue.images(sorted(catalogue.services)))


def full_engine(*tags: str) -> FakeEngine:
    """A fake engine holding every image of the catalogue (not only the all-in-one's),
    under each of ``tags`` (default: 2025.1)."""
    engine = FakeEngine()
    for tag in tags or ("2025.1",):
        for image in every_image():
            engine.add_image(f"dockyard/{image}:{tag}")
    return engine


def converge_site(site_dir: Path, engine: FakeEngine | None = None) -> FakeEngine:
    """Deploy the site on ``engine`` (default: a fake_engine()); the run must succeed."""
    engine = fake_engine() if engine is None else engine
    result = api.deploy(site_dir, engine=engine, say=quiet)
    assert result.ok, [(o.action.id, o.error) for o in result.outcomes if o.result != "ok"]
    return engine


def quiet(_line: str) -> None:
    """What a run says, unheard."""


def fake_host(tmp_path: Path, *, module: str = "none", kvm: bool = False, flags: str = "fpu sse2") -> Path:
    """A folder shaped like a host's /: sys/module, lib/modules, dev/kvm, proc/cpuinfo."""
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    (root / "dev").mkdir()
    if kvm:
        # A character device cannot be made without privileges: /dev/null is one.
        (root / "dev/kvm").symlink_to("/dev/null")
    if module == "loaded":
        (root / "sys/module/openvswitch").mkdir(parents=True)
    if module == "on disk":
        folder = root / "lib/modules" / os.uname().release / "kernel/net/openvswitch"
        folder.mkdir(parents=True)
        (folder / "openvswitch.ko.xz").write_bytes(b"")
    return root


# -- what a run did --------------------------------------------------------------------------------

#: The engine calls that change something: a run refused, or with nothing to do, makes none.
ACTING = ("create", "start", "stop", "remove", "restart", "job", "create_volume", "remove_volume")


def acting_calls(engine: FakeEngine) -> list[tuple]:
    return [c for c in engine.calls if c[0] in ACTING]


def waits_for(plan, action_id: str) -> set[str]:
    """Every action ``action_id`` of ``plan`` waits for, directly or not."""
    by_id = plan.by_id()
    seen: set[str] = set()
    todo = list(by_id[action_id].deps)
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo += by_id[dep].deps
    return seen


def secret_forms(secrets) -> dict[str, str]:
    """Each way a secret could leak -> what it is: the value itself, and its unkeyed
    sha256 (full, and the 16-character prefix labels hold), of the value alone and
    of the value as a file's one line. A keyed hash is none of these."""
    import hashlib

    forms: dict[str, str] = {}
    for i, secret in enumerate(secrets):
        forms[secret] = f"secret {i}"
        for data, what in ((secret, "value"), (secret + "\n", "line")):
            full = hashlib.sha256(data.encode()).hexdigest()
            forms[full] = f"sha256 of secret {i}'s {what}"
            forms[full[:16]] = f"sha256 prefix of secret {i}'s {what}"
    return forms


def leaks(blob: str, secrets) -> list[str]:
    """What of ``secrets`` (values or unkeyed hashes of them) is in ``blob``."""
    return [what for form, what in secret_forms(secrets).items() if form in blob]
