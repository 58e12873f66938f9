"""The guest image boots: QEMU with TCG (no KVM), as Nova runs it on this host.

Only the two images it needs are built (``guest-image``, ``nova-libvirt``; cached
when present). QEMU runs in a container of the catalogue's ``nova-libvirt`` image,
with user-mode networking: slirp's own DHCP server; the metadata address
169.254.169.254:80 answered, per connection, by a tiny responder QEMU runs
(``guestfwd=...-cmd:``), which is why slirp's network is 169.254.169.0/24 (slirp
only forwards addresses of its own network); ``restrict=on`` so the guest reaches
nothing else; SSH forwarded from 127.0.0.1 only. The guest's console is polled for
its lines, then a power-button press must stop QEMU promptly.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest

from dockyard.guestimage import (
    CONSOLE_DHCP,
    CONSOLE_HOSTNAME,
    CONSOLE_KEYS,
    CONSOLE_SSHD,
    GUEST_IMAGE,
    export_guest_disk,
    read_manifest,
)

from .conftest import WORK, dockyard

LIBVIRT_IMAGE = "nova-libvirt"
HOSTNAME = "dockyard-e2e-guest"
BOOT_DEADLINE = 300       # s, from QEMU start to the console's "sshd up" (TCG on shared cores)
SSH_DEADLINE = 60         # s, from "sshd up" to a command run over SSH
POWEROFF_DEADLINE = 30    # s, from the power button to QEMU's exit

# Run by QEMU for each guest connection to 169.254.169.254:80, on its stdin/stdout:
# one HTTP/1.0 answer from the folder given, every request line logged.
RESPONDER = '''\
import os, sys
root = sys.argv[1]
request = sys.stdin.buffer.readline().decode("latin-1").split()
while sys.stdin.buffer.readline() not in (b"\\r\\n", b"\\n", b""):
    pass
target = request[1] if len(request) > 1 else "/"
with open(os.path.join(root, "..", "requests.log"), "a") as log:
    log.write(" ".join(request[:2]) + "\\n")
path = os.path.join(root, os.path.normpath("/" + target.split("?")[0]).lstrip("/"))
if os.path.isfile(path):
    status, body = "200 OK", open(path, "rb").read()
else:
    status, body = "404 Not Found", b"not found\\n"
sys.stdout.buffer.write(("HTTP/1.0 %s\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\n"
                         "Connection: close\\r\\n\\r\\n" % (status, len(body))).encode() + body)
sys.stdout.buffer.flush()
'''


@pytest.fixture(scope="session")
def guest_images(engine) -> dict[str, str]:
    """Build only what this test needs; both are cached when already built."""
    proc = dockyard("build", f"^{GUEST_IMAGE}$", f"^{LIBVIRT_IMAGE}$", "--format", "json",
                    "--work-dir", str(WORK / "build"), timeout=3600)
    report = json.loads(proc.stdout)
    return {row["image"]: row["ref"] for row in report["images"]}


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, deadline: float, what: str, interval: float = 0.5, alive=None):
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(interval)


def test_guest_image_is_reproducible_and_exports(guest_images, engine, tmp_path):
    ref = guest_images[GUEST_IMAGE]
    manifest = read_manifest(engine, ref)
    assert manifest["format"] == "qcow2" and manifest["kernel"]
    assert manifest["size"] < 64 * 1024 * 1024, manifest
    disk = export_guest_disk(engine, ref, tmp_path / "guest.qcow2")
    assert disk.copied and disk.sha256 == manifest["sha256"] and disk.size == manifest["size"]
    assert not export_guest_disk(engine, ref, tmp_path / "guest.qcow2").copied
    info = subprocess.run(["qemu-img", "info", "--output=json", str(disk.path)], capture_output=True, text=True)
    if info.returncode == 0:           # qemu-img on the host is optional
        assert json.loads(info.stdout)["format"] == "qcow2"


def test_guest_boots_under_tcg_serves_ssh_and_powers_off(guest_images, engine):
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs the OpenSSH client on the host")
    # A short folder: QEMU's monitor socket path must fit a unix socket address.
    work = Path(tempfile.mkdtemp(prefix="dyguest-", dir="/tmp"))
    client = docker.from_env()
    container = None
    try:
        disk = export_guest_disk(engine, guest_images[GUEST_IMAGE], work / "guest.qcow2")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(work / "key")],
                       check=True)
        meta = work / "md" / "latest" / "meta-data"
        (meta / "public-keys" / "0").mkdir(parents=True)
        (meta / "hostname").write_text(HOSTNAME + ".novalocal\n")     # as nova serves it: the guest keeps the name
        (meta / "public-keys" / "0" / "openssh-key").write_text((work / "key.pub").read_text())
        (work / "responder.py").write_text(RESPONDER)
        port = free_loopback_port()
        netdev = ("user,id=n0,restrict=on,net=169.254.169.0/24,host=169.254.169.1,"
                  f"hostfwd=tcp:127.0.0.1:{port}-:22,"
                  "guestfwd=tcp:169.254.169.254:80-cmd:python3 /w/responder.py /w/md")
        qemu = ["-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-serial", "file:/w/console.log",
                "-monitor", "unix:/w/mon.sock,server=on,wait=off",
                "-drive", f"file=/w/{disk.path.name},if=virtio,format=qcow2,snapshot=on",
                "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"]
        started = time.monotonic()
        container = client.containers.run(
            guest_images[LIBVIRT_IMAGE], qemu, entrypoint=["qemu-system-x86_64"], detach=True,
            name=f"dockyard-guesttest-{uuid.uuid4().hex[:8]}", network_mode="host",
            volumes={str(work): {"bind": "/w", "mode": "rw"}},
        )
        console = work / "console.log"

        def alive():
            container.reload()
            if container.status != "running":
                text = console.read_text(errors="replace")[-3000:] if console.exists() else ""
                raise AssertionError(f"QEMU exited: {container.logs().decode()[-2000:]}\nconsole:\n{text}")

        def lines():
            return console.read_text(errors="replace").splitlines() if console.exists() else []

        wait_for(lambda: any(line.startswith(CONSOLE_SSHD) for line in lines()), BOOT_DEADLINE,
                 "the guest's 'sshd up'", alive=alive)
        sshd_seen = time.monotonic() - started
        out = lines()
        dhcp = [line for line in out if line.startswith(CONSOLE_DHCP)]
        assert dhcp and re.match(r"dockyard-guest: dhcp eth0 169\.254\.169\.\d+/24 router \S+", dhcp[0]), out
        assert f"{CONSOLE_HOSTNAME}{HOSTNAME}" in out
        assert f"{CONSOLE_KEYS}1" in out
        assert "dockyard-guest: virtio_net csum=N gso=N" in out

        ssh = ["ssh", "-i", str(work / "key"), "-p", str(port), "-o", "BatchMode=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1",
               "hostname; ping -c 1 -W 5 169.254.169.1 >/dev/null && echo ping-ok; command -v dbclient"]

        def try_ssh():
            proc = subprocess.run(ssh, capture_output=True, text=True, timeout=60)
            return proc.stdout.splitlines() if proc.returncode == 0 else None

        answer = wait_for(try_ssh, SSH_DEADLINE, "a command over SSH", interval=1, alive=alive)
        boot_to_ssh = time.monotonic() - started
        assert answer == [HOSTNAME, "ping-ok", "/usr/bin/dbclient"], answer
        requests = (work / "requests.log").read_text().splitlines()
        assert "GET /latest/meta-data/hostname" in requests
        assert "GET /latest/meta-data/public-keys/0/openssh-key" in requests

        with socket.socket(socket.AF_UNIX) as mon:
            mon.settimeout(10)
            mon.connect(str(work / "mon.sock"))
            pressed = time.monotonic()
            mon.sendall(b"system_powerdown\n")
            result = container.wait(timeout=POWEROFF_DEADLINE)
        poweroff = time.monotonic() - pressed
        assert result["StatusCode"] == 0, result
        assert "dockyard-guest: power button: powering off" in lines()
        print(f"\nguest {disk.size / 1e6:.1f} MB: 'sshd up' on the console {sshd_seen:.1f}s and a command "
              f"over SSH {boot_to_ssh:.1f}s after QEMU started (TCG); power button to QEMU exit {poweroff:.1f}s")
    finally:
        if container is not None:
            container.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)
