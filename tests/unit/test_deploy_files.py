"""The one writer of dockyard's files: atomic, with the final mode from creation."""

from __future__ import annotations

import os
import stat

import pytest

from dockyard.deploy import files
from dockyard.deploy.files import write_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_private_by_default_without_any_chmod(tmp_path, monkeypatch, open_umask):
    def refuse(*args, **kwargs):
        raise AssertionError("chmod called on a private file")
    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    path = tmp_path / "deep" / "secret.conf"
    write_atomic(path, "password = x\n")
    assert path.read_text() == "password = x\n"
    assert mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.conf"]


def test_wider_mode_is_set_before_the_data_and_replaces_whole(tmp_path, open_umask):
    path = tmp_path / "record.json"
    path.write_text("old")
    write_atomic(path, b"new", 0o644)
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "glance-api.conf"
    path.write_text("old")

    def broken_fsync(fd):
        raise OSError("disk full")
    monkeypatch.setattr(files.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["glance-api.conf"]


def test_a_symlink_is_written_through(tmp_path):
    real = tmp_path / "real" / "passwords.yml"
    real.parent.mkdir()
    real.write_text("a: 1\n")
    link = tmp_path / "passwords.yml"
    link.symlink_to(real)
    write_atomic(link, "a: 2\n")
    assert link.is_symlink()
    assert real.read_text() == "a: 2\n"
