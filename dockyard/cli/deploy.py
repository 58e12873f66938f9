"""Deploy and operate: prechecks, deploy, reconfigure, status, stop,
destroy, post-deploy, genconfig, export compose, up. Each command parses its
options, calls ``dockyard.deploy.api`` and prints; errors become exit codes in
``cli.main``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from dockyard.deploy import api
from dockyard.deploy.execute.executor import RunResult
from dockyard.deploy.files import write_atomic
from dockyard.deploy.plan.planner import Plan
from dockyard.deploy.ops import status as status_view
from dockyard.deploy.ops.prechecks import failed
from dockyard.errors import EXIT_FAILED, EXIT_OK

from . import cli


def say(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


config_dir_option = click.option(
    "--config-dir", type=click.Path(path_type=Path, file_okay=False), envvar="DOCKYARD_CONFIG_DIR",
    default="/etc/dockyard", show_default=True, help="The site's configuration folder (env DOCKYARD_CONFIG_DIR).")


def _services(value: str | None) -> set[str] | None:
    return {s.strip() for s in value.split(",") if s.strip()} if value else None


@cli.command()
@config_dir_option
def prechecks(config_dir: Path):
    """Check the host is ready: configuration, engine, images, free ports,
    memory, kernel modules. Exit 1 when a check fails. Changes nothing."""
    return EXIT_FAILED if failed(api.prechecks(config_dir, say=say)) else EXIT_OK


def _exit_code(result: RunResult | Plan) -> int:
    """A run's exit code; a dry run's plan is a success."""
    return result.exit_code if isinstance(result, RunResult) else EXIT_OK


def _converge(config_dir: Path, services: str | None, dry_run: bool, limit: str | None = None,
              serial: int | None = None, recreate: str | None = None) -> int:
    return _exit_code(api.deploy(config_dir, services=_services(services), dry_run=dry_run, say=say,
                                 limit=_services(limit), serial=serial, recreate=_services(recreate)))


serial_option = click.option(
    "--serial", type=click.IntRange(1), metavar="N",
    help="Roll changes through each service's hosts N at a time, each batch healthy before the next [default: "
         "all at once, or the service's `serial` in services/<service>.yml].")


recreate_option = click.option(
    "--recreate", metavar="A,B",
    help="Services or containers (comma separated: nova-compute, nova_libvirt) recreated on a rebuilt image even "
         "where the packages that matter to them are unchanged; they are otherwise kept running (the "
         "`restart_packages` of services/<service>.yml). Containers whose image did not change are left alone.")


@cli.command()
@config_dir_option
@click.option("--services", metavar="A,B", help="Only these services (comma separated); the others are left alone.")
@click.option("--limit", metavar="H1,H2", help="Only these inventory hosts (comma separated); the others are left "
              "alone and not waited for.")
@serial_option
@recreate_option
@click.option("--dry-run", is_flag=True, help="Print the plan with the reason for each action; change nothing.")
def deploy(config_dir: Path, services: str | None, limit: str | None, serial: int | None, recreate: str | None,
           dry_run: bool):
    """Converge the running containers on the wanted state.

    Compares what runs (image, config files, volumes, environment, command) with
    what is wanted and does only the difference, in dependency order, gated on
    health checks. A second run with nothing changed does nothing.

    A data-plane container (Open vSwitch, libvirt) whose image was rebuilt within
    its release, with none of the packages its process is made of changed, is
    kept running: the plan says so (`keep`), with the versions. --recreate
    recreates it all the same.

    \b
    Exit codes: 0 converged, 1 an action failed, 2 invalid input (nothing
    changed), 3 another run holds the lock, 4 engine unreachable.

    
    Examples:
      dockyard deploy --dry-run
      dockyard deploy --limit cmp1,cmp2 --serial 1     one compute host at a time
      dockyard deploy --recreate nova_libvirt          libvirt on its rebuilt image, guests stopped
    """
    return _converge(config_dir, services, dry_run, limit, serial, recreate)


@cli.command()
@config_dir_option
@click.option("--services", metavar="A,B", help="Only these services (comma separated).")
@click.option("--limit", metavar="H1,H2", help="Only these inventory hosts (comma separated).")
@serial_option
@recreate_option
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def reconfigure(config_dir: Path, services: str | None, limit: str | None, serial: int | None, recreate: str | None,
                dry_run: bool):
    """Apply changed configuration (globals.yml, overrides in config/): only
    the containers whose files or settings changed are recreated."""
    return _converge(config_dir, services, dry_run, limit, serial, recreate)


@cli.command()
@config_dir_option
@click.option("--limit", metavar="H1,H2", help="Only these inventory hosts (comma separated).")
@click.option("--dry-run", is_flag=True, help="Print the pulls; change nothing.")
def pull(config_dir: Path, limit: str | None, dry_run: bool):
    """Pull on every host, from the site's registry and by digest, the images
    its containers need and it lacks, all hosts at once (deploy does the same
    before it creates them). A host that holds them pulls nothing.

    
    Exit codes: 0 every host holds its images, 1 a pull failed, 2 invalid
    input (no registry, an image not pushed), 4 no engine answers.
    """
    result = api.pull(config_dir, dry_run=dry_run, say=say, limit=_services(limit))
    return _exit_code(result)


@cli.command()
@config_dir_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(config_dir: Path, fmt: str):
    """Every container: state, health, image, and whether a deploy would leave
    it alone (if not, why). Then, on a site with keystone, when its fernet keys
    last rotated."""
    rows = api.status(config_dir)
    if fmt == "json":
        click.echo(status_view.to_json(rows))
    else:
        status_view.render(rows)
        for line in api.status_notes(config_dir):
            click.echo(line)
    return EXIT_OK


@cli.command()
@config_dir_option
@click.option("--dry-run", is_flag=True, help="Print the plan with the reason for each action; change nothing.")
def stop(config_dir: Path, dry_run: bool):
    """Stop every container of the site, on every host (volumes and
    configuration stay): each service once those depending on it are stopped,
    independent ones in parallel. `dockyard deploy` starts them again.

    \b
    Exit codes: 0 stopped, 1 an action failed (or a host's engine did not
    answer), 3 another run holds the lock, 4 engine unreachable.
    """
    return _exit_code(api.stop(config_dir, dry_run=dry_run, say=say))


@cli.command()
@config_dir_option
@click.option("--include-volumes", is_flag=True, help="Also remove the named volumes: ALL DATA IS LOST.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the plan with the reason for each action; change nothing "
                                              "(and ask nothing).")
def destroy(config_dir: Path, include_volumes: bool, yes: bool, dry_run: bool):
    """Remove every container of the site, on every host, and what the data
    plane left on the hosts' networks (namespaces, bridge taps); with
    --include-volumes, its data too.

    \b
    Exit codes: 0 removed, 1 an action failed (or a host's engine did not
    answer), 3 another run holds the lock, 4 engine unreachable.
    """
    what = "containers AND VOLUMES (all data)" if include_volumes else "containers (volumes are kept)"
    if not yes and not dry_run:
        click.confirm(f"Remove the site's {what}?", abort=True)
    return _exit_code(api.destroy(config_dir, include_volumes, dry_run=dry_run, say=say))


@cli.command()
@config_dir_option
def demo(config_dir: Path):
    """First steps on a new cloud, offline and idempotent (a second run changes
    nothing): the guest image uploaded to Glance (built from Debian packages if
    missing), flavors m1.tiny and m1.small, a provider network `public`, a
    network `demo-net` with a router to `public`, a security group `demo` (ICMP
    and SSH in), a keypair `demo` (private key in CONFIG_DIR/demo/), and the
    provider network's far side: the network namespace `dockyard-external`,
    from which floating IPs answer, on the first host of the network group
    (this machine on the all-in-one). Prints how to boot a server and reach it.

    \b
    Example:
      dockyard up && dockyard demo
      ip netns exec dockyard-external ssh -i /etc/dockyard/demo/id_ed25519 root@FLOATING_IP hostname
    """
    api.demo(config_dir, say=say)
    return EXIT_OK


@cli.command("post-deploy")
@config_dir_option
def post_deploy(config_dir: Path):
    """Write clouds.yaml (cloud `dockyard`) and admin-openrc.sh, mode 0600."""
    for path in api.post_deploy(config_dir):
        click.echo(f"wrote {path}")
    return EXIT_OK


@cli.command()
@config_dir_option
@click.option("--services", metavar="A,B", help="Only these services' files (comma separated).")
def genconfig(config_dir: Path, services: str | None):
    """Write the generated configuration files only: every service's config
    folder under generated/, as a deploy would write it, without touching any
    container, volume or job. For reviewing a change before `reconfigure`, or
    for running the file from `dockyard export compose`."""
    written, unchanged = api.genconfig(config_dir, _services(services))
    for path in written:
        say(f"wrote {path}")
    say(f"{len(written)} files written, {unchanged} unchanged")
    return EXIT_OK


@cli.group()
def export():
    """Export the site in other formats."""


@export.command("compose")
@config_dir_option
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write to FILE, not stdout.")
def export_compose(config_dir: Path, output: Path | None):
    """A docker compose file with the same containers, volumes and ordering."""
    text = api.export_compose(config_dir)
    if output:
        # 0600, like every file dockyard writes that holds the site's hashes.
        write_atomic(output, text)
        click.echo(f"wrote {output} (mode 0600)")
    else:
        click.echo(text, nl=False)
    return EXIT_OK


@cli.command()
@config_dir_option
@click.option("--threads", type=click.IntRange(1), help="Parallel image builds.")
def up(config_dir: Path, threads: int | None):
    """From a fresh machine to a working cloud: write the all-in-one defaults
    (files that exist are kept), generate missing passwords, build the missing
    images, deploy, and write the client configuration.

    While images build: a line per image finished and, on a terminal, a live
    line below them (done, building, elapsed); in a log, that line every minute."""
    console = Console(highlight=False, soft_wrap=True)
    result = api.up(config_dir, say=say, threads=threads, live=console if console.is_terminal else None)
    return EXIT_FAILED if result is None else result.exit_code


@cli.command()
@config_dir_option
@click.option("--services", metavar="A,B", help="Only these services (comma separated); the others stay as they are.")
@click.option("--dry-run", is_flag=True, help="Print which services move, from which release to which, in which "
                                              "order, with every step; change nothing.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Poll every API while the upgrade runs and report each one's unavailable seconds (needs the "
                   "clouds.yaml that post-deploy writes).")
@serial_option
@click.option("--abandon", is_flag=True, help="Give up the upgrade a killed or failed run left unfinished (its "
                                              "steps not done then never run); change nothing else.")
def upgrade(config_dir: Path, services: str | None, dry_run: bool, probe: bool, serial: int | None, abandon: bool):
    """Move the running site to the release globals.yml now names (`release`,
    `service_releases`), service by service: the infrastructure first, then
    each API before those that call it. Per service: its pre-upgrade check,
    the database's expand and migrate steps while the old code still serves,
    the new containers with their health, then contract and online data
    migrations once no old code runs (docs/upgrades.md).

    Refused, with nothing changed (exit 2): a downgrade, a jump the services do
    not support in one step, a site not converged on the release it runs, a
    killed upgrade whose services are no longer all enabled. A killed upgrade
    continues where it stopped when run again (or is given up: --abandon); once
    done, a second one does nothing.

    While it runs, a probe asks every API (a new token, image, network, server
    and resource provider lists) about three times a second; the report says how
    long each one, and all of them at once, did not answer.

    \b
    Examples:
      dockyard build --release 2026.1        the new release's images first
      dockyard upgrade --dry-run             the order, the versions and the steps
      dockyard upgrade
      dockyard upgrade --serial 1            each service one host at a time (several hosts)
    """
    from dockyard.deploy.upgrade import abandon as abandon_upgrade
    from dockyard.deploy.upgrade import upgrade as run_upgrade

    if abandon:
        if services or dry_run or serial:
            raise click.UsageError("--abandon takes neither --services, --dry-run nor --serial")
        abandon_upgrade(config_dir, say=say)
        return EXIT_OK
    result = run_upgrade(config_dir, services=_services(services), dry_run=dry_run, say=say, probe=probe,
                         serial=serial)
    return result.exit_code if hasattr(result, "exit_code") and not dry_run else EXIT_OK
