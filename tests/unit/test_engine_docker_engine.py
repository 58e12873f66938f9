"""The Docker driver's boundary: whatever the SDK, requests or urllib3 raise
leaves it as EngineUnavailable (no answer: exit 4) or EngineError (an answer
with an error: exit 1). Pointed at unix sockets made here: a path with nothing
listening, and a tiny server that answers every call with an error. No engine
is touched."""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from dockyard.engine.docker_engine import DockerEngine
from dockyard.engine.driver import ContainerSpec
from dockyard.errors import EXIT_ENGINE, EXIT_FAILED, EngineError, EngineUnavailable

SPEC = ContainerSpec(name="x", image="dockyard/memcached:2025.1")
CALLS = {
    "ping": lambda e: e.ping(),
    "image": lambda e: e.image("dockyard/memcached:2025.1"),
    "images": lambda e: e.images(),
    "containers": lambda e: e.containers(label="dockyard.managed=true"),
    "container": lambda e: e.container("memcached"),
    "create": lambda e: e.create(SPEC),
    "start": lambda e: e.start("memcached"),
    "stop": lambda e: e.stop("memcached"),
    "remove": lambda e: e.remove("memcached"),
    "logs": lambda e: e.logs("memcached"),
    "run_job": lambda e: e.run_job(SPEC, timeout=5),
    "exec_in": lambda e: e.exec_in("memcached", ("true",), 5),
    "wait_healthy": lambda e: e.wait_healthy("memcached", 5),
    "volumes": lambda e: e.volumes(),
    "create_volume": lambda e: e.create_volume("v", {}),
    "remove_volume": lambda e: e.remove_volume("v"),
}


@pytest.fixture
def dead_socket(tmp_path) -> Path:
    """A unix socket path that exists with nothing listening: connecting is refused."""
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_dead_engine_is_engine_unavailable_on_every_call(dead_socket, call):
    engine = DockerEngine(base_url=f"unix://{dead_socket}")
    with pytest.raises(EngineUnavailable) as err:
        CALLS[call](engine)
    assert err.value.exit_code == EXIT_ENGINE
    assert err.value.reason == "Connection refused"
    assert str(err.value) == f"cannot reach the container engine at unix://{dead_socket}: Connection refused"


def test_a_socket_that_is_not_there_says_so(tmp_path):
    engine = DockerEngine(base_url=f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineUnavailable) as err:
        engine.containers()
    assert err.value.reason == "No such file or directory"


def test_the_environments_engine_not_there_is_exit_4_when_the_client_is_made(tmp_path, monkeypatch):
    # Without a URL the SDK asks the engine its API version as the client is made.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineUnavailable) as err:
        DockerEngine()
    assert err.value.exit_code == EXIT_ENGINE and "No such file or directory" in str(err.value)


class _Refusing(BaseHTTPRequestHandler):
    """Every request: 409 with the engine's JSON error body."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"message": "remove v: volume is in use - [abc123]"}).encode()
        self.send_response(409)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def address_string(self) -> str:      # a unix socket's peer has no address
        return "unix"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def refusing_engine(tmp_path):
    path = tmp_path / "refusing.sock"
    server = _UnixServer(str(path), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DockerEngine(base_url=f"unix://{path}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_engine_that_answers_with_an_error_is_engine_error_exit_1(refusing_engine):
    with pytest.raises(EngineError) as err:
        refusing_engine.remove_volume("v")
    assert type(err.value) is EngineError and err.value.exit_code == EXIT_FAILED
    assert "volume is in use" in str(err.value) and "409" in str(err.value)
    # The engine's error stays the cause, for whoever debugs.
    assert type(err.value.__cause__).__module__.startswith("docker")


def test_no_library_exception_leaves_the_driver(dead_socket):
    engine = DockerEngine(base_url=f"unix://{dead_socket}")
    for name, call in CALLS.items():
        try:
            call(engine)
        except EngineError:
            continue
        except BaseException as exc:    # noqa: BLE001 - what this test is about
            raise AssertionError(f"{name} let {type(exc).__module__}.{type(exc).__name__} through") from exc
    assert "docker" in sys.modules      # the SDK was in use, not bypassed


class _Hangup(socketserver.BaseRequestHandler):
    """Reads a request's first bytes, then hangs up without an answer: an
    engine that died while the call was on its way."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.close()


def test_an_engine_that_hangs_up_mid_call_is_engine_unavailable(tmp_path):
    path = tmp_path / "hangup.sock"
    server = _UnixServer(str(path), _Hangup)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(EngineUnavailable) as err:
            DockerEngine(base_url=f"unix://{path}").create(SPEC)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert err.value.exit_code == EXIT_ENGINE
    assert err.value.reason == "Remote end closed connection without response"
