"""Small synthetic wanted states for the deploy-engine tests.

A site resembling the real one, in miniature::

    mariadb (volume, health check)
    memcached (no health check)
    keystone:  keystone_databases -> keystone_db_sync -> keystone (health check) -> keystone_register
    glance:    glance_databases -> glance_db_sync -> glance_api (volume, health check, after keystone)

Config contents and image ids can be changed per test to make "what changed"
scenarios; the files carry a fake secret so tests can check it never leaks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from dockyard.deploy.wanted.hashing import digest, files_digest, job_hash, key_id, spec_hashes
from dockyard.labels import LABEL_HASH, LABEL_HOST, LABEL_MANAGED, LABEL_SERVICE
from dockyard.deploy.wanted.model import WantedContainer, WantedFile, WantedJob, WantedState, WantedVolume
from dockyard.engine.driver import ContainerSpec, Healthcheck, Mount
from dockyard.engine.fake import FakeEngine

HOST = "aio"
SECRET = "s3cret-Pa55word-never-shown"
HASH_KEY = b"test-site-hash-key"

IMAGES = {
    "mariadb": "dockyard/mariadb-server:test",
    "memcached": "dockyard/memcached:test",
    "keystone": "dockyard/keystone:test",
    "glance": "dockyard/glance-api:test",
    "toolbox": "dockyard/toolbox:test",
}

DEFAULT_CONFIG = {
    "my.cnf": "[mysqld]\nbind-address = 127.0.0.1\n",
    "memcached.conf": "-l 127.0.0.1\n",
    "keystone-create.sql": f"CREATE DATABASE IF NOT EXISTS keystone; -- {SECRET}\n",
    "keystone.conf": f"[database]\nconnection = mysql+pymysql://keystone:{SECRET}@127.0.0.1/keystone\n",
    "register.py": "print('register endpoints')\n",
    "glance-create.sql": "CREATE DATABASE IF NOT EXISTS glance;\n",
    "glance-api.conf": f"[database]\nconnection = mysql+pymysql://glance:{SECRET}@127.0.0.1/glance\n",
}


@dataclass
class Site:
    """Knobs for one wanted state."""

    root: Path
    config: dict[str, str] = field(default_factory=dict)       # file name -> content (over DEFAULT_CONFIG)
    image_ids: dict[str, str] = field(default_factory=dict)    # image key -> id (default: "<key>-v1")
    environment: dict[str, dict[str, str]] = field(default_factory=dict)   # container -> extra env
    # container -> the packages its process is made of (the catalogue's restart_packages)
    restart_packages: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def content(self, name: str) -> bytes:
        return self.config.get(name, DEFAULT_CONFIG[name]).encode()

    def image_id(self, key: str) -> str:
        return self.image_ids.get(key, f"sha256:{key}-v1")

    def folder(self, unit: str) -> Path:
        return self.root / "generated" / unit


def _labels(service: str) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_SERVICE: service, LABEL_HOST: HOST}


def _files(site: Site, state: WantedState, unit: str, service: str, names: list[str]) -> dict[str, bytes]:
    contents = {name: site.content(name) for name in names}
    contents["config.json"] = (json.dumps({"config_files": sorted(names)}) + "\n").encode()
    for name, data in contents.items():
        state.files.append(WantedFile(str(site.folder(unit) / name), data, HOST, service, 0o600, unit))
    return contents


def _mounts(site: Site, unit: str, volumes: list[str]) -> tuple[Mount, ...]:
    return (Mount(str(site.folder(unit)), "/var/lib/dockyard/config_files", read_only=True),
            *(Mount(v, f"/var/lib/{v}") for v in volumes))


def add_container(site: Site, state: WantedState, name: str, service: str, image: str, config: list[str],
                  after: tuple[str, ...] = (), volumes: list[str] = (), health: bool = True) -> WantedContainer:
    contents = _files(site, state, name, service, config)
    spec = ContainerSpec(
        name=name, image=IMAGES[image], environment={"DOCKYARD_CONFIG_STRATEGY": "COPY_ALWAYS",
                                                     **site.environment.get(name, {})},
        mounts=_mounts(site, name, list(volumes)), labels=_labels(service),
        healthcheck=Healthcheck(("CMD", "dockyard-healthcheck", name)) if health else None)
    labels = spec_hashes(spec, {str(site.folder(name) / n): c for n, c in contents.items()}, site.image_id(image),
                         key=HASH_KEY)
    spec = replace(spec, labels={**spec.labels, **labels})
    container = WantedContainer(host=HOST, service=service, spec=spec, hash=labels[LABEL_HASH], after=after,
                                files=tuple(str(site.folder(name) / n) for n in contents),
                                volumes=tuple(volumes), health_timeout=30, image_id=site.image_id(image),
                                restart_packages=site.restart_packages.get(name, ()))
    state.containers.append(container)
    return container


def add_job(site: Site, state: WantedState, name: str, service: str, image: str, config: list[str],
            after: tuple[str, ...] = ()) -> WantedJob:
    contents = _files(site, state, name, service, config)
    spec = ContainerSpec(name=name, image=IMAGES[image], environment={"DOCKYARD_CONFIG_STRATEGY": "COPY_ALWAYS"},
                         mounts=_mounts(site, name, []), labels={**_labels(service), "dockyard.job": "true"},
                         restart_policy="no")
    job = WantedJob(name=name, host=HOST, service=service, spec=spec,
                    hash=job_hash({"dockyard.hash-key": key_id(HASH_KEY), "dockyard.config-hash":
                                   digest([site.image_id(image), files_digest(contents, HASH_KEY)], HASH_KEY)}),
                    after=after,
                    files=tuple(str(site.folder(name) / n) for n in contents), timeout=60)
    state.jobs.append(job)
    return job


def make_wanted(site: Site, services: tuple[str, ...] = ("mariadb", "memcached", "keystone", "glance")
                ) -> WantedState:
    state = WantedState()
    if "mariadb" in services:
        state.volumes.append(WantedVolume("mariadb", HOST, "mariadb"))
        add_container(site, state, "mariadb", "mariadb", "mariadb", ["my.cnf"], volumes=["mariadb"])
    if "memcached" in services:
        add_container(site, state, "memcached", "memcached", "memcached", ["memcached.conf"], health=False)
    if "keystone" in services:
        add_job(site, state, "keystone_databases", "keystone", "toolbox", ["keystone-create.sql"], after=("mariadb",))
        add_job(site, state, "keystone_db_sync", "keystone", "keystone", ["keystone.conf"],
                after=("keystone_databases",))
        add_container(site, state, "keystone", "keystone", "keystone", ["keystone.conf"],
                      after=("keystone_db_sync", "memcached"))
        add_job(site, state, "keystone_register", "keystone", "toolbox", ["register.py"], after=("keystone",))
    if "glance" in services:
        state.volumes.append(WantedVolume("glance", HOST, "glance"))
        add_job(site, state, "glance_databases", "glance", "toolbox", ["glance-create.sql"], after=("mariadb",))
        add_job(site, state, "glance_db_sync", "glance", "glance", ["glance-api.conf"], after=("glance_databases",))
        add_container(site, state, "glance_api", "glance", "glance", ["glance-api.conf"],
                      after=("glance_db_sync", "keystone"), volumes=["glance"])
    return state


def fake_engine(cls: type[FakeEngine] = FakeEngine) -> FakeEngine:
    engine = cls()
    for ref in IMAGES.values():
        engine.add_image(ref)
    return engine


def plan_for(engine: FakeEngine, wanted: WantedState, state_dir: Path, **kwargs):
    from dockyard.deploy.plan.observe import observe
    from dockyard.deploy.plan.planner import make_plan

    return make_plan(wanted, observe(engine, wanted, state_dir), **kwargs)


def apply(engine: FakeEngine, plan, state_dir: Path, parallelism: int = 4, progress=None):
    from dockyard.deploy.execute.executor import execute
    from dockyard.deploy.execute.jobs_record import JobsRecord
    from dockyard.deploy.execute.timeline import Timeline

    with Timeline(state_dir) as timeline:
        return execute(plan, engine, parallelism=parallelism, timeline=timeline, jobs_record=JobsRecord(state_dir),
                       progress=progress)


def converge(engine: FakeEngine, wanted: WantedState, state_dir: Path) -> None:
    """Deploy ``wanted`` on the fake engine; the run must succeed."""
    result = apply(engine, plan_for(engine, wanted, state_dir), state_dir)
    assert result.ok, [(o.action.id, o.result, o.error) for o in result.outcomes if o.result != "ok"]
