#!/usr/bin/python3
"""dockyard-healthcheck: small checks for container healthchecks.

  dockyard-healthcheck port PORT [--host ADDR]    something LISTENs on a TCP port
  dockyard-healthcheck http URL [--status 200-499] the URL answers in that range
  dockyard-healthcheck socket PATH                 a unix socket accepts a connection
  dockyard-healthcheck process NAME                a process with that name runs

Exit 0 when healthy, 1 (with one line saying why) when not. Standard library only.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import urllib.error
import urllib.request

PROC = os.environ.get("DOCKYARD_PROC", "/proc")
LISTEN = "0A"


def _listening(proc: str) -> set[tuple[str, int]]:
    found = set()
    for name, family in (("tcp", 4), ("tcp6", 6)):
        try:
            with open(os.path.join(proc, "net", name)) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    local, state = fields[1], fields[3]
                    if state != LISTEN:
                        continue
                    addr_hex, port_hex = local.split(":")
                    raw = bytes.fromhex(addr_hex)
                    # /proc stores addresses as host-order 32-bit words.
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    addr = ipaddress.ip_address(words) if family == 4 else ipaddress.IPv6Address(words)
                    found.add((str(addr), int(port_hex, 16)))
        except FileNotFoundError:
            continue
    return found


def check_port(port: int, host: str | None, proc: str = PROC) -> str | None:
    for addr, p in _listening(proc):
        if p != port:
            continue
        if host is None or addr in (host, "0.0.0.0", "::") or addr == f"::ffff:{host}":
            return None
    return f"nothing listens on port {port}" + (f" at {host}" if host else "")


def check_http(url: str, low: int, high: int, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"
    if low <= status <= high:
        return None
    return f"{url}: status {status} not in {low}-{high}"


def check_socket(path: str, timeout: float = 5.0) -> str | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    finally:
        sock.close()
    return None


def check_process(name: str, proc: str = PROC) -> str | None:
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            with open(os.path.join(proc, pid, "comm")) as fh:
                if fh.read().strip() == name[:15]:
                    return None
        except OSError:
            continue
    return f"no process named {name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-healthcheck", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    p = sub.add_parser("port")
    p.add_argument("port", type=int)
    p.add_argument("--host")
    h = sub.add_parser("http")
    h.add_argument("url")
    h.add_argument("--status", default="200-499")
    h.add_argument("--timeout", type=float, default=5.0)
    s = sub.add_parser("socket")
    s.add_argument("path")
    r = sub.add_parser("process")
    r.add_argument("name")
    args = parser.parse_args(argv)

    if args.kind == "port":
        problem = check_port(args.port, args.host)
    elif args.kind == "http":
        low, _, high = args.status.partition("-")
        problem = check_http(args.url, int(low), int(high or low), args.timeout)
    elif args.kind == "socket":
        problem = check_socket(args.path)
    else:
        problem = check_process(args.name)
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
