"""The ``dockyard`` command: a thin shell over the library.

Each command group lives in its own module and only parses options, calls the
library, and turns errors into messages and exit codes.
"""

from __future__ import annotations

import sys

import click

from dockyard import __version__
from dockyard.errors import DockyardError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dockyard")
def cli() -> None:
    """Build OpenStack container images and deploy them, convergently.

    \b
    Typical use on a fresh machine:
      dockyard up                 build what is missing, deploy an all-in-one cloud
    Step by step:
      dockyard build              build the image catalogue (see: dockyard build --help)
      dockyard genpwd             generate passwords.yml
      dockyard prechecks          check the host is ready
      dockyard deploy --dry-run   show what would change
      dockyard deploy             converge the running containers on the wanted state
      dockyard post-deploy        write clouds.yaml and admin-openrc.sh
    """


def _register() -> None:
    # Import command modules for their side effect of adding commands to ``cli``.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def main() -> None:
    _register()
    run(cli)


def run(group: click.Group) -> None:
    """Run a command group and leave as every dockyard command does: the exit
    code the command returned, or the one its error carries (docs/cli.md), with
    a message and no traceback. The testbed's command leaves this way too."""
    try:
        # Commands return their exit code (an int) or None for success.
        rv = group(standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DockyardError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
