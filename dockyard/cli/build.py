"""``dockyard build`` and ``dockyard images``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.tree import Tree

from dockyard.build.builder import Builder, BuildOptions
from dockyard.build.catalogue import PROFILES, load_catalogue
from dockyard.build.config import load_build_config
from dockyard.build.packages import diff_tags
from dockyard.build.report import print_table, to_json
from dockyard.build.scheduler import Event
from dockyard.engine import connect
from dockyard.errors import EXIT_FAILED, EXIT_OK

from . import cli

err = Console(stderr=True, highlight=False)


class Progress:
    """One line per event on stderr: '[ 3/24] keystone  built in 41.2s'."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            err.print(f"[{self.done:>3}/{self.total}] {event.image:<28} building (attempt {event.attempt})")
            return
        self.done += 1
        o = event.outcome
        detail = f"in {o.seconds:.1f}s" if o.status in ("built", "failed") else ""
        if o.error:
            detail += f": {o.error[:200]}"
        err.print(f"[{self.done:>3}/{self.total}] {event.image:<28} {o.status} {detail}")


@cli.command()
@click.argument("patterns", nargs=-1, metavar="[IMAGE-REGEX]...")
@click.option("--profile", "profiles", multiple=True, type=click.Choice(PROFILES),
              help="Build a named set of images (repeatable).")
@click.option("--threads", type=click.IntRange(1), help="Parallel builds [default: core count].")
@click.option("--retries", type=click.IntRange(0), help="Retries for a failing image [default: 1].")
@click.option("--tag", help="Image tag [default: 2025.1].")
@click.option("--namespace", help="Image namespace [default: dockyard].")
@click.option("--registry", help="Registry host:port prefixed to image names.")
@click.option("--push", is_flag=True, help="Push each image after it is built.")
@click.option("--skip-existing", is_flag=True, help="Keep any image whose tag exists, whatever its hash.")
@click.option("--no-cache", is_flag=True, help="Rebuild every selected image from scratch.")
@click.option("--rebuild-rootfs", is_flag=True, help="Run debootstrap again even if the rootfs is current.")
@click.option("--template-override", "overrides", multiple=True, type=click.Path(path_type=Path),
              help="Jinja2 template extending parent_template and replacing blocks (repeatable, chained).")
@click.option("--template-only", is_flag=True, help="Render Dockerfiles and contexts into --work-dir; build nothing.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=Path("/var/lib/dockyard/build"),
              show_default=True, help="Where build contexts (and logs) go.")
@click.option("--logs-dir", type=click.Path(path_type=Path), help="Per-image build logs [default: WORK_DIR/logs].")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="Build configuration [default: $DOCKYARD_CONFIG_DIR/build.yml if present].")
@click.option("--catalogue", type=click.Path(path_type=Path), help="Image catalogue folder [default: images/].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def build(patterns, profiles, threads, retries, tag, namespace, registry, push, skip_existing, no_cache,
          rebuild_rootfs, overrides, template_only, work_dir, logs_dir, config_file, catalogue, fmt):
    """Build the image catalogue: the base from debootstrap, then every image, in
    dependency order, each as soon as its parent is ready.

    Images whose rendered template and context are unchanged are reported cached
    and not rebuilt. Exit 0 when everything is built or cached, 1 when anything
    failed, 2 on invalid input (nothing is built).

    \b
    Examples:
      dockyard build                          everything
      dockyard build --profile infra          infrastructure images and their parents
      dockyard build 'nova-.*' keystone       by regular expression
      dockyard build --template-override site.j2 --tag 2025.1-site
      dockyard build --template-only --work-dir /tmp/contexts
    """
    cat = load_catalogue(catalogue)
    config = load_build_config(config_file, set(cat.images))
    updates = {k: v for k, v in dict(threads=threads, retries=retries, tag=tag, namespace=namespace,
                                      registry=registry).items() if v is not None}
    config = config.model_copy(update=updates)
    options = BuildOptions(patterns=list(patterns), profiles=list(profiles), overrides=list(overrides),
                           work_dir=work_dir, logs_dir=logs_dir, push=push, skip_existing=skip_existing,
                           no_cache=no_cache, rebuild_rootfs=rebuild_rootfs)
    if template_only:
        builder = Builder(None, config, cat, options)
        for path in builder.render_to(work_dir):
            click.echo(str(path))
        return EXIT_OK
    engine = connect()
    engine.ping()
    builder = Builder(engine, config, cat, options)
    report = builder.run(on_event=Progress(len(builder.selected)))
    if fmt == "json":
        click.echo(to_json(report))
    else:
        print_table(report, Console())
    return EXIT_OK if report.ok else EXIT_FAILED


@cli.group(invoke_without_command=True)
@click.option("--catalogue", type=click.Path(path_type=Path), help="Image catalogue folder [default: images/].")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="Build configuration file.")
@click.pass_context
def images(ctx, catalogue, config_file):
    """Show the image catalogue as a tree, with what the engine holds.

    \b
    Subcommands:
      dockyard images diff TAG_A TAG_B   compare two tags package by package
    """
    ctx.obj = (catalogue, config_file)
    if ctx.invoked_subcommand:
        return
    cat = load_catalogue(catalogue)
    config = load_build_config(config_file, set(cat.images))
    try:
        engine = connect()
        engine.ping()
    except Exception:
        engine = None
    from dockyard.build.render import Renderer
    from dockyard.build.rootfs import rootfs_hash

    rendered = Renderer(cat, config).render_all(cat.topological(), rootfs_hash(config))

    def label(name: str) -> str:
        img = cat.images[name]
        profiles = f" [dim]({', '.join(img.meta.profiles)})[/]" if img.meta.profiles else ""
        state = ""
        if engine is not None:
            info = engine.image(config.ref(name))
            if info is None:
                state = " [yellow]not built[/]"
            elif info.labels.get("dockyard.hash") == rendered[name].hash:
                state = " [green]current[/]"
            else:
                state = " [cyan]outdated[/]"
        return f"{name}{profiles}{state}"

    tree = Tree(f"rootfs (debootstrap {config.base.suite})")
    nodes = {}
    for name in cat.topological():
        parent = cat.images[name].parent
        nodes[name] = (nodes[parent] if parent else tree).add(label(name))
    Console().print(tree)
    return EXIT_OK


@images.command("diff")
@click.argument("tag_a")
@click.argument("tag_b")
@click.pass_obj
def images_diff(obj, tag_a, tag_b):
    """Compare the installed packages of two tags, image by image."""
    catalogue, config_file = obj
    cat = load_catalogue(catalogue)
    config = load_build_config(config_file, set(cat.images))
    engine = connect()
    diffs = diff_tags(engine, config.namespace, cat.topological(), tag_a, tag_b, config.registry)
    if not diffs:
        click.echo(f"no image exists under both tags {tag_a} and {tag_b}", err=True)
        return EXIT_FAILED
    for d in diffs:
        if d.empty:
            click.echo(f"{d.image}: identical")
            continue
        click.echo(f"{d.image}:")
        for name, version in sorted(d.added.items()):
            click.echo(f"  + {name} {version}")
        for name, version in sorted(d.removed.items()):
            click.echo(f"  - {name} {version}")
        for name, (va, vb) in sorted(d.changed.items()):
            click.echo(f"  ~ {name} {va} -> {vb}")
    return EXIT_OK
