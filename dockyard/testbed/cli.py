"""``python3 -m dockyard.testbed``: the command line of the testbed."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from dockyard.cli import run

from .plan import (
    DEFAULT_STATE_DIR,
    DEFAULT_SUBNET,
    DEFAULT_TUNNEL_SUBNET,
    Layout,
    Subnet,
    docker_env,
    parse_host,
)
from .testbed import Testbed


def _testbed(ctx: click.Context) -> Testbed:
    o = ctx.obj
    return Testbed(Layout(Path(o["state_dir"])), Subnet.parse(o["subnet"]) if o["subnet"] else None,
                   o["storage_driver"], Subnet.parse(o["tunnel_subnet"]) if o["tunnel_subnet"] else None)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--state-dir", default=str(DEFAULT_STATE_DIR), show_default=True,
              envvar="DOCKYARD_TESTBED_DIR", help="Where certificates, daemon data and logs live.")
@click.option("--subnet", default=None, envvar="DOCKYARD_TESTBED_SUBNET",
              help=f"The private /24 the hosts share (default {DEFAULT_SUBNET}, or the one in use).")
@click.option("--storage-driver", default=None, envvar="DOCKYARD_TESTBED_STORAGE_DRIVER",
              help="Storage driver of the hosts' engines (default fuse-overlayfs, as the machine's).")
@click.option("--tunnel-subnet", default=None, envvar="DOCKYARD_TESTBED_TUNNEL_SUBNET",
              help=f"The private /24 of the hosts' second link, eth1: the tunnel network "
                   f"(default {DEFAULT_TUNNEL_SUBNET}, or the one in use).")
@click.pass_context
def cli(ctx: click.Context, state_dir: str, subnet: str | None, storage_driver: str | None,
        tunnel_subnet: str | None) -> None:
    """Several Docker Engine "hosts" on this one machine, for multi-host tests.

    Host dyk-h<i> is a network namespace with its own dockerd (and containerd),
    its own mount and UTS namespaces (private /run, hostname dyk-h<i>), at
    address 10.113.0.(10+i) on a private /24 shared by the hosts only. Its engine
    listens on tcp://ADDRESS:2376, TLS with client certificates, and on a unix
    socket in its state folder. The root namespace (you, the tests, dockyard)
    is 10.113.0.1 on link dyk-root. A second link, eth1, joins the hosts on a
    tunnel network of their own (10.114.0.0/24; host i is meant to use
    10.114.0.(10+i) there, on the Open vSwitch bridge a deployment makes), left
    without an address. Needs root. See docs/testbed.md.

    \b
    Examples:
      python3 -m dockyard.testbed up 2          two hosts, waits until both answer
      python3 -m dockyard.testbed status        what runs, what answers
      eval "$(python3 -m dockyard.testbed env dyk-h1)"; docker info
      python3 -m dockyard.testbed load dockyard/base:2025.1
      python3 -m dockyard.testbed exec dyk-h1 -- ip -br addr    a command inside a host
      python3 -m dockyard.testbed down          remove everything, leave nothing
    """
    ctx.obj = {"state_dir": state_dir, "subnet": subnet, "storage_driver": storage_driver,
               "tunnel_subnet": tunnel_subnet}


@cli.command()
@click.argument("count", type=click.IntRange(min=1))
@click.option("--timeout", default=90.0, show_default=True,
              help="Seconds to wait for the engines to answer.")
@click.pass_context
def up(ctx: click.Context, count: int, timeout: float) -> None:
    """Make hosts dyk-h1..dyk-h<COUNT> exist and answer.

    Idempotent: again with the same COUNT changes nothing, with a larger one adds
    hosts, after a killed run finishes what is missing. Hosts beyond COUNT are
    left as they are (remove them with `down dyk-h<i>`).

    \b
    Example:
      python3 -m dockyard.testbed up 3
    """
    started = time.monotonic()
    hosts, changes = _testbed(ctx).up(count, timeout=timeout)
    for line in changes:
        click.echo(f"  {line}", err=True)
    click.echo(f"{len(changes)} change(s) in {time.monotonic() - started:.1f} s", err=True)
    click.echo(_table([[h.name, h.address, h.engine_url, h.tunnel_address] for h in hosts],
                      ["HOST", "ADDRESS", "ENGINE", "TUNNEL ADDRESS"]))


@cli.command()
@click.argument("hosts", nargs=-1)
@click.pass_context
def down(ctx: click.Context, hosts: tuple[str, ...]) -> None:
    """Stop and remove HOSTS (default: all, with the switch, the certificates and
    the state folder).

    Ends each host's dockerd, its containerd and containers, then deletes its
    namespace, veths, cgroups and files. Leaves nothing behind; safe to repeat.

    \b
    Examples:
      python3 -m dockyard.testbed down
      python3 -m dockyard.testbed down dyk-h3
    """
    started = time.monotonic()
    indexes = [parse_host(h) for h in hosts] or None
    changes = _testbed(ctx).down(indexes)
    for line in changes:
        click.echo(f"  {line}", err=True)
    click.echo(f"{len(changes)} change(s) in {time.monotonic() - started:.1f} s", err=True)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Every host: its namespace, its dockerd, whether its engine answers over TLS."""
    rows = _testbed(ctx).status()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no testbed hosts")
        return
    yes = {True: "yes", False: "no", None: "-"}
    click.echo(_table([[r["host"], r["address"], r["engine"], yes[r["namespace"]], r["pid"] or "-",
                        yes[r["answers"]], "-" if r["containers"] is None else r["containers"],
                        "-" if r["images"] is None else r["images"], r["tunnel_address"]] for r in rows],
                      ["HOST", "ADDRESS", "ENGINE", "NETNS", "DOCKERD", "ANSWERS", "RUNNING", "IMAGES",
                       "TUNNEL ADDRESS"]))


@cli.command()
@click.argument("host")
@click.option("--format", "fmt", type=click.Choice(["shell", "json"]), default="shell", show_default=True)
@click.pass_context
def env(ctx: click.Context, host: str, fmt: str) -> None:
    """How to reach HOST's engine: DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH.

    Understood by the docker CLI and by the Docker SDK's docker.from_env().

    \b
    Examples:
      eval "$(python3 -m dockyard.testbed env dyk-h1)"; docker ps
      python3 -m dockyard.testbed env 2 --format json
    """
    h = _testbed(ctx).host(parse_host(host))
    values = docker_env(h)
    if fmt == "json":
        click.echo(json.dumps({**values, "unix_socket": h.socket_url, "address": h.address,
                               "tunnel_address": h.tunnel_address}, indent=2))
        return
    for key, value in values.items():
        click.echo(f"export {key}={shlex.quote(value)}")


@cli.command()
@click.argument("image")
@click.option("--host", "hosts", multiple=True, help="Only this host (repeatable); default all.")
@click.option("--from", "source", default="unix:///var/run/docker.sock", show_default=True,
              help="The engine the image is read from (it is only read).")
@click.pass_context
def load(ctx: click.Context, image: str, hosts: tuple[str, ...], source: str) -> None:
    """Copy IMAGE from the machine's engine into the hosts that lack it.

    The hosts reach no registry: this is how they get images (docker save
    streamed into docker load, through the SDK). A host already holding the
    same image id is skipped.

    \b
    Example:
      python3 -m dockyard.testbed load dockyard/base:2025.1
    """
    indexes = [parse_host(h) for h in hosts] or None
    for line in _testbed(ctx).load_image(image, indexes, source):
        click.echo(line)


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_command(ctx: click.Context, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside HOST: in its network, mount and UTS namespaces, as
    its containers with host networking see the machine.

    There the host's eth0 and lo are the only links, /run is the host's own
    (/run/netns holds the namespaces its Neutron agents and `dockyard demo`
    make) and the hostname is dyk-h<i>; every other file is this machine's. The
    command starts in the current directory. Everything after HOST is the
    command, options included; `--` before it is allowed. Needs root and the
    host up (the namespaces are its dockerd's: nsenter --target PID).

    Exit code: the command's (126 or 127: it could not be run); 1 when the host
    is not up, 2 for an unknown host or no command.

    \b
    Examples:
      python3 -m dockyard.testbed exec dyk-h1 -- ip -br addr
      python3 -m dockyard.testbed exec 2 -- ping -c 1 10.113.0.11
      python3 -m dockyard.testbed exec dyk-h1 -- ip netns list
      python3 -m dockyard.testbed exec dyk-h1 -- ip netns exec dockyard-external ping -c 3 FLOATING_IP
      python3 -m dockyard.testbed exec dyk-h1 -- ip netns exec dockyard-external \\
          ssh -i /etc/dockyard/demo/id_ed25519 root@FLOATING_IP hostname
    """
    from . import hostexec

    # Parsing stops at HOST, so a `--` after it arrives as the command's first word.
    if command[:1] == ("--",):
        command = command[1:]
    hostexec.exec_in(_testbed(ctx).host(parse_host(host)), command)


def main() -> None:
    run(cli)
