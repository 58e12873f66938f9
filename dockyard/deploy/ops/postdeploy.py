"""After a deploy: the operator's client configuration, mode 0600.

``clouds.yaml`` (a cloud named ``dockyard``) and ``admin-openrc.sh`` in the
configuration folder, pointing at the public identity endpoint.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from dockyard.deploy.files import write_atomic  # whole or not at all, 0600 from the first byte
from dockyard.deploy.site.loader import Site


def keystone_url(site: Site) -> str:
    address = site.globals.external_address or site.globals.internal_address
    return f"http://{address}:5000/v3"


def clouds_yaml(site: Site) -> str:
    cloud = {
        "auth": {"auth_url": keystone_url(site), "username": "admin",
                 "password": site.passwords["keystone_admin_password"], "project_name": "admin",
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": site.globals.region, "interface": "public", "identity_api_version": 3,
    }
    return "# dockyard admin credentials: keep private.\n" + yaml.safe_dump({"clouds": {"dockyard": cloud}},
                                                                          default_flow_style=False)


def openrc(site: Site) -> str:
    values = {
        "OS_AUTH_URL": keystone_url(site), "OS_USERNAME": "admin",
        "OS_PASSWORD": site.passwords["keystone_admin_password"], "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": site.globals.region, "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3",
    }
    lines = ["# dockyard admin credentials: `source` this file; keep it private."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def write_client_config(site: Site) -> list[Path]:
    paths = [site.config_dir / "clouds.yaml", site.config_dir / "admin-openrc.sh"]
    write_atomic(paths[0], clouds_yaml(site))
    write_atomic(paths[1], openrc(site))
    return paths


def refresh_client_config(site: Site) -> list[Path]:
    """After a deploy: the client files that exist, rewritten where they no
    longer hold what the site says (a rotated keystone_admin_password). Files
    the operator never asked for (post-deploy writes them) are not made."""
    written = []
    for path, text in ((site.config_dir / "clouds.yaml", clouds_yaml(site)),
                       (site.config_dir / "admin-openrc.sh", openrc(site))):
        try:
            same = path.read_text() == text
        except FileNotFoundError:
            continue
        if not same:
            write_atomic(path, text)
            written.append(path)
    return written
