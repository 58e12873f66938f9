#!/usr/bin/python3
"""dockyard-healthcheck: small checks for container healthchecks.

  dockyard-healthcheck port PORT [--host ADDR]            something LISTENs on a TCP port
  dockyard-healthcheck http URL [--status 200-499] [--timeout 5] [--insecure]
                                                          the URL answers with a status in range
  dockyard-healthcheck socket PATH [--timeout 5]          a unix socket accepts a connection
  dockyard-healthcheck process NAME                       a process with that name runs

Exit 0 when healthy; 1, with one line saying why, when not; 2 on bad arguments.
Standard library only: it runs inside the images.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

PROC = "/proc"
TCP_LISTEN = "0A"            # the state column of /proc/net/tcp for LISTEN
COMM_LEN = 15                # the kernel truncates a process name (comm) to this
INTERPRETERS = ("python", "perl", "ruby", "node", "sh", "bash")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- port -----------------------------------------------------------------------------

def _proc_address(hex_addr: str) -> Address:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in host byte order."""
    raw = b"".join(int(hex_addr[i:i + 8], 16).to_bytes(4, sys.byteorder)
                   for i in range(0, len(hex_addr), 8))
    return ipaddress.ip_address(raw)


def listening(proc: str = PROC) -> set[tuple[Address, int]]:
    """(address, port) of every TCP socket in LISTEN state in this network namespace."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table)) as fh:
                lines = fh.read().splitlines()[1:]
        except FileNotFoundError:         # a kernel without IPv6 has no tcp6
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != TCP_LISTEN:
                continue
            hex_addr, _, hex_port = fields[1].partition(":")
            found.add((_proc_address(hex_addr), int(hex_port, 16)))
    return found


def _host_addresses(host: str) -> set[Address]:
    try:
        return {ipaddress.ip_address(host)}
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return {ipaddress.ip_address(info[4][0]) for info in infos}


def _accepts(listener: Address, host: Address) -> bool:
    """Whether a socket listening on ``listener`` takes connections to ``host``."""
    if listener == host:
        return True
    if isinstance(listener, ipaddress.IPv6Address):
        if listener.ipv4_mapped is not None and listener.ipv4_mapped == host:
            return True
        # A dual-stack socket on :: takes IPv4 too (V6ONLY is not visible in /proc).
        return listener == ipaddress.IPv6Address("::")
    return listener == ipaddress.IPv4Address("0.0.0.0") and isinstance(host, ipaddress.IPv4Address)


def check_port(port: int, host: str | None = None, proc: str = PROC) -> str | None:
    """None when something listens on ``port`` (at ``host``, when given); else why not."""
    # /proc is read rather than connecting, so the service sees no stray connections.
    listeners = [addr for addr, p in listening(proc) if p == port]
    if host is None:
        return None if listeners else f"nothing listens on TCP port {port}"
    try:
        wanted = _host_addresses(host)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    if any(_accepts(listener, addr) for listener in listeners for addr in wanted):
        return None
    elsewhere = f" (only on {', '.join(sorted(str(a) for a in listeners))})" if listeners else ""
    return f"nothing listens on TCP port {port} at {host}{elsewhere}"


# -- http -----------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A healthcheck judges the first answer; a redirect is a status like any other.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_http(url: str, low: int = 200, high: int = 499, timeout: float = 5.0,
               insecure: bool = False) -> str | None:
    """None when ``url`` answers a GET with a status in [low, high]; else why not."""
    shown = _safe_url(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return f"{shown}: only http and https URLs can be checked"
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # No proxies: a proxy set in the container's environment must not answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect,
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except urllib.error.URLError as exc:
        reason = exc.reason
        return f"{shown}: {getattr(reason, 'strerror', None) or reason}"
    except (OSError, ValueError) as exc:
        return f"{shown}: {getattr(exc, 'strerror', None) or exc}"
    if low <= status <= high:
        return None
    return f"{shown}: status {status}, expected {low}-{high}"


def status_range(text: str) -> tuple[int, int]:
    """'200-499' or '200' -> (low, high)."""
    low, dash, high = text.partition("-")
    try:
        lo, hi = int(low), int(high) if dash else int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a status or a range such as 200-499, got {text!r}") from None
    if not 100 <= lo <= hi <= 599:
        raise argparse.ArgumentTypeError(f"expected statuses within 100-599, low <= high, got {text!r}")
    return lo, hi


# -- unix socket ----------------------------------------------------------------------

def check_socket(path: str, timeout: float = 5.0) -> str | None:
    """None when the unix socket at ``path`` accepts a connection; else why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        sock.close()
    return None


# -- process --------------------------------------------------------------------------

def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:                       # the process ended while we looked
        return None


def _process_matches(pid_dir: str, name: str) -> bool:
    stat_line = _read(os.path.join(pid_dir, "stat"))
    if stat_line is None:
        return False
    # The state follows the parenthesised name, which may itself hold ")".
    state = stat_line[stat_line.rfind(b")") + 2:][:1]
    if state in (b"Z", b"X"):             # a zombie is not a running service
        return False
    comm = (_read(os.path.join(pid_dir, "comm")) or b"").decode(errors="replace").strip()
    if comm == name:
        return True
    args = [a.decode(errors="replace") for a in (_read(os.path.join(pid_dir, "cmdline")) or b"").split(b"\0") if a]
    if args:
        # setproctitle-style titles put "name (details)" in argv[0] alone.
        first = args[0].split()[0] if args[0].strip() else ""
        names = {os.path.basename(args[0]), os.path.basename(first)}
        # oslo.service's threading backend (cotyledon, 2026.1's nova and neutron)
        # titles its processes "name: master process [argv]" and "name: ... worker(0)",
        # and setproctitle puts the title's start in comm too ("nova-conductor:").
        if first.endswith(":") and len(args) == 1:
            names.add(first[:-1])
        # "python3 /usr/bin/nova-conductor": the service is the script, not python.
        if len(args) > 1 and os.path.basename(args[0]).startswith(INTERPRETERS):
            names.add(os.path.basename(args[1]))
        names.discard("")
        if name in names:
            return True
    # A long name is truncated in comm; trust it only when argv cannot be read.
    return not args and len(name) > COMM_LEN and comm == name[:COMM_LEN]


def check_process(name: str, proc: str = PROC) -> str | None:
    """None when a live process called ``name`` runs; else why not."""
    me = str(os.getpid())
    for pid in os.listdir(proc):
        if pid.isdigit() and pid != me and _process_matches(os.path.join(proc, pid), name):
            return None
    return f"no process named {name} is running"


# -- command line ---------------------------------------------------------------------

def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _name(text: str) -> str:
    if not text or "/" in text:
        raise argparse.ArgumentTypeError(f"expected a process name, got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard-healthcheck",
                                description="Exit 0 when healthy, 1 with one line saying why when not.")
    p.add_argument("--proc", default=PROC, help=argparse.SUPPRESS)   # tests use a fake /proc
    sub = p.add_subparsers(dest="kind", required=True)
    port = sub.add_parser("port", help="something LISTENs on a TCP port")
    port.add_argument("port", type=_port)
    port.add_argument("--host", help="the address it must listen at (a wildcard listener counts)")
    http = sub.add_parser("http", help="a URL answers with a status in a range")
    http.add_argument("url")
    http.add_argument("--status", type=status_range, default=(200, 499), help="e.g. 200-499 (the default) or 200")
    http.add_argument("--timeout", type=_seconds, default=5.0)
    http.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    sock = sub.add_parser("socket", help="a unix socket accepts a connection")
    sock.add_argument("path")
    sock.add_argument("--timeout", type=_seconds, default=5.0)
    proc = sub.add_parser("process", help="a process with that name runs")
    proc.add_argument("name", type=_name)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.kind == "port":
        problem = check_port(args.port, args.host, args.proc)
    elif args.kind == "http":
        low, high = args.status
        problem = check_http(args.url, low, high, timeout=args.timeout, insecure=args.insecure)
    elif args.kind == "socket":
        problem = check_socket(args.path, args.timeout)
    else:
        problem = check_process(args.name, args.proc)
    if problem:
        print(problem, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
