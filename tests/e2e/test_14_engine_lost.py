"""The engine lost in the middle of a deploy: exit 1 naming the failed action
(or 4), never a traceback; the next run, with the engine there, converges.

dockyard talks to the real engine through a unix-socket proxy made here
(DOCKER_HOST points at it), which forwards every call to /var/run/docker.sock
until it sees the deploy's first ``containers/create``: then, before that call
reaches the engine, it hangs up on every connection and removes its socket, as
an engine that dies does. Where it cuts is decided by the traffic, not by time.

A site of memcached alone, bound to 127.0.0.9, so nothing of the main site is
involved. Runs before the cloud exists: the side site's container is named
``memcached``, as the main site's is.
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from .conftest import dockyard, side_site

ENGINE_SOCKET = "/var/run/docker.sock"
CUT_AT = b"/containers/create"


class CuttingProxy:
    """A unix socket at ``path`` forwarding to the engine's, byte for byte,
    that hangs up for good at the first request whose bytes hold ``CUT_AT``
    (that request is not forwarded)."""

    def __init__(self, path: Path):
        self.path = path
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:                     # the listener was closed: the cut
                return
            if self.cut.is_set():               # hang_up's wake-up call
                client.close()
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, True)
            self._spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        tail = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if from_client:
                    # The pattern may straddle two reads: look at the end of the last one too.
                    if CUT_AT in tail + data:
                        self.hang_up()
                        return
                    tail = data[-len(CUT_AT):]
                sink.sendall(data)
        except OSError:                         # the other side, or the cut, closed it
            return

    def hang_up(self) -> None:
        """The engine is gone: every connection dropped, no new one accepted."""
        with self._lock:
            if self.cut.is_set():
                return
            self.cut.set()
            sockets = [self.listener, *self._sockets]
        # Closing a listening socket does not wake a thread blocked in accept():
        # a connection does, and the accepting thread then sees the cut.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(str(self.path))
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.hang_up()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


@pytest.fixture
def proxy(tmp_path):
    p = CuttingProxy(tmp_path / "engine.sock")
    try:
        yield p
    finally:
        p.close()


def test_an_engine_lost_mid_deploy_is_reported_and_the_next_run_converges(built_catalogue, engine, tmp_path, proxy):
    assert engine.container("memcached") is None, "a container named memcached runs already (the main site?)"
    site = side_site(tmp_path, "127.0.0.9", ["memcached"])
    try:
        lost = dockyard("deploy", "--services", "memcached", "--config-dir", str(site), check=False,
                        env={"DOCKER_HOST": f"unix://{proxy.path}"})
        out = lost.stdout + lost.stderr
        assert proxy.cut.is_set(), out          # the deploy got as far as creating a container
        assert "Traceback" not in out, out
        assert lost.returncode in (1, 4), out
        if lost.returncode == 1:
            failed = [line for line in lost.stdout.splitlines() if line.startswith("  FAILED")]
            assert any(line.split()[1] == "create:memcached" and "its engine did not answer" in line
                       for line in failed), out
            assert re.search(r"^\d+ changes, [1-9]\d* failed, \d+ skipped in ", lost.stdout, re.M), out
        else:
            assert "cannot reach the container engine" in lost.stderr, out
        # The create never reached the engine.
        assert engine.container("memcached") is None

        # The engine of the environment again (the proxy is gone).
        converged = dockyard("deploy", "--services", "memcached", "--config-dir", str(site))
        assert "create:memcached" in converged.stdout and engine.container("memcached").running
        again = dockyard("deploy", "--services", "memcached", "--config-dir", str(site))
        assert re.search(r"^0 changes, 0 failed, 0 skipped in ", again.stdout, re.M), again.stdout
    finally:
        dockyard("destroy", "--yes", "--include-volumes", "--config-dir", str(site), check=False)
    assert engine.container("memcached") is None
