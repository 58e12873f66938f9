"""After a deploy: the operator's client configuration (mode 0600)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .site import Site, write_private


def keystone_url(site: Site, public: bool = True) -> str:
    address = site.external_address if public else site.globals.internal_address
    return f"http://{address}:5000/v3"


def write_client_config(site: Site) -> list[Path]:
    password = site.passwords["keystone_admin_password"]
    clouds = {"clouds": {"dockyard": {
        "auth": {"auth_url": keystone_url(site), "username": "admin", "password": password,
                 "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": site.globals.region, "interface": "public", "identity_api_version": 3,
    }}}
    clouds_path = site.config_dir / "clouds.yaml"
    write_private(clouds_path, yaml.safe_dump(clouds, default_flow_style=False))
    openrc = (
        "# dockyard admin credentials: `source` this file.\n"
        f"export OS_AUTH_URL={keystone_url(site)}\n"
        "export OS_USERNAME=admin\n"
        f"export OS_PASSWORD='{password}'\n"
        "export OS_PROJECT_NAME=admin\n"
        "export OS_USER_DOMAIN_NAME=Default\n"
        "export OS_PROJECT_DOMAIN_NAME=Default\n"
        f"export OS_REGION_NAME={site.globals.region}\n"
        "export OS_IDENTITY_API_VERSION=3\n"
    )
    openrc_path = site.config_dir / "admin-openrc.sh"
    write_private(openrc_path, openrc)
    return [clouds_path, openrc_path]
