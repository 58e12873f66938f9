"""dockyard upgrade with the fake engine: the order, where expand and contract
fall around the new containers, the refusals, a killed upgrade resumed, a
second upgrade doing nothing, and glance staying on 2025.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard import releases as releases_mod
from dockyard.deploy import api
from dockyard.deploy.plan.planner import ActionKind, Plan
from dockyard.deploy.site.loader import DEFAULT_SERVICES
from dockyard.deploy.upgrade import load_record, upgrade
from dockyard.engine.driver import JobResult
from dockyard.engine.fake import FakeEngine
from dockyard.errors import ConfigError
from dockyard.labels import LABEL_RELEASE

from .deploy_fixtures import (acting_calls, converge_site, full_engine, quiet, remote, set_globals, waits_for,
                              write_inventory)


def set_release(site_dir: Path, release: str, service_releases: dict[str, str] | None = None) -> None:
    set_globals(site_dir, release=release, service_releases=service_releases)


@pytest.fixture
def deployed(site_dir):
    """A site converged on 2025.1, with both releases' images in the engine."""
    return site_dir, converge_site(site_dir, full_engine("2025.1", "2026.1"))


def failed_upgrade(site_dir: Path, engine: FakeEngine, job: str, status: int = 1) -> Path:
    """The site's upgrade to 2026.1 run with ``job`` failing, then the failure
    cleared (what a killed or failed run leaves for the next). Returns the site's
    state folder, where the upgrade's record is."""
    set_release(site_dir, "2026.1")
    engine.job_results[job] = JobResult(status, "lock wait timeout\n")
    assert not upgrade(site_dir, engine=engine, say=quiet).ok
    del engine.job_results[job]
    return api.load(site_dir, need_passwords=False)[0].state_dir


def before(plan: Plan, first: str, then: str) -> bool:
    """``then`` waits (directly or not) for ``first``."""
    return first in waits_for(plan, then)


# -- the plan -------------------------------------------------------------------------

def test_dry_run_prints_each_service_from_and_to_in_order_and_changes_nothing(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    engine.calls.clear()
    lines: list[str] = []
    result = upgrade(site_dir, engine=engine, dry_run=True, say=lines.append)
    assert acting_calls(engine) == []
    moves = [m.service for m in result.moves]
    assert moves == ["mariadb", "rabbitmq", "memcached", "keystone", "placement", "nova", "openvswitch", "neutron",
                     "neutron-agents", "nova-compute", "horizon"]
    assert all((m.from_release, m.to_release) == ("2025.1", "2026.1") for m in result.moves)
    assert result.stays == {"glance": "2025.1"}
    text = "\n".join(lines)
    assert "4. keystone: 2025.1 -> 2026.1; steps: check, expand, migrate, contract" in text
    assert "stays: glance on 2025.1" in text
    assert "2025.1 -> 2026.1: keystone-manage db_sync --expand" in text


def test_services_move_one_after_the_other(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    assert before(plan, "upgrade:mariadb:post", "upgrade:rabbitmq:prepare")
    assert before(plan, "wait_healthy:rabbitmq", "recreate:memcached")
    assert before(plan, "wait_healthy:memcached", "upgrade:keystone:check")
    assert before(plan, "wait_healthy:keystone", "upgrade:placement:check")
    assert before(plan, "wait_healthy:placement_api", "upgrade:nova:check")
    assert before(plan, "wait_healthy:nova_api", "recreate:openvswitch_db_server")
    assert before(plan, "wait_healthy:openvswitch_vswitchd", "upgrade:neutron:expand")
    assert before(plan, "wait_healthy:neutron_rpc_server", "recreate:neutron_openvswitch_agent")
    assert before(plan, "wait_healthy:nova_compute", "recreate:horizon")


def test_infrastructure_steps_around_their_containers(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    # RabbitMQ's feature flags, in the running release's image, before its new container.
    prepare = plan.by_id()["upgrade:rabbitmq:prepare"]
    assert prepare.job.spec.image == "dockyard/rabbitmq:2025.1"
    assert before(plan, "upgrade:rabbitmq:prepare", "recreate:rabbitmq")
    # MariaDB's own upgrade step once the new server is healthy, in the new image.
    post = plan.by_id()["upgrade:mariadb:post"]
    assert post.job.spec.image == "dockyard/mariadb-server:2026.1"
    assert before(plan, "wait_healthy:mariadb", "upgrade:mariadb:post")


def test_expand_before_the_new_containers_contract_after_no_old_code_runs(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    ids = plan.by_id()
    # keystone: check, expand, migrate, the new container, its health, contract.
    for first, then in [("upgrade:keystone:check", "upgrade:keystone:expand"),
                        ("upgrade:keystone:expand", "upgrade:keystone:migrate"),
                        ("upgrade:keystone:migrate", "recreate:keystone"),
                        ("wait_healthy:keystone", "upgrade:keystone:contract")]:
        assert before(plan, first, then), (first, then)
    assert not before(plan, "upgrade:keystone:contract", "recreate:keystone")
    # Its bootstrap (a full db_sync, contract included) runs after the contract, not before the container.
    assert before(plan, "upgrade:keystone:contract", "job:keystone_bootstrap")
    assert not before(plan, "job:keystone_bootstrap", "recreate:keystone")
    # neutron: expand before the server; contract once the server and every agent run the new code.
    for part in ("neutron_api", "neutron_rpc_server", "neutron_periodic_workers"):
        assert before(plan, "upgrade:neutron:expand", f"recreate:{part}"), part
    for agent in ("neutron_openvswitch_agent", "neutron_dhcp_agent", "neutron_l3_agent", "neutron_metadata_agent"):
        assert before(plan, f"wait_healthy:{agent}", "upgrade:neutron:contract")
    # nova: api_db sync and db sync before any nova service restarts; online migrations after all, computes too.
    assert ids["upgrade:nova:expand"].reason.endswith("nova-manage api_db sync")
    assert ids["upgrade:nova:migrate"].reason.endswith("nova-manage db sync")
    for name in ("nova_api", "nova_conductor", "nova_scheduler", "nova_novncproxy"):
        assert before(plan, "upgrade:nova:migrate", f"recreate:{name}")
    for name in ("nova_api", "nova_conductor", "nova_compute", "nova_libvirt"):
        assert before(plan, f"wait_healthy:{name}", "upgrade:nova:online_migrations")
    # Checks come first, each in its new image.
    assert ids["upgrade:nova:check"].reason.endswith("nova-status upgrade check")
    assert ids["upgrade:placement:check"].job.spec.image == "dockyard/placement-api:2026.1"
    assert not waits_for(plan, "upgrade:mariadb:post") & {a.id for a in plan.actions if a.service == "keystone"}


def test_glance_stays_on_2025_1(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    result = upgrade(site_dir, engine=engine, say=quiet)
    assert result.ok
    assert engine.container("glance_api").image == "dockyard/glance-api:2025.1"
    assert engine.container("keystone").image == "dockyard/keystone:2026.1"
    assert engine.container("keystone").labels[LABEL_RELEASE] == "2026.1"
    assert engine.container("glance_api").labels[LABEL_RELEASE] == "2025.1"
    assert not [j for j in engine.jobs_run if j.startswith("glance_upgrade")]


def test_an_operator_can_hold_a_service_back(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1", {"horizon": "2025.1"})
    result = upgrade(site_dir, engine=engine, dry_run=True, say=quiet)
    assert "horizon" not in [m.service for m in result.moves]
    assert result.stays["horizon"] == "2025.1"


# -- running it -------------------------------------------------------------------------

def test_upgrade_runs_the_steps_in_order_then_a_second_one_is_a_no_op(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    result = upgrade(site_dir, engine=engine, say=quiet)
    assert result.ok, [o.error for o in result.outcomes if o.result != "ok"]
    steps = [j for j in engine.jobs_run if "_upgrade_" in j]
    assert steps.index("keystone_upgrade_expand") < steps.index("keystone_upgrade_migrate") \
        < steps.index("keystone_upgrade_contract")
    assert steps.index("rabbitmq_upgrade_prepare") < steps.index("keystone_upgrade_check")
    assert steps.index("mariadb_upgrade_post") < steps.index("rabbitmq_upgrade_prepare")
    assert load_record(api.load(site_dir, need_passwords=False)[0].state_dir)["complete"] is True
    assert api.deploy(site_dir, engine=engine, dry_run=True, say=quiet).is_empty()
    engine.calls.clear()
    lines: list[str] = []
    again = upgrade(site_dir, engine=engine, say=lines.append)
    assert acting_calls(engine) == []
    assert again.moves == [] and lines[0].startswith("nothing to upgrade")


def test_a_killed_upgrade_continues_where_it_stopped(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    engine.job_results["nova_upgrade_migrate"] = JobResult(1, "database locked\n")
    first = upgrade(site_dir, engine=engine, say=quiet)
    assert not first.ok
    assert first.outcome("upgrade:nova:migrate").result == "failed"
    assert first.outcome("recreate:nova_api").result == "skipped"
    assert engine.container("keystone").image == "dockyard/keystone:2026.1"     # keystone went through
    assert engine.container("nova_api").image == "dockyard/nova-api:2025.1"     # nova did not restart
    state_dir = api.load(site_dir, need_passwords=False)[0].state_dir
    assert load_record(state_dir)["complete"] is False
    # Half-way is not "not converged": the run again resumes, without redoing what is done.
    del engine.job_results["nova_upgrade_migrate"]
    done_before = list(engine.jobs_run)
    lines: list[str] = []
    second = upgrade(site_dir, engine=engine, say=lines.append)
    assert second.ok, [o.error for o in second.outcomes if o.result != "ok"]
    assert "resuming the upgrade a previous run started" in lines
    rerun = engine.jobs_run[len(done_before):]
    assert "keystone_upgrade_expand" not in rerun and "keystone_upgrade_contract" not in rerun
    assert [j for j in rerun if "_upgrade_" in j][0] == "nova_upgrade_migrate"
    assert engine.container("nova_api").image == "dockyard/nova-api:2026.1"
    assert load_record(state_dir)["complete"] is True


def test_a_service_whose_containers_moved_before_the_kill_still_contracts(deployed):
    site_dir, engine = deployed
    failed_upgrade(site_dir, engine, "keystone_upgrade_contract")
    assert engine.container("keystone").image == "dockyard/keystone:2026.1"
    lines: list[str] = []
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=lines.append).plan
    assert "upgrade:keystone:contract" in plan.by_id()
    assert "upgrade:keystone:expand" not in plan.by_id()
    assert upgrade(site_dir, engine=engine, say=quiet).ok


def test_a_service_disabled_between_the_kill_and_the_retry_is_named_and_nothing_changes(deployed):
    site_dir, engine = deployed
    state_dir = failed_upgrade(site_dir, engine, "nova_upgrade_migrate")
    record = load_record(state_dir)
    assert record["from"]["horizon"] == "2025.1"
    set_globals(site_dir, enabled_services=[s for s in DEFAULT_SERVICES if s != "horizon"])
    refused(site_dir, engine, "horizon", "no longer enabled", "enabled_services", "enable it again",
            "dockyard upgrade --abandon")
    assert load_record(state_dir) == record


def test_an_abandoned_upgrade_is_not_resumed_and_nothing_else_changes(deployed, monkeypatch, capsys):
    site_dir, engine = deployed
    state_dir = failed_upgrade(site_dir, engine, "nova_upgrade_migrate")
    set_globals(site_dir, enabled_services=[s for s in DEFAULT_SERVICES if s != "horizon"])
    jobs = (state_dir / "jobs.json").read_bytes()
    engine.calls.clear()
    assert run_cli(monkeypatch, engine, "upgrade", "--config-dir", str(site_dir), "--abandon") == 0
    assert "abandoned the upgrade a previous run started (horizon 2025.1 -> 2026.1, " in capsys.readouterr().out
    assert load_record(state_dir)["abandoned"] is True
    assert (state_dir / "jobs.json").read_bytes() == jobs and acting_calls(engine) == []
    # The next upgrade is a new one: it no longer names horizon, and asks the
    # half-way site to be converged first (docs/upgrades.md says what follows).
    refused(site_dir, engine, "not converged")
    assert run_cli(monkeypatch, engine, "upgrade", "--config-dir", str(site_dir), "--abandon") == 0
    assert "no unfinished upgrade to abandon" in capsys.readouterr().out


# -- several hosts ----------------------------------------------------------------------

@pytest.fixture
def three_hosts(site_dir):
    """The site on three remote hosts (h1 control and network, h2 and h3
    compute), each a fake engine with both releases' images, converged on 2025.1."""
    from dockyard.deploy.engines import SiteEngines

    hosts = {f"h{i}": remote(f"192.0.2.1{i}") for i in (1, 2, 3)}
    write_inventory(site_dir, hosts, {"control": ["h1"], "network": ["h1"], "compute": ["h2", "h3"]})
    fakes = {name: full_engine("2025.1", "2026.1") for name in hosts}
    for name, fake in fakes.items():
        fake.url = hosts[name]["engine"]
    engines = SiteEngines(fakes, urls={name: fake.url for name, fake in fakes.items()})
    converge_site(site_dir, engines)
    return site_dir, engines


def test_an_upgrade_moves_a_service_on_several_hosts_at_once_unless_serial(three_hosts):
    site_dir, engines = three_hosts
    set_release(site_dir, "2026.1")
    together = upgrade(site_dir, engine=engines, dry_run=True, say=quiet).plan
    assert not before(together, "wait_healthy:nova_compute@h2", "recreate:nova_compute@h3")
    rolled = upgrade(site_dir, engine=engines, dry_run=True, say=quiet, serial=1).plan
    # h3's compute containers wait for h2's, healthy; the service's steps still
    # come after every host's new containers.
    assert before(rolled, "wait_healthy:nova_compute@h2", "recreate:nova_compute@h3")
    assert before(rolled, "wait_healthy:nova_libvirt@h2", "recreate:nova_libvirt@h3")
    assert not before(rolled, "wait_healthy:nova_compute@h3", "recreate:nova_compute@h2")
    finish = [a.id for a in rolled.actions if a.service == "nova" and a.kind == ActionKind.UPGRADE_STEP
              and a.id.endswith(":online_migrations")]
    assert finish and all(before(rolled, f"wait_healthy:nova_compute@{h}", finish[0]) for h in ("h2", "h3"))


def test_a_serial_upgrade_runs_to_the_end_on_every_host(three_hosts):
    site_dir, engines = three_hosts
    set_release(site_dir, "2026.1")
    assert upgrade(site_dir, engine=engines, say=quiet, serial=1, probe=False).ok
    for host in ("h2", "h3"):
        assert engines.of(host).container("nova_compute").labels[LABEL_RELEASE] == "2026.1"
    again = upgrade(site_dir, engine=engines, say=quiet, serial=1, probe=False)
    assert not again.moves


# -- the probe's figures of a killed run, and of the run that resumes it ------------------

class Killed(BaseException):
    """What SIGKILL does to the run, as far as the files go: it ends at once, no
    clean-up of its own runs."""


@pytest.fixture
def probed(deployed, monkeypatch):
    """The deployed site with its clouds.yaml, and a probe that asks no cloud:
    every API answers, a round when it starts and one when it stops, on a clock
    that moves half a second each time it is read. Once ``kill`` is set, its
    stop() dies with the run (a killed process stops no thread)."""
    from dockyard.deploy import upgrade as upgrade_mod
    from dockyard.deploy.ops.probe import AvailabilityProbe

    site_dir, engine = deployed
    api.post_deploy(site_dir)
    state = {"kill": False}

    class ScriptedProbe(AvailabilityProbe):
        def __init__(self, auth: dict, **options):
            ticks = iter(range(10**6))
            super().__init__(auth, clock=lambda: next(ticks) / 2, **options)

        def start(self) -> None:
            self._t0 = self.clock()
            self.poll_once()

        def stop(self):
            if state["kill"]:
                raise Killed
            self.poll_once()
            return self.figures()

        def _ask(self, api: str) -> bool:
            self._credentials = ("a scripted token", {})
            return True

    monkeypatch.setattr(upgrade_mod, "AvailabilityProbe", ScriptedProbe)
    return site_dir, engine, state


def test_a_killed_upgrades_figures_are_kept_and_the_resumed_run_adds_to_them(probed):
    import json

    from dockyard.deploy.ops.probe import cloud_auth

    site_dir, engine, state = probed
    site = api.load(site_dir, need_passwords=False)[0]
    password = cloud_auth(site_dir / "clouds.yaml")["password"]        # what the probe logs in with
    figures_file = site.state_dir / "upgrade-availability.json"
    set_release(site_dir, "2026.1")

    def say_and_die(line: str) -> None:                  # killed as the e2e story kills it
        if line.split()[:2] == ["ok", "upgrade:keystone:migrate"]:
            state["kill"] = True
            raise Killed

    with pytest.raises(Killed):
        upgrade(site_dir, engine=engine, say=say_and_die)
    killed = json.loads(figures_file.read_text())
    first_run = load_record(site.state_dir)["started_by"]
    assert killed["partial"] is True and killed["upgrade"] == first_run
    assert [(r["run"], r["partial"]) for r in killed["runs"]] == [(first_run, True)]
    assert killed["apis"]["identity"]["polls"] == 1

    state["kill"] = False
    lines: list[str] = []
    assert upgrade(site_dir, engine=engine, say=lines.append).ok
    both = json.loads(figures_file.read_text())
    assert both["partial"] is False and both["upgrade"] == first_run
    second_run = next(line.split()[3] for line in lines if line.startswith("dockyard: upgrade run "))
    assert [(r["run"], r["partial"]) for r in both["runs"]] == [(first_run, True), (second_run, False)]
    assert {name: f["polls"] for name, f in both["apis"].items()} == {name: 3 for name in killed["apis"]}
    assert both["wall_s"] == round(sum(r["wall_s"] for r in both["runs"]), 1)
    assert "availability during the upgrade's 2 runs" in "\n".join(lines)
    assert password and password not in figures_file.read_text()


def test_the_report_names_the_steps_going_on_while_every_api_was_down(deployed, monkeypatch):
    """A probe that never gets an answer: every API down at once from its
    first round (as the run starts) to its last (as it ends); the report names
    the run's actions of that time, from its timeline."""
    import re

    from dockyard.deploy import upgrade as upgrade_mod
    from dockyard.deploy.execute.timeline import load_timeline
    from dockyard.deploy.ops.probe import AvailabilityProbe

    site_dir, engine = deployed
    api.post_deploy(site_dir)

    class Unanswered(AvailabilityProbe):
        def start(self) -> None:           # no thread: a round as the run starts, one as it ends
            self._t0, self._started_at = self.clock(), self.wall_clock()
            self.poll_once()

        def stop(self):
            self.poll_once()
            return self.figures()

        def _ask(self, api: str) -> bool:
            self._credentials = ("a scripted token", {})    # asked, never answered
            return False

    monkeypatch.setattr(upgrade_mod, "AvailabilityProbe", Unanswered)
    set_release(site_dir, "2026.1")
    lines: list[str] = []
    assert upgrade(site_dir, engine=engine, say=lines.append).ok
    site = api.load(site_dir, need_passwords=False)[0]
    (timeline,) = (site.state_dir / "timeline").glob(f"{load_record(site.state_dir)['started_by']}.jsonl")
    ran = {e["action"] for e in load_timeline(timeline) if e.get("event") == "start"}
    text = "\n".join(lines)
    (outage,) = re.findall(r"^    \d+\.\d s from \d\d:\d\d:\d\d, during (.+)$", text, re.M)
    named = outage.split(", ")
    assert 1 <= len(named) <= 4 and set(named) <= ran, (named, sorted(ran))


# -- refusals ---------------------------------------------------------------------------

def refused(site_dir: Path, engine: FakeEngine, *words: str) -> None:
    engine.calls.clear()
    with pytest.raises(ConfigError) as exc:
        upgrade(site_dir, engine=engine, say=quiet)
    assert exc.value.exit_code == 2
    for word in words:
        assert word in str(exc.value)
    assert acting_calls(engine) == []


@pytest.mark.parametrize("password", ["it's-mine", "back\\slash"])
def test_a_database_password_mariadb_upgrade_cannot_pass_on_is_refused(deployed, password):
    import yaml

    site_dir, engine = deployed
    passwords_file = site_dir / "passwords.yml"
    passwords = yaml.safe_load(passwords_file.read_text())
    passwords["database_password"] = password
    passwords_file.write_text(yaml.safe_dump(passwords))
    assert api.deploy(site_dir, engine=engine, say=quiet).ok          # the database takes it
    set_release(site_dir, "2026.1")
    refused(site_dir, engine, "passwords.yml: database_password", "mariadb-upgrade", "Nothing was changed")
    with pytest.raises(ConfigError) as exc:
        upgrade(site_dir, engine=engine, dry_run=True, say=quiet)
    assert password not in str(exc.value)                  # the value is never said
    set_release(site_dir, "2026.1", {"mariadb": "2025.1"})  # mariadb stays: nothing to refuse
    assert upgrade(site_dir, engine=engine, dry_run=True, say=quiet).moves


def test_a_downgrade_is_refused(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    assert upgrade(site_dir, engine=engine, say=quiet).ok
    set_release(site_dir, "2025.1")
    refused(site_dir, engine, "downgrade", "globals.yml: release")


def test_a_site_not_converged_on_its_release_is_refused(deployed):
    site_dir, engine = deployed
    engine.stop("keystone")
    set_release(site_dir, "2026.1")
    refused(site_dir, engine, "not converged", "start:keystone")
    assert not load_record(api.load(site_dir, need_passwords=False)[0].state_dir)


def test_a_container_the_engine_has_not_checked_yet_is_converged_an_unhealthy_one_is_not(deployed):
    # Just recreated (a deploy a moment ago): the engine's own check, every 30 s,
    # still says starting. That is no reason to refuse; unhealthy is.
    site_dir, engine = deployed
    engine._set("mariadb", health="starting")
    set_release(site_dir, "2026.1")
    assert upgrade(site_dir, engine=engine, dry_run=True, say=quiet).moves
    engine._set("mariadb", health="unhealthy")
    refused(site_dir, engine, "not converged", "wait_healthy:mariadb")


def test_a_site_keeping_libvirt_over_a_rebuild_is_converged_and_upgrades(deployed):
    """libvirt kept on its rebuilt 2025.1 image (an in-place update) is as the
    site wants it: the upgrade's convergence check agrees, and moves it."""
    from dataclasses import replace

    from dockyard.image.packages import MANIFEST
    from dockyard.labels import LABEL_OWN_HASH

    site_dir, engine = deployed
    ref = "dockyard/nova-libvirt:2025.1"
    old = replace(engine.images_by_tag[ref], labels={LABEL_OWN_HASH: "own-nova-libvirt"})
    engine.images_by_tag[f"{ref}-previous"] = old
    engine.images_by_tag[ref] = replace(old, id=old.id + "-rebuilt")
    for image_id in (old.id, old.id + "-rebuilt"):
        engine.files[(image_id, MANIFEST)] = b"libvirt-daemon-system=11.3.0-3\nlibc6=2.41-12\n"
    assert api.deploy(site_dir, engine=engine, say=quiet).ok
    assert engine.container("nova_libvirt").image_id == old.id                   # kept
    set_release(site_dir, "2026.1")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    assert "recreate:nova_libvirt" in plan.by_id()


@pytest.fixture
def three_releases(tmp_path, monkeypatch):
    path = tmp_path / "releases.yml"
    path.write_text(releases_mod.DEFAULT_PATH.read_text() + """\
  - name: "2027.1"
    suite: duke
    tag: "2027.1"
    upgrade_from: ["2026.1"]
""")
    monkeypatch.setattr(releases_mod, "DEFAULT_PATH", path)
    releases_mod.load_releases.cache_clear()
    yield
    releases_mod.load_releases.cache_clear()


def test_a_jump_the_services_do_not_support_is_refused(site_dir, three_releases):
    engine = converge_site(site_dir, full_engine("2025.1", "2027.1"))
    set_release(site_dir, "2027.1")
    refused(site_dir, engine, "runs 2025.1", "not reached from it in one step", "2026.1")


def test_only_the_named_services_move(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    result = upgrade(site_dir, engine=engine, services={"memcached"}, say=quiet)
    assert result.ok
    assert engine.container("memcached").image == "dockyard/memcached:2026.1"
    assert engine.container("keystone").image == "dockyard/keystone:2025.1"


def test_action_kind_names_the_step(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    step = plan.by_id()["upgrade:keystone:expand"]
    assert step.kind == ActionKind.UPGRADE_STEP and step.readiness() == "upgrade step keystone_upgrade_expand done"
    assert plan.by_id()["upgrade:keystone:expand"].job.spec.image == "dockyard/keystone:2026.1"


def test_the_dry_run_shows_the_main_package_versions(deployed):
    site_dir, engine = deployed
    from dockyard.image.packages import MANIFEST
    engine.files[("dockyard/keystone:2025.1", MANIFEST)] = b"keystone=2:27.0.0-3\npython3=3.13.5-1\n"
    engine.files[("dockyard/keystone:2026.1", MANIFEST)] = b"keystone=2:29.0.0-1\npython3=3.13.9-1\n"
    set_release(site_dir, "2026.1")
    lines: list[str] = []
    upgrade(site_dir, engine=engine, dry_run=True, say=lines.append)
    assert "keystone: 2025.1 -> 2026.1 (2:27.0.0-3 -> 2:29.0.0-1); steps: check, expand, migrate, contract" \
        in "\n".join(lines)


def test_destroy_with_volumes_forgets_an_unfinished_upgrade(deployed):
    site_dir, engine = deployed
    state_dir = failed_upgrade(site_dir, engine, "keystone_upgrade_check", status=2)
    assert load_record(state_dir)["complete"] is False
    api.destroy(site_dir, include_volumes=True, engine=engine, say=quiet)
    assert load_record(state_dir) == {}


def test_a_resumed_upgrade_waits_for_a_new_container_still_starting(deployed):
    site_dir, engine = deployed
    failed_upgrade(site_dir, engine, "keystone_upgrade_contract")
    engine._set("keystone", health="starting")
    plan = upgrade(site_dir, engine=engine, dry_run=True, say=quiet).plan
    assert before(plan, "wait_healthy:keystone", "upgrade:keystone:contract")
    assert before(plan, "upgrade:keystone:contract", "job:keystone_bootstrap")


# -- the command ---------------------------------------------------------------------------

def run_cli(monkeypatch, engine: FakeEngine, *args: str):
    import sys

    import dockyard.cli.deploy  # noqa: F401  (adds the commands to ``cli``)
    from dockyard.cli import main

    monkeypatch.setattr(api, "connect", lambda kind: engine)
    monkeypatch.setattr(sys, "argv", ["dockyard", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code


def test_the_command_dry_run_then_a_refusal_exits_2(deployed, monkeypatch, capsys):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    assert run_cli(monkeypatch, engine, "upgrade", "--config-dir", str(site_dir), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "upgrade, in this order:" in out and "changes planned (dry run: nothing done)" in out
    assert run_cli(monkeypatch, engine, "upgrade", "--config-dir", str(site_dir)) == 0
    set_release(site_dir, "2025.1")
    assert run_cli(monkeypatch, engine, "upgrade", "--config-dir", str(site_dir)) == 2
    assert "a downgrade is not supported" in capsys.readouterr().err


def test_a_deploy_does_not_move_a_running_service_to_another_release(deployed):
    site_dir, engine = deployed
    set_release(site_dir, "2026.1")
    engine.calls.clear()
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    assert "keystone runs 2025.1, 2026.1 is wanted" in str(exc.value) and "dockyard upgrade" in str(exc.value)
    assert "glance" not in str(exc.value)
    assert acting_calls(engine) == []
    # Once upgraded, deploy converges as before.
    assert upgrade(site_dir, engine=engine, say=quiet).ok
    assert api.deploy(site_dir, engine=engine, say=quiet).ok


def test_missing_images_of_the_next_release_name_the_build_to_run(site_dir):
    engine = converge_site(site_dir, full_engine("2025.1"))
    set_release(site_dir, "2026.1")
    with pytest.raises(ConfigError) as exc:
        upgrade(site_dir, engine=engine, dry_run=True, say=quiet)
    assert "dockyard build --release 2026.1 '^keystone$'" in str(exc.value) or \
        "dockyard build --release 2026.1 " in str(exc.value)
    assert "glance-api" not in str(exc.value)
