"""Compute hosts of a site of three (ctl; cmp1, cmp2), the real catalogue on one
FakeEngine per host: a host's own override changes that host only, and
`--serial 1` over the compute group never has both hosts' nova_compute in
motion at once."""

from __future__ import annotations

import itertools

import pytest

from dockyard.deploy import api
from dockyard.deploy.engines import SiteEngines

from .deploy_fixtures import fake_engine, make_site, quiet, remote, waits_for, write_inventory

HOSTS = ("ctl", "cmp1", "cmp2")
COMPUTE = {"cmp1", "cmp2"}
NOVA_CONF = "/var/lib/dockyard/config_files/nova-compute.conf"     # its /etc/nova/nova.conf


@pytest.fixture
def cloud(tmp_path):
    """The default services deployed: control and network on ctl, compute on cmp1 and cmp2."""
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"ctl": remote("192.0.2.10"), "cmp1": remote("192.0.2.21"),
                                 "cmp2": remote("192.0.2.22")},
                    {"control": ["ctl"], "network": ["ctl"], "compute": ["cmp1", "cmp2"]})
    fakes = {name: fake_engine() for name in HOSTS}
    engines = SiteEngines(fakes)
    result = api.deploy(config_dir, engine=engines, say=quiet)
    assert result.ok, [o.line() for o in result.outcomes if o.result != "ok"]
    return config_dir, engines, fakes


def override(config_dir, relative: str, text: str) -> None:
    path = config_dir / "config" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_compute_hosts_own_nova_conf_recreates_its_nova_compute_only(cloud):
    config_dir, engines, fakes = cloud
    before = {h: {c.name: c.id for c in fakes[h].containers()} for h in HOSTS}
    override(config_dir, "cmp1/nova.conf", "[DEFAULT]\ndebug = True\n")       # kolla-ansible's config/<host>/
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet)
    assert {a.host for a in plan.actions} == {"cmp1"}
    assert [a.id for a in plan.actions if a.kind in ("create", "recreate", "start", "remove", "run_job")] == \
        ["recreate:nova_compute@cmp1"]
    assert "nova-compute.conf changed" in plan.by_id()["recreate:nova_compute@cmp1"].reason
    # Applied: cmp1's nova_compute is a new container with the key; nothing else moved.
    result = api.deploy(config_dir, engine=engines, say=quiet)
    assert result.ok and {o.action.host for o in result.outcomes} == {"cmp1"}
    after = {h: {c.name: c.id for c in fakes[h].containers()} for h in HOSTS}
    changed = {(h, name) for h in HOSTS for name in after[h] if after[h][name] != before[h].get(name)}
    assert changed == {("cmp1", "nova_compute")}
    conf = {h: fakes[h].copied["nova_compute"][NOVA_CONF][0].decode() for h in COMPUTE}
    assert "debug = True" in conf["cmp1"] and "debug = True" not in conf["cmp2"]
    assert api.deploy(config_dir, engine=engines, dry_run=True, say=quiet).is_empty()


# What stops, starts or waits on a container (its volume and files may go ahead).
CONTAINER_KINDS = ("create", "recreate", "start", "wait_healthy", "remove")


def nova_compute_apart(plan) -> list[tuple[str, str]]:
    """Pairs of the nova_compute container's actions, one on each compute host,
    that may run at the same time: neither waits for the other, directly or not."""
    by_host = {h: [a.id for a in plan.actions if a.target == "nova_compute" and a.host == h
                   and a.kind in CONTAINER_KINDS] for h in sorted(COMPUTE)}
    assert all(by_host.values()), by_host
    return [(a, b) for a, b in itertools.product(*by_host.values())
            if a not in waits_for(plan, b) and b not in waits_for(plan, a)]


def test_serial_1_over_the_compute_group_moves_one_nova_compute_at_a_time(cloud):
    config_dir, engines, fakes = cloud
    override(config_dir, "nova/nova-compute.conf", "[DEFAULT]\ndebug = True\n")       # both hosts' nova_compute
    free = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet, limit=COMPUTE)
    assert nova_compute_apart(free)                        # without --serial both may move at once
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet, limit=COMPUTE, serial=1)
    plan.validate()
    assert {a.id for a in plan.actions if a.kind == "recreate"} == {"recreate:nova_compute@cmp1",
                                                                     "recreate:nova_compute@cmp2"}
    assert nova_compute_apart(plan) == []
    # In the inventory's order: cmp2's recreate waits until cmp1's is healthy.
    assert "wait_healthy:nova_compute@cmp1" in waits_for(plan, "recreate:nova_compute@cmp2")
    result = api.deploy(config_dir, engine=engines, say=quiet, limit=COMPUTE, serial=1)
    assert result.ok and {o.action.host for o in result.outcomes} == COMPUTE


def test_serial_1_from_nothing_creates_one_nova_compute_at_a_time(tmp_path):
    config_dir = make_site(tmp_path)
    write_inventory(config_dir, {"ctl": remote("192.0.2.10"), "cmp1": remote("192.0.2.21"),
                                 "cmp2": remote("192.0.2.22")},
                    {"control": ["ctl"], "network": ["ctl"], "compute": ["cmp1", "cmp2"]})
    engines = SiteEngines({name: fake_engine() for name in HOSTS})
    assert nova_compute_apart(api.deploy(config_dir, engine=engines, dry_run=True, say=quiet))
    plan = api.deploy(config_dir, engine=engines, dry_run=True, say=quiet, serial=1)
    plan.validate()
    assert {"create:nova_compute@cmp1", "create:nova_compute@cmp2"} <= set(plan.by_id())
    assert nova_compute_apart(plan) == []
