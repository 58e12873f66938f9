"""``dockyard build`` and ``dockyard images`` through click, with a FakeEngine
handed in where ``dockyard.engine.connect()`` would reach Docker."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner

import dockyard.engine
from dockyard.labels import LABEL_IMAGE_HASH
from dockyard.image.packages import MANIFEST
from dockyard.cli import cli
from dockyard.errors import DockyardError, EngineUnavailable

import dockyard.cli.build  # noqa: F401  (adds the commands to ``cli``)

from .image_fixtures import FIXTURE, TREE, FakeRunner, RecordingEngine, add_current_rootfs, built_names


class Connections:
    """Stands in for dockyard.engine.connect: counts calls, hands out the engine."""

    def __init__(self, engine):
        self.engine = engine
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        if self.engine is None:
            raise EngineUnavailable("cannot reach the container engine: no socket")
        return self.engine


@pytest.fixture
def engine(monkeypatch, tmp_path):
    eng = RecordingEngine()
    add_current_rootfs(eng)
    connect = Connections(eng)
    monkeypatch.setattr(dockyard.engine, "connect", connect)
    monkeypatch.setattr("dockyard.image.rootfs.run_command", FakeRunner())  # never the real debootstrap
    monkeypatch.setenv("DOCKYARD_CONFIG_DIR", str(tmp_path / "etc"))      # no build.yml of this machine
    eng.connect = connect
    return eng


def invoke(*args: str) -> tuple[int, object]:
    """Run a command as ``dockyard.cli.main`` would, returning its exit code."""
    result = CliRunner().invoke(cli, list(args), standalone_mode=False)
    exc = result.exception
    if exc is None:
        code = result.return_value if isinstance(result.return_value, int) else 0
    elif isinstance(exc, (DockyardError, click.ClickException)):
        code = exc.exit_code
    else:
        raise exc
    return code, result


def build_args(tmp_path, *extra: str) -> list[str]:
    return ["build", "--catalogue", str(FIXTURE), "--work-dir", str(tmp_path / "work"), *extra]


def test_build_json_report_progress_and_exit_0(engine, tmp_path):
    code, result = invoke(*build_args(tmp_path, "--format", "json", "--threads", "2"))
    assert code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["built"] == len(TREE) and report["ok"] is True
    assert report["rootfs"]["status"] == "cached"
    stderr = result.stderr
    assert "7 images: 7 to build, 0 cached, 0 skipped; root filesystem dockyard/rootfs:trixie current" in stderr
    assert re.search(r"^\[1/7\] base +building \(attempt 1\)$", stderr, re.M)
    assert re.search(r"^\[1/7\] base +built in \d+\.\ds$", stderr, re.M)
    assert re.search(r"^\[7/7\] \S+ +built in", stderr, re.M)


def test_in_a_log_progress_lines_go_to_stderr_and_json_stays_pure(engine, tmp_path, monkeypatch):
    # A summary line at every event and tick instead of every minute: the
    # fake engine builds in no time.
    monkeypatch.setattr("dockyard.image.progress.EVERY", 0.0)
    code, result = invoke(*build_args(tmp_path, "--format", "json", "--threads", "2"))
    assert code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True                 # nothing but the report on stdout
    assert "progress:" not in result.stdout
    summaries = re.findall(r"^progress: (\d+)/7 done.*; \d+s elapsed$", result.stderr, re.M)
    assert summaries and summaries[-1] == "7"
    assert re.search(r"^progress: \d/7 done; building: \S+ \(\d+s\)", result.stderr, re.M)


def test_second_build_is_cached(engine, tmp_path):
    assert invoke(*build_args(tmp_path))[0] == 0
    engine.calls.clear()
    code, result = invoke(*build_args(tmp_path, "--format", "json"))
    assert code == 0
    assert {row["status"] for row in json.loads(result.stdout)["images"]} == {"cached"}
    assert built_names(engine) == []


def test_a_failure_exits_1(engine, tmp_path):
    engine.fail_builds["dockyard/memcached:2025.1"] = -1
    code, result = invoke(*build_args(tmp_path, "--retries", "1"))
    assert code == 1
    assert re.search(r"memcached +building \(attempt 2; attempt 1 failed: .*injected failure\)", result.stderr)
    assert re.search(r"memcached +failed in .*injected failure", result.stderr)
    assert f"logs: {tmp_path / 'work' / 'logs'}/<image>.log" in result.stderr
    assert "6 built, 0 cached, 1 failed, 0 unbuildable, 0 skipped" in result.stdout


@pytest.mark.parametrize("extra, fragment", [
    (["--profile", "galaxy"], "unknown profile 'galaxy'"),
    (["^nothing$"], "no image matches"),
    (["--template-override", "/nonexistent/site.j2"], "template override not found"),
    (["--tag", "bad tag"], "--tag"),
    (["--threads", "0"], "0 is not in the range"),
    (["--format", "yaml"], "'yaml' is not one of"),
])
def test_invalid_input_exits_2_before_touching_the_engine(engine, tmp_path, extra, fragment):
    code, result = invoke(*build_args(tmp_path, *extra))
    assert code == 2
    assert fragment in str(result.exception)
    assert engine.connect.count == 0 and engine.calls == []


def test_config_file_and_options(engine, tmp_path):
    config = tmp_path / "build.yml"
    config.write_text("tag: '2030.1'\nnamespace: site\nimages:\n  keystone: {packages_append: [vim-tiny]}\n")
    code, _ = invoke(*build_args(tmp_path, "--config", str(config), "--namespace", "other", "^keystone$"))
    assert code == 0
    assert engine.image("other/keystone:2030.1") is not None
    dockerfile = (tmp_path / "work/contexts/keystone/Dockerfile").read_text()
    assert "RUN apt-get install -y keystone apache2 vim-tiny" in dockerfile
    config.write_text("images:\n  nosuch: {}\n")
    code, result = invoke(*build_args(tmp_path, "--config", str(config)))
    assert code == 2 and "images.nosuch" in str(result.exception)


def test_template_only_needs_no_engine(monkeypatch, tmp_path):
    connect = Connections(None)
    monkeypatch.setattr(dockyard.engine, "connect", connect)
    out = tmp_path / "contexts"
    code, result = invoke("build", "--catalogue", str(FIXTURE), "--template-only", "--work-dir", str(out),
                          "--profile", "infra")
    assert code == 0 and connect.count == 0
    assert result.stdout.split() == [str(out / "base"), str(out / "memcached")]
    assert (out / "memcached/Dockerfile").read_text().startswith("\nFROM dockyard/base:2025.1")


def test_images_tree_shows_profiles_and_state(engine, tmp_path):
    code, result = invoke("images", "--catalogue", str(FIXTURE))
    assert code == 0
    assert "dockyard/rootfs:trixie (debootstrap trixie)  current" in result.stdout
    assert re.search(r"keystone \(core\)  not built", result.stdout)
    invoke(*build_args(tmp_path, "^keystone$"))
    engine.add_image("dockyard/keystone-base:2025.1", {LABEL_IMAGE_HASH: "from an older catalogue"})
    code, result = invoke("images", "--catalogue", str(FIXTURE))
    assert re.search(r"keystone \(core\)  current", result.stdout)
    assert re.search(r"keystone-base  outdated", result.stdout)
    assert re.search(r"memcached \(infra\)  not built", result.stdout)
    assert "7 images; profiles: all, compute, core, infra" in result.stdout


def test_images_tree_without_an_engine(monkeypatch):
    monkeypatch.setattr(dockyard.engine, "connect", Connections(None))
    code, result = invoke("images", "--catalogue", str(FIXTURE))
    assert code == 0
    assert "engine not reachable" in result.stderr
    assert "nova-compute (compute)" in result.stdout and "not built" not in result.stdout


def test_images_diff(engine):
    for tag, manifest in (("a", "keystone=1\nvim=9\n"), ("b", "keystone=2\n")):
        engine.add_image(f"dockyard/keystone:{tag}")
        engine.files[(f"dockyard/keystone:{tag}", MANIFEST)] = manifest.encode()
    code, result = invoke("images", "--catalogue", str(FIXTURE), "diff", "a", "b")
    assert code == 0
    assert result.stdout.splitlines() == ["keystone: 0 added, 1 removed, 1 changed", "  - vim 9",
                                          "  ~ keystone 1 -> 2"]
    code, result = invoke("images", "--catalogue", str(FIXTURE), "diff", "a", "zzz")
    assert code == 1 and "no image exists under both a and zzz" in result.stderr


@pytest.mark.parametrize("command", [["build"], ["images"], ["images", "diff"]])
def test_help_teaches_with_examples(command):
    code, result = invoke(*command, "--help")
    assert code == 0 and "Example" in result.stdout
