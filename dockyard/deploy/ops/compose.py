"""The same containers as a docker compose file (``dockyard export compose``).

- Containers and jobs keep their names, images, commands, environment, mounts,
  host networking, privileges, health checks and labels.
- Named volumes dockyard wants are ``external: true``: compose reuses dockyard's
  data instead of making project-prefixed copies. Other named mounts get a fixed
  ``name`` for the same reason.
- ``after`` becomes ``depends_on``: ``service_healthy`` on a container with a
  health check, ``service_started`` on one without, and
  ``service_completed_successfully`` on a job. Jobs are one-shot services
  (``restart: "no"``); compose runs them on every ``up``, which is safe because
  every job is idempotent.

Secrets: in dockyard's design, containers get their secrets from config files
(the generated folders, bind-mounted exactly as dockyard mounts them), never
from the environment, so the environment is copied as it is. As a safety net,
any variable whose *name* looks secret (password, secret, token, key, ...) is
written as a ``${VAR}`` reference, to be set in a ``.env`` file next to the
compose file: its value is never exported. Every literal ``$`` is doubled, so
compose does not interpolate what dockyard passes verbatim.
"""

from __future__ import annotations

import re

import yaml

from dockyard.engine.driver import ContainerSpec, Mount
from dockyard.errors import ConfigError

from dockyard.deploy.wanted.model import WantedContainer, WantedJob, WantedState
from dockyard.deploy.plan.planner import unit_order

SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE|(^|_)KEY($|_)", re.IGNORECASE)


def _literal(value: str) -> str:
    """A string compose must take as it is, not interpolate."""
    return value.replace("$", "$$")


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _env_var(service: str, key: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", f"{service}_{key}".upper())


def _environment(name: str, spec: ContainerSpec, needed: list[str]) -> dict[str, str]:
    env = {}
    for key, value in spec.environment.items():
        if SECRET_NAME.search(key):
            var = _env_var(name, key)
            needed.append(var)
            env[key] = f"${{{var}:?set {var} in .env}}"
        else:
            env[key] = _literal(value)
    return env


def _volume(m: Mount) -> str:
    """Compose's short volume syntax: source:target[:ro][,propagation]."""
    options = [o for o in ("ro" if m.read_only else None, m.propagation) if o]
    return f"{m.source}:{m.target}" + (":" + ",".join(options) if options else "")


def _service(unit: WantedJob | WantedContainer, conditions: dict[str, str], needed_vars: list[str]) -> dict:
    spec = unit.spec
    out: dict = {"image": spec.image, "container_name": spec.name}
    if spec.command is not None:
        out["command"] = [_literal(arg) for arg in spec.command]
    if spec.user:
        out["user"] = spec.user
    env = _environment(unit.name, spec, needed_vars)
    if env:
        out["environment"] = env
    if spec.mounts:
        out["volumes"] = [_volume(m) for m in spec.mounts]
    out["network_mode"] = spec.network_mode
    if spec.pid_mode:
        out["pid"] = spec.pid_mode
    if spec.cap_add:
        out["cap_add"] = list(spec.cap_add)
    if spec.tmpfs:
        out["tmpfs"] = list(spec.tmpfs)
    if spec.devices:
        out["devices"] = [f"{d}:{d}" for d in spec.devices]
    if spec.security_opt or spec.writable_proc_sys:
        # Compose's systempaths=unconfined is broader (all of /proc): the closest it has.
        out["security_opt"] = [*spec.security_opt, *(["systempaths=unconfined"] if spec.writable_proc_sys else [])]
    if spec.healthcheck:
        hc = spec.healthcheck
        out["healthcheck"] = {"test": [_literal(arg) for arg in hc.test], "interval": _duration(hc.interval),
                              "timeout": _duration(hc.timeout), "retries": hc.retries,
                              "start_period": _duration(hc.start_period)}
    depends = {name: {"condition": conditions[name]} for name in unit.after if name in conditions}
    if depends:
        out["depends_on"] = depends
    out["restart"] = "no" if isinstance(unit, WantedJob) else spec.restart_policy
    if spec.labels:
        out["labels"] = {k: _literal(v) for k, v in spec.labels.items()}
    return out


def export_compose(wanted: WantedState) -> str:
    """A compose file (YAML text) with the wanted containers and jobs."""
    remote = sorted({u.host for u in wanted.units() if u.copy_in})
    if remote:
        raise ConfigError(f"a compose file runs on one engine with config folders on its disk; hosts "
                          f"{', '.join(remote)} are on remote engines: export compose covers a site on this "
                          f"machine's engine only", key="inventory.yml")
    conditions = {j.name: "service_completed_successfully" for j in wanted.jobs}
    for c in wanted.containers:
        conditions[c.name] = "service_healthy" if c.spec.healthcheck else "service_started"

    needed_vars: list[str] = []
    services = {unit.name: _service(unit, conditions, needed_vars) for unit in unit_order(wanted)}

    volumes: dict[str, dict] = {v.name: {"external": True} for v in wanted.volumes}
    for unit in wanted.units():
        for m in unit.spec.mounts:
            if m.is_volume and m.source not in volumes:
                volumes[m.source] = {"name": m.source}

    # No top-level `name`: docker-compose v1 refuses the key. The project name
    # is given on the command line instead (the header says how).
    doc: dict = {"services": services}
    if volumes:
        doc["volumes"] = volumes
    header = ["# Exported by `dockyard export compose`: the same containers as `dockyard deploy`.",
              "# Named volumes are dockyard's own (external). Config files are bind-mounted from the",
              "# generated folders: `dockyard genconfig` writes them (as does `dockyard deploy`).",
              "# Run: docker compose -p dockyard -f <this file> up -d   (or docker-compose, v1.27 on)"]
    if needed_vars:
        header.append("# Set these in .env (their names look secret, so their values are not exported):")
        header += [f"#   {var}" for var in sorted(set(needed_vars))]
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)
