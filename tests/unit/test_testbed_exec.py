"""`python3 -m dockyard.testbed exec HOST -- CMD`: the command line it becomes,
and its arguments, checked without root and without a testbed (nothing here
enters a namespace: the exec itself is replaced)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.errors import EXIT_INVALID
from dockyard.testbed import daemon, hostexec
from dockyard.testbed.cli import cli
from dockyard.testbed.net import TestbedError
from dockyard.testbed.plan import Layout, PlanError, Subnet, plan_hosts

HOST = plan_hosts(2, Subnet.parse("10.113.0.0/24"), Layout(Path("/srv/tb")))[1]


def test_the_command_enters_dockerds_network_mount_and_uts_namespaces():
    argv = hostexec.enter_argv(4242, ["ip", "netns", "exec", "dockyard-external", "ping", "-c", "3", "x"], "/srv")
    assert argv == ["nsenter", "--target=4242", "--net", "--mount", "--uts", "--wd=/srv", "--",
                    "ip", "netns", "exec", "dockyard-external", "ping", "-c", "3", "x"]
    # No fork, no PID namespace: nsenter becomes the command, whose exit status is the one returned.
    assert not {"--fork", "-F", "--pid", "-p"} & set(argv[:argv.index("--")])
    assert hostexec.enter_argv(7, ["true"]) == ["nsenter", "--target=7", "--net", "--mount", "--uts", "--", "true"]
    with pytest.raises(PlanError) as err:
        hostexec.enter_argv(7, [])
    assert err.value.exit_code == EXIT_INVALID


def test_it_needs_root_and_the_hosts_dockerd(monkeypatch):
    pids = {HOST.name: None}
    monkeypatch.setattr(daemon, "dockerd_pid", lambda host: pids[host.name])
    monkeypatch.setattr(hostexec.os, "geteuid", lambda: 1000)
    with pytest.raises(TestbedError, match="exec needs root"):
        hostexec.argv_for(HOST, ["true"])
    monkeypatch.setattr(hostexec.os, "geteuid", lambda: 0)
    with pytest.raises(TestbedError, match=r"dyk-h2 is not running .*python3 -m dockyard.testbed up 2"):
        hostexec.argv_for(HOST, ["true"])
    pids[HOST.name] = 4242
    assert hostexec.argv_for(HOST, ["hostname"]) == ["nsenter", "--target=4242", "--net", "--mount", "--uts",
                                                     f"--wd={os.getcwd()}", "--", "hostname"]


@pytest.fixture
def execs(monkeypatch) -> list[list[str]]:
    """What the command would become; the 'command' then leaves with exit code 3."""
    became: list[list[str]] = []

    def execvp(file: str, argv: list[str]):
        assert file == argv[0]
        became.append(argv)
        raise SystemExit(3)

    monkeypatch.setattr(daemon, "dockerd_pid", lambda host: 900 + host.index)
    monkeypatch.setattr(hostexec.os, "geteuid", lambda: 0)
    monkeypatch.setattr(hostexec.os, "execvp", execvp)
    return became


@pytest.mark.parametrize("args", [["dyk-h2", "--", "ping", "-c", "3", "10.113.0.11"],
                                  ["h2", "ping", "-c", "3", "10.113.0.11"],          # without --: still the command's
                                  ["2", "--", "ping", "-c", "3", "10.113.0.11"]])
def test_everything_after_the_host_is_the_command_and_its_exit_code_is_returned(tmp_path, execs, args):
    out = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "exec", *args])
    assert out.exit_code == 3, out.output
    assert execs == [["nsenter", "--target=902", "--net", "--mount", "--uts", f"--wd={os.getcwd()}", "--",
                      "ping", "-c", "3", "10.113.0.11"]]


def test_a_commands_own_help_option_is_the_commands(tmp_path, execs):
    out = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "exec", "dyk-h1", "ip", "--help"])
    assert out.exit_code == 3 and execs[0][-2:] == ["ip", "--help"]


def test_help_teaches(tmp_path):
    out = CliRunner().invoke(cli, ["exec", "--help"])
    assert out.exit_code == 0
    for words in ("HOST COMMAND...", "network, mount and UTS namespaces", "Exit code: the command's",
                  "exec dyk-h1 -- ip netns exec dockyard-external ping -c 3 FLOATING_IP", "Needs root"):
        assert words in " ".join(out.output.split()), out.output
    assert "exec" in CliRunner().invoke(cli, ["--help"]).output


def run_testbed(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard.testbed", "--state-dir", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=60)


def test_bad_arguments_are_exit_2_and_a_host_not_up_exit_1(tmp_path):
    # A state folder of its own: no testbed there, nothing is entered.
    assert run_testbed(tmp_path, "exec", "dyk-x", "--", "true").returncode == 2
    missing = run_testbed(tmp_path, "exec", "dyk-h1")
    assert missing.returncode == 2 and "Missing argument 'COMMAND...'" in missing.stderr
    down = run_testbed(tmp_path, "exec", "dyk-h1", "--", "true")
    assert down.returncode == 1
    assert ("dyk-h1 is not running" if os.geteuid() == 0 else "exec needs root") in down.stderr


def test_a_separator_alone_is_no_command(tmp_path, execs):
    out = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "exec", "dyk-h1", "--"])
    assert isinstance(out.exception, PlanError) and "no command to run" in str(out.exception) and execs == []
