"""``dockyard images diff``: package lists of two tags, from FakeEngine.files."""

from __future__ import annotations

from dockyard.image.config import BuildConfig
from dockyard.image.packages import MANIFEST, diff_tags, format_diff, parse_manifest
from dockyard.engine.fake import FakeEngine


def add(engine: FakeEngine, ref: str, manifest: str | None) -> None:
    engine.add_image(ref)
    if manifest is not None:
        engine.files[(ref, MANIFEST)] = manifest.encode()


def test_parse_manifest_ignores_noise():
    assert parse_manifest("a=1\n\n# comment=x\nb=2:1.0-1\nnot a line\n") == {"a": "1", "b": "2:1.0-1"}


def test_diff_per_image_and_images_under_one_tag_only():
    engine = FakeEngine()
    add(engine, "dockyard/keystone:a", "python3=3.13.1\nkeystone=27.0.0-1\nvim=9\n")
    add(engine, "dockyard/keystone:b", "python3=3.13.2\nkeystone=27.0.0-1\nnano=8\n")
    add(engine, "dockyard/memcached:a", "memcached=1.6\n")
    add(engine, "dockyard/memcached:b", "memcached=1.6\n")
    add(engine, "dockyard/glance-api:a", "glance=1\n")
    add(engine, "dockyard/horizon:b", "horizon=1\n")
    diff = diff_tags(engine, BuildConfig(), ["glance-api", "horizon", "keystone", "memcached", "nova"], "a", "b")
    keystone, memcached = diff.images
    assert keystone.image == "keystone"
    assert keystone.added == {"nano": "8"} and keystone.removed == {"vim": "9"}
    assert keystone.changed == {"python3": ("3.13.1", "3.13.2")}
    assert memcached.empty
    assert diff.only_a == ["glance-api"] and diff.only_b == ["horizon"]
    assert format_diff(diff) == [
        "keystone: 1 added, 1 removed, 1 changed",
        "  + nano 8",
        "  - vim 9",
        "  ~ python3 3.13.1 -> 3.13.2",
        "memcached: same packages",
        "only under a: glance-api",
        "only under b: horizon",
    ]


def test_an_image_without_a_package_list_is_reported_not_fatal():
    engine = FakeEngine()
    add(engine, "reg:5000/ns/keystone:a", None)
    add(engine, "reg:5000/ns/keystone:b", "keystone=1\n")
    diff = diff_tags(engine, BuildConfig(namespace="ns", registry="reg:5000"), ["keystone"], "a", "b")
    [keystone] = diff.images
    assert MANIFEST in keystone.error and not keystone.empty
    assert format_diff(diff)[0].startswith("keystone: cannot read /var/lib/dockyard/packages.txt")
