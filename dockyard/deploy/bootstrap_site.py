"""``dockyard up``: from nothing to a working all-in-one cloud."""

from __future__ import annotations

import re
from pathlib import Path

from dockyard.build.builder import Builder, BuildOptions
from dockyard.build.catalogue import load_catalogue
from dockyard.build.config import load_build_config
from dockyard.engine import connect

from . import api
from .catalogue import load_services
from .postdeploy import write_client_config
from .site import generate_passwords, load_globals, write_defaults


def images_needed(config_dir: Path) -> list[str]:
    services = load_services()
    enabled = services.closure(load_globals(config_dir, set(services.services)).enabled_services)
    images = {"toolbox"}
    for name in enabled:
        spec = services.services[name].spec
        images |= {c.image for c in spec.containers.values()} | {j.image for j in spec.jobs}
    return sorted(images)


def up(config_dir: Path, threads: int | None = None, say=print) -> bool:
    for path in write_defaults(config_dir):
        say(f"wrote {path}")
    services = load_services()
    added = generate_passwords(config_dir / "passwords.yml", services.all_passwords())
    say(f"{len(added)} passwords generated")
    g = load_globals(config_dir, set(services.services))
    engine = connect(g.engine)
    engine.ping()
    catalogue = load_catalogue()
    config = load_build_config(None, set(catalogue.images)).model_copy(
        update={"namespace": g.image_namespace, "tag": g.image_tag, "registry": g.image_registry,
                **({"threads": threads} if threads else {})})
    names = images_needed(config_dir)
    options = BuildOptions(patterns=[f"^{re.escape(n)}$" for n in names],
                           work_dir=Path("/var/lib/dockyard/build"))
    builder = Builder(engine, config, catalogue, options)
    say(f"building images for {len(names)} services' containers (cached ones are reused)")
    report = builder.run(on_event=lambda e: e.kind == "done" and say(f"  image {e.image}: {e.outcome.status}"))
    if not report.ok:
        say("image build failed; see the logs in /var/lib/dockyard/build/logs")
        return False
    result = api.deploy(config_dir, say=say, engine=engine)
    if not result.ok:
        return False
    prepared = api.prepare(config_dir, engine)
    for path in write_client_config(prepared.site):
        say(f"wrote {path}")
    say("")
    say("The cloud is up. Use it with python-openstackclient:")
    say(f"  export OS_CLIENT_CONFIG_FILE={config_dir / 'clouds.yaml'}")
    say("  openstack --os-cloud dockyard catalog list")
    say(f"or: source {config_dir / 'admin-openrc.sh'}")
    say(f"Horizon: http://{prepared.site.external_address}/")
    return True
