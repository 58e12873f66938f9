"""What a host can do for the data plane, and the choices made from it.

Two choices depend on the host's kernel and CPU rather than on the operator:

- Open vSwitch's **datapath**: ``system`` (the kernel's openvswitch module) where
  the module is loaded, else ``netdev`` (the userspace datapath, which needs no
  kernel module: slower, but it works on any kernel with tun and veth);
- libvirt's **virt_type**: ``kvm`` where hardware virtualisation is usable, else
  ``qemu`` (emulation: slow, but every guest boots).

One more fact names the host: ``machine_hostname`` is what libvirt on this
machine reports as the hypervisor's name, which the all-in-one's nova-compute and
neutron agents report too (their ``host``), so all three line up.

Probing reads the host (``/sys``, ``/proc``, ``/dev``); choosing is a pure
function of the facts and of the operator's setting in ``globals.yml``
(``services: {openvswitch: {datapath: ...}, nova-compute: {virt_type: ...}}``;
``auto``, the default, follows the facts). ``dockyard prechecks`` prints both
choices and why; the wanted state renders them into the services' configs.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import ConfigError

DATAPATHS = ("auto", "system", "netdev")
VIRT_TYPES = ("auto", "kvm", "qemu")


@dataclass(frozen=True)
class HostFacts:
    """What was found on a host, with the evidence in words."""

    openvswitch_module: bool        # the kernel datapath is there (module loaded or built in)
    openvswitch_evidence: str
    kvm_usable: bool                # /dev/kvm present and the CPU offers vmx or svm
    kvm_evidence: str


# Used where a host could not be probed: the choices that work everywhere.
UNKNOWN = HostFacts(False, "host not probed", False, "host not probed")


@dataclass(frozen=True)
class Choice:
    value: str
    why: str


def probe(root: Path = Path("/")) -> HostFacts:
    """The facts of the host whose filesystem is at ``root`` (the local one)."""
    ovs, ovs_why = _openvswitch_module(root)
    kvm, kvm_why = _kvm(root)
    return HostFacts(ovs, ovs_why, kvm, kvm_why)


def _openvswitch_module(root: Path) -> tuple[bool, str]:
    if (root / "sys/module/openvswitch").is_dir():
        return True, "the openvswitch kernel module is loaded"
    release = os.uname().release
    modules = root / "lib/modules" / release
    if any(modules.glob("kernel/net/openvswitch/openvswitch.ko*")):
        return False, (f"the openvswitch kernel module is not loaded (it exists for {release}: "
                       f"`modprobe openvswitch` before deploying selects the kernel datapath)")
    return False, f"the kernel ({release}) has no openvswitch module"


def _kvm(root: Path) -> tuple[bool, str]:
    dev = root / "dev/kvm"
    try:
        if not stat.S_ISCHR(dev.stat().st_mode):
            return False, "/dev/kvm is not a character device"
    except OSError:
        return False, "/dev/kvm is missing (no KVM module, or virtualisation disabled)"
    try:
        cpuinfo = (root / "proc/cpuinfo").read_text()
    except OSError:
        return False, "/proc/cpuinfo unreadable: cannot tell whether the CPU offers virtualisation"
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    if flags & {"vmx", "svm"}:
        return True, "/dev/kvm is present and the CPU offers " + ("vmx" if "vmx" in flags else "svm")
    # Seen on nested hosts: the device exists, but guests cannot run on it.
    return False, "/dev/kvm is present but the CPU offers no vmx/svm (hardware virtualisation not usable)"


# Written unquoted into INI files and job environments.
_SAFE_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?")


def machine_hostname(path: Path | None = None, gethostname=None, getaddrinfo=None) -> str:
    """This machine's name as libvirt reports it for the hypervisor (its virGetHostname).

    A containerised libvirt on the host's network has the host's name and
    ``/etc/hosts``, and nova takes the hypervisor's name from libvirt: a short
    name is resolved to its canonical (often fully qualified) form unless that
    comes back as ``localhost``; a name with a dot, or starting with
    ``localhost``, is kept as it is. Giving nova's and neutron's ``host`` the
    same name lines up ``compute service list``, ``hypervisor list`` and
    ``network agent list``. Raises ConfigError (naming ``path``, the inventory)
    for a name that cannot be used.
    """
    name = (gethostname or socket.gethostname)()
    if not (name.startswith("localhost") or "." in name):
        try:
            resolve = getaddrinfo or socket.getaddrinfo
            canonical = resolve(name, None, socket.AF_UNSPEC, 0, 0, socket.AI_CANONNAME)[0][3]
        except (OSError, IndexError):
            canonical = ""
        if canonical and not canonical.startswith("localhost"):
            name = canonical
    if not _SAFE_HOSTNAME.fullmatch(name):
        raise ConfigError(f"this machine's host name {name!r} cannot name it to OpenStack (letters, digits, "
                          f"'.', '_', '-'): set one with hostnamectl, or name the host in inventory.yml",
                          path=path, key="hosts")
    return name


def _setting(options: dict, key: str, allowed: tuple[str, ...], service: str, path: Path | None) -> str:
    value = options.get(key, "auto")
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)}, got {value!r}", path=path,
                          key=f"services.{service}.{key}")
    return value


def choose_datapath(options: dict, facts: HostFacts, path: Path | None = None) -> Choice:
    """``options``: the ``openvswitch`` entry of ``services:`` in globals.yml (``path``)."""
    setting = _setting(options, "datapath", DATAPATHS, "openvswitch", path)
    if setting != "auto":
        return Choice(setting, "set in globals.yml")
    if facts.openvswitch_module:
        return Choice("system", facts.openvswitch_evidence)
    return Choice("netdev", facts.openvswitch_evidence)


def choose_virt_type(options: dict, facts: HostFacts, path: Path | None = None) -> Choice:
    """``options``: the ``nova-compute`` entry of ``services:`` in globals.yml (``path``)."""
    setting = _setting(options, "virt_type", VIRT_TYPES, "nova-compute", path)
    if setting != "auto":
        return Choice(setting, "set in globals.yml")
    if facts.kvm_usable:
        return Choice("kvm", facts.kvm_evidence)
    return Choice("qemu", facts.kvm_evidence)
