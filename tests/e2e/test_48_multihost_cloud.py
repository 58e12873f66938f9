"""A whole cloud across three hosts (issue 10): one deploy, guests over a VXLAN tunnel.

The story, on the testbed's real engines, each reached over TLS:

1. Three hosts: ``dyk-h1`` control and network, ``dyk-h2`` and ``dyk-h3``
   compute. Inventory hosts are named as the testbed names the hosts
   (``hostname`` inside a host says ``dyk-h<i>``), which is the name libvirt
   gives the hypervisor, so ``compute service list``, ``hypervisor list`` and
   ``network agent list`` carry one name per host. Each host tunnels from
   ``10.114.0.(10+i)/24`` on its ``eth1`` (``br-tunnel``, userspace datapath).
   The hosts start with no image at all.
2. The site's registry runs on this machine (the test's own container, as in
   test_47); ``dockyard build --push --skip-existing`` with one anchored
   pattern per image the site uses pushes those (and their parents) and
   builds nothing.
3. One ``dockyard deploy`` pulls by digest on every host and brings the control
   plane up on h1, libvirt, nova-compute, Open vSwitch and its agent on h2 and
   h3. Every host then holds exactly the pushed bytes of what it runs.
4. python-openstackclient (the site's ``clouds.yaml``) sees two hypervisors up,
   nova-compute up on both, every agent alive, and each host's switch has
   VXLAN ports to the two others' tunnel addresses.
5. ``dockyard demo``; one m1.tiny server forced onto each compute host
   (``--availability-zone nova:<host>``, as admin). Each answers ping and SSH
   on its floating IP from the demo's client namespace on h1 (``testbed exec
   dyk-h1 -- ip netns exec dockyard-external ...``), and from inside each the
   other's fixed address answers: traffic between the compute hosts, over the
   tunnel.
6. A second deploy changes nothing on any host (timed).
7. ``config/dyk-h2/nova.conf`` recreates nova_compute on h2 and nothing else.
8. ``reconfigure --serial 1 --limit dyk-h2,dyk-h3`` of nova-compute while a
   thread samples both hosts' nova_compute through their engines every 0.5 s:
   never are both down at once, and h3's recreate starts after h2's health wait.
9. h3's engine stopped (SIGTERM, as test_45) just after a run that changes
   every host's Open vSwitch agent starts: the run fails h3's work only,
   naming the host (exit 1), h1 and h2 complete; the engine started again
   (``testbed up 3``), the next run converges and the one after is a no-op.
10. The figures (deploy wall time, its critical path from the run's own
    timeline, the pulls, the no-op, boots) go to bench/results/multihost.json
    and are printed.

Teardown: ``dockyard destroy --include-volumes``, the registry down with its
storage, trust and the registry-named tags on this machine's engine, the
testbed down, the site folder removed: nothing is left.

Cost (an estimate for the 2-core machine with the images built; to be replaced
by the first run's figures): about 15 minutes, 12-22. Pushing the site's images
(~3 GB of distinct layers, gzip on 2 cores) 2-4 min; the deploy with its pulls
(h1 ~2.5 GB, h2 and h3 ~1.3 GB each, into fuse-overlayfs) 4-7 min; the demo
1-2 min; two guests booted side by side under QEMU emulation and reached
2-4 min; the rest (client checks, no-op, override, serial roll, the stopped
engine and the converging run, teardown) 3-4 min. Memory: h1's control plane
(~4-5 GB), two compute hosts (~1 GB each), two 256 MiB guests, beside the
session's all-in-one. Only two servers, the smallest flavor; every wait is a
bounded poll with a deadline, none sleeps to synchronise.

Needs root and the machine's images (the session's ``built_catalogue``).
Traffic: the testbed's /24s, the demo's provider network inside h1, and the
registry on the testbed's root address, nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from bench.deploy_bench import noop_breakdown
from dockyard.deploy import api
from dockyard.deploy.execute.timeline import critical_path, durations, load_timeline, timeline_path
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.engine import connect
from dockyard.guestimage import CONSOLE_SSHD
from dockyard.image.catalogue import load_catalogue
from dockyard.labels import LABEL_JOB, LABEL_MANAGED
from dockyard.registry import service
from dockyard.testbed import Testbed, client
from dockyard.testbed.daemon import API_VERSION, dockerd_pid
from dockyard.testbed.plan import TUNNEL_LINK

from .client import openstack, openstack_json
from .conftest import REPO, changed_nothing, dockyard, inventory_entry_of
from .guests import answers_ping, console, fixed_address, poll, ssh
from .test_45_multihost import containers_of, tb_cli
from .test_47_registry import PORT, REGISTRY, ROOT_ADDRESS, dockyard_images, e2e_catalogue

RESULTS = REPO / "bench" / "results" / "multihost.json"
HOSTS = 3
CONTROL = "dyk-h1"                              # control and network
COMPUTES = ("dyk-h2", "dyk-h3")
# Everything a server needs, without horizon: what it would cost buys nothing here.
SERVICES = ["mariadb", "memcached", "rabbitmq", "keystone", "glance", "placement", "nova", "neutron",
            "openvswitch", "neutron-agents", "nova-compute"]
COMPUTE_CONTAINERS = {"nova_compute", "nova_libvirt", "nova_virtlogd", "openvswitch_db_server",
                      "openvswitch_vswitchd", "neutron_openvswitch_agent"}
SERVERS = {"mh-a": "dyk-h2", "mh-b": "dyk-h3"}   # server -> the compute host it is forced onto
DEPLOY_TIMEOUT = 1800                           # the first deploy pulls every image on every host
SAMPLE_EVERY = 0.5

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root")


# -- the site ---------------------------------------------------------------------------

def write_site(config: Path, hosts: list) -> None:
    """inventory.yml and globals.yml: hosts named as the testbed names them, each
    reached over TLS and tunnelling from its eth1; the site's registry."""
    inventory = {
        "hosts": {h.name: {**inventory_entry_of(h), "tunnel_interface": TUNNEL_LINK,
                           "tunnel_address": f"{h.tunnel_address}/{h.tunnel_subnet.prefixlen}"} for h in hosts},
        "groups": {"control": [CONTROL], "network": [CONTROL], "compute": list(COMPUTES)},
    }
    config.mkdir(parents=True)
    (config / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (config / "globals.yml").write_text(yaml.safe_dump({
        "enabled_services": SERVICES, "internal_address": hosts[0].address,
        "registry": {"address": ROOT_ADDRESS, "port": PORT}}))


def site_images(config: Path) -> dict[str, str]:
    """Each image the site uses -> its reference (``dockyard/nova-compute:2025.1``)."""
    site, catalogue = api.load(config, need_passwords=False)
    g = site.globals
    return {name: g.image_ref(name, g.release_tag(release))
            for name, release in api.image_releases(site, catalogue).items()}


def managed_containers(hosts) -> dict[tuple[str, str], tuple[str, str]]:
    """(host, name) -> (id, start time) of every service container of the site, every host."""
    out = {}
    for h in hosts:
        for name, attrs in containers_of(h).items():
            labels = attrs["Config"]["Labels"] or {}
            if labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_JOB) != "true":
                out[(h.name, name)] = (attrs["Id"], attrs["State"]["StartedAt"])
    return out


def changed_between(before: dict, after: dict) -> set[tuple[str, str]]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def run_id(output: str) -> str:
    found = re.search(r"^dockyard: run (\S+) on ", output, re.M)
    assert found, output
    return found.group(1)


def timeline_of(site, output: str) -> list[dict]:
    return load_timeline(timeline_path(site["dir"] / "state", run_id(output)))


def in_container(host, container: str, *cmd: str) -> str:
    c = client(host, timeout=30)
    try:
        result = c.containers.get(container).exec_run(list(cmd))
    finally:
        c.close()
    return result.output.decode(errors="replace")


def write_override(site, relative: str, text: str) -> None:
    """An operator's override file in the site's ``config/`` (kolla-ansible's layout)."""
    path = site["dir"] / "config" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def needs(site, step: str) -> None:
    """Fail at once, rather than after a poll's deadline, when the step this test
    builds on did not succeed."""
    if not site.get(step):
        pytest.fail(f"this test needs {step!r}, which an earlier test of the story did not reach")


class ComputeSampler:
    """While open, samples every ``every`` seconds whether each host's
    nova_compute runs, through the host's engine: (time, {host: True running,
    False stopped or absent, None the engine did not answer in time})."""

    def __init__(self, hosts, every: float = SAMPLE_EVERY):
        self.hosts, self.every = hosts, every
        self.samples: list[tuple[float, dict[str, bool | None]]] = []
        self._stop, self._first = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="nova-compute-sampler", daemon=True)

    def _sample(self, clients) -> None:
        at, sample = time.time(), {}
        for name, c in clients.items():
            try:
                sample[name] = bool(c.api.inspect_container("nova_compute")["State"]["Running"])
            except docker.errors.NotFound:
                sample[name] = False
            except Exception:  # noqa: BLE001 - no answer in time: unknown, not down
                sample[name] = None
        self.samples.append((at, sample))
        self._first.set()

    def _run(self) -> None:
        clients = {h.name: client(h, timeout=5) for h in self.hosts}
        try:
            while not self._stop.is_set():
                self._sample(clients)
                self._stop.wait(self.every)        # the sampling period, bounded; not a synchronisation
            # One sample after the run ended, so the samples cover all of it.
            self._sample(clients)
        finally:
            self._first.set()
            for c in clients.values():
                c.close()

    def __enter__(self) -> ComputeSampler:
        self._thread.start()
        # The samples must begin before the run does.
        self._first.wait(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# -- the fixture ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(built_catalogue, tmp_path_factory):
    """Three testbed hosts, the site's files, its registry up. The tests then push,
    deploy and operate the cloud in order; everything goes at the end."""
    folder = tmp_path_factory.mktemp("multihost-cloud")
    config = folder / "site"
    state: dict = {"dir": config, "folder": folder, "figures": {},
                   "env": {"OS_CLIENT_CONFIG_FILE": str(config / "clouds.yaml")}}
    tb_cli("down")
    try:
        tb_cli("up", str(HOSTS))
        tb = Testbed()
        hosts = [tb.host(i) for i in range(1, HOSTS + 1)]
        state["hosts"] = {h.name: h for h in hosts}
        # The names the inventory gives are the hosts' own: libvirt names the hypervisor so.
        for h in hosts:
            assert tb_cli("exec", h.name, "--", "hostname").stdout.strip() == h.name
        write_site(config, hosts)
        dockyard("genpwd", "--config-dir", str(config))
        state["images"] = site_images(config)
        state["catalogue"] = load_services(e2e_catalogue(folder))
        state["loaded"], _ = api.load(config, need_passwords=False)
        state["engine"] = connect()
        lines: list[str] = []
        state["registry_up"] = service.up(state["loaded"], state["catalogue"], state["engine"], say=lines.append)
        state["registry_lines"] = lines
        yield state
    finally:
        tear_down(state)


def tear_down(state: dict) -> None:
    """Every step is tried, whatever failed before it; the first error is raised at the end."""
    config = state["dir"]
    errors: list[BaseException] = []

    def step(action) -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported after the other steps ran
            errors.append(exc)

    if (config / "globals.yml").exists():
        step(lambda: dockyard("destroy", "--yes", "--include-volumes", "--config-dir", str(config),
                              check=False, timeout=900))
    if {"loaded", "catalogue", "engine"} <= state.keys():        # the registry may have been started
        step(lambda: service.down(state["loaded"], state["catalogue"], state["engine"], say=lambda _: None,
                                  purge=True))

    def untag() -> None:
        """The second tags a push gives this machine's images (however far it got):
        every tag naming the test's registry, which nothing else uses."""
        local = docker.DockerClient(base_url="unix:///var/run/docker.sock", version=API_VERSION)
        try:
            for image in local.api.images():
                for tag in image.get("RepoTags") or ():
                    if tag.startswith(f"{REGISTRY}/"):
                        try:
                            local.api.remove_image(tag, noprune=True)     # the tag only
                        except docker.errors.NotFound:
                            pass
        finally:
            local.close()

    step(untag)
    step(lambda: tb_cli("down"))
    step(lambda: shutil.rmtree(state["folder"], ignore_errors=True))
    if errors:
        raise errors[0]


# -- the story --------------------------------------------------------------------------

def test_the_hosts_start_empty_and_the_push_sends_only_the_sites_images(site):
    assert {name: dockyard_images(h) for name, h in site["hosts"].items()} == \
        {name: {} for name in site["hosts"]}
    assert site["registry_up"].ok, "\n".join(site["registry_lines"])
    patterns = [f"^{re.escape(name)}$" for name in sorted(site["images"])]
    started = time.monotonic()
    out = dockyard("build", "--push", "--skip-existing", *patterns, "--config-dir", str(site["dir"]),
                   "--work-dir", str(site["folder"] / "work"), "--format", "json", timeout=1800).stdout
    site["figures"]["push_s"] = round(time.monotonic() - started, 1)
    report = json.loads(out)
    assert report["ok"], out[-3000:]
    pushed = {i["image"]: i for i in report["images"]}
    site["pushed"] = {name: i["digest"] for name, i in pushed.items()}
    catalogue = load_catalogue()
    parents = {p for name in site["images"] for p in catalogue.ancestors(name)}
    # The site's images and the parents a build selects with them; nothing else.
    assert set(site["images"]) <= set(pushed) <= set(site["images"]) | parents, sorted(pushed)
    assert all(i["digest"].startswith("sha256:") and i["status"] != "built" for i in pushed.values()), pushed
    recorded = json.loads((site["folder"] / "work" / "digests.json").read_text())
    for name, ref in site["images"].items():
        assert recorded[f"{REGISTRY}/{ref}"]["digest"] == site["pushed"][name], name
    site["figures"].update(images_pushed=len(pushed), images_sent=sum(1 for i in pushed.values() if i["sent"]))
    # Pushing moved nothing onto the hosts: the deploy pulls.
    assert all(dockyard_images(h) == {} for h in site["hosts"].values())
    site["pushed_ok"] = True


def test_one_deploy_brings_up_the_control_plane_on_h1_and_compute_on_h2_and_h3(site):
    needs(site, "pushed_ok")
    config = site["dir"]
    started = time.monotonic()
    proc = dockyard("deploy", "--config-dir", str(config), timeout=DEPLOY_TIMEOUT, check=False)
    site["figures"]["deploy_s"] = round(time.monotonic() - started, 1)
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-8000:]}\n{proc.stderr[-3000:]}"
    for host in (CONTROL, *COMPUTES):
        assert re.search(rf"^  {host}: \d+ changes, 0 failed, 0 skipped$", out, re.M), out
    assert "ok      create:keystone@dyk-h1" in out and "ok      create:neutron_l3_agent@dyk-h1" in out, out
    for host in COMPUTES:
        for name in ("nova_libvirt", "nova_compute", "openvswitch_vswitchd", "neutron_openvswitch_agent"):
            assert f"ok      create:{name}@{host}" in out, out
        assert f"ok      pull_image:{site['images']['nova-compute']}@{host}" in out, out

    # Where each container runs: the control plane on h1 only, the same data plane on each compute host.
    running = {}
    for name, h in site["hosts"].items():
        running[name] = {n: a for n, a in containers_of(h).items() if a["State"]["Running"]
                         and (a["Config"]["Labels"] or {}).get(LABEL_MANAGED) == "true"}
    for host in COMPUTES:
        assert set(running[host]) == COMPUTE_CONTAINERS, sorted(running[host])
    assert {"keystone", "mariadb", "rabbitmq", "nova_api", "nova_conductor", "nova_scheduler", "placement_api",
            "glance_api", "neutron_api", "neutron_rpc_server", "neutron_dhcp_agent", "neutron_l3_agent",
            "neutron_metadata_agent",
            "openvswitch_vswitchd", "neutron_openvswitch_agent"} <= set(running[CONTROL]), sorted(running[CONTROL])
    assert not {"nova_compute", "nova_libvirt"} & set(running[CONTROL])

    # Every host holds the pushed bytes of what it runs, and only the site's images.
    built = {name: site["engine"].image(ref).id for name, ref in site["images"].items()}
    by_ref = {ref: name for name, ref in site["images"].items()}
    for host, h in site["hosts"].items():
        held = dockyard_images(h)
        assert {a["Image"] for a in running[host].values()} <= {i["Id"] for i in held.values()}, (host, sorted(held))
        for ref, image in held.items():
            assert ref in by_ref, (host, ref)
            name = by_ref[ref]
            repository = ref.rsplit(":", 1)[0]
            assert image["Id"] == built[name], (host, ref)
            assert f"{REGISTRY}/{repository}@{site['pushed'][name]}" in (image.get("RepoDigests") or []), \
                (host, ref, image.get("RepoDigests"))
        if host in COMPUTES:
            assert site["images"]["keystone"] not in held, host

    # The run's own account: its critical path, and what the pulls cost.
    events = timeline_of(site, out)
    seconds, chain = critical_path(events)
    took = durations(events)
    pulls = {a: s for a, s in took.items() if a.startswith("pull_image:")}
    site["figures"].update(
        deploy_actions=len(took), critical_path_s=round(seconds, 1),
        critical_path=[f"{a} {took[a]:.1f}s" for a in chain],
        wall_over_critical_path=round(site["figures"]["deploy_s"] / seconds, 2) if seconds else None,
        pulls=len(pulls), pull_s_sum=round(sum(pulls.values()), 1),
        pull_s_longest=round(max(pulls.values(), default=0.0), 1))
    dockyard("post-deploy", "--config-dir", str(config))
    site["deployed"] = True


def test_the_client_sees_two_hypervisors_and_every_agent_alive(site):
    needs(site, "deployed")
    env = site["env"]
    hosts = site["hosts"]

    def hypervisors():
        rows = openstack_json("hypervisor", "list", **env)
        return rows if {(r["Hypervisor Hostname"], r["State"]) for r in rows} == \
            {(h, "up") for h in COMPUTES} else None

    rows = poll("two hypervisors up", hypervisors, timeout=300, every=5)
    assert {r["Hypervisor Hostname"]: r["Host IP"] for r in rows} == {h: hosts[h].address for h in COMPUTES}

    services = openstack_json("compute", "service", "list", **env)
    compute = {s["Host"]: (s["Status"], s["State"]) for s in services if s["Binary"] == "nova-compute"}
    assert compute == {h: ("enabled", "up") for h in COMPUTES}, services
    assert {s["Host"] for s in services if s["Binary"] != "nova-compute"} == {CONTROL}, services
    providers = openstack_json("resource", "provider", "list", **env)
    assert sorted(p["name"] for p in providers) == sorted(COMPUTES), providers

    wanted_agents = {("Open vSwitch agent", h) for h in (CONTROL, *COMPUTES)} | \
        {(kind, CONTROL) for kind in ("DHCP agent", "L3 agent", "Metadata agent")}

    def agents():
        rows = openstack_json("network", "agent", "list", **env)
        alive = {(a["Agent Type"], a["Host"]) for a in rows if a["Alive"] is True}
        return rows if alive == wanted_agents and len(rows) == len(wanted_agents) else None

    poll("every agent alive", agents, timeout=300, every=5)

    # Each host's switch tunnels to the two others, from and to the tunnel network's addresses.
    tunnel = {name: h.tunnel_address for name, h in hosts.items()}

    def vxlan_peers(name: str) -> set[str]:
        out = in_container(hosts[name], "openvswitch_vswitchd", "ovs-vsctl", "--bare", "--columns=options",
                           "find", "interface", "type=vxlan")
        return set(re.findall(r'remote_ip="?([0-9.]+)', out))

    def every_tunnel():
        peers = {name: vxlan_peers(name) for name in hosts}
        return peers if all(peers[n] == set(tunnel.values()) - {tunnel[n]} for n in hosts) else None

    poll("VXLAN ports between every two hosts", every_tunnel, timeout=180, every=5)
    checks = dockyard("prechecks", "--config-dir", str(site["dir"]), check=False).stdout
    ways = ", ".join(f"{n} from {tunnel[n]} on br-tunnel ({TUNNEL_LINK})" for n in (CONTROL, *COMPUTES))
    assert f"ok    tunnels: VXLAN between {ways}" in checks, checks


def test_a_server_on_each_compute_host_reaches_the_other_over_the_tunnel(site):
    needs(site, "deployed")
    env, config = site["env"], site["dir"]
    demo = dockyard("demo", "--config-dir", str(config), timeout=1800).stdout
    assert re.search(rf"^  wired    namespace dockyard-external .* on host {CONTROL}$", demo, re.M), demo
    on_h1 = [sys.executable, "-m", "dockyard.testbed", "exec", CONTROL, "--"]
    key = config / "demo" / "id_ed25519"

    started = time.monotonic()
    for name, host in SERVERS.items():
        openstack("server", "create", "--image", "dockyard-guest", "--flavor", "m1.tiny", "--network", "demo-net",
                  "--security-group", "demo", "--key-name", "demo", "--availability-zone", f"nova:{host}", name,
                  **env)

    def both_active():
        rows = {r["Name"]: r for r in openstack_json("server", "list", "--long", "--name", "^mh-", **env)}
        broken = {n: openstack_json("server", "show", n, **env).get("fault") for n, r in rows.items()
                  if r["Status"] == "ERROR"}
        assert not broken, broken
        return rows if all(rows.get(n, {}).get("Status") == "ACTIVE" for n in SERVERS) else None

    rows = poll("both servers ACTIVE", both_active, every=4)
    site["figures"]["boot_to_active_s"] = round(time.monotonic() - started, 1)
    for name, host in SERVERS.items():
        shown = openstack_json("server", "show", name, **env)
        assert (rows[name]["Host"], shown["OS-EXT-SRV-ATTR:host"],
                shown["OS-EXT-SRV-ATTR:hypervisor_hostname"]) == (host, host, host), shown
    poll("both servers' sshd on their consoles",
         lambda: all(CONSOLE_SSHD in console(n, **env) for n in SERVERS), every=4,
         on_timeout=lambda: "\n".join(console(n, **env)[-2000:] for n in SERVERS))
    site["figures"]["boot_to_sshd_s"] = round(time.monotonic() - started, 1)

    fips, fixed = {}, {}
    for name in SERVERS:
        fips[name] = openstack_json("floating", "ip", "create", "public", **env)["floating_ip_address"]
        openstack("server", "add", "floating", "ip", name, fips[name], **env)
        fixed[name] = fixed_address(name, **env)
    for name, fip in fips.items():
        poll(f"ping {fip} ({name}) from h1's client namespace", lambda f=fip: answers_ping(f, prefix=on_h1),
             timeout=300, on_timeout=lambda n=name: console(n, **env)[-3000:])
        out = poll(f"ssh {fip} ({name})",
                   lambda f=fip: (p := ssh(f, "hostname", prefix=on_h1, key=key)).returncode == 0
                   and p.stdout.strip(), timeout=300)
        assert out == name
    site["figures"]["boot_to_ssh_s"] = round(time.monotonic() - started, 1)
    # From one compute host to the other: only the tunnel joins them.
    for name, other in (("mh-a", "mh-b"), ("mh-b", "mh-a")):
        reach = ssh(fips[name], f"ping -c 2 -W 3 {fixed[other]}", prefix=on_h1, key=key)
        assert reach.returncode == 0 and "2 packets received" in reach.stdout, (name, reach.stdout + reach.stderr)


def test_a_second_deploy_is_a_noop_on_every_host(site):
    needs(site, "deployed")
    hosts = site["hosts"].values()
    before = managed_containers(hosts)
    started = time.monotonic()
    again = dockyard("deploy", "--config-dir", str(site["dir"])).stdout
    site["figures"]["noop_deploy_s"] = round(time.monotonic() - started, 2)
    assert changed_nothing(again), again
    assert managed_containers(hosts) == before
    # Where it goes: the same no-op's phases, in this process (bench/README.md).
    breakdown = noop_breakdown(site["dir"], profile=True)
    print("\nno-op deploy, three hosts:", json.dumps({k: v for k, v in breakdown.items() if k != "profile"}))
    print("\n".join(breakdown.pop("profile")[:45]))
    site["figures"]["noop_breakdown"] = breakdown
    assert breakdown["hosts"] == 3 and managed_containers(hosts) == before


def test_a_hosts_override_recreates_nova_compute_on_that_host_only(site):
    needs(site, "deployed")
    hosts = site["hosts"]
    before = managed_containers(hosts.values())
    write_override(site, "dyk-h2/nova.conf", "[DEFAULT]\nheal_instance_info_cache_interval = 120\n")
    started = time.monotonic()
    out = dockyard("reconfigure", "--config-dir", str(site["dir"]), timeout=600).stdout
    site["figures"]["host_override_s"] = round(time.monotonic() - started, 1)
    assert "ok      recreate:nova_compute@dyk-h2" in out, out
    assert re.search(r"^1 changes, 0 failed, 0 skipped", out, re.M), out
    assert changed_between(before, managed_containers(hosts.values())) == {("dyk-h2", "nova_compute")}
    setting = "heal_instance_info_cache_interval = 120"
    assert setting in in_container(hosts["dyk-h2"], "nova_compute", "cat", "/etc/nova/nova.conf")
    assert setting not in in_container(hosts["dyk-h3"], "nova_compute", "cat", "/etc/nova/nova.conf")


def test_a_serial_roll_never_has_both_compute_hosts_down(site):
    needs(site, "deployed")
    hosts = site["hosts"]
    before = managed_containers(hosts.values())
    write_override(site, "nova/nova-compute.conf", "[DEFAULT]\nsync_power_state_interval = 1200\n")
    with ComputeSampler([hosts[h] for h in COMPUTES]) as sampler:
        started = time.monotonic()
        out = dockyard("reconfigure", "--serial", "1", "--limit", ",".join(COMPUTES), "--config-dir",
                       str(site["dir"]), timeout=900).stdout
        site["figures"]["serial_roll_s"] = round(time.monotonic() - started, 1)
    assert re.search(r"^2 changes, 0 failed, 0 skipped", out, re.M), out
    assert changed_between(before, managed_containers(hosts.values())) == {(h, "nova_compute") for h in COMPUTES}
    for h in COMPUTES:
        assert "sync_power_state_interval = 1200" in in_container(hosts[h], "nova_compute", "cat",
                                                                  "/etc/nova/nova.conf")
    # The plan's order, as the run recorded it: h3 begins once h2's nova-compute is healthy again.
    events = timeline_of(site, out)
    start = {e["action"]: e["t"] for e in events if e.get("event") == "start"}
    end = {e["action"]: e["t"] for e in events if e.get("event") == "end"}
    assert start["recreate:nova_compute@dyk-h3"] >= end["wait_healthy:nova_compute@dyk-h2"], events
    # What the engines showed meanwhile, every half second from before the run to after it.
    samples = sampler.samples
    times = [t for t, _ in samples]
    assert times and times[0] <= start["recreate:nova_compute@dyk-h2"] and times[-1] >= end[
        "wait_healthy:nova_compute@dyk-h3"], (times[:1], times[-1:])
    assert max((b - a for a, b in zip(times, times[1:])), default=0.0) < 3, "the sampler fell behind"
    both_down = [(t, s) for t, s in samples if all(v is False for v in s.values())]
    assert not both_down, both_down
    unknown = sum(1 for _, s in samples for v in s.values() if v is None)
    assert unknown <= len(samples) // 10, f"{unknown} looks of {2 * len(samples)} got no answer"
    site["figures"].update(serial_samples=len(samples), serial_seen_down={
        h: sum(1 for _, s in samples if s[h] is False) for h in COMPUTES})


def test_an_engine_stopped_mid_deploy_fails_its_host_only_and_the_next_run_converges(site):
    needs(site, "deployed")
    config, hosts = site["dir"], site["hosts"]
    victim = hosts["dyk-h3"]
    # A change on every host: each one's Open vSwitch agent is recreated.
    write_override(site, "openvswitch_agent.conf", "[agent]\nminimize_polling = true\n")
    before = managed_containers(hosts.values())
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "deploy", "--config-dir", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    # Its first line is printed once every engine was observed and the plan made.
    head = [proc.stdout.readline()]
    while head[-1] and not head[-1].startswith("dockyard: run ") and len(head) < 50:
        head.append(proc.stdout.readline())
    assert head[-1].startswith("dockyard: run "), "".join(head) + proc.stderr.read()
    os.kill(dockerd_pid(victim), signal.SIGTERM)
    rest, err = proc.communicate(timeout=600)
    site["figures"]["killed_run_s"] = round(time.monotonic() - started, 1)
    out = "".join(head) + rest
    assert proc.returncode == 1, out + err
    failed = [line for line in out.splitlines() if line.startswith("  FAILED")]
    assert failed and all("@dyk-h3" in line for line in failed), out
    assert "host dyk-h3" in out, out
    for host in ("dyk-h1", "dyk-h2"):
        assert f"ok      recreate:neutron_openvswitch_agent@{host}" in out, out
        assert f"  {host}: 1 changes, 0 failed, 0 skipped" in out, out
    after = managed_containers([hosts["dyk-h1"], hosts["dyk-h2"]])
    assert changed_between({k: v for k, v in before.items() if k[0] != "dyk-h3"}, after) == \
        {("dyk-h1", "neutron_openvswitch_agent"), ("dyk-h2", "neutron_openvswitch_agent")}
    # Once its dockerd has ended (its shutdown stops h3's containers, 5 s at most each),
    # every command says the host is unreachable and covers the others.
    poll("dyk-h3's dockerd gone", lambda: dockerd_pid(victim) is None, timeout=60, every=0.5)
    rows = json.loads(dockyard("status", "--config-dir", str(config), "--format", "json").stdout)
    assert {r["state"] for r in rows if r["host"] == "dyk-h3"} == {"unreachable"}, rows
    assert {r["state"] for r in rows if r["host"] != "dyk-h3"} == {"running"}, rows

    tb_cli("up", str(HOSTS))            # its data root kept: the same containers and volumes
    started = time.monotonic()
    again = dockyard("deploy", "--config-dir", str(config), timeout=900).stdout
    site["figures"]["converge_after_restart_s"] = round(time.monotonic() - started, 1)
    assert re.search(r"^\d+ changes, 0 failed, 0 skipped", again, re.M), again
    # Nothing is done on h1 and h2; they may only be waited on.
    elsewhere = [line for line in again.splitlines() if "@dyk-h1" in line or "@dyk-h2" in line]
    assert all(line.startswith("  ok      wait_healthy:") for line in elsewhere), again
    assert "minimize_polling = true" in in_container(victim, "neutron_openvswitch_agent", "cat",
                                                     "/etc/neutron/plugins/ml2/openvswitch_agent.ini")
    final = dockyard("deploy", "--config-dir", str(config)).stdout
    assert changed_nothing(final), final


def test_the_figures_are_written(site):
    """Whatever was measured is written, even after a failure; the three figures
    the story is for must be among them."""
    figures = site["figures"]
    doc = {"measured": time.strftime("%Y-%m-%d"), "hosts": HOSTS, "servers": len(SERVERS), **figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print("\nmulti-host cloud figures:", json.dumps(doc, indent=2))
    missing = [k for k in ("deploy_s", "critical_path_s", "noop_deploy_s") if k not in figures]
    assert not missing, f"not measured (an earlier test failed): {missing}"
