"""`dockyard registry up|down|status` with the fake engine: the registry is
planned and applied like a deploy, owned apart from the site, on HTTPS."""

from __future__ import annotations

import stat

import pytest

from dockyard.deploy.plan.planner import ActionKind
from dockyard.engine.fake import FakeEngine
from dockyard.errors import ConfigError
from dockyard.labels import LABEL_MANAGED, LABEL_SITE
from dockyard.registry import service, tls

from .deploy_fixtures import edit_yaml, make_site, quiet, set_globals, site_of


@pytest.fixture
def setup(tmp_path, monkeypatch):
    config_dir = make_site(tmp_path)
    set_globals(config_dir, registry={"port": 4999})
    monkeypatch.setattr(service, "bind_error", lambda address, port: 0)
    engine = FakeEngine()
    engine.add_image("dockyard/registry:2025.1")
    site, catalogue = site_of(config_dir)
    return site, catalogue, engine, tmp_path / "certs.d"


def test_up_makes_its_certificate_runs_it_healthy_and_trusts_it(setup):
    site, catalogue, engine, certs_d = setup
    lines = []
    result = service.up(site, catalogue, engine, say=lines.append, certs_d=certs_d)
    assert result.ok, lines
    kinds = {o.action.kind for o in result.outcomes}
    assert {ActionKind.CREATE_VOLUME, ActionKind.WRITE_FILE, ActionKind.CREATE, ActionKind.WAIT_HEALTHY} <= kinds
    c = engine.container("dockyard_registry")
    assert c.running and c.labels[LABEL_SITE] == service.owner(site) and c.labels[LABEL_MANAGED] == "true"
    spec = engine.spec("dockyard_registry")
    assert [m.source for m in spec.mounts if m.is_volume] == ["dockyard_registry"]
    assert spec.healthcheck.test[2:4] == ("http", "https://127.0.0.99:4999/v2/")
    # Its configuration: HTTPS on the internal address only, the key private.
    folder = site.generated_dir / "dockyard_registry"
    config = (folder / "config.yml").read_text()
    assert "addr: 127.0.0.99:4999" in config and "certificate: /etc/docker/registry/registry.crt" in config
    at = service.where(site)
    assert (folder / "registry.key").read_bytes() == at.tls.key.read_bytes()
    assert stat.S_IMODE(at.tls.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "registry.key").stat().st_mode) == 0o600
    # The key is in a private file only: never in labels, environment or command.
    key_lines = [line for line in at.tls.key.read_text().splitlines() if "-----" not in line]
    shown = repr((spec.labels, spec.environment, spec.command, spec.healthcheck))
    assert key_lines and not [line for line in key_lines if line in shown]
    assert stat.S_IMODE(at.tls.folder.stat().st_mode) == 0o700
    assert tls.is_current(at.tls.cert.read_bytes(), at.tls.ca.read_bytes(), "127.0.0.99")
    trusted = certs_d / "127.0.0.99:4999" / "ca.crt"
    assert trusted.read_bytes() == at.tls.ca.read_bytes()
    # A second run changes nothing, not even the certificate.
    cert = at.tls.cert.read_bytes()
    again = service.up(site, catalogue, engine, say=lines.append, certs_d=certs_d)
    assert again.ok and again.changed == 0 and not again.outcomes
    assert at.tls.cert.read_bytes() == cert


def test_the_site_and_the_registry_leave_each_other_alone(setup):
    site, catalogue, engine, certs_d = setup
    # A container of the site's on the same engine, and an unlabelled managed one.
    engine.add_image("dockyard/memcached:2025.1")
    from dockyard.engine.driver import ContainerSpec

    engine.create(ContainerSpec("memcached", "dockyard/memcached:2025.1",
                                labels={LABEL_MANAGED: "true", LABEL_SITE: str(site.config_dir.resolve())}))
    engine.create(ContainerSpec("old_one", "dockyard/memcached:2025.1", labels={LABEL_MANAGED: "true"}))
    _, plan = service.plan(site, catalogue, engine, _ensured(site))
    assert [a.id for a in plan.actions if a.kind == ActionKind.REMOVE] == []
    result = service.up(site, catalogue, engine, say=quiet, certs_d=certs_d)
    assert result.ok and engine.container("memcached") and engine.container("old_one")
    # The site's own deploy sees the registry as another owner's: never removed.
    from dockyard.deploy.plan.observe import observe_containers
    from dockyard.deploy.wanted.model import WantedState

    observed = observe_containers(engine, WantedState(), str(site.config_dir.resolve()))
    assert "dockyard_registry" in observed.foreign and "dockyard_registry" not in observed.containers


def _ensured(site):
    at = service.where(site)
    tls.ensure(at.tls, at.address)
    return at


def test_down_removes_the_container_and_purge_everything_else(setup):
    site, catalogue, engine, certs_d = setup
    service.up(site, catalogue, engine, say=quiet, certs_d=certs_d)
    lines = []
    assert service.down(site, catalogue, engine, say=lines.append, certs_d=certs_d) == 1
    assert engine.container("dockyard_registry") is None and "dockyard_registry" in engine.volumes_by_name
    assert (certs_d / "127.0.0.99:4999" / "ca.crt").exists()
    service.up(site, catalogue, engine, say=quiet, certs_d=certs_d)
    service.down(site, catalogue, engine, say=lines.append, purge=True, certs_d=certs_d)
    assert "dockyard_registry" not in engine.volumes_by_name
    assert not (certs_d / "127.0.0.99:4999").exists() and not service.where(site).tls.folder.exists()
    assert service.down(site, catalogue, engine, say=lines.append, certs_d=certs_d) == 0


def test_bad_input_changes_nothing(setup, tmp_path):
    site, catalogue, engine, certs_d = setup
    empty = FakeEngine()
    with pytest.raises(ConfigError, match=r"dockyard build '\^registry\$'"):
        service.up(site, catalogue, empty, say=quiet, certs_d=certs_d)
    assert not service.where(site).tls.folder.exists() and not empty.calls
    bare = make_site(tmp_path / "bare")
    site2, _ = site_of(bare)
    with pytest.raises(ConfigError, match="no registry") as err:
        service.up(site2, catalogue, engine, say=quiet, certs_d=certs_d)
    assert err.value.key == "registry"


def test_the_site_cannot_deploy_the_registry_as_a_service(tmp_path):
    from dockyard.deploy import api

    config_dir = make_site(tmp_path)
    edit_yaml(config_dir / "globals.yml", lambda data: data["enabled_services"].insert(0, "registry"))
    with pytest.raises(ConfigError, match="dockyard registry up") as err:
        api.load(config_dir)
    assert err.value.key == "enabled_services"


def test_an_address_not_on_this_machine_says_which_key_to_set(setup, monkeypatch):
    """On a site of several hosts the registry's default address is a control
    host's, perhaps another machine: registry up says to set registry.address."""
    import errno

    site, catalogue, engine, certs_d = setup
    monkeypatch.setattr(service, "bind_error", lambda address, port: errno.EADDRNOTAVAIL)
    with pytest.raises(ConfigError) as err:
        service.up(site, catalogue, engine, say=quiet, certs_d=certs_d)
    assert err.value.key == "registry" and err.value.exit_code == 2
    assert "cannot listen on 127.0.0.99:4999" in str(err.value)
    assert "(by default the internal address) is not this machine's" in str(err.value)
    assert "set registry.address in globals.yml" in str(err.value)
    assert not engine.container("dockyard_registry")
    monkeypatch.setattr(service, "bind_error", lambda address, port: errno.EADDRINUSE)
    with pytest.raises(ConfigError) as err:
        service.up(site, catalogue, engine, say=quiet, certs_d=certs_d)
    assert "registry.address" not in str(err.value)                  # in use: another cause, no such hint
