"""One run per site at a time. flock: the kernel drops it when the holder dies,
so a SIGKILLed run never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from dockyard.errors import LockedError


class SiteLock:
    def __init__(self, state_dir: Path):
        self.path = state_dir / "dockyard.lock"
        self._fd: int | None = None

    def acquire(self) -> "SiteLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise LockedError(f"the site is locked by {holder} ({self.path}); try again when it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SiteLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
