"""`dockyard status`: rows agree with what a deploy would do."""

from __future__ import annotations

import json

from rich.console import Console

from dockyard.labels import LABEL_HASH, LABEL_MANAGED, LABEL_SERVICE, LABEL_SITE
from dockyard.deploy.ops.status import render, status, to_json
from dockyard.engine.driver import ContainerSpec, ExecResult

from .wanted_factory import SECRET, Site, converge, fake_engine, make_wanted


def rows_by_name(rows):
    return {r.container: r for r in rows}


def test_converged_site_is_all_up_to_date(tmp_path):
    site, engine = Site(tmp_path / "site"), fake_engine()
    wanted = make_wanted(site)
    converge(engine, wanted, tmp_path / "state")
    rows = status(engine, wanted)
    assert [r.container for r in rows] == [c.name for c in wanted.containers]
    assert all(r.up_to_date and r.reason == "" for r in rows)
    keystone = rows_by_name(rows)["keystone"]
    assert (keystone.state, keystone.health, keystone.image) == ("running", "healthy", "dockyard/keystone:test")
    assert rows_by_name(rows)["memcached"].health == ""        # no health check


def test_a_container_the_engine_has_not_checked_yet_is_up_to_date(tmp_path):
    # Right after a deploy the engine's own check (every 30 s) has not run: the
    # deploy saw it pass, a deploy now would only wait. Unhealthy is another story.
    site, engine = Site(tmp_path / "site"), fake_engine()
    wanted = make_wanted(site)
    engine.starting |= {"mariadb", "keystone"}
    engine.unhealthy.add("glance_api")
    engine.exec_results["glance_api"] = [ExecResult(0, "")]        # the deploy's own check passed
    converge(engine, wanted, tmp_path / "state")
    rows = rows_by_name(status(engine, wanted))
    assert (rows["keystone"].health, rows["keystone"].up_to_date, rows["keystone"].reason) == ("starting", True, "")
    assert rows["mariadb"].up_to_date
    assert (rows["glance_api"].health, rows["glance_api"].up_to_date) == ("unhealthy", False)
    assert rows["glance_api"].reason == "wait_healthy: running, health unhealthy"


def test_starting_counts_only_when_a_health_wait_is_all_it_needs(tmp_path):
    site, engine = Site(tmp_path / "site"), fake_engine()
    wanted = make_wanted(site)
    converge(engine, wanted, tmp_path / "state")
    engine._set("keystone", health="starting", labels={**engine.container("keystone").labels, LABEL_HASH: "old"})
    row = rows_by_name(status(engine, wanted))["keystone"]
    assert not row.up_to_date and row.reason.startswith("recreate: config-hash differs")


def test_each_difference_has_its_reason(tmp_path):
    site, engine = Site(tmp_path / "site"), fake_engine()
    converge(engine, make_wanted(site), tmp_path / "state")
    engine.stop("mariadb")
    engine.remove("memcached")
    site.config["keystone.conf"] = "changed\n"
    engine.create(ContainerSpec(name="old_api", image="dockyard/keystone:test",
                                labels={LABEL_MANAGED: "true", LABEL_SERVICE: "keystone"}))
    rows = rows_by_name(status(engine, make_wanted(site)))
    assert rows["mariadb"].reason == "start: is exited" and not rows["mariadb"].up_to_date
    assert rows["memcached"].state == "missing" and rows["memcached"].reason == "create: not present"
    assert rows["keystone"].reason == "recreate: config-hash differs (keystone.conf changed)"
    assert rows["old_api"].reason == "remove: not wanted any more"
    assert rows["glance_api"].up_to_date


def test_other_sites_containers_are_left_out(tmp_path):
    site, engine = Site(tmp_path / "site"), fake_engine()
    wanted = make_wanted(site, services=("memcached",))
    engine.create(ContainerSpec(name="theirs", image="dockyard/keystone:test",
                                labels={LABEL_MANAGED: "true", LABEL_SITE: "/etc/other-site"}))
    assert "theirs" in rows_by_name(status(engine, wanted))
    assert "theirs" not in rows_by_name(status(engine, wanted, site="/etc/this-site"))


def test_json_and_table(tmp_path):
    site, engine = Site(tmp_path / "site"), fake_engine()
    wanted = make_wanted(site)
    converge(engine, wanted, tmp_path / "state")
    engine.stop("glance_api")
    rows = status(engine, wanted)
    data = json.loads(to_json(rows))
    assert data[-1] == {"container": "glance_api", "service": "glance", "host": "aio", "state": "exited",
                        "health": "", "image": "dockyard/glance-api:test", "up_to_date": False,
                        "reason": "start: is exited", "kept": ""}
    console = Console(record=True, width=200)
    render(rows, console)
    text = console.export_text()
    assert "glance_api" in text and "start: is exited" in text and "yes" in text
    assert SECRET not in text + to_json(rows)
