"""A port already in use is bad input: refused before anything runs.

Runs before the cloud exists, on its own site bound to 127.0.0.7, so nothing of
the main site is involved.
"""

from __future__ import annotations

import socket

from .conftest import dockyard, side_site


def host_snapshot(engine) -> dict:
    return {
        "containers": sorted((c.name, c.id, c.status) for c in engine.containers()),
        "volumes": sorted(v.name for v in engine.volumes()),
    }


def test_port_in_use_is_refused_before_anything_runs(built_catalogue, engine, tmp_path):
    site = side_site(tmp_path, "127.0.0.7", ["memcached"])
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.7", 11211))
    holder.listen()
    before = host_snapshot(engine)
    try:
        proc = dockyard("deploy", "--config-dir", str(site), check=False)
    finally:
        holder.close()
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "11211" in out
    assert host_snapshot(engine) == before
    assert not (site / "generated").exists() or not any((site / "generated").rglob("*"))
