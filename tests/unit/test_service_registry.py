"""controller/services/registry.py: a service declared in one object is rendered,
validated, rolled out and rolled back by the engine, which knows no service by name.

The "greeter" below exists only here: its template folder is made in tmp_path, its
containers are fakes (fake_runtime.FakeRuntime answers its validate, reload and gate
commands), and it reaches the engine through the `registry` argument alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fake_runtime import FakeRuntime
from process_settings import changed
from sqlalchemy.orm import Session, sessionmaker

from controller.db.grants import DatabaseAccess
from controller.domain.mail_settings import MailSettings
from controller.engine.apply import ApplyFailed, ConfigEngine
from controller.engine.desired import desired_releases
from controller.errors import InvalidInput
from controller.runtime import Replica, Runtime
from controller.services import registry
from controller.services.managed import ManagedService, RenderInputs, TlsPort, Validation
from controller.services.rendering import TemplateFile
from controller.settings import Settings

REPO = Path(__file__).resolve().parents[2]
VALIDATE = "mailyard-greeter-validate"


def _validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    result = runtime.exec(replica, [VALIDATE, release_path])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return Validation() if result.ok else Validation(errors=lines)


def _context(inputs: RenderInputs) -> Mapping[str, Any]:
    return {"s": inputs.mail, "greeting": f"hello from {inputs.mail.hostname}"}


GREETER = ManagedService(
    name="greeter",
    templates=(TemplateFile("greeter.conf.j2", "greeter.conf"),),
    validate=_validate,
    reload=("mailyard-greeter-reload",),
    gate=("mailyard-greeter-healthcheck",),
    context=_context,
)
GREETER_1, GREETER_2 = "mailyard-greeter-1", "mailyard-greeter-2"


@pytest.fixture
def greeter_settings(settings: Settings, tmp_path: Path) -> Settings:
    templates = tmp_path / "templates" / "greeter"
    templates.mkdir(parents=True)
    (templates / "greeter.conf.j2").write_text("greeting = {{ greeting }}\n")
    return changed(settings, templates_dir=tmp_path / "templates")


@pytest.fixture
def runtime(greeter_settings: Settings) -> FakeRuntime:
    return FakeRuntime(
        greeter_settings.config_dir, {"greeter": 2}, services={"greeter": (GREETER, VALIDATE)}
    )


@pytest.fixture
def engine(
    greeter_settings: Settings, sessions: sessionmaker[Session], runtime: FakeRuntime
) -> ConfigEngine:
    engine = ConfigEngine(
        greeter_settings, sessions, runtime, gate_timeout=0.05, settle=0, registry=(GREETER,)
    )
    first = engine.reconcile(trigger="startup")
    assert first is not None
    assert first["status"] == "succeeded"
    runtime.calls.clear()
    return engine


def _greeting(settings: Settings, release: str | None) -> str:
    assert release is not None
    path = settings.config_dir / "greeter" / "releases" / release / "greeter.conf"
    return path.read_text()


def test_a_registered_service_is_rendered_validated_and_rolled_out_replica_by_replica(
    engine: ConfigEngine, runtime: FakeRuntime, greeter_settings: Settings
) -> None:
    before = runtime.committed("greeter")
    assert _greeting(greeter_settings, before) == "greeting = hello from mail.example.com\n"

    outcome = engine.change_settings({"hostname": "mx2.example.com"}, replace=False, actor="t")

    assert outcome is not None
    assert outcome["status"] == "succeeded"
    after = runtime.committed("greeter")
    assert after != before
    assert _greeting(greeter_settings, after) == "greeting = hello from mx2.example.com\n"
    assert runtime.ops() == [
        (GREETER_1, "validate"),
        (GREETER_1, f"activate:{after}"),
        (GREETER_1, "reload"),
        (GREETER_1, "gate"),
        (GREETER_2, f"activate:{after}"),
        (GREETER_2, "reload"),
        (GREETER_2, "gate"),
    ]
    assert {c.active for c in runtime.containers.values()} == {after}
    assert {c.loaded for c in runtime.containers.values()} == {after}


def test_a_registered_service_that_fails_its_gate_is_rolled_back_everywhere(
    engine: ConfigEngine, runtime: FakeRuntime
) -> None:
    before = runtime.committed("greeter")
    runtime.health = lambda c: "no greeting" if c.number == 2 and c.active != before else None

    with pytest.raises(ApplyFailed, match="no greeting"):
        engine.change_settings({"hostname": "mx3.example.com"}, replace=False, actor="t")

    assert runtime.committed("greeter") == before
    assert {c.active for c in runtime.containers.values()} == {before}
    assert {c.loaded for c in runtime.containers.values()} == {before}
    assert engine.current_settings().hostname == "mail.example.com"


def test_a_registered_service_that_refuses_its_release_changes_nothing(
    engine: ConfigEngine, runtime: FakeRuntime
) -> None:
    before = runtime.committed("greeter")
    runtime.checker = lambda service, files: (
        ["greeting too long"] if "mx4" in "".join(files.values()) else []
    )

    with pytest.raises(InvalidInput, match="greeter refused the new configuration"):
        engine.change_settings({"hostname": "mx4.example.com"}, replace=False, actor="t")

    assert runtime.committed("greeter") == before
    assert [op for _, op in runtime.ops()] == ["validate"]
    assert engine.current_settings().hostname == "mail.example.com"


def test_services_are_ordered_after_those_they_send_work_to() -> None:
    sender = ManagedService(
        name="sender",
        templates=(),
        validate=_validate,
        reload=(),
        gate=(),
        after=("greeter", "absent"),
    )
    assert [s.name for s in registry.in_dependency_order([sender, GREETER])] == [
        "greeter",
        "sender",
    ]
    loop = ManagedService("greeter", (), _validate, (), (), after=("sender",))
    with pytest.raises(ValueError, match="circle"):
        registry.in_dependency_order([sender, loop])


def test_a_disabled_service_is_neither_rendered_nor_rolled_out(settings: Settings) -> None:
    off = changed(settings, filter_mode="off")
    mail = MailSettings(hostname="mail.example.com")
    assert "amavis" in desired_releases(settings, mail)
    assert "amavis" not in desired_releases(off, mail)
    assert [s.name for s in registry.enabled_services(settings)] == [
        "dovecot",
        "opendkim",
        "postgrey",
        "amavis",
        "postfix",
    ]


def test_the_db_container_makes_an_account_for_every_service_that_declares_one() -> None:
    found = re.findall(
        r"^\s+MAILYARD_DB_SERVICE_USERS: (.+)$", (REPO / "compose.yaml").read_text(), re.M
    )
    assert len(found) == 1
    users = found[0].split()
    assert sorted(users) == sorted(a.service for a in registry.database_accounts())


def test_tls_ports_come_from_the_services_that_use_the_certificate() -> None:
    ports = {(service.name, tls.port) for service in registry.REGISTRY for tls in service.tls_ports}
    assert ports == {
        ("postfix", 25),
        ("postfix", 465),
        ("postfix", 587),
        ("dovecot", 993),
        ("dovecot", 995),
    }
    for service in registry.REGISTRY:
        assert bool(service.tls_ports) == service.uses_certificate
    assert TlsPort(25, "smtp-starttls") in next(
        s.tls_ports for s in registry.REGISTRY if s.name == "postfix"
    )


def test_database_accounts_are_named_after_their_service() -> None:
    account = DatabaseAccess("greeter", columns={"domains": ("id", "name")})
    assert account.user == "mailyard_greeter"
    assert account.password_file == "db-greeter-password"
