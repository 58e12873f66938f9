"""Healthcheck helpers against real loopback listeners made here."""

from __future__ import annotations

import http.server
import os
import socket
import threading

import pytest

from dockyard.contract import dockyard_healthcheck as hc


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_port_listening_and_not(listener):
    assert hc.check_port(listener, None) is None
    assert hc.check_port(listener, "127.0.0.1") is None
    assert "nothing listens" in hc.check_port(listener, "127.0.0.9")
    assert hc.check_port(free_port(), None) is not None
    assert hc.main(["port", str(listener)]) == 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503 if self.path == "/down" else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_url():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_status_ranges(http_url):
    assert hc.main(["http", f"{http_url}/ok"]) == 0
    assert hc.main(["http", f"{http_url}/down"]) == 1
    assert hc.main(["http", f"{http_url}/down", "--status", "200-599"]) == 0
    assert hc.main(["http", f"http://127.0.0.1:{free_port()}/", "--timeout", "2"]) == 1


def test_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    assert hc.main(["socket", path]) == 1
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    try:
        assert hc.main(["socket", path]) == 0
    finally:
        server.close()


def test_process_by_name():
    with open(f"/proc/{os.getpid()}/comm") as fh:
        me = fh.read().strip()
    assert hc.check_process(me) is None
    assert hc.check_process("no-such-process-x") is not None
