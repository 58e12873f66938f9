"""The rendered register.py (services/templates/common/register.py.j2), run
against stand-ins for keystone: every answer keystone can give to "does the
service user's password work yet?" gets an answer, never a traceback."""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest
from keystoneauth1 import exceptions as ksa

from dockyard.deploy.wanted.builder import wanted_state

from .deploy_fixtures import fake_engine, make_site, site_of


class FakeIdentity:
    """The identity proxy as register.py uses it: the glance user, its project,
    roles, service and endpoints all there already."""

    def __init__(self, endpoints):
        self.updates: list[dict] = []
        self.created: list[str] = []
        self.endpoints_ = endpoints
        self.user = SimpleNamespace(name="glance", id="u1")

    def find_project(self, name, **_):
        return SimpleNamespace(name=name, id="p1")

    def find_user(self, name, **_):
        return self.user

    def create_user(self, **kwargs):
        self.created.append(kwargs["name"])
        return self.user

    def update_user(self, user, **kwargs):
        self.updates.append(kwargs)

    def find_role(self, name, **_):
        return SimpleNamespace(name=name, id=f"r-{name}")

    def validate_user_has_project_role(self, *_):
        return True

    def services(self):
        return [SimpleNamespace(name="glance", type="image", id="s1")]

    def endpoints(self, service_id):
        return self.endpoints_


class FakeSession:
    """keystoneauth's Session: get_token answers what the test says keystone says."""

    answer: object = "a-token"
    asked: list = []

    def __init__(self, auth):
        self.auth = auth

    def get_token(self):
        FakeSession.asked.append(self.auth)
        if isinstance(FakeSession.answer, BaseException):
            raise FakeSession.answer
        return FakeSession.answer


@pytest.fixture
def register(tmp_path, monkeypatch):
    """The glance register.py as a module, its SDK and keystoneauth session stood in for."""
    site_dir = make_site(tmp_path)
    site, catalogue = site_of(site_dir)
    state = wanted_state(site, catalogue, fake_engine()).state
    source = next(f for f in state.files if f.path.endswith("/glance_register/register.py")).content
    script = tmp_path / "register.py"
    script.write_bytes(source)
    monkeypatch.setitem(sys.modules, "openstack", types.ModuleType("openstack"))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", "unused")      # the script sets it; restored after
    spec = importlib.util.spec_from_file_location("register_under_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    urls = module.ENDPOINTS["glance"][1]
    ident = FakeIdentity([SimpleNamespace(interface=i, region_id=module.REGION, url=u) for i, u in urls.items()])
    module.openstack = SimpleNamespace(connect=lambda **_: SimpleNamespace(identity=ident),
                                       exceptions=SimpleNamespace(ConflictException=type("Conflict", (Exception,), {})))
    module.ksa_session = SimpleNamespace(Session=FakeSession)
    module.ksa_v3 = SimpleNamespace(Password=lambda **kw: kw)
    waits: list[float] = []
    module.time = SimpleNamespace(sleep=waits.append)
    FakeSession.answer, FakeSession.asked = "a-token", []
    module.ident, module.waits = ident, waits
    module.password = site.passwords["glance_keystone_password"]
    return module


def test_a_password_that_works_is_left_alone(register, capsys):
    assert register.password_works() is True
    assert register.main_with_retries() == 0
    assert register.ident.updates == []
    auth = FakeSession.asked[-1]
    assert auth["username"] == "glance" and auth["password"] == register.password
    assert auth["project_name"] == "service" and auth["auth_url"].endswith(":5000/v3")
    out = capsys.readouterr()
    assert "password current" in out.out and register.password not in out.out + out.err


def test_a_401_updates_the_users_password(register, capsys):
    FakeSession.answer = ksa.Unauthorized(http_status=401, message="The request you have made requires "
                                                                   "authentication.")
    assert register.password_works() is False
    assert register.main_with_retries() == 0
    assert register.ident.updates == [{"password": register.password}]
    out = capsys.readouterr()
    assert "glance: password updated" in out.out and register.password not in out.out + out.err


def test_no_connection_is_retried_then_fails_with_one_line(register, capsys):
    FakeSession.answer = ksa.ConnectFailure("Unable to establish connection: Connection refused")
    assert register.main_with_retries(attempts=3) == 1
    assert len(FakeSession.asked) == 3 and register.waits == [2, 4]
    assert register.ident.updates == []
    err = capsys.readouterr().err
    assert "did not answer after 3 attempts" in err and "Traceback" not in err


def test_a_connection_that_comes_back_is_answered(register):
    calls = []
    real_main = register.main

    def flaky_main():
        calls.append(1)
        if len(calls) < 3:
            raise ksa.ConnectFailure("Remote end closed connection without response")
        return real_main()

    register.main = flaky_main
    assert register.main_with_retries(attempts=5) == 0
    assert len(calls) == 3 and register.waits == [2, 4]


@pytest.mark.parametrize("error", [ksa.InternalServerError(http_status=500, message="oops"),
                                   ksa.Forbidden(http_status=403, message="no")])
def test_any_other_answer_fails_the_job_naming_it_and_changes_nothing(register, capsys, error):
    FakeSession.answer = error
    assert register.main_with_retries() == 1
    assert register.ident.updates == []
    err = capsys.readouterr().err
    assert f"keystone answered HTTP {error.http_status}" in err and "glance" in err
    assert register.password not in err
