"""The data plane: servers boot, get their address, and answer on their floating IP.

One story, after ``dockyard up`` and ``dockyard demo``, with python-openstackclient
and the guest image dockyard builds from Debian packages (no download). Traffic
goes only from the namespace ``dockyard-external`` that the demo made (the
provider network's far side) to the guests' addresses, or from inside a guest.
Every wait polls with a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

from dockyard.deploy.site.hostfacts import machine_hostname
from dockyard.guestimage import CONSOLE_DHCP, CONSOLE_HOSTNAME, CONSOLE_KEYS

from .client import container_facts, openstack, openstack_json
from .conftest import CONFIG_DIR, REPO, WORK, changed_nothing, dockyard
from .guests import (KEY, NAMESPACE, active, answers_ping, boot, console, fixed_address, network_diagnosis, poll,
                     ssh)

RESULTS = REPO / "bench" / "results" / "data_plane_story.json"

# The switch's two containers and their images; a change to their parent's
# Dockerfile rebuilds both with new ids and the same packages (the packages
# that matter come from the parent's cached layer).
SWITCH = {"openvswitch_db_server": "openvswitch-db-server", "openvswitch_vswitchd": "openvswitch-vswitchd"}
SWITCH_REBUILT = """{% extends parent_template %}
{% block openvswitch_base_footer %}
RUN echo "rebuilt by the data-plane story" > /etc/dockyard-rebuilt
{% endblock %}
"""


def build_switch_images(*options: str) -> None:
    dockyard("build", "--work-dir", str(WORK / "build"), *options, "^openvswitch-(db-server|vswitchd)$",
             timeout=1800)


class Pinger:
    """``ping`` from the demo's client namespace to ``address``, five a second,
    while open (at most ``limit`` of them); afterwards, how many went unanswered
    (the one in flight when it is stopped counts as answered or not, as it fell)."""

    def __init__(self, address: str, limit: int = 3000):
        self.argv = ["ip", "netns", "exec", NAMESPACE, "ping", "-n", "-i", "0.2", "-W", "2", "-c", str(limit),
                     address]
        self.sent = self.received = 0

    def __enter__(self) -> "Pinger":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)                # ping prints its statistics and ends
        out, _ = self.proc.communicate(timeout=30)
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert counts, out
        self.sent, self.received = int(counts[1]), int(counts[2])


def test_compute_and_network_hosts_services_are_up(cloud):
    services = openstack_json("compute", "service", "list")
    assert {s["Binary"]: s["State"] for s in services}["nova-compute"] == "up"
    rows = openstack_json("network", "agent", "list")
    agents = {a["Agent Type"]: a["Alive"] for a in rows}
    assert agents == {"Open vSwitch agent": True, "DHCP agent": True, "L3 agent": True, "Metadata agent": True}
    hypervisors = openstack_json("hypervisor", "list")
    assert len(hypervisors) == 1 and hypervisors[0]["State"] == "up"
    # One name for the all-in-one everywhere: the machine's as libvirt reports it
    # (never "localhost"), so the hypervisor, the compute service and the agents
    # that nova binds ports to line up.
    name = machine_hostname()
    assert name != "localhost"
    assert {s["Host"] for s in services} == {name}, services
    assert {a["Host"] for a in rows} == {name}, rows
    assert hypervisors[0]["Hypervisor Hostname"] == name, hypervisors
    providers = openstack_json("resource", "provider", "list")
    assert [p["name"] for p in providers] == [name], providers      # placement's compute node


def test_prechecks_report_datapath_and_virt_type(cloud):
    out = dockyard("prechecks", "--config-dir", str(CONFIG_DIR)).stdout
    datapath = next(line for line in out.splitlines() if " datapath: " in line)
    virt = next(line for line in out.splitlines() if " virt type: " in line)
    assert ("netdev (userspace), because" in datapath) or ("system (the kernel's), because" in datapath)
    assert ("qemu (QEMU emulation), because" in virt) or ("kvm (hardware virtualisation), because" in virt)


def test_demo_is_idempotent(demo):
    first, again = demo
    assert "created  image dockyard-guest" in first.stdout or "present  image dockyard-guest" in first.stdout
    assert re.search(r"^0 created, \d+ already there$", again.stdout, re.M), again.stdout
    assert not re.search(r"^  created ", again.stdout, re.M)
    assert KEY.stat().st_mode & 0o777 == 0o600


def test_a_server_boots_answers_and_survives_the_operators_day(demo, engine):
    figures: dict = {}
    # -- boot, DHCP, metadata ------------------------------------------------------------
    one = boot("dp-1")
    figures["boot_to_active_s"], figures["boot_to_sshd_console_s"] = one["active_s"], one["sshd_s"]
    log = console("dp-1")
    fixed = fixed_address("dp-1")
    assert f"{CONSOLE_DHCP}{fixed}/24" in log, log[-2000:]
    assert f"{CONSOLE_HOSTNAME}dp-1" in log and f"{CONSOLE_KEYS}1" in log, log[-2000:]

    # -- a floating IP, reached from outside --------------------------------------------
    fip = openstack_json("floating", "ip", "create", "public")["floating_ip_address"]
    openstack("server", "add", "floating", "ip", "dp-1", fip)
    poll(f"ping {fip}", lambda: answers_ping(fip), timeout=300)
    out = poll(f"ssh {fip}", lambda: (p := ssh(fip, "hostname")).returncode == 0 and p.stdout.strip(), timeout=300)
    assert out == "dp-1"
    figures["boot_to_ssh_s"] = round(time.monotonic() - one["t0"], 1)

    # -- a second server on the same network, reached from the first --------------------
    two = boot("dp-2")
    figures["second_boot_to_sshd_console_s"] = two["sshd_s"]
    address_two = fixed_address("dp-2")
    reach = ssh(fip, f"ping -c 2 -W 3 {address_two}")
    assert reach.returncode == 0 and "2 packets received" in reach.stdout, reach.stdout + reach.stderr

    # -- a redeploy is a no-op; nova reconfigured restarts nova only; guests go on --------
    before = container_facts(engine)
    redeploy = dockyard("deploy", "--config-dir", str(CONFIG_DIR)).stdout
    assert changed_nothing(redeploy), redeploy
    assert container_facts(engine) == before

    # -- the switch's images rebuilt: a deploy keeps Open vSwitch running --------------
    # An in-place update (the same release rebuilt) that changes none of the
    # packages the switch is made of: new image ids, and the deploy keeps both
    # containers running, so the guests' network never drops.
    override = WORK / "switch-rebuilt.j2"
    override.write_text(SWITCH_REBUILT)
    images_before = {c: engine.image(f"dockyard/{i}:2025.1").id for c, i in SWITCH.items()}
    build_switch_images("--template-override", str(override))
    assert all(engine.image(f"dockyard/{i}:2025.1").id != images_before[c] for c, i in SWITCH.items())
    with Pinger(fip) as pinger:
        started = time.monotonic()
        rebuilt = dockyard("deploy", "--config-dir", str(CONFIG_DIR)).stdout
        figures["switch_rebuilt_deploy_s"] = round(time.monotonic() - started, 1)
    for container in SWITCH:
        assert re.search(rf"^keep {container}: image rebuilt, .* unchanged: kept running$", rebuilt, re.M), rebuilt
    assert changed_nothing(rebuilt), rebuilt
    assert container_facts(engine) == before
    figures["switch_rebuilt_pings"] = {"sent": pinger.sent, "received": pinger.received}
    assert pinger.sent >= 3 and pinger.sent - pinger.received <= 1, figures["switch_rebuilt_pings"]
    # Back to the catalogue's images: kept again.
    build_switch_images()
    again = dockyard("deploy", "--config-dir", str(CONFIG_DIR)).stdout
    assert changed_nothing(again) and container_facts(engine) == before, again

    override = CONFIG_DIR / "config" / "nova.conf"
    override.parent.mkdir(exist_ok=True)
    override.write_text("[DEFAULT]\nreclaim_instance_interval = 0\n")
    try:
        dockyard("reconfigure", "--config-dir", str(CONFIG_DIR))
        after = container_facts(engine)
        restarted = {n for n in before if after.get(n) != before[n]}
        assert "nova_compute" in restarted
        assert all(n.startswith("nova_") for n in restarted), restarted
        assert not {"nova_libvirt", "nova_virtlogd"} & restarted
    finally:
        override.unlink()
        dockyard("reconfigure", "--config-dir", str(CONFIG_DIR))
    poll(f"ping {fip} after nova's restart", lambda: answers_ping(fip), timeout=60)
    # The neutron agents restarted: guests keep their network.
    for agent in ("neutron_openvswitch_agent", "neutron_dhcp_agent", "neutron_l3_agent", "neutron_metadata_agent"):
        engine.restart(agent)
    poll(f"ssh {fip} after the agents' restart", lambda: ssh(fip, "hostname").stdout.strip() == "dp-1", timeout=120)
    poll("the agents alive again", lambda: all(a["Alive"] for a in openstack_json("network", "agent", "list")),
         timeout=300)

    # -- stop, start, reboot ------------------------------------------------------------
    openstack("server", "stop", "dp-1")
    poll("dp-1 SHUTOFF", lambda: openstack_json("server", "show", "dp-1")["status"] == "SHUTOFF", timeout=300)
    openstack("server", "start", "dp-1")
    poll("dp-1 ACTIVE again", lambda: active("dp-1"))
    poll(f"ssh {fip} after start", lambda: ssh(fip, "hostname").stdout.strip() == "dp-1",
         on_timeout=lambda: network_diagnosis("dp-1", engine))
    # A soft reboot: the guest powers off and libvirt starts the same domain again,
    # with a new tap device that nova does not plug; nova-libvirt's qemu hook plugs
    # it again for the userspace datapath (images/nova-libvirt/qemu-hook). A hard
    # reboot: nova plugs the port anew itself. Either is done when the guest
    # answers from a new boot.
    for kind in ("soft", "hard"):
        boot_id = ssh(fip, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
        assert boot_id
        openstack("server", "reboot", f"--{kind}", "dp-1")
        poll(f"ssh {fip} from a new boot after a {kind} reboot",
             lambda old=boot_id: ssh(fip, "cat /proc/sys/kernel/random/boot_id").stdout.strip() not in ("", old),
             on_timeout=lambda: network_diagnosis("dp-1", engine))
        poll(f"dp-1 ACTIVE after a {kind} reboot", lambda: active("dp-1"))

    # -- a snapshot becomes an image that boots a third server ---------------------------
    # Nova uploads it to glance as a chunked body of unknown length.
    openstack("server", "image", "create", "--wait", "--name", "dp-1-snapshot", "dp-1")
    assert openstack_json("image", "show", "dp-1-snapshot")["status"] == "active"
    three = boot("dp-3", image="dp-1-snapshot")
    figures["snapshot_boot_to_sshd_console_s"] = three["sshd_s"]
    assert f"{CONSOLE_HOSTNAME}dp-3" in console("dp-3")
    reach = ssh(fip, f"ping -c 2 -W 3 {fixed_address('dp-3')}")
    assert reach.returncode == 0 and "2 packets received" in reach.stdout, reach.stdout + reach.stderr

    # -- delete frees everything --------------------------------------------------------
    for name in ("dp-1", "dp-2", "dp-3"):
        openstack("server", "delete", "--wait", name)
    openstack("floating", "ip", "delete", fip)
    openstack("image", "delete", "dp-1-snapshot")
    assert not [s for s in openstack_json("server", "list") if s["Name"].startswith("dp-")]
    assert fip not in {f["Floating IP Address"] for f in openstack_json("floating", "ip", "list")}
    poll(f"{fip} silent", lambda: not answers_ping(fip), timeout=60)

    print("\ndata plane figures:", json.dumps(figures))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured": time.strftime("%Y-%m-%d"), **figures}, indent=2) + "\n")
