"""Find a Compose tool for the side-by-side deploy benchmark.

The issue asks for `docker compose up -d --wait`, which is Compose v2. Debian
bookworm ships only docker-compose v1 (no `--wait`); trixie ships v2 as a
static binary depending on nothing but libc. When the engine's client has no
`compose` plugin, trixie's package is downloaded with a private apt list into
the bench folder and unpacked there: nothing is installed on the host and no
apt source of the host is touched.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TRIXIE = "deb http://deb.debian.org/debian trixie main\n"


@dataclass(frozen=True)
class ComposeTool:
    command: tuple[str, ...]
    version: str
    has_wait: bool


def _version(command: list[str]) -> str | None:
    try:
        proc = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _is_v2(version: str) -> bool:
    return not version.lstrip("v").startswith("1.")


def _fetch_trixie_compose(folder: Path) -> Path | None:
    """Download and unpack trixie's docker-compose package; the binary's path."""
    binary = folder / "root" / "usr" / "libexec" / "docker" / "cli-plugins" / "docker-compose"
    if binary.exists():
        return binary
    if not shutil.which("apt-get"):
        return None
    lists = folder / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    sources = folder / "sources.list"
    sources.write_text(TRIXIE)
    apt = ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
           "-o", f"Dir::State::Lists={lists}", "-o", "APT::Sandbox::User=root"]
    for step in (["apt-get", "-q", *apt, "update"], ["apt-get", "-q", *apt, "download", "docker-compose"]):
        if subprocess.run(step, cwd=folder, capture_output=True, timeout=600).returncode != 0:
            return None
    debs = sorted(folder.glob("docker-compose_*.deb"))
    if not debs:
        return None
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(folder / "root")], check=True)
    return binary if binary.exists() else None


def find_compose(bench_folder: Path) -> ComposeTool:
    """Compose v2 if it can be had (the client's plugin, else trixie's package), else v1."""
    version = _version(["docker", "compose"])
    if version and _is_v2(version):
        return ComposeTool(("docker", "compose"), version, True)
    binary = _fetch_trixie_compose(bench_folder / "compose-v2")
    if binary:
        version = _version([str(binary)])
        if version:
            return ComposeTool((str(binary),), version, True)
    version = _version(["docker-compose"])
    if version:
        return ComposeTool(("docker-compose",), version, _is_v2(version))
    raise SystemExit("no Compose tool: neither `docker compose`, trixie's docker-compose, nor docker-compose v1")
