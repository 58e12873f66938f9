"""What a registry holds, asked over its HTTP API (the distribution spec, v2).

One GET of a manifest gives both facts a deploy needs: the manifest's digest
(``Docker-Content-Digest``: what a host pulls by, so it gets exactly those
bytes) and its config blob's digest, which is the image id an engine reports
once the image is pulled, or once it was built: the same bytes, the same id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests

from dockyard.errors import EngineError

# Docker's schema 2 manifest (what Docker Engine 20.10 pushes) and the OCI one.
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")
TIMEOUT = 10.0


@dataclass(frozen=True)
class RegistryImage:
    digest: str      # the manifest's: sha256:...
    id: str          # the image id (its config blob's digest): sha256:...


class ImageSource(Protocol):
    address: str     # host:port, as engines name it in references

    def lookup(self, repository: str, reference: str) -> RegistryImage | None:
        """The image ``repository`` (``namespace/name``) holds at a tag (or digest), or None."""
        ...


class RegistryClient:
    """A registry at ``address`` (host:port) over HTTPS, trusting ``ca`` (a PEM
    file; None: the system's CAs). The environment's proxy and CA bundle are
    ignored: the registry is on the site's own network."""

    def __init__(self, address: str, ca: Path | None = None, timeout: float = TIMEOUT):
        self.address = address
        self.ca = ca
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False

    def url(self, path: str) -> str:
        return f"https://{self.address}/v2/{path}"

    def _get(self, path: str, **headers: str) -> requests.Response:
        try:
            return self.session.get(self.url(path), headers=headers, timeout=self.timeout,
                                    verify=str(self.ca) if self.ca else True)
        except requests.RequestException as exc:
            raise EngineError(f"registry {self.address} does not answer: {exc}") from exc

    def ping(self) -> None:
        response = self._get("")
        if response.status_code != 200:
            raise EngineError(f"registry {self.address} answered {response.status_code} to /v2/")

    def lookup(self, repository: str, reference: str) -> RegistryImage | None:
        response = self._get(f"{repository}/manifests/{reference}", Accept=", ".join(MANIFEST_TYPES))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise EngineError(f"registry {self.address}: {repository}:{reference} answered {response.status_code}")
        digest = response.headers.get("Docker-Content-Digest", "")
        try:
            config = response.json()["config"]["digest"]
        except (ValueError, KeyError, TypeError):
            raise EngineError(f"registry {self.address}: {repository}:{reference} is no image manifest "
                              f"({response.headers.get('Content-Type', 'no type')})") from None
        if not digest.startswith("sha256:"):
            raise EngineError(f"registry {self.address}: {repository}:{reference} came without its digest")
        return RegistryImage(digest, config)


def repository_and_tag(ref: str) -> tuple[str, str]:
    """``namespace/name`` and tag of a local reference ``[registry/]namespace/name:tag``
    (a registry prefix, when the names carry one, is not part of the repository)."""
    path, _, tag = ref.rpartition(":")
    first, _, rest = path.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        path = rest
    return path, tag


def pull_ref(address: str, ref: str, digest: str) -> str:
    """What a host pulls: ``address/namespace/name@sha256:...``."""
    return f"{address}/{repository_and_tag(ref)[0]}@{digest}"


def push_ref(address: str, ref: str) -> str:
    """The name an image is pushed under: ``address/namespace/name:tag``."""
    repository, tag = repository_and_tag(ref)
    return f"{address}/{repository}:{tag}"
