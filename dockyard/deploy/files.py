"""Writing the files dockyard owns: whole or not at all, with their mode from the start.

Every file dockyard writes (generated configuration, passwords, client
configuration, its own records) goes through :func:`write_atomic`, so a run
killed at any moment leaves the old file or the new one, never half of one, and
a secret is never on disk with wider permissions than it ends with.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# What mkstemp creates a file with: private until told otherwise.
PRIVATE = 0o600


def write_atomic(path: Path, data: bytes | str, mode: int = PRIVATE, dir_mode: int = 0o755) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, whole.

    The temporary file is made in the same folder (a rename is atomic only
    within one file system). It is born 0600 and only widened, before any byte
    is written, when ``mode`` asks for more; a private file is therefore never
    chmod-ed at all. It is synced before the rename and the folder after it, so
    a crash cannot leave an empty file behind. A symlink is written through, at
    the file it points to.
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        if mode != PRIVATE:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
