"""Container engine drivers. ``connect()`` returns the driver for a named engine."""

from __future__ import annotations

from .driver import (  # noqa: F401  (re-exported: the public driver vocabulary)
    ContainerDied,
    ContainerSpec,
    ContainerState,
    Engine,
    FileCopy,
    Healthcheck,
    HealthTimeout,
    ImageInfo,
    JobResult,
    Mount,
    VolumeInfo,
)


def connect(name: str = "docker", base_url: str | None = None, tls=None) -> Engine:
    """Return the Docker Engine driver (the only engine dockyard is tested with).
    ``tls``: a ``(ca, cert, key)`` of file paths for a ``tcp://`` engine."""
    from .docker_engine import DockerEngine

    if name != "docker":
        from dockyard.errors import ConfigError

        raise ConfigError(f"unknown engine {name!r} (expected docker)", key="engine")
    return DockerEngine(base_url=base_url, tls=tls)
