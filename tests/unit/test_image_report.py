"""The build summary: the JSON schema, the table, distinct bytes."""

from __future__ import annotations

import io
import json

from rich.console import Console

from dockyard.image.report import BuildReport, distinct_bytes, print_table, to_json
from dockyard.image.scheduler import Outcome
from dockyard.engine.driver import ImageInfo


def sample(rootfs: Outcome | None = None) -> BuildReport:
    outcomes = [
        Outcome("base", "built", 12.5, 1, size=100_000_000),
        Outcome("memcached", "cached", size=120_000_000),
        Outcome("openstack-base", "failed", 3.25, 2, "build of dockyard/openstack-base:2025.1 failed: boom"),
        Outcome("keystone", "unbuildable", error="parent openstack-base is failed"),
        Outcome("glance-api", "skipped", size=300_000_000),
    ]
    return BuildReport(outcomes, 20.0, 321_000_000, rootfs,
                       refs={o.image: f"dockyard/{o.image}:2025.1" for o in outcomes},
                       hashes={o.image: "ab" * 32 for o in outcomes}, rootfs_ref="dockyard/rootfs:trixie")


def test_json_schema():
    data = json.loads(to_json(sample(rootfs=Outcome("rootfs", "built", 80.0, 1, size=90_000_000))))
    assert set(data) == {"schema", "ok", "seconds", "distinct_bytes", "counts", "rootfs", "rootfs_built", "images"}
    assert data["schema"] == 1 and data["ok"] is False
    assert data["seconds"] == 20.0 and data["distinct_bytes"] == 321_000_000
    assert data["counts"] == {"built": 1, "cached": 1, "failed": 1, "unbuildable": 1, "skipped": 1}
    assert data["rootfs"] == {"ref": "dockyard/rootfs:trixie", "status": "built", "seconds": 80.0,
                              "size": 90_000_000, "attempts": 1, "error": None}
    assert data["rootfs_built"] is True
    assert [row["image"] for row in data["images"]] == ["base", "memcached", "openstack-base", "keystone",
                                                        "glance-api"]
    failed = data["images"][2]
    assert failed == {"image": "openstack-base", "ref": "dockyard/openstack-base:2025.1", "hash": "ab" * 32,
                      "status": "failed", "seconds": 3.25, "size": 0, "attempts": 2,
                      "error": "build of dockyard/openstack-base:2025.1 failed: boom"}
    assert data["images"][0]["error"] is None


def test_json_without_rootfs_work_and_all_good():
    report = BuildReport([Outcome("base", "cached", size=5)], 0.1, 5)
    data = json.loads(to_json(report))
    assert data["rootfs"] is None and data["rootfs_built"] is False and data["ok"] is True
    assert report.exit_code == 0


def test_a_failed_rootfs_is_not_ok():
    report = BuildReport([Outcome("base", "unbuildable")], 1.0, 0, Outcome("rootfs", "failed", 1.0, 1, "no net"))
    assert not report.ok and report.exit_code == 1


def test_table_rows_and_totals():
    buf = io.StringIO()
    print_table(sample(), Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    for name in ("base", "memcached", "openstack-base", "keystone", "glance-api"):
        assert name in text
    assert "12.5s" in text and "100.0 MB" in text and "boom" in text
    assert "1 built, 1 cached, 1 failed, 1 unbuildable, 1 skipped; 20.0s in all; 321.0 MB distinct" in text


def info(name: str, size: int, layers: tuple[str, ...]) -> ImageInfo:
    return ImageInfo(id=f"sha256:{name}", tags=(name,), labels={}, size=size, layers=layers)


def test_distinct_bytes_counts_shared_layers_once():
    rootfs = info("rootfs", 100, ("l0",))
    base = info("base", 150, ("l0", "l1"))
    a = info("a", 190, ("l0", "l1", "la"))
    b = info("b", 170, ("l0", "l1", "lb"))
    # rootfs 100 + base 50 + a 40 + b 20; a second tag of b counts nothing.
    pairs = [(rootfs, None), (base, rootfs), (a, base), (b, base), (b, base)]
    assert distinct_bytes(pairs) == 210


def test_distinct_bytes_without_layers_or_unrelated_layers_sums_sizes():
    assert distinct_bytes([(info("x", 10, ()), None), (info("y", 20, ()), info("x", 10, ()))]) == 30
    # Layers that do not extend the parent's: nothing is shared.
    assert distinct_bytes([(info("x", 10, ("a",)), None), (info("y", 20, ("b",)), info("x", 10, ("a",)))]) == 30
