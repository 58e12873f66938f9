"""``dockyard genpwd``: fill passwords.yml with strong random values; ``dockyard
rotate-fernet``: rotate keystone's token keys."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.deploy.site.passwords import (DEFAULT_PASSWORD_NAMES, PASSWORDS_FILE, generate_passwords, make_private,
                                            rotate_all_names, rotate_passwords)
from dockyard.deploy.site.fernet import FERNET_SECRET, fernet_path
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
@click.option("--rotate", "rotate", multiple=True, metavar="NAME",
              help="Give this secret a new random value (repeat for several); the old file is kept as a 0600 backup.")
@click.option("--rotate-all", is_flag=True, help="Give every secret a new random value (dockyard_hash_key aside).")
def genpwd(config_dir: Path, rotate: tuple[str, ...], rotate_all: bool) -> int:
    """Generate passwords.yml: a strong random value for every password the
    services need. Existing values are never changed; the file is mode 0600.
    No value is ever printed.

    With --rotate NAME (or --rotate-all), the named secrets get new random
    values instead, and nothing else changes: the old file is kept beside it
    (passwords.yml.<time>.bak, 0600). `dockyard deploy` then carries them to
    every place they are used (docs/secrets.md). An unknown name, or a secret
    that cannot change in place, is refused (exit 2) with nothing changed.

    \b
    Examples:
      dockyard genpwd --rotate glance_keystone_password && dockyard deploy
      dockyard genpwd --rotate-all && dockyard deploy
    """
    folder = config_dir_from(config_dir)
    names = password_names()
    path = folder / PASSWORDS_FILE
    if rotate or rotate_all:
        if rotate and rotate_all:
            raise click.UsageError("--rotate and --rotate-all: one or the other")
        chosen = list(rotate)
        if rotate_all:
            chosen, left_out = rotate_all_names(names)
            for name, why in left_out.items():
                click.echo(f"{name} left as it is: {why}")
        rotated, backup = rotate_passwords(path, chosen, names)
        click.echo(f"{len(rotated)} secrets given new values in {path}: {', '.join(rotated)}")
        click.echo(f"the old file is kept as {backup} (mode 0600; delete it once the deploy has carried them)")
        click.echo(f"now run: dockyard deploy --config-dir {folder}")
        return EXIT_OK
    folder.mkdir(parents=True, exist_ok=True)
    old_mode = make_private(path)
    if old_mode is not None:
        click.echo(f"{path} was mode {old_mode:04o} (readable by group or others): now 0600")
    added = generate_passwords(path, names)
    keys = FERNET_SECRET in added
    passwords = [n for n in names if n != FERNET_SECRET]
    count = len(added) - keys
    click.echo(f"{count} passwords added, {len(passwords) - count} already set ({path})")
    if keys:
        click.echo(f"keystone's fernet keys made in {fernet_path(path)} (mode 0600)")
    return EXIT_OK


# Registered under its name; it replaces an earlier command of the same name.
cli.add_command(genpwd)


@click.command("rotate-fernet")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CONFIG_DIR_ENV,
              default=str(DEFAULT_CONFIG_DIR), show_default=True,
              help=f"The site's configuration folder (env {CONFIG_DIR_ENV}).")
@click.option("--force", is_flag=True, help="Rotate even if the last rotation is not deployed yet (tokens that "
                                            "keystone signs meanwhile may be refused): for a site whose deploy "
                                            "cannot run.")
def rotate_fernet(config_dir: Path, force: bool) -> int:
    """Rotate keystone's fernet token keys (fernet-keys.yml, 0600), as
    keystone-manage fernet_rotate does: the staged key, which every keystone
    already holds, becomes the primary; a new staged key is made; the oldest
    secondary keys go beyond `max_active_keys` (globals.yml, services.keystone).
    Tokens issued before keep validating until they expire. No key is printed.

    `dockyard deploy` then carries the keys to every keystone host. Refused
    (exit 2, nothing changed) while the last rotation is not deployed.
    Run both periodically (docs/secrets.md):

    \b
    Example:
      dockyard rotate-fernet && dockyard deploy
    """
    from dockyard.deploy import api          # the deploy library is loaded only when this command runs

    folder = config_dir_from(config_dir)
    done = api.rotate_fernet(folder, force=force)
    pruned = f"; dropped key{'s' if len(done.pruned) > 1 else ''} {', '.join(map(str, done.pruned))}" \
        if done.pruned else ""
    click.echo(f"keystone's fernet keys rotated in {done.path}: key {done.after.primary} (the staged key) is the "
               f"primary, a new staged key 0 is made, {len(done.after.keys)} keys kept (max_active_keys "
               f"{done.max_active_keys}){pruned}")
    click.echo(f"now run: dockyard deploy --config-dir {folder}")
    return EXIT_OK


cli.add_command(rotate_fernet)
