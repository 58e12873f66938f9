"""Images only through the site's registry, on the testbed's real engines.

Two testbed hosts start with no image at all. The registry (a catalogue image
built from Debian's docker-registry) runs on this machine's engine at the
testbed's root address, on HTTPS with the site's CA; ``dockyard build --push``
(``--skip-existing``: nothing is built, the machine's images are pushed)
fills it, a second push sends nothing; one ``dockyard deploy`` pulls
memcached on both hosts by digest, and each host ends with exactly the build's
image id and the pushed digest; a second deploy and ``dockyard pull`` pull
nothing.

Needs root and the machine's ``dockyard/registry:2025.1`` and
``dockyard/memcached:2025.1`` (with ``dockyard/base:2025.1``). On this machine's
engine it runs only its own registry container, ``dockyard_e2e_registry``, with
its volume ``dockyard_e2e_registry`` (a copy of the catalogue renames them, so a
registry of the operator's is never touched), and adds registry-named tags of
base and memcached for the push; all of them are removed at the end, with
``/etc/docker/certs.d/10.113.0.1:4047``. Traffic: the testbed's /24 only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from dockyard.deploy import api
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.engine import connect
from dockyard.registry import service
from dockyard.testbed import Testbed, client
from dockyard.testbed.daemon import API_VERSION

from .conftest import dockyard, write_testbed_site
from .test_45_multihost import containers_of, memcached_stats, tb_cli

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("dockyard/registry:2025.1", "dockyard/memcached:2025.1", "dockyard/base:2025.1")
REF = "dockyard/memcached:2025.1"
ROOT_ADDRESS = "10.113.0.1"          # this machine on the testbed's bridge (dyk-root)
PORT = 4047
REGISTRY = f"{ROOT_ADDRESS}:{PORT}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root")


def e2e_catalogue(folder: Path) -> Path:
    """The service catalogue with the registry's container and volume renamed."""
    root = folder / "services"
    shutil.copytree(REPO / "services", root)
    text = (root / "registry.yml").read_text()
    text = text.replace("dockyard-registry:", "dockyard-e2e-registry:").replace("dockyard_registry",
                                                                              "dockyard_e2e_registry")
    (root / "registry.yml").write_text(text)
    return root


def dockyard_images(host) -> dict[str, dict]:
    c = client(host, timeout=30)
    try:
        out = {}
        for image in c.api.images():
            for tag in image.get("RepoTags") or ():
                if tag.startswith("dockyard/") or "/dockyard/" in tag:
                    out[tag] = image
        return out
    finally:
        c.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    local = docker.DockerClient(base_url="unix:///var/run/docker.sock", version=API_VERSION)
    try:
        for ref in NEEDED:
            try:
                local.api.inspect_image(ref)
            except docker.errors.NotFound:
                pytest.skip(f"{ref} is not built yet on this machine's engine")
    finally:
        local.close()
    folder = tmp_path_factory.mktemp("registry")
    tb_cli("down")
    tb_cli("up", "2")
    tb = Testbed()
    hosts = [tb.host(1), tb.host(2)]
    config = folder / "site"
    config.mkdir()
    write_testbed_site(config, hosts, registry={"address": ROOT_ADDRESS, "port": PORT})
    dockyard("genpwd", "--config-dir", str(config))
    catalogue = load_services(e2e_catalogue(folder))
    loaded, _ = api.load(config, need_passwords=False)
    engine = connect()
    before = {f"h{h.index}": dockyard_images(h) for h in hosts}
    started = time.monotonic()
    lines: list[str] = []
    try:
        up = service.up(loaded, catalogue, engine, say=lines.append)
        up_seconds = time.monotonic() - started
        yield {"dir": config, "hosts": hosts, "before": before, "up": up, "up_lines": lines, "folder": folder,
               "up_seconds": up_seconds, "catalogue": catalogue, "site": loaded, "engine": engine}
    finally:
        dockyard("destroy", "--config-dir", str(config), "--yes", check=False, timeout=120)
        tb_cli("down")
        service.down(loaded, catalogue, engine, say=lines.append, purge=True)
        local = docker.DockerClient(base_url="unix:///var/run/docker.sock", version=API_VERSION)
        try:
            for ref in NEEDED[1:]:
                try:
                    local.api.remove_image(f"{REGISTRY}/{ref}", noprune=True)   # the tag only
                except docker.errors.NotFound:
                    pass
        finally:
            local.close()


def push(site, *extra: str) -> dict:
    out = dockyard("build", "--push", "--skip-existing", "^memcached$", "--config-dir", str(site["dir"]),
                   "--work-dir", str(site["folder"] / "work"), "--format", "json", *extra, timeout=600)
    return json.loads(out.stdout)


def test_the_hosts_start_with_no_image_and_the_registry_is_up(site):
    assert site["before"] == {"h1": {}, "h2": {}}
    assert site["up"].ok, "\n".join(site["up_lines"])
    c = site["engine"].container("dockyard_e2e_registry")
    # `up` ran the health check itself; the engine's own runs 30 s apart and may
    # not have reported yet (a second `up` then waits on it, changing nothing).
    assert c.running and c.health in ("starting", "healthy")
    service.where(site["site"]).client().ping()          # answers on HTTPS, trusting the site's CA
    again = service.up(site["site"], site["catalogue"], site["engine"], say=lambda _: None)
    assert again.ok and again.changed == 0
    assert all(o.action.kind == "wait_healthy" for o in again.outcomes), [o.action.id for o in again.outcomes]


def test_push_sends_the_images_then_nothing(site):
    first = push(site)
    images = {i["image"]: i for i in first["images"]}
    assert first["ok"] and set(images) == {"base", "memcached"}
    assert all(i["sent"] and i["digest"].startswith("sha256:") for i in images.values())
    site["digests"] = {name: i["digest"] for name, i in images.items()}
    again = push(site)
    assert again["ok"] and [i["sent"] for i in again["images"]] == [False, False]
    assert {i["image"]: i["digest"] for i in again["images"]} == site["digests"]
    recorded = json.loads((site["folder"] / "work" / "digests.json").read_text())
    assert recorded[f"{REGISTRY}/{REF}"]["digest"] == site["digests"]["memcached"]


def test_deploy_pulls_by_digest_and_every_host_runs_the_built_bytes(site):
    started = time.monotonic()
    out = dockyard("deploy", "--config-dir", str(site["dir"]), timeout=300).stdout
    site["deploy_seconds"] = time.monotonic() - started
    for host in ("h1", "h2"):
        assert f"ok      pull_image:{REF}@{host}" in out, out
        assert f"ok      wait_healthy:memcached@{host}" in out, out
    built = site["engine"].image(REF).id
    digest = f"{REGISTRY}/dockyard/memcached@{site['digests']['memcached']}"
    for host in site["hosts"]:
        images = dockyard_images(host)
        assert set(images) == {REF}, images                      # only what its containers need
        assert images[REF]["Id"] == built and digest in images[REF]["RepoDigests"]
        assert containers_of(host)["memcached"]["Image"] == built
        assert "STAT pid" in memcached_stats(host.address)


def test_a_second_deploy_and_pull_move_nothing(site):
    again = dockyard("deploy", "--config-dir", str(site["dir"])).stdout
    assert "0 changes, 0 failed, 0 skipped" in again and "pull_image" not in again
    pulled = dockyard("pull", "--config-dir", str(site["dir"])).stdout
    assert "0 changes, 0 failed, 0 skipped" in pulled and "pull_image" not in pulled
    status = dockyard("registry", "status", "--config-dir", str(site["dir"]), check=False).stdout
    # The CLI's catalogue names the operator's registry container, not this test's.
    assert f"registry {REGISTRY}" in status and "answers: yes" in status
