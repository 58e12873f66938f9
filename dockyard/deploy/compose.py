"""The same containers as a docker compose file (``dockyard export compose``).

Named volumes are external (dockyard's own); jobs become one-shot services that
their dependants wait on with ``service_completed_successfully``. Secrets stay in
the generated config folders, which compose bind-mounts as dockyard does.
"""

from __future__ import annotations

import yaml

from .model import WantedState


def _service(spec, after: tuple[str, ...], kinds: dict[str, str]) -> dict:
    out: dict = {"image": spec.image, "container_name": spec.name, "network_mode": spec.network_mode,
                 "environment": dict(spec.environment), "labels": dict(spec.labels)}
    if spec.privileged:
        out["privileged"] = True
    if spec.pid_mode:
        out["pid"] = spec.pid_mode
    out["volumes"] = [f"{m.source}:{m.target}{':ro' if m.read_only else ''}" for m in spec.mounts]
    if spec.healthcheck:
        hc = spec.healthcheck
        out["healthcheck"] = {"test": list(hc.test), "interval": f"{hc.interval}s", "timeout": f"{hc.timeout}s",
                              "retries": hc.retries, "start_period": f"{hc.start_period}s"}
    deps = {}
    for name in after:
        if name in kinds:
            deps[name] = {"condition": kinds[name]}
    if deps:
        out["depends_on"] = deps
    out["restart"] = spec.restart_policy
    return out


def export_compose(wanted: WantedState) -> str:
    kinds = {j.name: "service_completed_successfully" for j in wanted.jobs}
    for c in wanted.containers:
        kinds[c.name] = "service_healthy" if c.spec.healthcheck else "service_started"
    services = {}
    for j in wanted.jobs:
        services[j.name] = _service(j.spec, j.after, kinds)
    for c in wanted.containers:
        services[c.name] = _service(c.spec, c.after, kinds)
    volumes = {v.name: {"external": True} for v in wanted.volumes}
    return yaml.safe_dump({"services": services, "volumes": volumes}, sort_keys=False)
