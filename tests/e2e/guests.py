"""Guests: boot them and reach them, as a user would.

Shared by the data-plane story, the upgrade and the multi-host cloud. Traffic
goes only from the namespace ``dockyard-external`` that ``dockyard demo`` made
(the provider network's far side) to the guests' addresses. On the all-in-one
that namespace is this machine's; on a site of several hosts it is on the first
network host, and ``prefix`` is the command that runs what follows there (a
testbed host's ``python3 -m dockyard.testbed exec HOST --``). Every wait polls
with a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from dockyard.guestimage import CONSOLE_SSHD

from .client import openstack, openstack_json
from .conftest import CONFIG_DIR

NAMESPACE = "dockyard-external"
KEY = CONFIG_DIR / "demo" / "id_ed25519"
BOOT_TIMEOUT = 600          # QEMU emulation on a busy 2-core machine


def in_namespace(*cmd: str, timeout: float = 60, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``cmd`` in the demo's client namespace, entered through ``prefix`` (none: this machine's)."""
    return subprocess.run([*prefix, "ip", "netns", "exec", NAMESPACE, *cmd], capture_output=True, text=True,
                          timeout=timeout)


def ssh(address: str, command: str, timeout: float = 60, *, prefix: Sequence[str] = (),
        key: Path = KEY) -> subprocess.CompletedProcess:
    """``command`` on the guest at ``address``. A guest that goes away mid-session
    (a reboot that comes just after the connection) ends the try, as a failed one,
    rather than the caller: ssh gives up after ~15 s of silence, and the bound
    on the whole call is a failure like any other."""
    argv = ("ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", f"root@{address}", command)
    try:
        return in_namespace(*argv, timeout=timeout, prefix=prefix)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 255, "", f"ssh: no answer within {timeout:.0f}s")


def poll(what: str, check, timeout: float = BOOT_TIMEOUT, every: float = 2.0, on_timeout=None):
    """Call ``check`` until it returns something true, at most ``timeout`` seconds;
    between tries, wait on nothing but the clock (bounded, one try per ``every``).
    ``on_timeout`` says more (a console log) when it gives up."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        started = time.monotonic()
        last = check()
        if last:
            return last
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    more = f"\n{on_timeout()}" if on_timeout else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}){more}")


def console(server: str, **env: str) -> str:
    """The server's console log; ``env`` for the client (``OS_CLIENT_CONFIG_FILE``: another site's)."""
    return openstack("console", "log", "show", server, check=False, **env).stdout


def answers_ping(address: str, *, prefix: Sequence[str] = ()) -> bool:
    return in_namespace("ping", "-c", "1", "-W", "2", address, prefix=prefix).returncode == 0


def boot(name: str, image: str = "dockyard-guest") -> dict:
    t0 = time.monotonic()
    openstack("server", "create", "--image", image, "--flavor", "m1.tiny", "--network", "demo-net",
              "--security-group", "demo", "--key-name", "demo", name)
    server = poll(f"{name} ACTIVE", lambda: active(name))
    to_active = time.monotonic() - t0
    poll(f"{name}'s sshd on its console", lambda: CONSOLE_SSHD in console(name))
    return {"server": server, "active_s": round(to_active, 1), "sshd_s": round(time.monotonic() - t0, 1), "t0": t0}


def active(name: str):
    server = openstack_json("server", "show", name)
    assert server["status"] != "ERROR", f"{name} went to ERROR: {server.get('fault')}"
    return server if server["status"] == "ACTIVE" else None


def fixed_address(name: str, **env: str) -> str:
    addresses = openstack_json("server", "show", name, **env)["addresses"]
    return addresses["demo-net"][0] if isinstance(addresses["demo-net"], list) else addresses["demo-net"]


def network_diagnosis(name: str, engine) -> str:
    """What a guest without network looks like from the all-in-one's side: its
    console's tail, its port as neutron has it, the switch's view of its tap,
    and the last lines of the agent, the hook and the DHCP agent. Said when a
    wait for the guest gives up, so a failure in a run nobody watched can be
    read afterwards."""
    parts = [f"-- console of {name} (tail):\n{console(name)[-1500:]}"]
    try:
        ports = openstack_json("port", "list", "--server", name, "--long")
        parts.append(f"-- ports of {name}: {ports}")
        taps = [f"tap{p['ID'][:11]}" for p in ports]
    except AssertionError as exc:
        parts.append(f"-- ports of {name}: {exc}")
        taps = []
    for tap in taps:
        for command in (("ovs-vsctl", "--timeout=10", "list", "Interface", tap),
                        ("ovs-vsctl", "--timeout=10", "list", "Port", tap),
                        ("ovs-ofctl", "dump-ports", "br-int", tap)):
            result = engine.exec_in("openvswitch_vswitchd", command, timeout=20)
            parts.append(f"-- {' '.join(command)} (exit {result.exit_code}):\n{result.output[-2000:]}")
    for container, lines in (("neutron_openvswitch_agent", 80), ("nova_libvirt", 30), ("neutron_dhcp_agent", 30),
                             ("nova_compute", 40)):
        parts.append(f"-- last {lines} lines of {container}:\n{engine.logs(container, tail=lines)}")
    return "\n".join(parts)
