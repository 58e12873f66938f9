"""The guest image: the catalogue entry, the engine's file copy, and
``dockyard.guestimage.export_guest_disk`` on the fake engine."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard import guestimage
from dockyard.image.catalogue import load_catalogue
from dockyard.image.config import BuildConfig
from dockyard.image.render import Renderer
from dockyard.engine.docker_engine import DockerEngine, _ChunkReader
from dockyard.engine.fake import FakeEngine
from dockyard.errors import DockyardError, EngineError
from dockyard.guestimage import (
    DISK_PATH,
    GUEST_IMAGE,
    MANIFEST_PATH,
    export_guest_disk,
    guest_image_ref,
)

REF = "dockyard/guest-image:2025.1"
DISK = b"QFI\xfb" + bytes(range(256)) * 64


def engine_with(disk: bytes = DISK, manifest: dict | str | None = None) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(REF)
    if manifest is None:
        manifest = {"format": "qcow2", "sha256": hashlib.sha256(disk).hexdigest(), "size": len(disk)}
    engine.files[(REF, MANIFEST_PATH)] = (manifest if isinstance(manifest, str) else json.dumps(manifest)).encode()
    engine.files[(REF, DISK_PATH)] = disk
    return engine


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# -- export_guest_disk ------------------------------------------------------------

def test_export_writes_the_disk_and_returns_its_digest(tmp_path):
    engine = engine_with()
    dest = tmp_path / "out" / "guest.qcow2"
    disk = export_guest_disk(engine, REF, dest)
    assert dest.read_bytes() == DISK
    assert disk.path == dest and disk.copied and disk.size == len(DISK)
    assert disk.sha256 == hashlib.sha256(DISK).hexdigest()
    assert disk.disk_format == "qcow2"
    assert dest.stat().st_mode & 0o777 == 0o644
    assert leftovers(dest.parent) == []
    assert [c for c in engine.calls if c[0] == "copy_file"][0][:3] == ("copy_file", REF, DISK_PATH)


def test_export_leaves_an_identical_disk_alone(tmp_path):
    engine = engine_with()
    dest = tmp_path / "guest.qcow2"
    dest.write_bytes(DISK)
    disk = export_guest_disk(engine, REF, dest)
    assert not disk.copied and disk.sha256 == hashlib.sha256(DISK).hexdigest()
    assert not [c for c in engine.calls if c[0] == "copy_file"]


def test_export_replaces_a_different_file(tmp_path):
    dest = tmp_path / "guest.qcow2"
    dest.write_bytes(b"an older disk")
    assert export_guest_disk(engine_with(), REF, dest).copied
    assert dest.read_bytes() == DISK


def test_a_disk_that_does_not_match_its_manifest_is_refused_and_dest_kept(tmp_path):
    engine = engine_with(manifest={"format": "qcow2", "sha256": "0" * 64})
    dest = tmp_path / "guest.qcow2"
    dest.write_bytes(b"previous")
    with pytest.raises(DockyardError, match="sha256"):
        export_guest_disk(engine, REF, dest)
    assert dest.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_a_failed_copy_leaves_nothing_behind(tmp_path):
    class Failing(FakeEngine):
        def copy_file(self, image, path, dest):
            Path(dest).write_bytes(b"half a di")
            raise EngineError("connection reset")

    engine = Failing()
    engine.add_image(REF)
    engine.files[(REF, MANIFEST_PATH)] = json.dumps({"sha256": "ab" * 32}).encode()
    with pytest.raises(EngineError, match="connection reset"):
        export_guest_disk(engine, REF, tmp_path / "guest.qcow2")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_image_says_how_to_build_it(tmp_path):
    with pytest.raises(DockyardError, match=r"dockyard build '\^guest-image\$'"):
        export_guest_disk(FakeEngine(), REF, tmp_path / "guest.qcow2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("manifest, fragment", [("{not json", "not JSON"), ({"format": "qcow2"}, "no sha256")])
def test_a_bad_manifest_is_named(tmp_path, manifest, fragment):
    with pytest.raises(DockyardError, match=fragment):
        export_guest_disk(engine_with(manifest=manifest), REF, tmp_path / "guest.qcow2")


def test_the_reference_follows_the_build_configuration():
    assert guest_image_ref() == REF
    assert guest_image_ref(BuildConfig(tag="t1", namespace="ns", registry="127.0.0.1:5000")) == \
        "127.0.0.1:5000/ns/guest-image:t1"


# -- the Docker driver's copy_file, on a stand-in for the SDK's low-level client ---

def tar_of(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            info.linkname = "elsewhere"
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


class StubApi:
    def __init__(self, archive: bytes, chunk: int = 1000):
        self.archive, self.chunk = archive, chunk
        self.removed: list[str] = []

    def create_container(self, image, command):
        return {"Id": "c1"}

    def get_archive(self, container, path, chunk_size=None):
        data = self.archive
        return (data[i:i + self.chunk] for i in range(0, len(data), self.chunk)), {}

    def remove_container(self, container, force):
        self.removed.append(container)


def docker_engine(api: StubApi) -> DockerEngine:
    engine = DockerEngine.__new__(DockerEngine)
    engine.api = api
    return engine


def test_docker_copy_file_streams_the_file_and_removes_the_container(tmp_path):
    data = bytes(range(256)) * 500
    api = StubApi(tar_of("dockyard-guest.qcow2", data), chunk=777)
    size = docker_engine(api).copy_file(REF, DISK_PATH, tmp_path / "d")
    assert size == len(data) and (tmp_path / "d").read_bytes() == data
    assert api.removed == ["c1"]


def test_docker_copy_file_refuses_what_is_not_a_regular_file(tmp_path):
    api = StubApi(tar_of("dockyard-guest.qcow2", b"", tarfile.SYMTYPE))
    with pytest.raises(EngineError, match="not a regular file"):
        docker_engine(api).copy_file(REF, DISK_PATH, tmp_path / "d")
    assert api.removed == ["c1"]


def test_chunk_reader_reads_across_chunks():
    reader = io.BufferedReader(_ChunkReader([b"ab", b"", b"cde", b"f"]))
    assert reader.read(4) == b"abcd" and reader.read() == b"ef" and reader.read() == b""


# -- the catalogue entry -----------------------------------------------------------

def guest_dir() -> Path:
    return load_catalogue().images[GUEST_IMAGE].folder


def test_the_guest_image_is_in_the_catalogue_on_base_in_its_own_profile():
    catalogue = load_catalogue()
    meta = catalogue.images[GUEST_IMAGE].meta
    assert meta.parent == "base" and meta.profiles == ["guest"]
    assert {"busybox-static", "dropbear-bin", "syslinux", "mtools", "dosfstools", "qemu-utils"} <= set(meta.packages)
    assert catalogue.select(profiles=["guest"]) == ["base", GUEST_IMAGE]


def test_the_rendered_dockerfile_assembles_in_a_stage_and_keeps_only_the_disk():
    catalogue = load_catalogue()
    text = Renderer(catalogue, BuildConfig(), None).dockerfile(catalogue.images[GUEST_IMAGE])
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["FROM dockyard/base:2025.1 AS assemble", "FROM dockyard/base:2025.1"]
    final = text.split("\n" + froms[1] + "\n", 1)[1]
    assert "COPY --from=assemble /guest /guest" in final
    assert "apt-get" not in final
    assert text.rstrip().endswith("ENV DOCKYARD_USER=root")


def test_the_guest_prints_the_console_lines_the_helper_names():
    folder = guest_dir()
    init = (folder / "init").read_text()
    hook = (folder / "udhcpc.script").read_text()
    assert 'say "dhcp $interface $ip/$prefix router ${gw:-none}' in hook
    assert 'say "metadata hostname $name"' in init
    assert 'say "metadata keys $keys"' in init
    assert 'say "sshd up"' in init
    assert 'say() { echo "dockyard-guest: $*"; }' in init
    for prefix in (guestimage.CONSOLE_DHCP, guestimage.CONSOLE_HOSTNAME, guestimage.CONSOLE_KEYS,
                   guestimage.CONSOLE_SSHD):
        assert prefix.startswith("dockyard-guest: ")
    # virtio_net without offloads (the userspace datapath leaves partial checksums)
    assert re.search(r"modprobe virtio_net csum=0 gso=0", init)
    assert "poweroff -f" in init


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
@pytest.mark.parametrize("script", ["init", "udhcpc.script", "assemble.sh"])
def test_the_guest_scripts_parse(script):
    proc = subprocess.run(["sh", "-n", str(guest_dir() / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
