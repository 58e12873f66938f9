"""The site lock: one run at a time, the holder named, released by the kernel on death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from dockyard.deploy.execute.lock import SiteLock, read_holder
from dockyard.errors import EXIT_LOCKED, LockedError

HOLDER = """
import sys
from dockyard.deploy.execute.lock import SiteLock
lock = SiteLock(sys.argv[1]).acquire()
print("locked", flush=True)
sys.stdin.read()          # hold until killed
"""


def test_second_acquire_is_refused_naming_the_holder(tmp_path):
    with SiteLock(tmp_path):
        with pytest.raises(LockedError) as err:
            SiteLock(tmp_path).acquire()          # a second open file: flock sees another holder
    message = str(err.value)
    assert f"pid {os.getpid()}" in message and "running since" in message and "lock" in message
    assert str(tmp_path / "dockyard.lock") in message
    assert err.value.exit_code == EXIT_LOCKED


def test_released_on_close_and_reusable(tmp_path):
    lock = SiteLock(tmp_path).acquire()
    assert read_holder(lock.path)["pid"] == os.getpid()
    lock.release()
    assert read_holder(lock.path) == {}                # the holder's note goes with it
    with SiteLock(tmp_path) as again:
        assert again.held
    assert not again.held


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            SiteLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with SiteLock(tmp_path) as lock:                   # nobody cleaned up: the kernel did
        assert lock.held


def test_wait_blocks_until_the_holder_releases(tmp_path):
    holder = SiteLock(tmp_path).acquire()
    waiter = SiteLock(tmp_path, wait=True, timeout=30)
    outcome = {}
    trying = threading.Event()

    def take():
        trying.set()
        try:
            waiter.acquire()
            outcome["held"] = waiter.held
        except LockedError as exc:                     # only if the waiter gave up: a failure
            outcome["error"] = exc

    thread = threading.Thread(target=take)
    thread.start()
    assert trying.wait(30)
    assert "held" not in outcome                       # cannot have it while the holder does
    holder.release()
    thread.join(30)
    assert outcome == {"held": True}
    assert read_holder(waiter.path)["pid"] == os.getpid()
    waiter.release()


def test_wait_gives_up_after_its_timeout(tmp_path):
    with SiteLock(tmp_path):
        with pytest.raises(LockedError, match="waited 0.05s"):
            SiteLock(tmp_path, wait=True, timeout=0.05).acquire()
    # The helper that was still waiting lets go once it gets the lock: nothing stays held.
    with SiteLock(tmp_path, wait=True, timeout=30) as lock:
        assert lock.held
