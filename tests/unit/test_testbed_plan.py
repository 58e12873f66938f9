"""The testbed's pure part: address plan, names, paths, command lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.testbed import plan
from dockyard.testbed.plan import Layout, PlanError, Subnet, parse_host, plan_hosts

LAYOUT = Layout(Path("/srv/tb"))


def hosts(n: int, subnet: str = plan.DEFAULT_SUBNET):
    return plan_hosts(n, Subnet.parse(subnet), LAYOUT)


def test_address_plan():
    h = hosts(3)
    assert [x.name for x in h] == ["dyk-h1", "dyk-h2", "dyk-h3"]
    assert [x.address for x in h] == ["10.113.0.11", "10.113.0.12", "10.113.0.13"]
    assert h[1].engine_url == "tcp://10.113.0.12:2376"
    assert Subnet.parse("10.113.0.0/24").root_address == "10.113.0.1"
    assert len({x.address for x in hosts(50)}) == 50


def test_another_subnet_moves_every_address():
    h = hosts(2, "192.168.77.0/24")
    assert [x.address for x in h] == ["192.168.77.11", "192.168.77.12"]


@pytest.mark.parametrize("text", ["10.113.0.0/16", "10.113.0.5/24", "8.8.8.0/24", "nonsense", "fd00::/64"])
def test_bad_subnets_are_refused(text):
    with pytest.raises(PlanError):
        Subnet.parse(text)


def test_host_count_bounds():
    subnet = Subnet.parse(plan.DEFAULT_SUBNET)
    assert subnet.max_hosts == 244                    # .11 .. .254
    assert hosts(244)[-1].address == "10.113.0.254"
    with pytest.raises(PlanError):
        plan_hosts(245, subnet, LAYOUT)
    with pytest.raises(PlanError):
        plan_hosts(0, subnet, LAYOUT)


@pytest.mark.parametrize("text,index", [("dyk-h2", 2), ("h2", 2), ("2", 2), (" dyk-h12 ", 12)])
def test_host_names_parse(text, index):
    assert parse_host(text) == index


@pytest.mark.parametrize("text", ["dyk-h0", "x2", "dyk-hx", "", "other-h1"])
def test_bad_host_names(text):
    with pytest.raises(PlanError):
        parse_host(text)


def test_names_fit_the_kernel_limits():
    # Interface names are at most 15 characters, in every namespace.
    h = hosts(244)[-1]
    for name in (h.switch_port, h.tunnel_port, plan.ROOT_LINK, plan.ROOT_PORT, plan.BRIDGE, plan.HOST_LINK,
                 plan.TUNNEL_BRIDGE, plan.TUNNEL_LINK):
        assert len(name) <= 15
    assert h.netns == "dyk-h244"


def test_macs_are_fixed_distinct_and_local():
    macs = [h.mac for h in hosts(244)]
    assert len(set(macs)) == 244
    assert macs[0] == "02:64:79:6b:00:01" and macs[-1] == "02:64:79:6b:00:f4"
    every = [link.mac for h in hosts(244) for link in h.links]      # eth0 and eth1 of every host
    assert len(set(every)) == 2 * 244
    assert all(int(m[:2], 16) & 0b11 == 0b10 for m in every)     # unicast, locally administered


def test_each_host_has_a_control_link_and_a_bare_tunnel_link():
    h = hosts(2)[1]
    eth0, eth1 = h.links
    assert (eth0.name, eth0.port, eth0.bridge, eth0.address, eth0.prefixlen) == \
        ("eth0", "h2", "br0", "10.113.0.12", 24)
    # The tunnel link is left bare: its address belongs on the Open vSwitch
    # bridge a deployment makes (br-tunnel), not on eth1 as well.
    assert (eth1.name, eth1.port, eth1.bridge, eth1.address) == ("eth1", "t2", "br1", None)
    assert h.tunnel_address == "10.114.0.12" and eth1.mac == h.tunnel_mac != h.mac
    ports = [link.port for x in hosts(244) for link in x.links]
    assert len(set(ports)) == len(ports)                           # one switch namespace holds them all
    assert plan.TUNNEL_BRIDGE != plan.BRIDGE


def test_the_tunnel_subnet_moves_the_tunnel_addresses_only():
    h = plan_hosts(2, Subnet.parse(plan.DEFAULT_SUBNET), LAYOUT, tunnel_subnet=Subnet.parse("192.168.9.0/24"))
    assert [x.tunnel_address for x in h] == ["192.168.9.11", "192.168.9.12"]
    assert [x.address for x in h] == ["10.113.0.11", "10.113.0.12"]
    assert h[0].links[1].prefixlen == 24


def test_the_tunnel_subnet_must_be_a_network_of_its_own():
    with pytest.raises(PlanError, match="overlaps"):
        plan_hosts(2, Subnet.parse("10.113.0.0/24"), LAYOUT, tunnel_subnet=Subnet.parse("10.113.0.0/24"))


def test_every_file_lives_under_the_state_folder():
    h = hosts(1)[0]
    for path in (h.data_root, h.config_file, h.pidfile, h.log_file, h.socket, h.server_cert, h.server_key,
                 LAYOUT.ca_cert, LAYOUT.ca_key, LAYOUT.client_dir, LAYOUT.lock_file):
        assert Path(path).is_relative_to(LAYOUT.state_dir)
    assert len(str(h.socket)) < 108                     # sun_path


def test_dockerd_command_line():
    h = hosts(2)[1]
    argv = h.dockerd_argv()
    assert argv[0] == "dockerd"
    flags = dict(zip(argv[1::2], argv[2::2]))
    assert flags["--config-file"] == "/srv/tb/hosts/dyk-h2/daemon.json"
    assert flags["--data-root"] == "/srv/tb/hosts/dyk-h2/data"
    assert flags["--exec-root"] == "/run/docker"       # inside the host's private /run
    assert flags["--pidfile"] == "/srv/tb/hosts/dyk-h2/dockerd.pid"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--host"] == [
        "unix:///srv/tb/hosts/dyk-h2/docker.sock", "tcp://10.113.0.12:2376"]
    assert "--tlsverify" in argv
    assert argv[argv.index("--tlscacert") + 1] == "/srv/tb/tls/ca.pem"
    assert argv[argv.index("--tlscert") + 1] == "/srv/tb/hosts/dyk-h2/tls/cert.pem"


def test_daemon_config_keeps_the_engine_off_the_network_and_firewall():
    h = hosts(1)[0]
    config = json.loads(h.daemon_config_text())
    assert config["bridge"] == "none"
    assert config["iptables"] is False and config["ip-masq"] is False and config["ip-forward"] is False
    assert config["storage-driver"] == "fuse-overlayfs"
    assert config["cgroup-parent"] == "/dyk-h1"
    # Flags on the command line and keys in the file must not meet: dockerd refuses both.
    flags = {a.lstrip("-") for a in h.dockerd_argv() if a.startswith("--")}
    assert not flags & set(config)
    assert h.daemon_config_text() == hosts(1)[0].daemon_config_text()   # stable: no needless restart


def test_launch_enters_the_namespace_without_ip_netns_exec():
    h = hosts(1)[0]
    argv = h.launch_argv()
    assert argv[:3] == ["nsenter", "--net=/run/netns/dyk-h1", "--"]
    assert "ip" not in argv[:3]
    i = argv.index("unshare")
    assert argv[i:i + 6] == ["unshare", "--mount", "--uts", "--propagation", "private", "--"]
    assert "--fork" not in argv                          # one PID from Popen to dockerd
    script = argv[argv.index("-ec") + 1]
    assert "mount -t tmpfs" in script and "/run" in script
    assert "mount --make-shared /run/netns" in script
    assert script.rstrip().endswith('exec "$@"')
    assert argv[argv.index(script) + 1:argv.index(script) + 4] == ["testbed-host", "dyk-h1", "dockerd"]


def test_docker_env():
    env = plan.docker_env(hosts(2)[1])
    assert env == {"DOCKER_HOST": "tcp://10.113.0.12:2376", "DOCKER_TLS_VERIFY": "1",
                   "DOCKER_CERT_PATH": "/srv/tb/tls/client"}


def test_cli_help_and_env_need_no_machine(tmp_path):
    from dockyard.testbed.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["--help"])
    assert out.exit_code == 0
    for word in ("up", "down", "status", "env", "load", "Examples"):
        assert word in out.output
    out = runner.invoke(cli, ["--state-dir", str(tmp_path), "env", "h3"])
    assert out.exit_code == 0
    assert "export DOCKER_HOST=tcp://10.113.0.13:2376" in out.output
    assert f"export DOCKER_CERT_PATH={tmp_path}/tls/client" in out.output
    out = runner.invoke(cli, ["--state-dir", str(tmp_path), "env", "h3", "--format", "json"])
    assert out.exit_code == 0 and json.loads(out.output)["tunnel_address"] == "10.114.0.13"
    out = runner.invoke(cli, ["--state-dir", str(tmp_path), "--tunnel-subnet", "172.30.5.0/24", "env", "h3",
                              "--format", "json"])
    assert out.exit_code == 0 and json.loads(out.output)["tunnel_address"] == "172.30.5.13"
    assert not tmp_path.joinpath("testbed.json").exists()             # env only reads


def test_a_running_testbed_keeps_its_tunnel_subnet(tmp_path):
    from dockyard.testbed.net import TestbedError
    from dockyard.testbed.testbed import Testbed

    layout = Layout(tmp_path)
    (layout.hosts_dir / "dyk-h1").mkdir(parents=True)                 # a host exists
    (tmp_path / "testbed.json").write_text(json.dumps({"subnet": "10.113.0.0/24", "storage_driver": "vfs",
                                                       "tunnel_subnet": "10.114.0.0/24"}))
    assert Testbed(layout).host(1).tunnel_address == "10.114.0.11"
    with pytest.raises(TestbedError, match="run down first"):
        Testbed(layout, tunnel_subnet=Subnet.parse("10.115.0.0/24")).host(1)
    # Made before the tunnel network: no eth1 anywhere yet, any subnet will do.
    (tmp_path / "testbed.json").write_text(json.dumps({"subnet": "10.113.0.0/24", "storage_driver": "vfs"}))
    assert Testbed(layout).host(1).tunnel_address == "10.114.0.11"
    assert Testbed(layout, tunnel_subnet=Subnet.parse("10.115.0.0/24")).host(1).tunnel_address == "10.115.0.11"


def test_routes_overlapping_the_subnet_are_found():
    from dockyard.testbed.net import overlapping_routes

    subnet = Subnet.parse("10.113.0.0/24")
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "10.113.0.0/24", "dev": "dyk-root"},            # the testbed's own
        {"dst": "10.113.0.1", "dev": "dyk-root", "type": "local"},
        {"dst": "fd00::/64", "dev": "eth0"},
        {"dst": "10.0.0.0/8", "dev": "vpn0"},
        {"dst": "10.113.0.77", "dev": "eth0"},
    ]
    assert overlapping_routes(routes, subnet) == ["10.0.0.0/8 dev vpn0", "10.113.0.77 dev eth0"]
