"""The wanted state of a site: units, ordering, files, labels, hashes, secrets."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from dockyard.deploy.wanted.catalogue import REGISTRY_SERVICE, load_services, unit_name
from dockyard.labels import LABEL_HASH, LABEL_HOST, LABEL_MANAGED, LABEL_SERVICE
from dockyard.deploy.plan.planner import unit_order
from dockyard.deploy.wanted.builder import CONFIG_MOUNT, wanted_state
from dockyard.deploy.wanted.hashing import job_hash
from dockyard.deploy.wanted.model import WantedJob
from dockyard.deploy.site.hostfacts import HostFacts
from dockyard.errors import ConfigError

from .deploy_fixtures import (copy_services, edit_service, full_engine, leaks, set_globals, site_of, wanted_of,
                              write_inventory)

CATALOGUE = load_services()


@pytest.fixture
def aio(site_dir):
    return wanted_of(site_dir)


def units(wanted) -> dict:
    return {u.name: u for u in [*wanted.jobs, *wanted.containers]}


# -- what is there ------------------------------------------------------------------------

def test_every_enabled_service_has_its_containers_and_jobs(aio):
    site, wanted = aio
    enabled = CATALOGUE.closure(site.globals.enabled_services)
    expected_containers, expected_jobs = set(), set()
    for name in enabled:
        service = CATALOGUE.services[name]
        expected_containers |= {unit_name(c) for c in service.spec.containers}
        expected_jobs |= {unit_name(j.name) for j in service.spec.jobs}
        expected_jobs |= {unit_name(n) for n in (service.databases_job, service.register_job) if n}
    assert {c.name for c in wanted.containers} == expected_containers
    assert {j.name for j in wanted.jobs} == expected_jobs
    assert {"mariadb", "memcached", "rabbitmq", "keystone", "glance_api", "placement_api", "nova_api",
            "nova_conductor", "nova_scheduler", "nova_novncproxy", "neutron_api", "neutron_rpc_server",
            "neutron_periodic_workers", "horizon"} <= expected_containers
    assert {"nova_databases", "nova_bootstrap", "nova_register", "keystone_admin", "mariadb_bootstrap"} <= expected_jobs
    # The all-in-one runs servers: the compute and network hosts' services are there.
    assert {"nova_compute", "nova_libvirt", "openvswitch_vswitchd", "neutron_openvswitch_agent", "neutron_l3_agent",
            "neutron_dhcp_agent", "neutron_metadata_agent", "nova_metadata"} <= set(units(wanted))
    assert wanted.services() == set(enabled)


def test_volumes_are_the_named_volumes_the_units_mount(aio):
    _, wanted = aio
    assert {v.name for v in wanted.volumes} == {"mariadb", "rabbitmq",
                                                "keystone_credential_keys", "glance_images", "openvswitch_db",
                                                "openvswitch_run", "neutron_agents", "nova_compute", "libvirtd",
                                                "libvirt_run"}
    mounted = {m.source for u in units(wanted).values() for m in u.spec.mounts if m.is_volume}
    assert mounted == {v.name for v in wanted.volumes}


# -- ordering ------------------------------------------------------------------------------

def test_after_edges(aio):
    _, wanted = aio
    u = units(wanted)
    assert u["mariadb"].after == ("mariadb_bootstrap",)
    assert u["keystone_databases"].after == ("mariadb",)                 # only the database it needs
    assert u["keystone_bootstrap"].after == ("keystone_databases",)
    assert u["keystone_admin"].after == ("keystone_bootstrap",)
    assert set(u["keystone"].after) == {"mariadb", "memcached", "keystone_admin"}
    assert u["glance_register"].after == ("keystone",)                   # in parallel with the db sync
    assert u["glance_metadefs"].after == ("glance_bootstrap",)            # the schema first
    assert set(u["glance_api"].after) == {"mariadb", "memcached", "keystone", "glance_metadefs", "glance_register"}
    assert {"rabbitmq", "placement_api", "nova_cells", "nova_register"} <= set(u["nova_conductor"].after)
    assert set(u["horizon"].after) == {"memcached", "keystone"}
    assert u["rabbitmq"].after == ()
    # Every name waited for exists, and the order has no cycle.
    for unit in u.values():
        assert set(unit.after) <= set(u), unit.name
    order = [x.name for x in unit_order(wanted)]
    for unit in u.values():
        for dep in unit.after:
            assert order.index(dep) < order.index(unit.name), (dep, unit.name)


def test_post_jobs_wait_for_their_container_and_nothing_waits_for_them(site_dir):
    set_globals(site_dir, enabled_services=["nova-compute", "neutron-agents"])
    _, wanted = wanted_of(site_dir)
    u = units(wanted)
    assert set(u["nova_discover_hosts"].after) == {"nova_compute"}
    assert "nova_discover_hosts" not in u["nova_compute"].after
    assert u["nova_compute"].after[-1] == "nova_libvirt"
    # All in one: a container of the network and compute groups exists once.
    assert [c.name for c in wanted.containers].count("neutron_openvswitch_agent") == 1
    assert {"openvswitch_db_server"} <= set(u["openvswitch_vswitchd"].after)
    assert u["nova_libvirt"].after[-1] == "nova_virtlogd"


# -- files ---------------------------------------------------------------------------------

def test_files_are_private_and_each_unit_has_its_config_json(aio):
    site, wanted = aio
    assert wanted.files and all(f.mode == 0o600 for f in wanted.files)
    by_unit: dict[str, dict[str, bytes]] = {}
    for f in wanted.files:
        path = Path(f.path)
        assert path.parent == site.generated_dir / f.unit
        by_unit.setdefault(f.unit, {})[path.name] = f.content
    for name, unit in units(wanted).items():
        files = by_unit[name]
        doc = json.loads(files["config.json"])
        # Every source in config.json is a file in the unit's own folder, mounted read-only.
        assert {e["source"] for e in doc["config_files"]} == \
            {f"{CONFIG_MOUNT}/{n}" for n in files if n != "config.json"}
        folder = next(m for m in unit.spec.mounts if m.target == CONFIG_MOUNT)
        assert folder.read_only and folder.source == str(site.generated_dir / name)
        assert set(unit.files) == {str(site.generated_dir / name / n) for n in files}
    keystone = json.loads(by_unit["keystone"]["config.json"])
    assert keystone["command"] == "uwsgi --ini /etc/keystone/keystone-uwsgi.ini"
    assert json.loads(by_unit["keystone_bootstrap"]["config.json"]).get("command") is None
    assert units(wanted)["keystone_bootstrap"].spec.environment["DOCKYARD_BOOTSTRAP"] == "1"


def test_uwsgi_binds_the_internal_address_logs_to_stdout_without_apparmor(aio):
    site, wanted = aio
    for f in wanted.files:
        if f.path.endswith("uwsgi.ini"):
            text = f.content.decode()
            assert "plugins = python3\n" in text
            assert "logto" not in text and "apparmor" not in text
            address = site.globals.internal_address
            assert f"http-socket = {address}:" in text or f"shared-socket = {address}:" in text


def test_toolbox_jobs_keep_credentials_in_private_files_of_its_user(aio):
    site, wanted = aio
    for job in wanted.jobs:
        if not job.name.endswith(("_databases", "_register")):
            continue
        assert job.spec.image == "dockyard/toolbox:2025.1"
        path = f"{site.generated_dir}/{job.name}/config.json"
        doc = json.loads(next(f.content for f in wanted.files if f.path == path))
        for entry in doc["config_files"]:
            assert (entry["owner"], entry["perm"]) == ("dockyard", "0600")
    sql = next(f.content.decode() for f in wanted.files if f.path.endswith("nova_databases/create-databases.sql"))
    for db in ("nova_api", "nova", "nova_cell0"):
        assert f"CREATE DATABASE IF NOT EXISTS `{db}`" in sql
    assert "CREATE USER IF NOT EXISTS 'nova'@'%'" in sql and "GRANT ALL PRIVILEGES ON `nova_cell0`.*" in sql
    assert site.passwords["nova_database_password"] in sql


def test_rabbitmq_gets_its_user_from_definitions_with_a_hashed_password(aio):
    import base64
    import hashlib

    site, wanted = aio
    doc = json.loads(next(f.content for f in wanted.files if f.path.endswith("/rabbitmq/definitions.json")))
    (user,) = doc["users"]
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + site.passwords["rabbitmq_password"].encode()).digest()
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert doc["permissions"][0] == {"user": "openstack", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}


def test_keystone_bootstrap_reads_the_admin_password_from_a_private_file(aio):
    site, wanted = aio
    files = {Path(f.path).name: f for f in wanted.files if f.unit == "keystone_admin"}
    doc = json.loads(files["config.json"].content)
    assert "OS_BOOTSTRAP_PASSWORD=$(cat /etc/keystone/admin_password)" in doc["command"]
    assert "--bootstrap-public-url" in doc["command"]
    assert files["admin_password"].content.decode().strip() == site.passwords["keystone_admin_password"]
    entry = next(e for e in doc["config_files"] if e["dest"] == "/etc/keystone/admin_password")
    assert entry["perm"] == "0600"


# -- secrets and labels --------------------------------------------------------------------

def test_no_password_in_any_label_environment_command_or_health_check(site_dir):
    # Every service of a site, hosts' ones too (the registry is `dockyard registry`'s, tested there).
    set_globals(site_dir, enabled_services=sorted(set(CATALOGUE.services) - {REGISTRY_SERVICE}))
    site, wanted = wanted_of(site_dir)
    secrets = [v for v in site.passwords.values() if v]
    assert len(secrets) == len(CATALOGUE.all_passwords())
    for unit in units(wanted).values():
        spec = asdict(unit.spec)
        blob = json.dumps([spec["labels"], spec["environment"], spec["command"], spec["healthcheck"],
                           spec["mounts"], spec["name"], spec["image"]], default=str)
        assert not leaks(blob, secrets), unit.name
        assert unit.spec.labels[LABEL_MANAGED] == "true"
        assert unit.spec.labels[LABEL_SERVICE] == unit.service
        assert unit.spec.labels[LABEL_HOST] == "localhost"
        wanted_hash = job_hash(unit.spec.labels) if isinstance(unit, WantedJob) else unit.spec.labels[LABEL_HASH]
        assert unit.hash == wanted_hash
        # Only hashes: every hash label is a short hex digest.
        for key, value in unit.spec.labels.items():
            if key.startswith("dockyard.hash"):
                assert len(value) == 16 and int(value, 16) >= 0, key


def test_a_password_in_a_command_is_refused(tmp_path, site_dir):
    root = copy_services(tmp_path)

    def use_a_password_in_the_command(data: dict) -> None:
        data["passwords"] = ["rabbitmq_password"]
        data["containers"]["memcached"]["command"] = "memcached -S {{ passwords.rabbitmq_password }}"
    edit_service(root, "memcached", use_a_password_in_the_command)
    with pytest.raises(ConfigError) as exc:
        wanted_of(site_dir, catalogue=load_services(root))
    assert "memcached.yml: containers.memcached.command" in str(exc.value)
    assert "password" in str(exc.value)


def test_a_template_using_a_password_its_service_does_not_declare_fails(tmp_path, site_dir):
    root = copy_services(tmp_path, copy_templates=True)
    template = root / "templates" / "keystone" / "keystone.conf.j2"
    template.write_text("[x]\ny = {{ passwords.nova_keystone_password }}\n")
    with pytest.raises(ConfigError) as exc:
        wanted_of(site_dir, catalogue=load_services(root))
    assert "keystone.yml: config.keystone.conf" in str(exc.value)
    assert "nova_keystone_password" in str(exc.value)


# -- overrides and hashes ----------------------------------------------------------------------

def hashes(wanted) -> dict[str, str]:
    return {u.name: u.hash for u in units(wanted).values()}


def test_an_unchanged_site_has_the_same_hashes(site_dir):
    engine = full_engine()
    _, first = wanted_of(site_dir, engine)
    _, again = wanted_of(site_dir, engine)
    assert hashes(first) == hashes(again)
    assert [(f.path, f.content) for f in first.files] == [(f.path, f.content) for f in again.files]


def test_a_service_override_reaches_the_file_and_changes_only_its_units(site_dir):
    engine = full_engine()
    _, before = wanted_of(site_dir, engine)
    (site_dir / "config" / "glance.conf").write_text("[DEFAULT]\nshow_image_direct_url = True\n")
    _, after = wanted_of(site_dir, engine)
    changed = {n for n, h in hashes(after).items() if hashes(before)[n] != h}
    assert changed == {"glance_api", "glance_bootstrap", "glance_metadefs"}  # each unit reading glance-api.conf
    conf = next(f for f in after.files if f.path.endswith("glance_api/glance-api.conf")).content.decode()
    assert "show_image_direct_url = True" in conf
    assert "enabled_backends = file:file" in conf                      # the rest is kept


def test_a_component_override_changes_only_that_container(site_dir):
    engine = full_engine()
    _, before = wanted_of(site_dir, engine)
    (site_dir / "config" / "nova").mkdir()
    (site_dir / "config" / "nova" / "nova-scheduler.conf").write_text("[scheduler]\nworkers = 1\n")
    _, after = wanted_of(site_dir, engine)
    changed = {n for n, h in hashes(after).items() if hashes(before)[n] != h}
    assert changed == {"nova_scheduler"}
    conf = next(f for f in after.files if f.path.endswith("nova_scheduler/nova.conf")).content.decode()
    assert "[scheduler]\nworkers = 1\n" in conf


def test_a_host_override_is_merged_last(site_dir):
    config = site_dir / "config"
    (config / "keystone.conf").write_text("[token]\nexpiration = 7200\n")
    (config / "localhost").mkdir()
    (config / "localhost" / "keystone.conf").write_text("[token]\nexpiration = 600\n")
    _, wanted = wanted_of(site_dir)
    conf = next(f for f in wanted.files if f.path.endswith("/keystone/keystone.conf")).content.decode()
    assert "expiration = 600" in conf and "7200" not in conf


def test_a_rebuilt_image_changes_the_hash_of_the_containers_that_run_it(site_dir):
    engine = full_engine()
    _, before = wanted_of(site_dir, engine)
    engine.add_image("dockyard/nova-conductor:2025.1", labels={"rebuilt": "yes"}, size=2)
    engine.images_by_tag["dockyard/nova-conductor:2025.1"] = engine.images_by_tag[
        "dockyard/nova-conductor:2025.1"].__class__(id="sha256:" + "f" * 64, tags=("dockyard/nova-conductor:2025.1",),
                                                     labels={}, size=2)
    _, after = wanted_of(site_dir, engine)
    changed = {n for n, h in hashes(after).items() if hashes(before)[n] != h}
    assert changed == {"nova_conductor", "nova_discover_hosts"}    # the discovery job runs in that image


def test_missing_images_are_reported_not_guessed(site_dir):
    engine = full_engine()
    del engine.images_by_tag["dockyard/horizon:2025.1"]
    del engine.images_by_tag["dockyard/toolbox:2025.1"]
    site, _ = site_of(site_dir, CATALOGUE)
    assert wanted_state(site, CATALOGUE, engine).missing_images == ["horizon", "toolbox"]


def test_options_and_addresses_reach_the_templates(site_dir):
    set_globals(site_dir, internal_address="127.0.0.98", external_address="192.0.2.10",
                services={"memcached": {"memory_mb": 64}, "nova": {"workers": 3}})
    site, wanted = wanted_of(site_dir)
    memcached = next(f for f in wanted.files if f.path.endswith("/memcached/config.json"))
    assert "-l 127.0.0.98 -p 11211 -U 0 -m 64" in json.loads(memcached.content)["command"]
    nova = next(f for f in wanted.files if f.path.endswith("/nova_api/nova-api-uwsgi.ini")).content.decode()
    assert "processes = 3" in nova and "http-socket = 127.0.0.98:8774" in nova
    register = next(f for f in wanted.files if f.path.endswith("/glance_register/register.py")).content.decode()
    assert '"public": "http://192.0.2.10:9292"' in register and '"internal": "http://127.0.0.98:9292"' in register


def test_multi_host_inventory_places_units_on_their_groups(site_dir):
    write_inventory(site_dir, {"ctl": {"address": "127.0.0.97"}, "net": {"address": "127.0.0.96"}},
                    {"control": ["ctl"], "network": ["net"], "compute": ["net"]})
    set_globals(site_dir, enabled_services=["keystone", "openvswitch"])
    _, wanted = wanted_of(site_dir)
    u = units(wanted)
    assert u["keystone"].host == "ctl" and u["keystone"].address == "127.0.0.97"
    assert u["keystone_databases"].host == "ctl"
    assert u["openvswitch_db_server"].host == "net"
    keystone_conf = next(f for f in wanted.files if f.path.endswith("/keystone/keystone.conf")).content.decode()
    assert "@127.0.0.97:3306/keystone" in keystone_conf                # the database's host


# -- the data plane: what each host can do decides datapath and virt type ---------------------

NO_MODULE_NO_KVM = HostFacts(False, "no module", False, "no vmx")
MODULE_AND_KVM = HostFacts(True, "module loaded", True, "vmx")


def data_plane(site_dir, facts):
    site, _ = site_of(site_dir, CATALOGUE)
    wanted = wanted_state(site, CATALOGUE, full_engine(), facts={"localhost": facts}).state
    files = {f.path.rsplit("/", 2)[-2] + "/" + f.path.rsplit("/", 1)[-1]: f.content.decode() for f in wanted.files}
    return units(wanted), files, wanted


def test_without_the_kernel_module_or_kvm_the_userspace_datapath_and_emulation(site_dir):
    u, files, _ = data_plane(site_dir, NO_MODULE_NO_KVM)
    assert "datapath_type = netdev" in files["neutron_l3_agent/l3_agent.ini"]
    assert "datapath_type = netdev" in files["neutron_dhcp_agent/dhcp_agent.ini"]
    assert "datapath_type = netdev" in files["neutron_openvswitch_agent/openvswitch_agent.ini"]
    assert "ovs_use_veth = true" in files["neutron_l3_agent/l3_agent.ini"]
    assert "datapath_type=netdev" in json.loads(files["neutron_openvswitch_agent/config.json"])["command"]
    assert u["openvswitch_vswitchd"].spec.devices == ("/dev/net/tun",)
    assert "virt_type = qemu" in files["nova_compute/nova-compute.conf"]
    assert "cpu_mode = none" in files["nova_compute/nova-compute.conf"]
    # nova-compute reaches the databases through the conductor only; the metadata API needs them.
    assert "mysql" not in files["nova_compute/nova-compute.conf"]
    assert "mysql" in files["nova_metadata/nova.conf"]
    assert u["nova_libvirt"].spec.devices == ("/dev/net/tun",)


def test_with_the_kernel_module_and_kvm_the_kernel_datapath_and_kvm(site_dir):
    u, files, _ = data_plane(site_dir, MODULE_AND_KVM)
    assert "datapath_type = system" in files["neutron_l3_agent/l3_agent.ini"]
    assert u["openvswitch_vswitchd"].spec.devices == ()
    assert "virt_type = kvm" in files["nova_compute/nova-compute.conf"]
    assert u["nova_libvirt"].spec.devices == ("/dev/net/tun", "/dev/kvm")


def test_globals_override_the_host_facts_and_bad_values_name_the_key(site_dir):
    set_globals(site_dir, services={"openvswitch": {"datapath": "netdev"}, "nova-compute": {"virt_type": "qemu"}})
    u, files, _ = data_plane(site_dir, MODULE_AND_KVM)
    assert "datapath_type = netdev" in files["neutron_l3_agent/l3_agent.ini"]
    assert "virt_type = qemu" in files["nova_compute/nova-compute.conf"]
    set_globals(site_dir, services={"nova-compute": {"virt_type": "xen"}})
    with pytest.raises(ConfigError) as exc:
        data_plane(site_dir, MODULE_AND_KVM)
    assert exc.value.path.endswith("globals.yml") and exc.value.key == "services.nova-compute.virt_type"
    assert "auto, kvm, qemu" in str(exc.value)


def test_no_container_is_privileged_and_each_gets_only_what_it_names(aio):
    _, wanted = aio
    for c in wanted.containers:
        assert not hasattr(c.spec, "privileged")
    u = units(wanted)
    assert set(u["openvswitch_vswitchd"].spec.cap_add) == {"NET_ADMIN", "NET_RAW", "IPC_LOCK"}
    assert set(u["nova_libvirt"].spec.cap_add) == {"NET_ADMIN"}
    assert u["memcached"].spec.cap_add == () and u["memcached"].spec.devices == ()
    assert u["nova_libvirt"].spec.pid_mode is None


def test_namespaces_are_shared_with_the_host_through_a_shared_mount(aio):
    _, wanted = aio
    u = units(wanted)
    for name in ("neutron_dhcp_agent", "neutron_l3_agent"):
        netns = next(m for m in u[name].spec.mounts if m.target == "/run/netns")
        assert (netns.source, netns.propagation) == ("/run/netns", "shared")
    (share,) = wanted.shared_mounts
    assert (share.path, share.host) == ("/run/netns", "localhost")
    # The one-shot that makes it a shared mount: the host's pid namespace, SYS_ADMIN and SYS_PTRACE, nothing else.
    assert share.spec.pid_mode == "host" and share.spec.cap_add == ("SYS_ADMIN", "SYS_PTRACE")
    assert share.spec.devices == () and share.spec.user == "root"
    assert share.spec.command[0].startswith('exec nsenter --target "$PPID" --mount -- sh -c ')
    assert "mount --make-shared /run/netns" in share.spec.command[0]


# -- the name each host has in OpenStack ---------------------------------------------------------

def reported_hosts(wanted) -> dict[tuple[str, str], str]:
    """(host, unit) -> the ``host`` option of each nova.conf (nova-compute's too) and neutron.conf."""
    import configparser

    # Files on this machine's disk, and those copied into the containers of remote hosts.
    files = [(f.host, f.unit, f.path, f.content) for f in wanted.files]
    files += [(u.host, u.name, c.path, c.content) for u in [*wanted.jobs, *wanted.containers] for c in u.copy_in]
    out = {}
    for host, unit, path, content in files:
        if Path(path).name in ("nova.conf", "nova-compute.conf", "neutron.conf"):
            ini = configparser.ConfigParser(interpolation=None, strict=False)
            ini.read_string(content.decode())
            out[(host, unit)] = ini["DEFAULT"]["host"]
    return out


def test_the_all_in_one_reports_the_machines_name_everywhere(aio, machine_hostname):
    _, wanted = aio
    reported = reported_hosts(wanted)
    # nova-compute (the compute service and the binding host of its ports), the
    # neutron agents (the OVS agent wires only ports bound to its own name) and
    # the control services alike: one name, the machine's, never "localhost".
    for unit in ("nova_compute", "neutron_openvswitch_agent", "neutron_dhcp_agent", "neutron_l3_agent",
                 "neutron_metadata_agent", "neutron_rpc_server", "nova_conductor", "nova_scheduler"):
        assert reported[("localhost", unit)] == machine_hostname, unit
    assert set(reported.values()) == {machine_hostname}
    # The cell mapping job waits for the compute host under the same name.
    discover = units(wanted)["nova_discover_hosts"]
    assert discover.spec.environment["DOCKYARD_COMPUTE_HOSTS"] == machine_hostname


def test_each_inventory_host_reports_its_inventory_name(site_dir):
    write_inventory(site_dir, {"ctl": {"address": "127.0.0.97"}, "cmp1": {"address": "127.0.0.96", "engine": "ssh://cmp1"},
                               "cmp2": {"address": "127.0.0.95", "engine": "ssh://cmp2"}},
                    {"control": ["ctl"], "network": ["ctl"], "compute": ["cmp1", "cmp2"]})
    _, wanted = wanted_of(site_dir)
    reported = reported_hosts(wanted)
    assert reported[("cmp1", "nova_compute")] == "cmp1" and reported[("cmp2", "nova_compute")] == "cmp2"
    # Each compute host's OVS agent has the name its nova-compute binds ports to.
    assert reported[("cmp1", "neutron_openvswitch_agent")] == "cmp1"
    assert reported[("cmp2", "neutron_openvswitch_agent")] == "cmp2"
    assert reported[("ctl", "neutron_l3_agent")] == "ctl" and reported[("ctl", "nova_conductor")] == "ctl"
    assert {host for host, _ in reported} == set(reported.values())
    assert units(wanted)["nova_discover_hosts"].spec.environment["DOCKYARD_COMPUTE_HOSTS"] == "cmp1 cmp2"


# -- glance's metadata definitions ------------------------------------------------------------

def test_glance_loads_the_packaged_metadata_definitions_merging_with_what_is_there(aio, tmp_path):
    import shlex
    import subprocess

    _, wanted = aio
    doc = json.loads(next(f.content for f in wanted.files
                          if f.unit == "glance_metadefs" and f.path.endswith("/config.json")))
    sh, dash_c, script = shlex.split(doc["command"])
    assert (sh, dash_c) == ("sh", "-c")
    # Run the job's script on stand-ins: Debian's two folders, and a glance-manage
    # that records how it was called.
    usr, etc, bin_ = tmp_path / "usr", tmp_path / "etc", tmp_path / "bin"
    for folder in (usr, etc, bin_):
        folder.mkdir()
    called = tmp_path / "called"
    (bin_ / "glance-manage").write_text(f'#!/bin/sh\necho "$@" > {called}\n')
    (bin_ / "glance-manage").chmod(0o755)
    script = script.replace("/usr/share/glance-common/metadefs", str(usr)).replace("/etc/glance/metadefs", str(etc))

    def run() -> subprocess.CompletedProcess:
        called.unlink(missing_ok=True)
        return subprocess.run(["sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=60)

    # No definitions anywhere: glance-manage would log it and exit 0; the job fails.
    proc = run()
    assert proc.returncode == 1 and "no metadata definitions" in proc.stderr and not called.exists()
    (etc / "compute-cpu-pinning.json").write_text("{}")
    assert run().returncode == 0
    assert called.read_text().split() == ["--config-file", "/etc/glance/glance-api.conf", "db", "load_metadefs",
                                          "--path", str(etc), "--merge"]
    (usr / "compute-cpu-pinning.json").write_text("{}")        # the packaged folder comes first
    assert run().returncode == 0 and f"--path {usr} --merge" in called.read_text()
