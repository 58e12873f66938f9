"""``dockyard build``, ``dockyard images`` and ``dockyard images diff``.

Options are parsed here; the work is :mod:`dockyard.image`. Errors are raised
(ConfigError: exit 2, EngineUnavailable: exit 4, EngineError: exit 1) and turned into messages by
``dockyard.cli.main``.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

import dockyard.engine
from dockyard.image.builder import BUILD, Builder, BuildOptions, Plan
from dockyard.image.catalogue import Catalogue, load_catalogue
from dockyard.image.config import BuildConfig, load_build_config
from dockyard.labels import LABEL_IMAGE_HASH
from dockyard.image.packages import diff_tags, format_diff
from dockyard.image.progress import BuildProgress, Display
from dockyard.image.report import print_table, to_json
from dockyard.image.rootfs import is_current
from dockyard.image.scheduler import DONE, START, Event
from dockyard.errors import EXIT_FAILED, EXIT_OK, ConfigError
from dockyard.deploy.wanted.catalogue import load_services
from dockyard.releases import ReleaseDef, load_releases

from . import cli

DEFAULT_WORK_DIR = Path("/var/lib/dockyard/build")


def _connect():
    # Looked up at call time, so tests can hand in a fake engine.
    engine = dockyard.engine.connect()
    engine.ping()
    return engine


class Progress:
    """One line per event on stderr:

    \b
    [ 3/24] keystone-base             building (attempt 1)
    [ 3/24] keystone-base             built in 41.2s
    """

    def __init__(self, total: int, console: Console):
        self.total = total
        self.console = console
        self.numbers: dict[str, int] = {}

    def _prefix(self, image: str) -> str:
        if image not in self.numbers:
            self.numbers[image] = len(self.numbers) + 1
        width = len(str(self.total))
        return f"[{self.numbers[image]:>{width}}/{self.total}] {image:<28}"

    def __call__(self, event: Event) -> None:
        if event.kind not in (START, DONE):
            return
        prefix = self._prefix(event.image)
        if event.kind == START:
            retry = f"; attempt {event.attempt - 1} failed: {event.error.splitlines()[-1][:160]}" if event.error else ""
            self.console.print(escape(f"{prefix} building (attempt {event.attempt}{retry})"))
            return
        o = event.outcome
        if o is None:                    # only `done` events carry one, and every one does
            return
        line = f"{prefix} {o.status}"
        if o.attempts:
            line += f" in {o.seconds:.1f}s"
        if o.error:
            line += f": {o.error.splitlines()[-1][:200]}"
        self.console.print(escape(line))


def _summary(plan: Plan) -> str:
    counts: dict[str, int] = {}
    for p in plan.images.values():
        counts[p.action] = counts.get(p.action, 0) + 1
    parts = [f"{counts.get(BUILD, 0)} to build", f"{counts.get('cached', 0)} cached",
             f"{counts.get('skipped', 0)} skipped"]
    rootfs = {BUILD: "to make with debootstrap", "cached": "current", None: "not needed"}[plan.rootfs_action]
    return f"{len(plan.images)} images: {', '.join(parts)}; root filesystem {plan.rootfs_ref} {rootfs}"


def _load(catalogue_dir: Path | None, config_file: Path | None, release: str | None = None,
          **options) -> tuple[Catalogue, BuildConfig]:
    catalogue = load_catalogue(catalogue_dir)
    config = load_build_config(config_file, set(catalogue.images))
    if release is not None:
        config = release_config(config, load_releases().get(release, key="--release"))
    return catalogue, config.override(**options)


def release_config(config: BuildConfig, release: ReleaseDef) -> BuildConfig:
    """The build configuration of a release (images/releases.yml): its suite, how
    debootstrap makes it, the apt options it needs, its tag. The mirror, variant
    and components stay the configuration's; --tag still overrides the tag."""
    base = {**config.base.model_dump(), "suite": release.suite, "script": release.debootstrap_script,
            "apt_options": list(release.apt_options)}
    return config.override(base=base, tag=release.tag)


def held_back(catalogue: Catalogue, release: ReleaseDef) -> frozenset[str]:
    """The images a build of ``release`` leaves out: those only services that stay
    on an older release use (glance's on 2026.1), and those pinned to another
    release (the guest image: ``pinned_images``)."""
    releases = load_releases()
    pinned = {image for image, own in releases.pinned_images.items() if own != release.name}
    if not release.services:
        return frozenset(pinned)
    services = load_services()
    images_of = {name: svc.images() for name, svc in services.services.items()}
    parents = {name: image.parent for name, image in catalogue.images.items()}
    return frozenset(releases.held_images(release.name, images_of, parents)) | pinned


catalogue_option = click.option(
    "--catalogue", "catalogue_dir", type=click.Path(path_type=Path, file_okay=False),
    help="The image catalogue folder [default: images/ of the dockyard source tree].")
config_option = click.option(
    "--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
    help="Build configuration [default: $DOCKYARD_CONFIG_DIR/build.yml (/etc/dockyard/build.yml) if present].")
namespace_option = click.option("--namespace", help="Image namespace [default: dockyard, or build.yml].")
registry_option = click.option("--registry", help="Registry host[:port] put before image names [default: none].")


@cli.command()
@click.argument("patterns", nargs=-1, metavar="[IMAGE-REGEX]...")
@click.option("--profile", "profiles", multiple=True, metavar="NAME",
              help="Build a named set of images, e.g. infra, core, compute, all (repeatable; see: dockyard images).")
@click.option("--threads", type=click.IntRange(1),
              help="Images built at once [default: build.yml, else the core count].")
@click.option("--retries", type=click.IntRange(0), help="Retries of a failing image [default: 1, or build.yml].")
@click.option("--tag", help="Image tag [default: 2025.1, or build.yml; with --release, the release's].")
@click.option("--release", metavar="NAME",
              help="Build this OpenStack release (images/releases.yml): its Debian suite and tag [default: "
                   "build.yml's suite and tag].")
@namespace_option
@registry_option
@click.option("--push", is_flag=True, help="Push each image (built ones after their build): to the registry its name "
              "carries (--registry), else to the site's (globals.yml `registry:`, `dockyard registry up`), by "
              "digest; an image the registry holds already is not sent again.")
@click.option("--config-dir", "site_dir", type=click.Path(path_type=Path, file_okay=False),
              envvar="DOCKYARD_CONFIG_DIR", default="/etc/dockyard", show_default=True,
              help="The site whose registry --push pushes to (env DOCKYARD_CONFIG_DIR).")
@click.option("--skip-existing", is_flag=True, help="Keep any image whose tag exists, whatever its hash.")
@click.option("--no-cache", is_flag=True, help="Rebuild every selected image, without the engine's layer cache.")
@click.option("--rebuild-rootfs", is_flag=True,
              help="Run debootstrap again (fresh packages) and rebuild the selected images on it.")
@click.option("--template-override", "overrides", multiple=True, metavar="FILE",
              type=click.Path(path_type=Path, dir_okay=False),
              help="A template that extends parent_template and replaces blocks (repeatable; each extends "
                   "the one before).")
@click.option("--template-only", is_flag=True,
              help="Render each Dockerfile and build context into WORK_DIR/<image>; build nothing, no engine needed.")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_WORK_DIR,
              show_default=True, help="Build contexts, the debootstrap scratch folder and logs.")
@click.option("--logs-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Per-image build logs, <image>.log [default: WORK_DIR/logs].")
@config_option
@catalogue_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="The summary on stdout (json: see docs/build.md).")
def build(patterns, profiles, threads, retries, tag, release, namespace, registry, push, site_dir, skip_existing,
          no_cache, rebuild_rootfs, overrides, template_only, work_dir, logs_dir, config_file, catalogue_dir, fmt):
    """Build the image catalogue: the root filesystem with debootstrap, then
    each selected image (and its parents), in parallel, each as soon as its
    parent is ready.

    An image whose rendered Dockerfile, files and parent are unchanged since it
    was built is cached, not rebuilt. A failing image is retried; then the
    images built on it are reported unbuildable and everything else still builds.

    IMAGE-REGEX is searched in image names: 'nova' selects every nova image,
    '^nova-api$' just one. With no regex and no --profile, everything is built.

    \b
    Examples:
      dockyard build                               the whole catalogue
      dockyard build --profile infra               mariadb, rabbitmq, memcached... and their parents
      dockyard build '^keystone$' 'nova-.*'        by regular expression
      dockyard build --threads 4 --retries 2
      dockyard build --template-override site.j2 --tag 2025.1-site
      dockyard build --release 2026.1 '^keystone$'  the next release's keystone, from its suite
      dockyard build --push                        to the site's registry (dockyard registry up)
      dockyard build --registry 127.0.0.1:5000 --push
      dockyard build --template-only --work-dir /tmp/contexts
      dockyard build --format json > report.json

    \b
    Exit status: 0 every image built, cached or skipped; 1 something failed or
    was unbuildable; 2 invalid input (nothing was built); 4 no engine.
    """
    catalogue, config = _load(catalogue_dir, config_file, release, threads=threads, retries=retries, tag=tag,
                              namespace=namespace, registry=registry)
    exclude = held_back(catalogue, load_releases().get(release)) if release else frozenset()
    options = BuildOptions(patterns=list(patterns), profiles=list(profiles), overrides=list(overrides),
                           work_dir=work_dir, logs_dir=logs_dir, push=push, skip_existing=skip_existing,
                           no_cache=no_cache, rebuild_rootfs=rebuild_rootfs, exclude=exclude)
    selected = catalogue.select(options.patterns, options.profiles)
    if exclude and not [n for n in selected if n not in exclude]:
        left_out = ", ".join(sorted(exclude & set(selected)))
        raise ConfigError(f"release {release} builds none of the selected images: {left_out} stay on an older "
                          f"release or are pinned to another one (images/releases.yml)", key="--release")
    if template_only:
        builder = Builder(None, config, catalogue, options)
        for path in builder.render_to(work_dir):
            click.echo(str(path))
        return EXIT_OK
    builder = Builder(None, config, catalogue, options)  # validates everything before the engine is touched
    if push and not config.registry:
        options.push_to = site_registry(site_dir)
    builder.engine = _connect()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    plan = builder.plan()
    err.print(escape(_summary(plan)))
    model = BuildProgress.of(plan)
    # Progress goes where the event lines go (stderr): stdout stays the summary alone.
    display = Display(model, Progress(model.total, err), lambda line: err.print(escape(line)),
                      live=err if err.is_terminal else None)
    with display:
        report = builder.run(on_event=display, plan=plan, tick=display.tick)
    if fmt == "json":
        click.echo(to_json(report))
    else:
        print_table(report, Console(highlight=False, soft_wrap=True))
    if not report.ok:
        err.print(f"logs: {escape(str(options.logs))}/<image>.log")
    return report.exit_code


def site_registry(site_dir: Path):
    """The site's registry, answering (else exit 2 or 4 before anything is built)."""
    from dockyard.deploy import api
    from dockyard.registry import service

    site, _ = api.load(Path(site_dir), need_passwords=False)
    client = service.where(site).client()
    client.ping()
    return client


@cli.group(invoke_without_command=True)
@catalogue_option
@config_option
@click.option("--tag", help="Image tag to look for [default: 2025.1, or build.yml].")
@click.option("--release", metavar="NAME", help="Show this release's images (images/releases.yml): its root "
                                                "filesystem and tag.")
@namespace_option
@registry_option
@click.pass_context
def images(ctx, catalogue_dir, config_file, tag, release, namespace, registry):
    """Show the image catalogue as a tree: each image's profiles and whether
    the engine holds it with the current hash (current), with another hash
    (outdated: the next build rebuilds it) or not at all (not built).

    \b
    Examples:
      dockyard images
      dockyard images --tag 2025.1-site
      dockyard images --release 2026.1
      dockyard images diff 2025.1 2025.1-site    packages added, removed, changed
    """
    ctx.obj = dict(catalogue_dir=catalogue_dir, config_file=config_file, tag=tag, namespace=namespace,
                   registry=registry)
    if ctx.invoked_subcommand:
        return None
    catalogue, config = _load(catalogue_dir, config_file, release, tag=tag, namespace=namespace, registry=registry)
    builder = Builder(None, config, catalogue, BuildOptions())
    out = Console(highlight=False, soft_wrap=True)
    try:
        engine = _connect()
    except Exception as exc:  # the tree is worth showing without the engine's half
        Console(stderr=True).print(f"engine not reachable ({escape(str(exc))}): showing the catalogue only")
        engine = None

    def state(ref: str, digest: str) -> str:
        if engine is None:
            return ""
        info = engine.image(ref)
        if info is None:
            return "  [yellow]not built[/]"
        return "  [green]current[/]" if info.labels.get(LABEL_IMAGE_HASH) == digest else "  [cyan]outdated[/]"

    root_state = ""
    if engine is not None:
        root_state = "  [green]current[/]" if is_current(engine, config) else "  [yellow]not current[/]"
    tree = Tree(f"[bold]{escape(config.rootfs_ref())}[/] (debootstrap {escape(config.base.suite)}){root_state}")
    nodes: dict[str, Tree] = {}
    for name in catalogue.topological():
        img = catalogue.images[name]
        profiles = f" [dim]({', '.join(img.meta.profiles)})[/]" if img.meta.profiles else ""
        parent_node = nodes[img.parent] if img.parent else tree
        nodes[name] = parent_node.add(f"{escape(name)}{profiles}{state(builder.ref(name), builder.hashes[name])}")
    out.print(tree)
    out.print(f"{len(catalogue.images)} images; profiles: {', '.join(catalogue.profiles())}")
    return EXIT_OK


@images.command("diff")
@click.argument("tag_a")
@click.argument("tag_b")
@click.pass_obj
def images_diff(obj, tag_a, tag_b):
    """Compare the installed packages of two tags, image by image, from the
    package list each image records (/var/lib/dockyard/packages.txt).

    \b
    Example:
      dockyard build --tag 2025.1-next && dockyard images diff 2025.1 2025.1-next
    \b
    Output: '+ name version' added in TAG_B, '- name version' removed,
    '~ name A -> B' changed. Exit 1 when no image exists under both tags.
    """
    catalogue, config = _load(obj["catalogue_dir"], obj["config_file"], namespace=obj["namespace"],
                              registry=obj["registry"])
    for tag in (tag_a, tag_b):
        config.override(tag=tag)  # refuses a malformed tag before asking the engine
    engine = _connect()
    diff = diff_tags(engine, config, catalogue.topological(), tag_a, tag_b)
    for line in format_diff(diff):
        click.echo(line)
    if not diff.images:
        click.echo(f"no image exists under both {tag_a} and {tag_b}", err=True)
        return EXIT_FAILED
    return EXIT_OK

