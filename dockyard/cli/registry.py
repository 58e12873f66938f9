"""``dockyard registry up|down|status``: the site's registry on this machine
(the library: :mod:`dockyard.registry.service`)."""

from __future__ import annotations

from pathlib import Path

import click

import dockyard.engine
from dockyard.deploy import api
from dockyard.errors import EXIT_FAILED, EXIT_OK
from dockyard.registry import service

from . import cli
from .deploy import _exit_code, config_dir_option, say


def _site(config_dir: Path):
    return api.load(Path(config_dir), need_passwords=False)


@cli.group()
def registry():
    """The site's image registry, on this machine: images reach the other
    hosts through it, pulled by digest (globals.yml `registry:`; docs/registry.md).

    \b
    Examples:
      dockyard build '^registry$' && dockyard registry up
      dockyard build --push            push the catalogue (unchanged images move nothing)
      dockyard pull                    every host pulls what it lacks
      dockyard registry status
      dockyard registry down [--purge]
    """


@registry.command("up")
@config_dir_option
@click.option("--dry-run", is_flag=True, help="Print the registry's plan; change nothing.")
def registry_up(config_dir: Path, dry_run: bool):
    """Run the registry (HTTPS, the site's CA made in the state folder) as the
    container dockyard_registry, its storage the volume dockyard_registry; this
    machine's engine trusts it. A second run changes nothing."""
    site, catalogue = _site(config_dir)
    result = service.up(site, catalogue, dockyard.engine.connect(site.globals.engine), say=say, dry_run=dry_run)
    return _exit_code(result)


@registry.command("down")
@config_dir_option
@click.option("--purge", is_flag=True, help="Also remove its storage (every pushed image), its certificates and "
              "this machine's trust in it.")
def registry_down(config_dir: Path, purge: bool):
    """Remove the registry's container (its storage stays unless --purge)."""
    site, catalogue = _site(config_dir)
    service.down(site, catalogue, dockyard.engine.connect(site.globals.engine), say=say, purge=purge)
    return EXIT_OK


@registry.command("status")
@config_dir_option
def registry_status(config_dir: Path):
    """The registry's container and whether it answers over HTTPS. Exit 1 when it does not."""
    site, catalogue = _site(config_dir)
    st = service.status(site, catalogue, dockyard.engine.connect(site.globals.engine))
    health = f", {st.health}" if st.health else ""
    say(f"registry {st.url}: container {st.container} {st.state}{health}; answers: {st.answers}")
    say(f"CA: {st.ca} (other hosts: /etc/docker/certs.d/{st.url}/ca.crt)")
    return EXIT_OK if st.answers == "yes" else EXIT_FAILED
