"""The testbed of real engines: two "hosts" on this machine, each its own dockerd.

Runs ``python3 -m dockyard.testbed`` as an operator would: ``up 2`` once for the
module, ``down`` at the end (and checked to leave nothing behind). Needs root
and the machine's ``dockyard/base:2025.1`` (only read, to be loaded into the
hosts). Only loopback and the testbed's /24 carry traffic. About a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
import docker.tls
import pytest

from dockyard.testbed import Testbed, client
from dockyard.testbed.daemon import API_VERSION, dockerd_pid, pids_in_netns
from dockyard.testbed.plan import NETNS_DIR, ROOT_LINK, SWITCH_NETNS

REPO = Path(__file__).resolve().parents[2]
IMAGE = "dockyard/base:2025.1"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root")


def tb_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dockyard.testbed", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"testbed {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_in(host, *argv: str, timeout: int = 20) -> str:
    """Run ``argv`` in a host-network container on ``host``; its output. Bounded by ``timeout``."""
    c = client(host)
    try:
        out = c.containers.run(IMAGE, entrypoint=["timeout", str(timeout), *argv], network_mode="host",
                               remove=True, stdout=True, stderr=True)
        return out.decode()
    finally:
        c.close()


def root_addresses() -> set[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=True)
    return {a["local"] for link in json.loads(out.stdout) for a in link["addr_info"]} - {"127.0.0.1"}


def machine_state() -> dict:
    """What the testbed could leave behind, as seen from the root namespace."""
    links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return {
        "netns": sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else None,
        "links": sorted(link["ifname"] for link in json.loads(links.stdout) if link["ifname"].startswith("dyk")),
        "mounts": [m for m in mounts if "dockyard-testbed" in m or "/run/netns" in m],
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/dyk-h*")),
    }


def nsfs_roots(mountinfo: list[str]) -> set[str]:
    """The namespaces (``net:[inode]``) bound somewhere in a mount table."""
    return {m.split()[3] for m in mountinfo if " - nsfs " in m}


def start_time(pid: int) -> str | None:
    """When ``pid`` started, or None once it is gone (a zombie is gone: dead,
    only waiting for its parent to read its status)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


@pytest.fixture(scope="module")
def testbed():
    engine = docker.DockerClient(base_url="unix:///var/run/docker.sock", version=API_VERSION)
    try:
        engine.api.inspect_image(IMAGE)
    except docker.errors.NotFound:
        pytest.skip(f"{IMAGE} is not built yet on this machine's engine")
    finally:
        engine.close()
    tb_cli("down")                       # a clean start, whatever an earlier run left
    before = machine_state()
    started = time.monotonic()
    up = tb_cli("up", "2")
    up_seconds = time.monotonic() - started
    started = time.monotonic()
    tb_cli("load", IMAGE)
    load_seconds = time.monotonic() - started
    tb = Testbed()
    hosts = [tb.host(1), tb.host(2)]
    yield {"tb": tb, "hosts": hosts, "before": before, "up": up, "up_seconds": up_seconds,
           "load_seconds": load_seconds}
    tb_cli("down")


def test_up_prints_the_hosts_and_is_quick(testbed):
    table = testbed["up"].stdout
    assert "dyk-h1  10.113.0.11  tcp://10.113.0.11:2376" in table
    assert "dyk-h2  10.113.0.12  tcp://10.113.0.12:2376" in table
    assert testbed["up_seconds"] < 30, testbed["up_seconds"]
    assert testbed["load_seconds"] < 60, testbed["load_seconds"]


def test_each_engine_answers_over_tls_with_the_client_certificate(testbed):
    for host in testbed["hosts"]:
        c = client(host, timeout=10)
        try:
            assert c.ping()
            info = c.info()
            assert info["Name"] == host.name                # its own UTS namespace
            assert info["Driver"] == "fuse-overlayfs"
            assert info["DockerRootDir"] == str(host.data_root)
            assert IMAGE in {t for i in c.images.list() for t in i.tags}
        finally:
            c.close()


def test_each_engine_refuses_a_client_without_certificate(testbed):
    for host in testbed["hosts"]:
        ca = str(host.layout.client_dir / "ca.pem")
        c = docker.DockerClient(base_url=host.engine_url, version=API_VERSION, timeout=10,
                                tls=docker.tls.TLSConfig(ca_cert=ca, verify=True))
        c.api.trust_env = False
        try:
            with pytest.raises(Exception) as err:       # a TLS alert, or the connection cut
                c.ping()
            assert not isinstance(err.value, AssertionError)
        finally:
            c.close()
        # Plain HTTP gets no API either.
        plain = subprocess.run(["curl", "-sS", "--noproxy", "*", "-m", "5", f"http://{host.address}:2376/_ping"],
                               capture_output=True, text=True)
        assert plain.stdout.strip() != "OK"


def test_a_host_network_container_sees_only_its_host(testbed):
    h1, h2 = testbed["hosts"]
    out = run_in(h1, "sh", "-c", "hostname; ip -4 -o addr show; ip route; ip route get 192.0.2.1 2>&1 || true")
    assert out.splitlines()[0] == "dyk-h1"
    assert h1.address in out
    assert h2.address not in out.split("ip route")[0]
    for address in root_addresses():                     # nothing of the machine's own networks
        assert f"inet {address}/" not in out
    assert "default" not in out                          # no way out of the testbed's /24
    assert "unreachable" in out
    # The tunnel link: up, with its fixed MAC, and bare (a deployment puts the
    # host's tunnel address on the Open vSwitch bridge that holds it).
    out = run_in(h1, "sh", "-c", "ip -o link show eth1; echo addresses:; ip -4 -o addr show dev eth1")
    assert "state UP" in out and h1.tunnel_mac in out, out
    assert out.split("addresses:")[1].strip() == "", out


def test_host1_reaches_host2(testbed):
    h1, h2 = testbed["hosts"]
    # ICMP echo from a container on host 1 to host 2 (the image has python3, not ping).
    ping = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst, ident = sys.argv[1], os.getpid() & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
for seq in range(10):
    body = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + b'dockyard'
    s.sendto(struct.pack('!BBHHH', 8, 0, csum(body), ident, seq) + b'dockyard', (dst, 0))
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            data, src = s.recvfrom(1500)
        except socket.timeout:
            break
        kind, _, _, rid, rseq = struct.unpack('!BBHHH', data[(data[0] & 15) * 4:][:8])
        if kind == 0 and src[0] == dst and rid == ident:
            print('reply from', src[0], 'seq', rseq); sys.exit(0)
sys.exit(1)
"""
    out = run_in(h1, "python3", "-c", ping, h2.address, timeout=10)
    assert f"reply from {h2.address}" in out
    # And host 2's engine port, over TCP.
    out = run_in(h1, "bash", "-c", f"echo > /dev/tcp/{h2.address}/2376 && echo open", timeout=10)
    assert "open" in out


def test_each_host_has_a_private_run_and_a_shared_run_netns(testbed):
    for host in testbed["hosts"]:
        pid = dockerd_pid(host)
        mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        by_point = {m.split()[4]: m for m in mounts}
        assert " - tmpfs " in by_point["/run"]
        assert "shared:" in by_point["/run/netns"]
        assert "/sys/fs/cgroup/memory" in by_point                 # cgroups visible
        assert not any(p.startswith("/var/lib/docker/") for p in by_point)  # nothing of the machine's engine
        # No copy of the machine's engine's namespaces (its sandboxes, and the
        # machine's own as "default"): they would live on as long as this host does.
        machine = [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if " /run/docker/netns/" in m]
        assert nsfs_roots(machine) and not nsfs_roots(mounts) & nsfs_roots(machine)


def test_up_again_changes_nothing(testbed):
    hosts = testbed["hosts"]
    pids = [dockerd_pid(h) for h in hosts]
    layout = hosts[0].layout

    def certificates():
        return {p: p.stat().st_mtime_ns for p in [*layout.tls_dir.rglob("*.pem"), *layout.hosts_dir.glob("*/tls/*")]}
    files = certificates()
    proc = tb_cli("up", "2")
    assert "0 change(s)" in proc.stderr, proc.stderr
    assert [dockerd_pid(h) for h in hosts] == pids
    assert certificates() == files and len(files) == 9
    assert proc.stdout == testbed["up"].stdout


def test_a_broken_host_is_finished_by_the_next_up(testbed):
    h2 = testbed["hosts"][1]
    os.kill(dockerd_pid(h2), signal.SIGKILL)             # as if an up died before its daemon ran...
    subprocess.run(["ip", "-n", SWITCH_NETNS, "link", "delete", h2.switch_port], check=True)  # ...and its link
    proc = tb_cli("up", "2")
    assert "link dyk-h2:eth0 created" in proc.stderr
    assert "dockerd of dyk-h2 started" in proc.stderr
    assert "dyk-h1" not in proc.stderr.replace("dyk-h1  ", "")       # host 1 untouched
    c = client(h2)
    try:
        assert c.ping() and IMAGE in {t for i in c.images.list() for t in i.tags}   # data kept
    finally:
        c.close()


def test_down_leaves_nothing_behind(testbed):
    hosts = testbed["hosts"]
    processes = {pid: start_time(pid) for h in hosts for pid in pids_in_netns(h.netns_path)}
    assert len(processes) >= 4                           # dockerd and containerd, per host
    tb_cli("down")
    alive = [pid for pid, t in processes.items() if start_time(pid) == t]
    assert alive == []
    after = machine_state()
    assert after == testbed["before"]
    assert after["links"] == [] and after["cgroups"] == []
    assert not any(n.startswith("dyk-") for n in after["netns"] or [])
    assert ROOT_LINK not in after["links"]
    assert not hosts[0].layout.state_dir.exists()
    assert tb_cli("down").stderr.strip() == "0 change(s) in 0.0 s"
