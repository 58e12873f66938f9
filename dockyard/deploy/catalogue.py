"""The service catalogue: ``services/<name>.yml``, validated into typed models.

A service declares its containers, config files (Jinja2 templates), named volumes,
bootstrap jobs, databases, keystone registration and the services it depends on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockyard import SOURCE_ROOT
from dockyard.build.config import load_yaml, validation_error
from dockyard.errors import ConfigError

DEFAULT_ROOT = SOURCE_ROOT / "services"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigFile(Strict):
    template: str                     # path under services/templates/
    dest: str                         # where dockyard-start puts it in the container
    owner: str = "root"
    perm: str = "0600"
    override: str | None = None       # INI override name: config/<override>.conf etc.


class HealthSpec(Strict):
    test: list[str]                   # arguments of dockyard-healthcheck (templated)
    interval: float = 2.0
    timeout: float = 10.0
    retries: int = 5
    start_period: float = 300.0


class ContainerDef(Strict):
    image: str
    group: str = "control"
    command: str                      # templated; goes into config.json
    config: list[str] = Field(default_factory=list)    # names under the service's `config`
    volumes: list[str] = Field(default_factory=list)   # "name:/path[:ro]" or "/host:/path[:ro]"
    environment: dict[str, str] = Field(default_factory=dict)
    privileged: bool = False
    pid: str | None = None
    user: str | None = None           # config.json user, when not the image's own
    healthcheck: HealthSpec | None = None
    ports: list[int] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list)     # other containers of this service


class JobDef(Strict):
    name: str
    image: str
    group: str = "control"
    bootstrap: bool = False           # run the image's bootstrap step
    command: str | None = None
    config: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    user: str | None = None


class DatabaseDef(Strict):
    name: str
    user: str
    password: str                     # a name in passwords.yml


class EndpointSet(Strict):
    type: str
    port: int
    path: str = ""


class RegisterDef(Strict):
    user: str                         # the service's keystone user
    password: str                     # a name in passwords.yml
    services: dict[str, EndpointSet] = Field(default_factory=dict)   # service name -> endpoints


class ServiceDef(Strict):
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)
    passwords: list[str] = Field(default_factory=list)
    volumes: list[str] = Field(default_factory=list)
    config: dict[str, ConfigFile] = Field(default_factory=dict)
    databases: list[DatabaseDef] = Field(default_factory=list)
    registration: RegisterDef | None = Field(default=None, alias="register")
    jobs: list[JobDef] = Field(default_factory=list)
    containers: dict[str, ContainerDef] = Field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    name: str
    path: Path
    spec: ServiceDef


@dataclass(frozen=True)
class ServiceCatalogue:
    root: Path
    services: dict[str, Service]

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def required_passwords(self, enabled: list[str]) -> list[str]:
        names: list[str] = []
        for name in enabled:
            spec = self.services[name].spec
            implied = (["database_password"] if spec.databases else []) + (
                ["keystone_admin_password", spec.registration.password] if spec.registration else [])
            for pw in [*spec.passwords, *implied, *(d.password for d in spec.databases)]:
                if pw not in names:
                    names.append(pw)
        return names

    def all_passwords(self) -> list[str]:
        return self.required_passwords(sorted(self.services))

    def closure(self, enabled: list[str]) -> list[str]:
        """Enabled services in dependency order (dependencies first)."""
        order: list[str] = []

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in order:
                return
            if name in trail:
                raise ConfigError(f"dependency cycle: {' -> '.join(trail + (name,))}",
                                  path=self.services[name].path, key="depends_on")
            for dep in self.services[name].spec.depends_on:
                visit(dep, trail + (name,))
            order.append(name)

        for name in enabled:
            visit(name, ())
        return order


def load_services(root: Path | None = None) -> ServiceCatalogue:
    root = Path(root or DEFAULT_ROOT)
    services = {}
    for path in sorted(root.glob("*.yml")):
        data = load_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError("must be a mapping", path=path)
        try:
            spec = ServiceDef.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, path) from None
        services[path.stem] = Service(path.stem, path, spec)
    if not services:
        raise ConfigError("no service definitions found", path=root)
    for svc in services.values():
        for i, dep in enumerate(svc.spec.depends_on):
            if dep not in services:
                raise ConfigError(f"unknown service {dep!r}", path=svc.path, key=f"depends_on[{i}]")
        for cname, c in svc.spec.containers.items():
            for ref in c.config:
                if ref not in svc.spec.config:
                    raise ConfigError(f"unknown config file {ref!r}", path=svc.path, key=f"containers.{cname}.config")
            for ref in c.after:
                if ref not in svc.spec.containers:
                    raise ConfigError(f"unknown container {ref!r}", path=svc.path, key=f"containers.{cname}.after")
        for i, job in enumerate(svc.spec.jobs):
            for ref in job.config:
                if ref not in svc.spec.config:
                    raise ConfigError(f"unknown config file {ref!r}", path=svc.path, key=f"jobs[{i}].config")
        for fname, f in svc.spec.config.items():
            if not (root / "templates" / f.template).is_file():
                raise ConfigError(f"template {f.template} not found under {root / 'templates'}", path=svc.path,
                                  key=f"config.{fname}.template")
    return ServiceCatalogue(root, services)
