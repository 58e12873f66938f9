"""One run per site at a time: ``flock`` on ``<state_dir>/dockyard.lock``.

flock, because the kernel drops the lock when its holder dies: a SIGKILLed run
never leaves a stale lock, and there is nothing to clean up by hand. The holder
writes its pid and start time into the file so a refused run can say who holds it.
The file itself is never deleted (deleting a lock file lets two runs each lock a
different inode).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path

from dockyard.errors import LockedError

LOCK_NAME = "dockyard.lock"


def lock_path(state_dir: Path) -> Path:
    return Path(state_dir) / LOCK_NAME


def read_holder(path: Path) -> dict:
    """What the holder wrote: pid, host, since. Empty if nothing readable."""
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class SiteLock:
    """``with SiteLock(state_dir): ...`` or ``acquire()`` / ``release()``.

    By default a held lock is refused at once with :class:`LockedError`; with
    ``wait=True`` the call blocks until the lock is free or ``timeout`` seconds
    (None: forever) have passed.
    """

    def __init__(self, state_dir: Path, *, wait: bool = False, timeout: float | None = None):
        self.path = lock_path(state_dir)
        self.wait = wait
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "SiteLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this SiteLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait or not self._wait_for(fd):
                os.close(fd)
                raise self._locked_error() from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def _wait_for(self, fd: int) -> bool:
        """Block in flock in a helper thread, so the wait can be bounded without
        polling. True once locked; False after the timeout."""
        guard = threading.Lock()
        state = {"done": False, "locked": False, "gave_up": False}
        # The helper has its own descriptor of the same open file: if we give up,
        # it can still finish its flock and let go, without touching ``fd``.
        helper_fd = os.dup(fd)

        def take() -> None:
            try:
                fcntl.flock(helper_fd, fcntl.LOCK_EX)
                locked = True
            except OSError:
                locked = False
            with guard:
                state["done"], state["locked"] = True, locked
                if state["gave_up"]:
                    os.close(helper_fd)          # too late: closing the last descriptor unlocks

        helper = threading.Thread(target=take, name="dockyard-lock-wait", daemon=True)
        helper.start()
        helper.join(self.timeout)
        with guard:
            if state["done"]:
                os.close(helper_fd)              # fd shares the open file, so it keeps the lock
                return state["locked"]
            state["gave_up"] = True
            return False

    def _locked_error(self) -> LockedError:
        holder = read_holder(self.path)
        if holder.get("pid"):
            who = f"pid {holder['pid']}"
            if holder.get("host"):
                who += f" on {holder['host']}"
            if holder.get("since"):
                who += f", running since {holder['since']}"
        else:
            who = "another process"
        waited = f" (waited {self.timeout:g}s)" if self.wait and self.timeout is not None else ""
        return LockedError(f"the site is locked by another dockyard run: {who}{waited}. Lock file: {self.path}; "
                           f"try again when that run ends")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)          # while still held: the next holder writes its own
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SiteLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
