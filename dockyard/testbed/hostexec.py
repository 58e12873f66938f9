"""``exec HOST -- CMD``: a command inside a testbed host, where its services live.

A host's network namespace has a name (``/run/netns/dyk-h<i>``), but its mount
namespace (the private ``/run``, whose ``/run/netns`` holds the namespaces the
Neutron agents and ``dockyard demo`` make) and its UTS namespace (the hostname)
have none: they live as long as the host's dockerd. So a command enters all
three through dockerd's PID, ``nsenter --target PID --net --mount --uts``, the
way the testbed itself starts dockerd with ``nsenter`` rather than ``ip netns
exec`` (which would remount /sys).

nsenter replaces itself with the command (these namespaces need no fork), and
this process replaces itself with nsenter: the exit status is the command's, and
the terminal and signals reach it directly. 126 and 127 are nsenter's own, for a
command it could not run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NoReturn

from . import daemon
from .net import TestbedError
from .plan import Host, PlanError


def enter_argv(pid: int, command: Sequence[str], cwd: str | None = None) -> list[str]:
    """The nsenter command line that runs ``command`` in the namespaces of process
    ``pid``. ``cwd``: where the command starts (nsenter otherwise starts it in /
    of the mount namespace it enters); nsenter opens it before entering, so it
    is the caller's directory."""
    if not command:
        raise PlanError("no command to run: exec HOST -- COMMAND [ARG...]")
    return ["nsenter", f"--target={pid}", "--net", "--mount", "--uts",
            *([f"--wd={cwd}"] if cwd else []), "--", *command]


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:                       # removed under us: start in / then
        return None


def argv_for(host: Host, command: Sequence[str]) -> list[str]:
    """The command line that runs ``command`` inside ``host``, checked: a command
    is given, we are root, the host's dockerd runs (its namespaces are its)."""
    if not command:
        raise PlanError("no command to run: exec HOST -- COMMAND [ARG...]")
    if os.geteuid() != 0:
        raise TestbedError("exec needs root: it enters another process's namespaces (nsenter)")
    pid = daemon.dockerd_pid(host)
    if pid is None:
        raise TestbedError(f"{host.name} is not running (no dockerd, whose namespaces a command enters): "
                           f"python3 -m dockyard.testbed up {host.index}")
    return enter_argv(pid, command, _cwd())


def exec_in(host: Host, command: Sequence[str]) -> NoReturn:
    """Become ``command`` inside ``host`` (see the module's text): never returns."""
    argv = argv_for(host, command)
    os.execvp(argv[0], argv)
