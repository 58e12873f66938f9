"""dockyard-healthcheck against real loopback listeners made here, and a fake /proc
for the cases a test cannot stage for real (zombies, wildcard listeners, titles)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockyard.contract import dockyard_healthcheck as hc


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def listener6():
    sock = socket.socket(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(("::1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


# -- port -----------------------------------------------------------------------------

def test_port_with_a_real_ipv4_listener(listener, capsys):
    assert hc.check_port(listener) is None
    assert hc.check_port(listener, "127.0.0.1") is None
    assert hc.check_port(listener, "127.0.0.2") == \
        f"nothing listens on TCP port {listener} at 127.0.0.2 (only on 127.0.0.1)"
    assert hc.check_port(listener, "::1") is not None
    assert hc.main(["port", str(listener), "--host", "127.0.0.1"]) == 0
    assert capsys.readouterr().out == ""


def test_port_with_a_real_ipv6_listener(listener6):
    assert hc.check_port(listener6) is None
    assert hc.check_port(listener6, "::1") is None
    assert hc.check_port(listener6, "0:0:0:0:0:0:0:1") is None      # any spelling of the address
    assert hc.check_port(listener6, "127.0.0.1") is not None


def test_port_nobody_listens_on(capsys):
    port = closed_port()
    assert hc.main(["port", str(port)]) == 1
    assert capsys.readouterr().out == f"nothing listens on TCP port {port}\n"


def test_a_connected_socket_is_not_a_listener(listener):
    # The client side of a connection has a port of its own, in ESTABLISHED state.
    client = socket.create_connection(("127.0.0.1", listener), timeout=5)
    try:
        assert hc.check_port(client.getsockname()[1]) is not None
    finally:
        client.close()


TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def fake_proc(tmp_path: Path, tcp: list[str], tcp6: list[str] | None) -> str:
    """A /proc/net holding these lines (addresses as little-endian Linux writes them)."""
    net = tmp_path / "proc" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP_HEADER + "".join(f"   0: {line} 00000000:0000 00000000 0 0 1 1\n" for line in tcp))
    if tcp6 is not None:
        (net / "tcp6").write_text(TCP_HEADER + "".join(f"   0: {line} 00000000 0 0 1 1\n" for line in tcp6))
    return str(tmp_path / "proc")


def _host_order(local: str) -> str:
    """A local_address written as little-endian Linux does, in this host's order."""
    addr, port = local.split(":")
    if sys.byteorder == "big":
        addr = "".join(bytes.fromhex(addr[i:i + 8])[::-1].hex().upper() for i in range(0, len(addr), 8))
    return f"{addr}:{port}"


def _v4(local: str, state: str = "0A") -> str:
    return f"{_host_order(local)} 00000000:0000 {state}"


def _v6(local: str, state: str = "0A") -> str:
    return f"{_host_order(local)} 00000000000000000000000000000000:0000 {state}"


@pytest.mark.parametrize("tcp, tcp6, port, host, healthy", [
    ([_v4("0100007F:0CEA")], [], 3306, "127.0.0.1", True),                  # 127.0.0.1:3306
    ([_v4("0100007F:0CEA")], [], 3306, None, True),
    ([_v4("0100007F:0CEA")], [], 3307, None, False),
    ([_v4("0100007F:0CEA", "01")], [], 3306, None, False),                  # ESTABLISHED, not LISTEN
    ([_v4("00000000:0CEA")], [], 3306, "10.1.2.3", True),                   # 0.0.0.0 takes any IPv4
    ([_v4("00000000:0CEA")], [], 3306, "fd00::1", False),                   # ...but no IPv6
    ([_v4("0302010A:162E")], [], 5678, "10.1.2.3", True),                   # 10.1.2.3:5678
    ([_v4("0302010A:162E")], [], 5678, "10.1.2.4", False),
    ([], [_v6("00000000000000000000000000000000:1628")], 5672, "10.1.2.3", True),   # [::]:5672
    ([], [_v6("00000000000000000000000000000000:1628")], 5672, "fd00::1", True),
    ([], [_v6("00000000000000000000000001000000:1628")], 5672, "::1", True),        # [::1]:5672
    ([], [_v6("00000000000000000000000001000000:1628")], 5672, "127.0.0.1", False),
    ([], [_v6("0000000000000000FFFF00000100007F:1628")], 5672, "127.0.0.1", True),  # ::ffff:127.0.0.1
    ([_v4("0100007F:0CEA")], None, 3306, None, True),                      # a kernel without IPv6
])
def test_port_matching_rules_on_a_fake_proc(tmp_path, tcp, tcp6, port, host, healthy):
    proc = fake_proc(tmp_path, tcp, tcp6)
    assert (hc.check_port(port, host, proc) is None) == healthy
    args = ["--proc", proc, "port", str(port)] + (["--host", host] if host else [])
    assert hc.main(args) == (0 if healthy else 1)


@pytest.mark.parametrize("args", [["port", "0"], ["port", "65536"], ["port", "http"],
                                  ["http", "http://x/", "--status", "500-400"],
                                  ["http", "http://x/", "--status", "abc"],
                                  ["http", "http://x/", "--status", "99"],
                                  ["http", "http://x/", "--timeout", "0"],
                                  ["process", ""], ["process", "a/b"], ["nonsense"], []])
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        hc.main(args)
    assert exc.value.code == 2


# -- http -----------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/down")
        else:
            self.send_response({"/down": 503, "/missing": 404, "/teapot": 418}.get(self.path, 200))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval only makes shutdown() return sooner.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("path, status, healthy", [
    ("/ok", None, True),
    ("/missing", None, True),         # 404: the service answers, which is what 200-499 asks
    ("/down", None, False),
    ("/down", "200-599", True),
    ("/teapot", "418", True),
    ("/ok", "418", False),
    ("/moved", None, True),           # the redirect itself is the answer...
    ("/moved", "200-299", False),     # ...and is not followed to /down
])
def test_http_status_ranges(http_url, capsys, path, status, healthy):
    args = ["http", f"{http_url}{path}"] + (["--status", status] if status else [])
    assert hc.main(args) == (0 if healthy else 1)
    out = capsys.readouterr().out
    assert (out == "") == healthy
    if not healthy:
        assert out.count("\n") == 1 and "status" in out


def test_http_refused_names_the_url(capsys):
    url = f"http://127.0.0.1:{closed_port()}/"
    assert hc.main(["http", url, "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{url}: ") and "refused" in out.lower()


def test_http_times_out_when_nothing_answers(listener, capsys):
    # The listener's backlog completes the connection, but nobody ever answers.
    assert hc.main(["http", f"http://127.0.0.1:{listener}/", "--timeout", "0.3"]) == 1
    assert "timed out" in capsys.readouterr().out


def test_http_ignores_proxies_from_the_environment(http_url, monkeypatch):
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert hc.check_http(f"{http_url}/ok") is None


def test_http_message_hides_credentials(capsys):
    port = closed_port()
    assert hc.main(["http", f"http://admin:hunter2@127.0.0.1:{port}/"]) == 1
    out = capsys.readouterr().out
    assert "hunter2" not in out and "admin" not in out
    assert out.startswith(f"http://127.0.0.1:{port}/: ")


def test_http_refuses_other_schemes():
    assert hc.check_http("file:///etc/passwd") == "file:///etc/passwd: only http and https URLs can be checked"


def test_status_range_forms():
    assert hc.status_range("200-499") == (200, 499)
    assert hc.status_range("204") == (204, 204)


# -- unix socket ----------------------------------------------------------------------

def test_unix_socket(tmp_path, capsys):
    path = str(tmp_path / "s.sock")
    assert hc.main(["socket", path]) == 1
    assert capsys.readouterr().out == f"{path}: No such file or directory\n"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    try:
        assert hc.main(["socket", path, "--timeout", "5"]) == 0
    finally:
        server.close()
    # The socket file outlives its server: connecting is what tells.
    assert hc.main(["socket", path]) == 1
    assert "refused" in capsys.readouterr().out.lower()


def test_a_plain_file_is_not_a_socket(tmp_path):
    (tmp_path / "f").write_text("")
    assert hc.check_socket(str(tmp_path / "f")) is not None


# -- process --------------------------------------------------------------------------

def test_a_real_process_found_by_name_until_it_ends(tmp_path):
    name = f"dyk{os.getpid()}"[:15]
    script = tmp_path / name
    script.write_text("#!/bin/sh\nread line\n")
    script.chmod(0o755)
    child = subprocess.Popen([str(script)], stdin=subprocess.PIPE)
    try:
        assert hc.check_process(name) is None
        assert hc.main(["process", name]) == 0
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert hc.check_process(name) == f"no process named {name} is running"


def fake_process(proc: Path, pid: int, comm: str, argv: list[str], state: str = "S") -> None:
    d = proc / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (d / "stat").write_text(f"{pid} ({comm}) {state} 1 1 1 0 -1\n")


@pytest.mark.parametrize("comm, argv, state, name, found", [
    ("memcached", ["/usr/bin/memcached", "-u", "memcache"], "S", "memcached", True),
    ("memcached", ["/usr/bin/memcached"], "Z", "memcached", False),                 # a zombie
    ("memcached", ["/usr/bin/memcached"], "S", "memcache", False),                  # no prefix match
    ("nova-conductor", ["/usr/bin/python3", "/usr/bin/nova-conductor"], "R", "nova-conductor", True),
    ("neutron-openvsw", ["/usr/bin/python3", "/usr/bin/neutron-openvswitch-agent", "--config-file", "x"],
     "S", "neutron-openvswitch-agent", True),                                       # comm is truncated
    ("neutron-openvsw", ["/usr/bin/python3", "/usr/bin/neutron-openvswitch-thing"],
     "S", "neutron-openvswitch-agent", False),                                      # same 15 chars, other program
    ("neutron-openvsw", [], "S", "neutron-openvswitch-agent", True),                # argv unreadable: trust comm
    ("uwsgi", ["keystone-uwsgi (uwsgi worker 1)"], "S", "keystone-uwsgi", True),    # a process title
    # cotyledon's titles (oslo.service's threading backend), comm set from the title.
    ("nova-conductor:", ["nova-conductor: master process [/usr/bin/nova-conductor --config-file x]"],
     "S", "nova-conductor", True),
    ("neutron-rpc-ser", ["neutron-rpc-server: RpcWorker worker(0)"], "S", "neutron-rpc-server", True),
    ("neutron-rpc-ser", ["neutron-rpc-server-x: master process [/usr/bin/neutron-rpc-server-x]"],
     "S", "neutron-rpc-server", False),                                             # another program's title
    ("python3", ["/usr/bin/python3", "nova-conductor:", "x"], "S", "nova-conductor", False),  # an argument, no title
    ("sh", ["/bin/sh", "-c", "nova-conductor"], "S", "nova-conductor", False),
    ("sleep", ["sleep", "nova-conductor"], "S", "nova-conductor", False),          # not an interpreter
])
def test_process_matching_on_a_fake_proc(tmp_path, comm, argv, state, name, found):
    proc = tmp_path / "proc"
    fake_process(proc, 4242, comm, argv, state)
    (proc / "self").mkdir()                        # non-numeric entries are ignored
    assert (hc.check_process(name, str(proc)) is None) == found
    assert hc.main(["--proc", str(proc), "process", name]) == (0 if found else 1)


def test_process_ignores_its_own_pid(tmp_path):
    proc = tmp_path / "proc"
    fake_process(proc, os.getpid(), "dockyard-health", ["/usr/bin/python3", "/usr/local/bin/dockyard-healthcheck"])
    assert hc.check_process("dockyard-healthcheck", str(proc)) is not None
    fake_process(proc, 4242, "dockyard-health", ["/usr/bin/python3", "/usr/local/bin/dockyard-healthcheck"])
    assert hc.check_process("dockyard-healthcheck", str(proc)) is None


def test_a_process_that_vanishes_while_scanning_is_skipped(tmp_path):
    proc = tmp_path / "proc"
    (proc / "999").mkdir(parents=True)             # a pid dir whose files are gone
    fake_process(proc, 4242, "memcached", ["/usr/bin/memcached"])
    assert hc.check_process("memcached", str(proc)) is None
    assert hc.check_process("mariadbd", str(proc)) is not None
