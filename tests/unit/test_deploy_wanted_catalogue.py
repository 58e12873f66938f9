"""The service catalogue: the real one loads, and every mistake names file and key."""

from __future__ import annotations


import pytest
import yaml
from pydantic import ValidationError

from dockyard import SOURCE_ROOT
from dockyard.deploy.wanted.catalogue import CAPABILITIES, VolumeMount, load_services
from dockyard.deploy.site.loader import DEFAULT_SERVICES
from dockyard.errors import ConfigError

from .deploy_fixtures import edit_service

CONTROL_PLANE = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova", "neutron", "horizon"]


def test_the_real_catalogue_loads_with_the_all_in_one_and_the_host_services():
    catalogue = load_services()
    assert set(CONTROL_PLANE) <= set(catalogue.services)
    assert {"openvswitch", "neutron-agents", "nova-compute"} <= set(catalogue.services)
    # The default all-in-one runs servers: the control plane and the network and compute hosts' services.
    assert sorted(DEFAULT_SERVICES) == sorted([*CONTROL_PLANE, "openvswitch", "neutron-agents", "nova-compute"])
    groups = {g for name in ("openvswitch", "neutron-agents", "nova-compute")
              for c in catalogue.services[name].spec.containers.values() for g in c.groups}
    assert groups == {"control", "network", "compute"}


def test_no_container_in_the_catalogue_is_privileged_and_every_capability_is_named():
    for service in load_services().services.values():
        raw = yaml.safe_load(service.path.read_text())
        for name, container in (raw.get("containers") or {}).items():
            assert "privileged" not in container, f"{service.path.name}: {name} is privileged"
            for cap in container.get("cap_add", []):
                assert cap in CAPABILITIES, (name, cap)


@pytest.mark.parametrize("change, words", [
    ({"privileged": True}, ["privileged containers are refused", "cap_add"]),
    ({"cap_add": ["CAP_NET_ADMIN"]}, ["unknown capability 'CAP_NET_ADMIN'", "drop the CAP_ prefix"]),
    ({"cap_add": ["ALL"]}, ["unknown capability 'ALL'"]),
])
def test_privileged_and_unknown_capabilities_are_refused(services, change, words):
    edit_service(services, "openvswitch", lambda d: d["containers"]["openvswitch-vswitchd"].update(change))
    with pytest.raises(ConfigError) as exc:
        load_services(services)
    assert exc.value.path.endswith("openvswitch.yml")
    assert "containers.openvswitch-vswitchd" in str(exc.value)
    for word in words:
        assert word in str(exc.value)


def test_closure_puts_dependencies_first_and_brings_them_along():
    catalogue = load_services()
    order = catalogue.closure(["horizon", "nova"])
    assert set(order) == {"horizon", "nova", "keystone", "mariadb", "memcached", "rabbitmq", "placement"}
    for name in order:
        for dep in catalogue.services[name].spec.depends_on:
            assert order.index(dep) < order.index(name), (dep, name)


def test_passwords_include_what_databases_and_registration_imply():
    catalogue = load_services()
    glance = catalogue.services["glance"]
    assert {"database_password", "keystone_admin_password", "glance_database_password",
            "glance_keystone_password"} <= set(glance.passwords())
    assert catalogue.services["memcached"].passwords() == []
    required = catalogue.required_passwords(catalogue.closure(["glance"]))
    assert "rabbitmq_password" not in required and "glance_keystone_password" in required


def test_images_include_the_toolbox_for_databases_and_registration():
    catalogue = load_services()
    assert catalogue.images(["memcached"]) == ["memcached"]
    assert catalogue.images(["placement"]) == ["placement-api", "toolbox"]
    assert "nova-conductor" in catalogue.images(["nova-compute"])     # its discovery job


BROKEN = [
    ("glance", lambda d: d.update(no_such_key=1), "glance.yml: no_such_key"),
    ("glance", lambda d: d["containers"]["glance-api"].update(config=["nope.conf"]),
     "glance.yml: containers.glance-api.config"),
    ("glance", lambda d: d["depends_on"].append("ghost"), "glance.yml: depends_on[3]"),
    ("glance", lambda d: d["jobs"][0].update(command="glance-manage db_sync"), "glance.yml: jobs[0]"),
    ("glance", lambda d: d["jobs"][0].update(bootstrap=False), "glance.yml: jobs[0]"),
    ("glance", lambda d: d["containers"]["glance-api"].update(volumes=["images:/var/lib/glance/images"]),
     "glance.yml: containers.glance-api.volumes[0]"),
    ("glance", lambda d: d["containers"]["glance-api"].update(volumes=["glance_images"]),
     "glance.yml: containers.glance-api.volumes[0]"),
    ("glance", lambda d: d["containers"]["glance-api"].update(volumes=["glance_images:relative/path"]),
     "glance.yml: containers.glance-api.volumes[0]"),
    ("glance", lambda d: d["containers"]["glance-api"].update(
        environment={"DB_PASSWORD": "{{ passwords.glance_database_password }}"}),
     "glance.yml: containers.glance-api.environment.DB_PASSWORD"),
    ("glance", lambda d: d["config"]["glance-api.conf"].update(template="glance/missing.j2"),
     "glance.yml: config.glance-api.conf.template"),
    ("glance", lambda d: d["config"]["glance-api.conf"].update(perm="rw-------"),
     "glance.yml: config.glance-api.conf.perm"),
    ("glance", lambda d: d["config"]["glance-api.conf"].update(dest="etc/glance/glance-api.conf"),
     "glance.yml: config.glance-api.conf.dest"),
    ("glance", lambda d: d["containers"]["glance-api"].update(after=["ghost-api"]),
     "glance.yml: containers.glance-api.after"),
    ("glance", lambda d: d["containers"]["glance-api"].update(after=["neutron-api"]),
     "glance.yml: containers.glance-api.after"),     # exists, but glance does not depend on neutron
    ("glance", lambda d: d["containers"]["glance-api"].update(group="storage"),
     "glance.yml: containers.glance-api.group"),
    ("glance", lambda d: d["containers"]["glance-api"]["healthcheck"].update(test=["curl", "x"]),
     "glance.yml: containers.glance-api.healthcheck.test"),
    ("glance", lambda d: d["containers"]["glance-api"].update(network="bridge"),
     "glance.yml: containers.glance-api.network"),
    ("glance", lambda d: d.update(volumes=["glance_images", "glance_cache"]), "glance.yml: volumes[1]"),
    ("glance", lambda d: d["containers"].update({"glance-x\n": d["containers"].pop("glance-api")}),
     "glance.yml: containers"),                                                  # '$' passes a trailing newline
    ("glance", lambda d: d.update(depends_on=["memcached"]), "glance.yml: databases"),
    ("horizon", lambda d: d.update(depends_on=["memcached"], register={"user": "horizon", "password": "x"}),
     "horizon.yml: register"),
    ("memcached", lambda d: d.update(depends_on=["horizon"]), "depends_on"),      # a cycle
    ("horizon", lambda d: d["containers"].update({"glance-api": d["containers"]["horizon"]}),
     "horizon.yml: glance-api"),                                                 # a name used twice
    ("nova-compute", lambda d: d["jobs"].append({"name": "nova-late", "image": "nova-api", "bootstrap": True}),
     "nova-compute.yml: jobs[1]"),        # a job the containers wait for, after one that waits for them
    ("openvswitch", lambda d: d["containers"]["openvswitch-vswitchd"].update(restart_packages=["OpenVSwitch"]),
     "openvswitch.yml: containers.openvswitch-vswitchd.restart_packages[0]"),   # not a Debian package name
    ("openvswitch", lambda d: d["containers"]["openvswitch-vswitchd"].update(restart_packages=["*"]),
     "openvswitch.yml: containers.openvswitch-vswitchd.restart_packages[0]"),   # every package
    ("nova-compute", lambda d: d["containers"]["nova-libvirt"].update(restart_packages=["libc6", "libc6"]),
     "nova-compute.yml: containers.nova-libvirt.restart_packages"),
    ("nova-compute", lambda d: d["containers"]["nova-libvirt"].update(restart_packages="libc6"),
     "nova-compute.yml: containers.nova-libvirt.restart_packages"),          # a list, not a string
]


@pytest.mark.parametrize("service, change, where", BROKEN, ids=[w for _, _, w in BROKEN])
def test_a_broken_definition_names_file_and_key(services, service, change, where):
    edit_service(services, service, change)
    with pytest.raises(ConfigError) as exc:
        load_services(services)
    assert where in str(exc.value)
    assert exc.value.exit_code == 2


def test_invalid_yaml_names_the_line(services):
    (services / "memcached.yml").write_text("containers:\n  memcached: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_services(services)
    assert "memcached.yml" in str(exc.value) and "line" in str(exc.value)


def test_an_empty_catalogue_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no service definitions"):
        load_services(tmp_path)


def test_volume_strings_become_typed_mounts():
    api = load_services().services["glance"].spec.containers["glance-api"]
    (mount,) = api.volumes
    assert (mount.source, mount.target, mount.read_only, mount.is_volume) == \
        ("glance_images", "/var/lib/glance/images", False, True)
    l3 = load_services().services["neutron-agents"].spec.containers["neutron-l3-agent"]
    netns = next(m for m in l3.volumes if m.target == "/run/netns")
    assert (netns.source, netns.read_only, netns.is_volume, netns.propagation) == ("/run/netns", False, False, "shared")


@pytest.mark.parametrize("text, words", [
    ("vol:/x:shared", ["bind mounts", "only"]),
    ("/a:/b:ro,bogus", ["unknown mount option 'bogus'"]),
    ("/a:/b:c:d", ["expected"]),
])
def test_bad_mount_strings_are_refused_with_the_reason(text, words):
    with pytest.raises(ValidationError) as exc:
        VolumeMount.model_validate(text)
    for word in words:
        assert word in str(exc.value)


def test_mount_options_combine_read_only_and_propagation():
    mount = VolumeMount.model_validate("/run/netns:/run/netns:ro,rslave")
    assert (mount.read_only, mount.propagation) == (True, "rslave")


def test_override_names_default_to_the_ini_file_stem():
    catalogue = load_services()
    assert catalogue.services["glance"].spec.config["glance-api.conf"].override_name == "glance"
    assert catalogue.services["nova"].spec.config["nova.conf"].override_name == "nova"
    assert catalogue.services["neutron"].spec.config["ml2_conf.ini"].override_name == "ml2_conf"
    assert catalogue.services["rabbitmq"].spec.config["rabbitmq.conf"].override_name is None   # not INI
    assert catalogue.services["keystone"].spec.config["admin_password"].override_name is None


def _privilege_table() -> dict[str, dict[str, set[str]]]:
    """docs/services.md's table of what each data-plane container may do."""
    text = (SOURCE_ROOT / "docs" / "services.md").read_text()
    section = text[text.index("## The data plane"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[0] != "container":
            rows[cells[0].strip("`")] = {
                "cap_add": {c.strip() for c in cells[1].split(",") if c.strip()},
                "devices": {d.split(" ")[0] for d in cells[2].split(", ") if d},
                "security_opt": {o for o in cells[3].split(", ") if o},
                "shared": {m.split(" ")[0] for m in cells[4].split(", ") if m and "writable" not in m},
                "writable_proc_sys": "/proc/sys writable" in cells[4],
            }
    return rows


def test_the_docs_list_exactly_what_each_container_is_given():
    documented = _privilege_table()
    actual = {}
    for service in load_services().services.values():
        for name, c in service.spec.containers.items():
            devices = {d for d in c.devices if d.startswith("/")} | \
                      {d.split("'")[1] for d in c.devices if "'/dev/" in d}
            shared = {v.source for v in c.volumes if v.propagation}
            if c.cap_add or devices or c.security_opt or shared or c.writable_proc_sys:
                actual[name] = {"cap_add": set(c.cap_add), "devices": devices, "security_opt": set(c.security_opt),
                                "shared": shared, "writable_proc_sys": c.writable_proc_sys}
    assert documented == actual


def test_the_data_plane_names_its_packages_and_each_list_names_what_its_image_installs():
    """Open vSwitch's and libvirt's containers are kept running over a rebuild
    that changes none of their packages; each list names at least one package
    its image (or a parent) installs, so a misspelt list cannot match nothing."""
    from fnmatch import fnmatchcase

    from dockyard.image.catalogue import load_catalogue

    images = load_catalogue().images
    declared = {}
    for service in load_services().services.values():
        for name, c in service.spec.containers.items():
            if c.restart_packages:
                declared[name] = c
    assert set(declared) == {"openvswitch-db-server", "openvswitch-vswitchd", "nova-libvirt", "nova-virtlogd"}
    for name, c in declared.items():
        installed: list[str] = []
        image: str | None = c.image
        while image:
            installed += images[image].meta.packages
            image = images[image].parent
        assert any(fnmatchcase(p, pattern) for p in installed for pattern in c.restart_packages), name


def test_the_docs_list_exactly_each_containers_restart_packages():
    """docs/services.md's "Kept over a rebuild" table is the catalogue's."""
    import re

    text = (SOURCE_ROOT / "docs" / "services.md").read_text()
    section = text[text.index("**Kept over a rebuild.**"):]
    table = section[section.index("| container |"):]
    table = table[:table.index("\n\n")]
    documented = {}
    for line in table.splitlines()[2:]:
        cells = line.strip().strip("|").split("|")
        names = re.findall(r"`([^`]+)`", cells[0])
        for name in names:
            documented[name] = set(re.findall(r"`([^`]+)`", cells[1]))
    actual = {name: set(c.restart_packages) for service in load_services().services.values()
              for name, c in service.spec.containers.items() if c.restart_packages}
    assert documented == actual
