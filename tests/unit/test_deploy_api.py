"""The library API end to end with a fake engine: deploy, re-deploy, bad input,
reconfigure, stop, destroy, post-deploy, export, prechecks, up; and the CLI's
exit codes."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import stat
import sys
from pathlib import Path

import pytest
import yaml

from dockyard.deploy import api
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.labels import LABEL_MANAGED, LABEL_SITE
from dockyard.deploy.plan.planner import Plan
from dockyard.engine.driver import JobResult
from dockyard.errors import ConfigError, LockedError
from dockyard.deploy.execute.lock import SiteLock

from .deploy_fixtures import acting_calls, converge_site, full_engine, make_site, quiet, set_password


@pytest.fixture
def deployed(site_dir):
    return site_dir, converge_site(site_dir, full_engine())


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# -- deploy ---------------------------------------------------------------------------------

def test_fresh_deploy_then_a_second_one_changes_nothing(deployed):
    site_dir, engine = deployed
    running = {c.name for c in engine.containers() if c.running}
    assert {"mariadb", "keystone", "glance_api", "nova_conductor", "neutron_api", "neutron_rpc_server",
            "horizon"} <= running
    assert engine.jobs_run.index("mariadb_bootstrap") < engine.jobs_run.index("keystone_databases") \
        < engine.jobs_run.index("keystone_bootstrap") < engine.jobs_run.index("keystone_admin") \
        < engine.jobs_run.index("glance_register")
    site_label = str(site_dir.resolve())
    assert all(c.labels[LABEL_SITE] == site_label for c in engine.containers())
    generated = files_under(site_dir / "generated")
    assert generated and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in generated)
    timelines = files_under(site_dir / "state" / "timeline")
    assert len(timelines) == 1

    engine.calls.clear()
    lines: list[str] = []
    again = api.deploy(site_dir, engine=engine, say=lines.append)
    assert again.ok and again.changed == 0
    assert lines[-1].startswith("0 changes")
    assert acting_calls(engine) == []
    assert len(files_under(site_dir / "state" / "timeline")) == 2     # every run writes one


def test_a_site_with_the_one_piece_neutron_server_moves_to_its_three_parts(deployed):
    """Sites deployed before neutron's server was split run one neutron_server
    container on port 9696: the next deploy removes it before neutron-api binds
    that port, and nothing else of the site changes."""
    site_dir, engine = deployed
    api_spec = engine.spec("neutron_api")
    for part in ("neutron_api", "neutron_rpc_server", "neutron_periodic_workers"):
        engine.remove(part)
    engine.create(dataclasses.replace(api_spec, name="neutron_server"))
    engine.start("neutron_server")
    plan = api.deploy(site_dir, engine=engine, dry_run=True, say=quiet)
    acting = {a.id for a in plan.actions if not a.id.startswith("wait_healthy:")}
    assert acting == {"remove:neutron_server", "create:neutron_api", "create:neutron_rpc_server",
                      "create:neutron_periodic_workers"}
    assert "remove:neutron_server" in plan.by_id()["create:neutron_api"].deps
    result = api.deploy(site_dir, engine=engine, say=quiet)
    assert result.ok
    assert engine.container("neutron_server") is None and engine.container("neutron_api").running


def test_dry_run_prints_the_plan_and_changes_nothing(site_dir):
    engine = full_engine()
    lines: list[str] = []
    plan = api.deploy(site_dir, engine=engine, dry_run=True, say=lines.append)
    assert isinstance(plan, Plan) and plan.changes() > 0
    assert "keystone" in "\n".join(lines) and "dry run: nothing done" in lines[-1]
    assert acting_calls(engine) == [] and not engine.containers()
    assert files_under(site_dir / "generated") == []


def test_reconfigure_recreates_only_the_container_whose_override_changed(deployed):
    site_dir, engine = deployed
    before = {c.name: c.id for c in engine.containers()}
    (site_dir / "config" / "glance.conf").write_text("[DEFAULT]\nshow_image_direct_url = True\n")
    engine.calls.clear()
    result = api.reconfigure(site_dir, engine=engine, say=quiet)
    assert result.ok
    after = {c.name: c.id for c in engine.containers()}
    assert {n for n in after if after[n] != before.get(n)} == {"glance_api"}
    # The jobs that read glance-api.conf run again; both are idempotent.
    assert {c[1] for c in engine.calls if c[0] == "job"} == {"glance_bootstrap", "glance_metadefs"}
    conf = (site_dir / "generated" / "glance_api" / "glance-api.conf").read_text()
    assert "show_image_direct_url = True" in conf


def test_an_override_that_matches_nothing_is_pointed_out(site_dir):
    (site_dir / "config" / "nvoa.conf").write_text("[DEFAULT]\ndebug = true\n")
    lines: list[str] = []
    api.deploy(site_dir, engine=full_engine(), dry_run=True, say=lines.append)
    assert any("nvoa.conf" in line and "warning" in line for line in lines)


def test_only_the_named_services_are_acted_on(site_dir):
    engine = full_engine()
    result = api.deploy(site_dir, engine=engine, services={"memcached"}, say=quiet)
    assert result.ok
    assert {c.name for c in engine.containers()} == {"memcached"}


# -- bad input changes nothing ----------------------------------------------------------------

BAD = [
    ("globals.yml", "enabled_services: [keystone, nosuch]\n", "enabled_services[1]"),
    ("globals.yml", "parallelism: -1\n", "parallelism"),
    ("config/nova.conf", "this is not ini\n", "nova.conf"),
    ("inventory.yml", "hosts: {a: {address: 127.0.0.99}}\ngroups: {control: [b], network: [a], compute: [a]}\n",
     "groups.control[0]"),
]


@pytest.mark.parametrize("name, text, fragment", BAD, ids=[b[0] + ":" + b[2] for b in BAD])
def test_bad_input_is_an_error_and_nothing_is_created_or_written(site_dir, name, text, fragment):
    engine = full_engine()
    (site_dir / name).write_text(text)
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    assert fragment in str(exc.value) and exc.value.exit_code == 2
    assert acting_calls(engine) == [] and not engine.containers() and not engine.volumes()
    assert files_under(site_dir / "generated") == [] and not (site_dir / "state").exists()


def test_a_missing_password_names_it(site_dir):
    set_password(site_dir, "glance_keystone_password", None)
    engine = full_engine()
    with pytest.raises(ConfigError, match="passwords.yml: glance_keystone_password"):
        api.deploy(site_dir, engine=engine, say=quiet)
    assert acting_calls(engine) == []


def test_missing_images_are_listed_with_the_build_command_before_anything(site_dir):
    engine = full_engine()
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    del engine.images_by_tag["dockyard/placement-api:2025.1"]
    with pytest.raises(ConfigError) as exc:
        api.deploy(site_dir, engine=engine, say=quiet)
    message = str(exc.value)
    assert "horizon" in message and "placement-api" in message and "dockyard build" in message
    assert acting_calls(engine) == [] and files_under(site_dir / "generated") == []


def test_unknown_or_disabled_service_in_services_option(site_dir):
    engine = full_engine()
    with pytest.raises(ConfigError, match="--services"):
        api.deploy(site_dir, engine=engine, services={"nosuch"}, say=quiet)
    with pytest.raises(ConfigError, match="unknown service"):
        api.deploy(site_dir, engine=engine, services={"cinder"}, say=quiet)
    globals_file = site_dir / "globals.yml"
    globals_file.write_text(re.sub(r"(?m)^enabled_services: .*$", "enabled_services: [keystone]",
                                   globals_file.read_text()))
    with pytest.raises(ConfigError, match="not enabled"):
        api.deploy(site_dir, engine=engine, services={"nova-compute"}, say=quiet)
    assert acting_calls(engine) == []


def test_a_port_in_use_is_refused_before_anything(site_dir):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.99", 11211))
    holder.listen()
    engine = full_engine()
    try:
        with pytest.raises(ConfigError) as exc:
            api.deploy(site_dir, engine=engine, say=quiet)
    finally:
        holder.close()
    assert "11211" in str(exc.value) and "memcached.yml" in str(exc.value)
    assert acting_calls(engine) == [] and files_under(site_dir / "generated") == []


def test_another_sites_container_is_never_touched(site_dir, tmp_path):
    engine = full_engine()
    other = make_site(tmp_path / "other")
    api.deploy(other, engine=engine, services={"memcached"}, say=quiet)
    engine.calls.clear()
    with pytest.raises(ConfigError, match="another dockyard site"):
        api.deploy(site_dir, engine=engine, say=quiet)
    assert acting_calls(engine) == []


def test_a_held_lock_refuses_the_run(site_dir):
    engine = full_engine()
    with SiteLock(site_dir / "state"):
        with pytest.raises(LockedError):
            api.deploy(site_dir, engine=engine, say=quiet)
    assert acting_calls(engine) == []


# -- the other commands ------------------------------------------------------------------------

def test_status_says_what_is_missing_then_up_to_date(site_dir):
    engine = full_engine()
    rows = api.status(site_dir, engine=engine)
    assert rows and all(r.state == "missing" and not r.up_to_date for r in rows)
    api.deploy(site_dir, engine=engine, say=quiet)
    rows = api.status(site_dir, engine=engine)
    assert all(r.up_to_date and r.state == "running" for r in rows)
    # An image gone from the engine: status still answers, and says what a deploy would do.
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    rows = {r.container: r for r in api.status(site_dir, engine=engine)}
    assert not rows["horizon"].up_to_date and rows["keystone"].up_to_date


def test_stop_then_deploy_starts_them_again(deployed):
    site_dir, engine = deployed
    stopped = api.stop(site_dir, engine=engine, say=quiet)
    assert stopped.ok and stopped.changed == len(engine.containers())
    assert not [c for c in engine.containers() if c.running]
    stops = [c[1] for c in engine.calls if c[0] == "stop"]
    assert stops.index("nova_api") < stops.index("rabbitmq") and stops.index("keystone") < stops.index("mariadb")
    engine.calls.clear()
    assert api.deploy(site_dir, engine=engine, say=quiet).ok
    # Only starts, and, first, /run/netns made a shared mount again (as after a reboot).
    assert {c[0] for c in acting_calls(engine)} == {"start", "job"}
    assert [c[1] for c in acting_calls(engine) if c[0] == "job"] == ["dockyard_share_run_netns"]


def test_destroy_keeps_volumes_unless_asked_and_leaves_other_volumes(site_dir):
    engine = full_engine()
    engine.create_volume("someone_elses", {LABEL_MANAGED: "true"})
    # A volume of a wanted name that another site labelled: used, but not ours to delete.
    engine.create_volume("glance_images", {LABEL_MANAGED: "true", LABEL_SITE: "/elsewhere"})
    # One of a wanted name from before sites were labelled or recorded: ours.
    engine.create_volume("keystone_credential_keys", {LABEL_MANAGED: "true"})
    assert api.deploy(site_dir, engine=engine, say=quiet).ok
    api.destroy(site_dir, include_volumes=False, engine=engine, say=quiet)
    assert not engine.containers()
    assert {"mariadb", "glance_images"} <= {v.name for v in engine.volumes()}
    assert (site_dir / "state" / "jobs.json").exists()
    api.destroy(site_dir, include_volumes=True, engine=engine, say=quiet)
    assert {v.name for v in engine.volumes()} == {"someone_elses", "glance_images"}
    assert not (site_dir / "state" / "jobs.json").exists()
    # With the data gone, every bootstrap job runs again.
    engine.jobs_run.clear()
    assert api.deploy(site_dir, engine=engine, say=quiet).ok
    assert "mariadb_bootstrap" in engine.jobs_run


def test_destroy_leaves_volumes_its_services_do_not_use(site_dir):
    (site_dir / "globals.yml").write_text("enabled_services: [memcached]\ninternal_address: 127.0.0.99\n")
    engine = full_engine()
    engine.create_volume("glance_images", {LABEL_MANAGED: "true"})
    api.deploy(site_dir, engine=engine, say=quiet)
    api.destroy(site_dir, include_volumes=True, engine=engine, say=quiet)
    assert [v.name for v in engine.volumes()] == ["glance_images"]


def test_stop_and_destroy_leave_containers_of_no_site_alone(deployed):
    site_dir, engine = deployed
    from dockyard.engine.driver import ContainerSpec
    engine.create(ContainerSpec(name="unlabelled", image="dockyard/memcached:2025.1",
                                labels={LABEL_MANAGED: "true"}))
    engine.start("unlabelled")
    api.stop(site_dir, engine=engine, say=quiet)
    api.destroy(site_dir, include_volumes=True, engine=engine, say=quiet)
    assert [c.name for c in engine.containers()] == ["unlabelled"] and engine.container("unlabelled").running


def test_post_deploy_writes_private_client_config(site_dir):
    paths = api.post_deploy(site_dir)
    assert [p.name for p in paths] == ["clouds.yaml", "admin-openrc.sh"]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = yaml.safe_load((site_dir / "passwords.yml").read_text())["keystone_admin_password"]
    cloud = yaml.safe_load(paths[0].read_text())["clouds"]["dockyard"]
    assert cloud["auth"]["password"] == password and cloud["auth"]["auth_url"] == "http://127.0.0.99:5000/v3"
    assert f"export OS_PASSWORD={password}" in paths[1].read_text()


def test_genconfig_writes_the_files_a_deploy_would_and_nothing_else(site_dir):
    written, unchanged = api.genconfig(site_dir)
    assert written and unchanged == 0
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    from_genconfig = {p: p.read_bytes() for p in files_under(site_dir / "generated")}
    assert sorted(from_genconfig) == sorted(written)

    again, unchanged = api.genconfig(site_dir)
    assert again == [] and unchanged == len(written)
    conf = site_dir / "generated" / "glance_api" / "glance-api.conf"
    conf.write_text("edited by hand\n")
    only, _ = api.genconfig(site_dir, {"glance"})
    assert only == [conf] and conf.read_bytes() == from_genconfig[conf]

    # A deploy on the engine writes exactly the same files.
    import shutil
    shutil.rmtree(site_dir / "generated")
    converge_site(site_dir, full_engine())
    assert {p: p.read_bytes() for p in files_under(site_dir / "generated")} == from_genconfig


def test_genconfig_refuses_an_unknown_service_and_writes_nothing(site_dir):
    with pytest.raises(ConfigError, match="unknown service 'glanse'"):
        api.genconfig(site_dir, {"glanse"})
    assert files_under(site_dir / "generated") == []


def test_export_compose_needs_no_engine(site_dir):
    doc = yaml.safe_load(api.export_compose(site_dir))
    assert {"keystone", "glance_api", "keystone_admin"} <= set(doc["services"])
    assert doc["services"]["keystone"]["network_mode"] == "host"


def test_prechecks_report_ports_in_use_and_missing_images(site_dir):
    engine = full_engine()
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.99", 5000))
    holder.listen()
    try:
        checks = api.prechecks(site_dir, engine=engine, say=quiet)
    finally:
        holder.close()
    by_name = {}
    for c in checks:
        by_name.setdefault(c.name, []).append(c)
    assert by_name["container engine"][0].status == "ok"
    assert by_name["images"][0].status == "WARN" and "horizon" in by_name["images"][0].message
    assert [c.message for c in by_name["ports"] if c.status == "FAIL"] == \
        ["port 5000 on 127.0.0.99 is in use (keystone needs it)"]
    assert acting_calls(engine) == []


def test_prechecks_skip_ports_held_by_our_own_containers(deployed):
    site_dir, engine = deployed
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.99", 5000))      # as if our keystone held it
    holder.listen()
    try:
        checks = api.prechecks(site_dir, engine=engine, say=quiet)
    finally:
        holder.close()
    assert [c for c in checks if c.name == "ports"][0].status == "ok"


def test_prechecks_on_a_fresh_machine_use_the_defaults(tmp_path):
    checks = api.prechecks(tmp_path / "nothing-yet", engine=full_engine(), say=quiet)
    assert checks[0].name == "configuration" and checks[0].status == "WARN"


def test_up_writes_defaults_builds_only_what_is_missing_deploys_and_writes_client_config(tmp_path, monkeypatch):
    engine = full_engine()
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    built: list[list[str]] = []

    def fake_build(site, engine_, names, say, threads=None, work_dir=None, release=None, live=None):
        built.append(list(names))
        for name in names:
            engine_.add_image(f"dockyard/{name}:2025.1")
        return True

    monkeypatch.setattr(api, "build_images", fake_build)
    config_dir = tmp_path / "site"
    (config_dir).mkdir()
    (config_dir / "globals.yml").write_text("internal_address: 127.0.0.99\n")
    lines: list[str] = []
    result = api.up(config_dir, say=lines.append, engine=engine)
    assert result is not None and result.ok
    assert built == [["horizon"]]
    assert (config_dir / "passwords.yml").exists() and (config_dir / "clouds.yaml").exists()
    assert any("openstack" in line for line in lines)
    # A second `up` has nothing to build and nothing to change.
    engine.calls.clear()
    result = api.up(config_dir, say=quiet, engine=engine)
    assert built == [["horizon"]] and result.changed == 0 and acting_calls(engine) == []


def test_build_images_says_each_image_and_a_progress_line_in_a_log(tmp_path, monkeypatch, site_dir):
    from dockyard.image import catalogue as image_catalogue

    from .image_fixtures import add_current_rootfs, fixture_catalogue, RecordingEngine

    # The small fixture catalogue, and a progress line at every event instead of every minute.
    monkeypatch.setattr(image_catalogue, "load_catalogue", lambda root=None: fixture_catalogue())
    monkeypatch.setattr("dockyard.image.progress.EVERY", 0.0)
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path / "etc"))     # no build.yml of this machine
    engine = RecordingEngine()
    add_current_rootfs(engine)
    site, _ = api.load(site_dir)
    lines: list[str] = []
    assert api.build_images(site, engine, ["keystone"], lines.append, work_dir=tmp_path / "work")
    assert "  image keystone: built" in lines
    progress = [line for line in lines if line.startswith("  progress: ")]
    assert progress and re.fullmatch(r"  progress: 4/4 done; \d+s elapsed", progress[-1])


def test_build_images_on_a_terminal_prints_above_a_live_line(tmp_path, monkeypatch, site_dir):
    import io

    from rich.console import Console

    from dockyard.image import catalogue as image_catalogue

    from .image_fixtures import add_current_rootfs, fixture_catalogue, RecordingEngine

    monkeypatch.setattr(image_catalogue, "load_catalogue", lambda root=None: fixture_catalogue())
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path / "etc"))
    engine = RecordingEngine()
    add_current_rootfs(engine)
    site, _ = api.load(site_dir)
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=200, color_system=None)
    lines: list[str] = []
    assert api.build_images(site, engine, ["keystone"], lines.append, work_dir=tmp_path / "work", live=terminal)
    assert lines == []                                   # all of it went through the live console
    assert "  image keystone: built" in out.getvalue() and "/4 done" in out.getvalue()


# -- the CLI ------------------------------------------------------------------------------------

def run_cli(monkeypatch, engine, *args) -> int:
    """``dockyard <args>`` as main() runs it, against the fake engine."""
    from dockyard import cli

    monkeypatch.setattr(api, "connect", lambda name="docker": engine)
    monkeypatch.setattr(sys, "argv", ["dockyard", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code


def test_cli_exit_codes_and_messages(monkeypatch, site_dir, capsys):
    engine = full_engine()
    assert run_cli(monkeypatch, engine, "deploy", "--config-dir", str(site_dir)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("dockyard: run ") and "changes, 0 failed" in out
    assert run_cli(monkeypatch, engine, "status", "--config-dir", str(site_dir), "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["up_to_date"] for r in rows)
    (site_dir / "globals.yml").write_text("enabled_services: [nosuch]\n")
    assert run_cli(monkeypatch, engine, "deploy", "--config-dir", str(site_dir)) == 2
    assert "globals.yml: enabled_services[0]" in capsys.readouterr().err


def test_cli_destroy_asks_first(monkeypatch, deployed):
    site_dir, engine = deployed
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    assert run_cli(monkeypatch, engine, "destroy", "--config-dir", str(site_dir)) == 1
    assert engine.containers()
    assert run_cli(monkeypatch, engine, "destroy", "--yes", "--config-dir", str(site_dir)) == 0
    assert not engine.containers()


def test_destroy_removes_the_data_planes_namespaces_and_bridge_taps_through_the_engine(site_dir):
    engine = converge_site(site_dir, full_engine())
    engine.calls.clear()
    said: list[str] = []
    engine.job_results["dockyard_hostnet_cleanup"] = JobResult(0, "namespace qrouter-1 removed\n")
    api.destroy(site_dir, include_volumes=False, engine=engine, say=said.append)
    jobs = [c[1] for c in engine.calls if c[0] == "job"]
    # Shared first (as after a reboot), then the cleanup; after the containers are gone.
    assert jobs == ["dockyard_share_run_netns", "dockyard_hostnet_cleanup"]
    assert any(line.startswith("  ok      clean_host_network:localhost") and
               line.endswith("\n      namespace qrouter-1 removed") for line in said), said
    assert [c[0] for c in engine.calls].index("job") > max(i for i, c in enumerate(engine.calls) if c[0] == "remove")


def test_the_cleanup_touches_only_names_the_data_plane_makes(site_dir):
    from dockyard.deploy.ops import hostnet
    from dockyard.deploy.site.loader import load_site

    site = load_site(site_dir, set(load_services().services), [])
    script = hostnet.cleanup_script(site)
    for pattern in ("qrouter-*", "qdhcp-*", "dockyard-external"):
        assert pattern in script
    assert "del-br $b" in script and "br-int br-tun br-ex br-tunnel" in script
    spec = hostnet.cleanup_spec(site)
    assert spec.cap_add == ("NET_ADMIN", "SYS_ADMIN") and spec.pid_mode is None


# -- the engine dying mid-run ----------------------------------------------------------------

def test_an_engine_that_dies_mid_deploy_fails_the_action_by_name_exit_1(monkeypatch, site_dir, capsys):
    engine = full_engine()
    create = engine.create

    def die_at_keystone(spec):
        if spec.name == "keystone":
            engine.down = True              # every call from now on is refused, this one too
            return engine.create(spec)
        return create(spec)
    engine.create = die_at_keystone
    code = run_cli(monkeypatch, engine, "deploy", "--config-dir", str(site_dir))
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.out + captured.err
    failed = [line for line in captured.out.splitlines() if line.startswith("  FAILED")]
    assert any(line.split()[1] == "create:keystone" and "its engine did not answer: Connection refused" in line
               for line in failed), failed
    assert re.search(r"^\d+ changes, [1-9]\d* failed, [1-9]\d* skipped in ", captured.out, re.M)


def test_an_engine_gone_before_the_run_is_exit_4_in_its_own_words(monkeypatch, site_dir, capsys):
    engine = full_engine()
    engine.down = True
    assert run_cli(monkeypatch, engine, "deploy", "--config-dir", str(site_dir)) == 4
    err = capsys.readouterr().err
    assert "cannot reach the container engine" in err and "Connection refused" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [("deploy",), ("stop",), ("destroy", "--yes")])
def test_the_real_driver_on_a_dead_socket_is_exit_4_without_a_traceback(monkeypatch, site_dir, capsys, tmp_path,
                                                                         command):
    from dockyard import cli
    from dockyard.engine import connect

    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    monkeypatch.setattr(api, "connect", lambda name="docker": connect(name, base_url=f"unix://{dead}"))
    monkeypatch.setattr(sys, "argv", ["dockyard", *command, "--config-dir", str(site_dir)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 4, err
    assert f"cannot reach the container engine at unix://{dead}: Connection refused" in err
    assert "Traceback" not in err
