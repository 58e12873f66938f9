"""``dockyard genpwd``: fill passwords.yml with strong random values."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.deploy.site.passwords import DEFAULT_PASSWORD_NAMES, PASSWORDS_FILE, generate_passwords, make_private
from dockyard.deploy.site.loader import CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR, config_dir_from
from dockyard.errors import EXIT_OK

from . import cli


def password_names() -> list[str]:
    """The default names plus every name the service catalogue declares, so a
    deploy never asks for a password genpwd does not make."""
    from dockyard.deploy.wanted.catalogue import load_services   # the catalogue is read only when genpwd runs

    return list(dict.fromkeys([*DEFAULT_PASSWORD_NAMES, *load_services().all_passwords()]))


@click.command()
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CONFIG_DIR_ENV,
              default=str(DEFAULT_CONFIG_DIR), show_default=True,
              help=f"The site's configuration folder (env {CONFIG_DIR_ENV}); created if missing.")
def genpwd(config_dir: Path) -> int:
    """Generate passwords.yml: a strong random value for every password the
    services need. Existing values are never changed; the file is mode 0600.
    No value is ever printed."""
    folder = config_dir_from(config_dir)
    names = password_names()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PASSWORDS_FILE
    old_mode = make_private(path)
    if old_mode is not None:
        click.echo(f"{path} was mode {old_mode:04o} (readable by group or others): now 0600")
    added = generate_passwords(path, names)
    click.echo(f"{len(added)} passwords added, {len(names) - len(added)} already set ({path})")
    return EXIT_OK


# Registered under its name; it replaces an earlier command of the same name.
cli.add_command(genpwd)
