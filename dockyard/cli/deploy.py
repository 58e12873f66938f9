"""Deploy and operate: genpwd, prechecks, deploy, reconfigure, status, stop,
destroy, post-deploy, export compose, up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dockyard.deploy import api
from dockyard.deploy.catalogue import load_services
from dockyard.deploy.compose import export_compose
from dockyard.deploy.postdeploy import write_client_config
from dockyard.deploy.prechecks import run_prechecks
from dockyard.deploy.site import config_dir_from, generate_passwords, write_defaults
from dockyard.errors import EXIT_FAILED, EXIT_OK

from . import cli


def say(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


config_dir_option = click.option(
    "--config-dir", type=click.Path(path_type=Path), envvar="DOCKYARD_CONFIG_DIR", default="/etc/dockyard",
    show_default=True, help="The site's configuration folder (env DOCKYARD_CONFIG_DIR).")


@cli.command()
@config_dir_option
def genpwd(config_dir):
    """Generate passwords.yml: a strong random value for every password the
    service catalogue needs. Existing values are never changed. Mode 0600."""
    names = load_services().all_passwords()
    added = generate_passwords(config_dir_from(config_dir) / "passwords.yml", names)
    click.echo(f"{len(added)} passwords generated, {len(names) - len(added)} kept "
               f"({config_dir_from(config_dir) / 'passwords.yml'})")
    return EXIT_OK


@cli.command()
@config_dir_option
def prechecks(config_dir):
    """Check the host is ready: engine, ports, memory, kernel modules."""
    problems = run_prechecks(config_dir_from(config_dir), say)
    return EXIT_FAILED if problems else EXIT_OK


def _services(value: str | None) -> set[str] | None:
    return {s.strip() for s in value.split(",") if s.strip()} if value else None


def _run(config_dir, services, dry_run) -> int:
    result = api.deploy(config_dir_from(config_dir), services=_services(services), dry_run=dry_run, say=say)
    if dry_run:
        return EXIT_OK
    return EXIT_OK if result.ok else EXIT_FAILED


@cli.command()
@config_dir_option
@click.option("--services", help="Only these services (comma separated).")
@click.option("--dry-run", is_flag=True, help="Print the plan with the reason for each action; change nothing.")
def deploy(config_dir, services, dry_run):
    """Converge the running containers on the wanted state.

    Compares what runs (image, config files, volumes, environment, command) with
    what is wanted and does only the difference, in dependency order, gated on
    health checks. A second run with nothing changed does nothing.

    \b
    Exit codes: 0 converged, 1 an action failed, 2 invalid input (nothing
    changed), 3 another run holds the lock, 4 engine unreachable.
    """
    return _run(config_dir, services, dry_run)


@cli.command()
@config_dir_option
@click.option("--services", help="Only these services (comma separated).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
def reconfigure(config_dir, services, dry_run):
    """Apply changed configuration (globals, overrides in config/): only the
    containers whose files changed are recreated."""
    return _run(config_dir, services, dry_run)


@cli.command()
@config_dir_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(config_dir, fmt):
    """Every container: its state, health, image, and whether it is up to date."""
    rows = api.status_rows(config_dir_from(config_dir))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title="dockyard status")
    for col in ("container", "service", "host", "state", "health", "image", "up to date"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["container"], r["service"], r["host"], r["state"], r["health"], r["image"],
                      "yes" if r["up_to_date"] else "[yellow]no[/]")
    Console().print(table)
    return EXIT_OK


@cli.command()
@config_dir_option
def stop(config_dir):
    """Stop every dockyard container (volumes and configuration stay)."""
    api.stop(config_dir_from(config_dir), say=say)
    return EXIT_OK


@cli.command()
@config_dir_option
@click.option("--include-volumes", is_flag=True, help="Also remove the named volumes: ALL DATA IS LOST.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(config_dir, include_volumes, yes):
    """Remove every dockyard container; with --include-volumes, the data too."""
    what = "containers AND VOLUMES (all data)" if include_volumes else "containers (volumes are kept)"
    if not yes:
        click.confirm(f"Remove all dockyard {what}?", abort=True)
    api.destroy(config_dir_from(config_dir), include_volumes, say=say)
    return EXIT_OK


@cli.command("post-deploy")
@config_dir_option
def post_deploy(config_dir):
    """Write clouds.yaml (cloud `dockyard`) and admin-openrc.sh, mode 0600."""
    prepared = api.prepare(config_dir_from(config_dir))
    for path in write_client_config(prepared.site):
        click.echo(f"wrote {path}")
    return EXIT_OK


@cli.group()
def export():
    """Export the site in other formats."""


@export.command("compose")
@config_dir_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of stdout.")
def export_compose_cmd(config_dir, output):
    """A docker compose file with the same containers, volumes and ordering."""
    prepared = api.prepare(config_dir_from(config_dir))
    text = export_compose(prepared.wanted)
    if output:
        output.write_text(text)
    else:
        click.echo(text)
    return EXIT_OK


@cli.command()
@config_dir_option
@click.option("--threads", type=click.IntRange(1), help="Parallel image builds.")
def up(config_dir, threads):
    """From a fresh machine to a working cloud: write the all-in-one defaults
    (when there is no configuration), build the images that are missing, generate
    passwords, deploy, and write the client configuration."""
    from dockyard.deploy.bootstrap_site import up as run_up

    return EXIT_OK if run_up(config_dir_from(config_dir), threads=threads, say=say) else EXIT_FAILED
