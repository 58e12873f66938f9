"""Images through the site's registry, and changes rolled N hosts at a time, with
one FakeEngine per host and a FakeRegistry between them."""

from __future__ import annotations


import pytest

from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines
from dockyard.deploy.plan.planner import ActionKind
from dockyard.engine.fake import FakeEngine, FakeRegistry
from dockyard.errors import ConfigError
from dockyard.labels import LABEL_OWN_HASH

from .deploy_fixtures import assign, copy_services, edit_service, make_site, quiet, remote, set_globals, write_inventory

REF = "dockyard/memcached:2025.1"


@pytest.fixture
def site(tmp_path):
    """memcached on three remote hosts with no image at all; the deployment host's
    engine (outside the inventory) built it and pushed it to the registry."""
    config_dir = make_site(tmp_path)
    set_globals(config_dir, enabled_services=["memcached"], registry={})
    names = ("h1", "h2", "h3")
    write_inventory(config_dir, {h: remote(f"192.0.2.1{i}") for i, h in enumerate(names, 1)},
                    {"control": list(names), "network": ["h1"], "compute": ["h1"]})
    registry = FakeRegistry("127.0.0.99:4000")
    build = FakeEngine("unix://build", registry)
    build.add_image(REF, labels=OWN, size=5000)
    build.tag(REF, f"{registry.address}/{REF}")
    build.push(f"{registry.address}/{REF}")
    hosts = {h: FakeEngine(f"tcp://192.0.2.1{i}:2376", registry) for i, h in enumerate(names, 1)}
    engines = SiteEngines(hosts, urls={h: e.url for h, e in hosts.items()})
    return config_dir, engines, hosts, registry, build


def deploy(site, **options):
    config_dir, engines, _, registry, _ = site
    return api.deploy(config_dir, engine=engines, registry=registry, say=quiet, **options)

# memcached's own-file hash, the same in every build here: only its packages decide.
OWN = {LABEL_OWN_HASH: "own-memcached"}


def rebuild(site) -> str:
    """A new build of memcached, pushed: its new id."""
    _, _, _, registry, build = site
    info = build.add_image(REF + "-next", labels=OWN)     # its own files unchanged
    build.images_by_tag[REF] = info
    build.tag(REF, f"{registry.address}/{REF}")
    build.push(f"{registry.address}/{REF}")
    return info.id


def test_hosts_without_images_get_them_from_the_registry_by_digest(site):
    _, _, hosts, registry, build = site
    plan = deploy(site, dry_run=True)
    digest = registry.lookup("dockyard/memcached", "2025.1").digest
    pulls = {a.id: a for a in plan.actions if a.kind == ActionKind.PULL_IMAGE}
    assert set(pulls) == {f"pull_image:{REF}@{h}" for h in hosts}
    assert all(a.image.source == f"127.0.0.99:4000/dockyard/memcached@{digest}" for a in pulls.values())
    assert "not on the host" in pulls[f"pull_image:{REF}@h1"].reason
    deps = {a.id: a.deps for a in plan.actions}
    for h in hosts:
        assert f"pull_image:{REF}@{h}" in deps[f"create:memcached@{h}"]
    result = deploy(site)
    assert result.ok
    built = build.image(REF).id
    for engine in hosts.values():
        assert engine.tags()[REF] == built                       # exactly the bytes that were built
        assert engine.container("memcached").image_id == built
        assert ("pull", f"127.0.0.99:4000/dockyard/memcached@{digest}") in engine.calls
    assert len(registry.pulled) == 3
    # Nothing changed: nothing pulled, nothing done.
    again = deploy(site)
    assert again.ok and again.outcomes == [] and len(registry.pulled) == 3
    assert api.pull(site[0], engine=site[1], registry=registry, say=quiet).outcomes == []


def test_pull_does_only_the_images_and_a_host_holding_them_pulls_nothing(site):
    _, _, hosts, registry, _ = site
    hosts["h2"].pull(f"127.0.0.99:4000/{REF}")                   # h2 has it already, under its name
    hosts["h2"].tag(f"127.0.0.99:4000/{REF}", REF)
    result = api.pull(site[0], engine=site[1], registry=registry, say=quiet)
    assert result.ok and {o.action.id for o in result.outcomes} == {f"pull_image:{REF}@h1", f"pull_image:{REF}@h3"}
    assert not [c for e in hosts.values() for c in e.calls if c[0] in ("create", "create_volume", "job")]
    assert [c for c in hosts["h2"].calls if c[0] == "pull"] == [("pull", f"127.0.0.99:4000/{REF}")]


def test_a_new_build_pushed_is_pulled_and_rolled_out(site):
    _, _, hosts, _, _ = site
    assert deploy(site).ok
    new = rebuild(site)
    plan = deploy(site, dry_run=True)
    pull = next(a for a in plan.actions if a.id == f"pull_image:{REF}@h1")
    assert "is another image" in pull.reason
    recreate = next(a for a in plan.actions if a.id == "recreate:memcached@h1")
    assert pull.id in recreate.deps and "image" in recreate.reason
    assert deploy(site).ok
    assert {e.container("memcached").image_id for e in hosts.values()} == {new}


def test_a_kept_container_compares_the_new_image_once_its_host_holds_it(site, tmp_path):
    """In-place updates through a registry: the new build's package list is read
    on the host, so before its pull the container is recreated (and the plan
    says why); after `dockyard pull` a rebuild that changes none of its
    packages keeps it running."""
    from dockyard.image.packages import MANIFEST

    config_dir, engines, hosts, registry, build = site
    catalogue = copy_services(tmp_path)
    edit_service(catalogue, "memcached", lambda d: d["containers"]["memcached"].update(
        restart_packages=["memcached", "libc6"]))
    options = dict(engine=engines, registry=registry, say=quiet, services_root=catalogue)
    assert api.deploy(config_dir, **options).ok
    old = build.image(REF).id
    new = rebuild(site)
    for engine in hosts.values():
        for image_id in (old, new):
            engine.files[(image_id, MANIFEST)] = b"memcached=1.6.38-1\nlibc6=2.41-12\n"
    before = api.deploy(config_dir, dry_run=True, **options)
    assert "recreate:memcached@h1" in before.by_id() and before.kept == []
    assert f"cannot read {MANIFEST} of image {new[:19]}" in before.by_id()["recreate:memcached@h1"].reason
    assert api.pull(config_dir, **options).ok
    after = api.deploy(config_dir, dry_run=True, **options)
    assert after.is_empty() and {k.name for k in after.kept} == {f"memcached@{h}" for h in hosts}


def test_an_image_not_in_the_registry_or_built_after_its_push_is_refused(site, tmp_path):
    config_dir, engines, hosts, _, _ = site
    with pytest.raises(ConfigError, match=r"not in the registry 127.0.0.99:4000: memcached.*dockyard build --push"):
        api.deploy(config_dir, engine=engines, registry=FakeRegistry("127.0.0.99:4000"), say=quiet)
    assert not [c for e in hosts.values() for c in e.calls]
    # An all-in-one whose own engine holds a newer build than the registry.
    aio = make_site(tmp_path / "aio")
    set_globals(aio, enabled_services=["memcached"], registry={})
    registry = FakeRegistry("127.0.0.99:4000")
    local = FakeEngine("unix://", registry)
    local.add_image(REF)
    local.tag(REF, f"{registry.address}/{REF}")
    local.push(f"{registry.address}/{REF}")
    local.images_by_tag[REF] = local.add_image(REF + "-next")
    with pytest.raises(ConfigError, match=r"other builds than the registry of: memcached.*--push") as err:
        api.deploy(aio, engine=local, registry=registry, say=quiet)
    assert err.value.exit_code == 2


def test_an_unreachable_host_fails_alone(site):
    _, _, hosts, _, _ = site
    hosts["h3"].down = True
    result = deploy(site)
    failed = {o.action.id for o in result.outcomes if o.result == "failed"}
    assert failed == {"reach_engine:h3"}
    assert hosts["h1"].container("memcached").running and hosts["h2"].container("memcached").running


# -- serial ----------------------------------------------------------------------------------------

def test_serial_rolls_a_change_one_host_at_a_time(site):
    config_dir, _, hosts, _, _ = site
    assert deploy(site).ok
    set_globals(config_dir, services={"memcached": {"memory_mb": 64}})
    plan = deploy(site, dry_run=True, serial=1)
    deps = {a.id: a.deps for a in plan.actions}
    assert "wait_healthy:memcached@h1" in deps["recreate:memcached@h2"]
    assert "wait_healthy:memcached@h2" in deps["recreate:memcached@h3"]
    assert "wait_healthy:memcached@h1" not in deps["recreate:memcached@h3"]      # only the batch before
    assert not [d for d in deps["recreate:memcached@h1"] if "@h2" in d or "@h3" in d]
    two = {a.id: a.deps for a in deploy(site, dry_run=True, serial=2).actions}
    assert not [d for d in two["recreate:memcached@h2"] if "@h1" in d]
    assert "wait_healthy:memcached@h1" in two["recreate:memcached@h3"]
    assert "wait_healthy:memcached@h2" in two["recreate:memcached@h3"]
    free = {a.id: a.deps for a in deploy(site, dry_run=True).actions}
    assert not [d for d in free["recreate:memcached@h3"] if "@h1" in d or "@h2" in d]
    # A batch that does not become healthy stops the roll: the next hosts keep the old container.
    before = {h: e.container("memcached").id for h, e in hosts.items()}
    hosts["h1"].unhealthy.add("memcached")
    result = deploy(site, serial=1)
    outcome = {o.action.id: o for o in result.outcomes}
    assert outcome["wait_healthy:memcached@h1"].result == "failed"
    assert outcome["recreate:memcached@h2"].result == "skipped"
    assert "needs memcached healthy" in outcome["recreate:memcached@h2"].error
    assert hosts["h2"].container("memcached").id == before["h2"]
    assert hosts["h3"].container("memcached").id == before["h3"]


def test_a_service_may_set_its_own_serial(site, tmp_path):
    config_dir, engines, _, registry, _ = site
    catalogue = copy_services(tmp_path)
    edit_service(catalogue, "memcached", assign(serial=2))
    plan = api.deploy(config_dir, engine=engines, registry=registry, say=quiet, dry_run=True,
                      services_root=catalogue)
    deps = {a.id: a.deps for a in plan.actions}
    assert "wait_healthy:memcached@h1" in deps["create:memcached@h3"]
    assert not [d for d in deps["create:memcached@h2"] if "@h1" in d]
    # The pulls go ahead on every host: only what changes containers waits.
    assert deps[f"pull_image:{REF}@h3"] == ()
