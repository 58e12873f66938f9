"""`dockyard export compose`: the same containers, ordering and volumes, no secrets."""

from __future__ import annotations

from dataclasses import replace

import yaml

from dockyard.deploy.ops.compose import export_compose

from .wanted_factory import SECRET, Site, make_wanted


def exported(wanted):
    text = export_compose(wanted)
    return text, yaml.safe_load(text)


def test_services_volumes_and_ordering(tmp_path):
    site = Site(tmp_path / "site")
    wanted = make_wanted(site)
    _, doc = exported(wanted)
    services = doc["services"]
    assert set(services) == {c.name for c in wanted.containers} | {j.name for j in wanted.jobs}
    assert doc["volumes"] == {"mariadb": {"external": True}, "glance": {"external": True}}
    glance = services["glance_api"]
    assert glance["image"] == "dockyard/glance-api:test" and glance["container_name"] == "glance_api"
    assert glance["network_mode"] == "host" and glance["restart"] == "unless-stopped"
    assert glance["depends_on"] == {"glance_db_sync": {"condition": "service_completed_successfully"},
                                    "keystone": {"condition": "service_healthy"}}
    assert glance["volumes"] == [f"{site.folder('glance_api')}:/var/lib/dockyard/config_files:ro",
                                 "glance:/var/lib/glance"]
    assert glance["healthcheck"] == {"test": ["CMD", "dockyard-healthcheck", "glance_api"], "interval": "30s",
                                     "timeout": "10s", "retries": 3, "start_period": "300s"}
    assert glance["labels"]["dockyard.managed"] == "true" and "dockyard.config-hash" in glance["labels"]
    # memcached has no health check: waiting for it means waiting for it to start.
    assert services["keystone"]["depends_on"]["memcached"] == {"condition": "service_started"}
    job = services["keystone_db_sync"]
    assert job["restart"] == "no"
    assert job["depends_on"] == {"keystone_databases": {"condition": "service_completed_successfully"}}
    # Dependencies come first in the file, as in the plan.
    names = list(services)
    assert names.index("mariadb") < names.index("keystone_databases") < names.index("keystone") < \
        names.index("glance_api")


def test_secret_looking_variables_are_referenced_not_exported(tmp_path):
    site = Site(tmp_path / "site")
    site.environment["keystone"] = {"KEYSTONE_ADMIN_PASSWORD": SECRET, "LOG_FORMAT": "$time $msg"}
    text, doc = exported(make_wanted(site))
    assert SECRET not in text
    env = doc["services"]["keystone"]["environment"]
    assert env["KEYSTONE_ADMIN_PASSWORD"] == \
        "${KEYSTONE_KEYSTONE_ADMIN_PASSWORD:?set KEYSTONE_KEYSTONE_ADMIN_PASSWORD in .env}"
    assert env["LOG_FORMAT"] == "$$time $$msg"          # compose must not interpolate it
    assert "#   KEYSTONE_KEYSTONE_ADMIN_PASSWORD" in text.splitlines()
    assert env["DOCKYARD_CONFIG_STRATEGY"] == "COPY_ALWAYS"


def test_capabilities_devices_propagation_command_and_unlisted_volumes(tmp_path):
    from dockyard.engine.driver import Mount

    site = Site(tmp_path / "site")
    wanted = make_wanted(site, services=("memcached",))
    c = wanted.containers[0]
    spec = replace(c.spec, pid_mode="host", command=("memcached", "-v"), cap_add=("NET_ADMIN",),
                   devices=("/dev/net/tun",), security_opt=("apparmor=unconfined",),
                   mounts=(*c.spec.mounts, Mount("memcached_cache", "/cache"),
                           Mount("/run/netns", "/run/netns", propagation="shared")))
    wanted.containers[0] = replace(c, spec=spec)
    _, doc = exported(wanted)
    svc = doc["services"]["memcached"]
    assert "privileged" not in svc
    assert svc["pid"] == "host" and svc["command"] == ["memcached", "-v"] and svc["cap_add"] == ["NET_ADMIN"]
    assert svc["devices"] == ["/dev/net/tun:/dev/net/tun"] and svc["security_opt"] == ["apparmor=unconfined"]
    assert "/run/netns:/run/netns:shared" in svc["volumes"]
    assert doc["volumes"] == {"memcached_cache": {"name": "memcached_cache"}}
    assert "depends_on" not in svc
