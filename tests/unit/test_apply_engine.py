"""controller/engine/apply.py: the order and bookkeeping of the apply pipeline.

The containers are fakes (fake_runtime.FakeRuntime) that answer the commands the engine
sends: they stand in for Docker only to check what is done in which order and what is
recorded. Real validation, reloads and health gates are covered by tests/stack.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_runtime import ControllerKilled, FakeContainer, FakeRuntime
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import ConfigApply
from controller.domain.mail_settings import MIB
from controller.domain.setting_rows import load_stored
from controller.engine import apply
from controller.engine.apply import ApplyFailed, ConfigEngine
from controller.errors import Conflict, InvalidInput, Unavailable
from controller.services.managed import ACTIVATE
from controller.services.postfix import POSTFIX
from controller.settings import Settings

P1, P2 = "mailyard-postfix-1", "mailyard-postfix-2"
D1, D2 = "mailyard-dovecot-1", "mailyard-dovecot-2"
GATE_TIMEOUT = 0.05


def _engine(settings: Settings, sessions: sessionmaker[Session], runtime: FakeRuntime) -> Any:
    return ConfigEngine(settings, sessions, runtime, gate_timeout=GATE_TIMEOUT, settle=0)


@pytest.fixture
def runtime(settings: Settings) -> FakeRuntime:
    return FakeRuntime(settings.config_dir, {"postfix": 2, "dovecot": 2})


@pytest.fixture
def pipeline(
    settings: Settings, sessions: sessionmaker[Session], runtime: FakeRuntime
) -> ConfigEngine:
    """The engine after a first start: every replica runs the committed releases."""
    engine: ConfigEngine = _engine(settings, sessions, runtime)
    first = engine.reconcile(trigger="startup")
    assert first is not None
    assert first["status"] == "succeeded"
    for container in runtime.containers.values():
        assert container.active == container.loaded == runtime.committed(container.service)
    runtime.calls.clear()
    return engine


def _stored(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        return load_stored(session)


def _applies(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        records = session.scalars(select(ConfigApply).order_by(ConfigApply.id))
        return [(record.trigger, record.status) for record in records]


def _tree(root: Path) -> dict[str, str]:
    """Every file and link under `root`, to prove that something wrote nothing."""
    tree = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            tree[key] = "-> " + os.readlink(path)
        elif path.is_file():
            tree[key] = path.read_text()
        else:
            tree[key] = "dir"
    return tree


def _releases(settings: Settings, service: str) -> set[str]:
    return {path.name for path in (settings.config_dir / service / "releases").iterdir()}


def _state(runtime: FakeRuntime, service: str) -> dict[str, tuple[str | None, str | None]]:
    return {
        c.name: (c.active, c.loaded) for c in runtime.containers.values() if c.service == service
    }


def _rollout(container: str, release: str) -> list[tuple[str, str]]:
    return [(container, f"activate:{release}"), (container, "reload"), (container, "gate")]


def _refuse(service: str, marker: str, message: str) -> Callable[[str, Any], list[str]]:
    """A checker: the daemon of `service` refuses a release whose files contain `marker`."""

    def check(checked: str, files: Any) -> list[str]:
        text = "".join(files.values())
        return [message] if checked == service and marker in text else []

    return check


# --- ordering --------------------------------------------------------------------------
def test_validates_then_rolls_out_dovecot_before_postfix_one_replica_at_a_time(
    pipeline: ConfigEngine, runtime: FakeRuntime, sessions: sessionmaker[Session]
) -> None:
    old = {service: runtime.committed(service) for service in ("postfix", "dovecot")}
    seen_at_first_activate: dict[str, Any] = {}

    def before_exec(container: FakeContainer, argv: tuple[str, ...]) -> None:
        if argv[0] == ACTIVATE and not seen_at_first_activate:
            # Step 4 before step 5: a controller killed from here on finds the new
            # settings and an in-progress record; `current` has not moved yet.
            seen_at_first_activate["stored"] = _stored(sessions)
            seen_at_first_activate["applies"] = _applies(sessions)
            seen_at_first_activate["committed"] = runtime.committed("dovecot")

    runtime.before_exec = before_exec
    # The TLS floor reaches both main.cf and dovecot.conf.
    record = pipeline.change_settings(
        {"tls_server_protocols": ">=TLSv1.3"}, replace=False, actor="test"
    )
    assert record is not None
    assert record["status"] == "succeeded"
    new = {service: runtime.committed(service) for service in ("postfix", "dovecot")}
    assert new["postfix"] != old["postfix"]
    assert new["dovecot"] != old["dovecot"]
    assert runtime.ops() == [
        # Each daemon checks its staged release before anything goes live ...
        (D1, "validate"),
        (P1, "validate"),
        # ... then Dovecot first (Postfix depends on it), one replica at a time.
        *_rollout(D1, new["dovecot"]),
        *_rollout(D2, new["dovecot"]),
        *_rollout(P1, new["postfix"]),
        *_rollout(P2, new["postfix"]),
    ]
    assert seen_at_first_activate == {
        "stored": {"tls_server_protocols": ">=TLSv1.3"},
        "applies": [("startup", "succeeded"), ("api", "in_progress")],
        "committed": old["dovecot"],
    }
    for service in ("postfix", "dovecot"):
        assert set(_state(runtime, service).values()) == {(new[service], new[service])}


def test_replicas_are_rolled_out_in_number_order(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    runtime = FakeRuntime(settings.config_dir, {"postfix": 3, "dovecot": 1})
    engine = _engine(settings, sessions, runtime)
    engine.reconcile(trigger="startup")
    runtime.calls.clear()
    engine.change_settings({"recipient_limit": 50}, replace=False, actor="test")
    activated = [name for name, verb in runtime.ops() if verb.startswith("activate:")]
    assert activated == [
        "mailyard-postfix-1",
        "mailyard-postfix-2",
        "mailyard-postfix-3",
    ]


@pytest.mark.parametrize(
    "case",
    [
        ({"message_size_limit": 10 * MIB}, "postfix", "dovecot"),
        ({"login_process_limit": 50}, "dovecot", "postfix"),
    ],
    ids=["postfix-only", "dovecot-only"],
)
def test_a_service_whose_files_did_not_change_is_not_touched(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    case: tuple[dict[str, Any], str, str],
) -> None:
    change, changed, untouched = case
    before = _state(runtime, untouched)
    committed = runtime.committed(untouched)
    releases = _releases(settings, untouched)
    record = pipeline.change_settings(change, replace=False, actor="test")
    assert record is not None
    assert set(record["services"]) == {changed}
    # Not validated, not activated, not reloaded, not gated: the only command its
    # containers see reads which release they run (to notice a replica that drifted).
    prefix = f"mailyard-{untouched}-"
    assert [verb for name, verb in runtime.ops() if name.startswith(prefix)] == []
    assert {argv for name, argv in runtime.calls if name.startswith(prefix)} == {
        ("readlink", "/etc/mailyard/active")
    }
    assert _state(runtime, untouched) == before
    assert runtime.committed(untouched) == committed
    assert _releases(settings, untouched) == releases
    # The changed service did get the whole treatment.
    assert any(
        name.startswith(f"mailyard-{changed}-") and verb == "reload" for name, verb in runtime.ops()
    )


def test_identical_values_change_nothing(
    pipeline: ConfigEngine, runtime: FakeRuntime, sessions: sessionmaker[Session]
) -> None:
    before = _applies(sessions)
    defaults = {"message_size_limit": 50 * MIB, "mynetworks": ["127.0.0.0/8"]}
    assert pipeline.change_settings(defaults, replace=False, actor="test") is None
    assert runtime.ops() == []
    assert _applies(sessions) == before
    assert _stored(sessions) == {}


@pytest.mark.parametrize(
    ("trusted", "covered"),
    [
        (["127.0.0.0/8", "172.30.0.0/16"], "mailyard_edge"),  # the public network and more
        (["172.30.0.1/32"], "mailyard_edge"),  # its gateway: every published-port client
        (["10.203.4.7/32"], "mailyard_filter"),  # a container on an internal network
        (["10.0.0.0/8"], "mailyard_filter"),
    ],
)
def test_trusted_networks_never_cover_a_network_postfix_is_on(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    sessions: sessionmaker[Session],
    trusted: list[str],
    covered: str,
) -> None:
    before = _applies(sessions)
    with pytest.raises(InvalidInput, match=f"covers the compose network {covered}"):
        pipeline.change_settings({"mynetworks": trusted}, replace=False, actor="test")
    assert runtime.ops() == []
    assert _applies(sessions) == before
    assert _stored(sessions) == {}


def test_trusted_networks_outside_the_stacks_networks_are_applied(
    pipeline: ConfigEngine, sessions: sessionmaker[Session]
) -> None:
    pipeline.change_settings(
        {"mynetworks": ["127.0.0.0/8", "192.0.2.0/24"]}, replace=False, actor="test"
    )
    assert _stored(sessions)["mynetworks"] == ["127.0.0.0/8", "192.0.2.0/24"]


# --- refused by the daemon ----------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    service: str  # whose checker refuses
    change: dict[str, Any]  # the settings change
    marker: str  # text in the staged release that it refuses
    complaint: str  # and what it says


REFUSALS = [
    Refusal(
        "postfix",
        {"helo_restrictions": ["reject_bogus_restriction"]},
        "reject_bogus_restriction",
        'unknown smtpd restriction: "reject_bogus_restriction"',
    ),
    Refusal(
        "dovecot",
        {"login_process_limit": 4242},
        "process_limit = 4242",
        "Error in configuration file dovecot.conf line 92: process_limit is too large",
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.service)
def test_a_release_the_daemon_refuses_never_goes_live(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
    refusal: Refusal,
) -> None:
    service, change, complaint = refusal.service, refusal.change, refusal.complaint
    tree = _tree(settings.config_dir)
    states = {name: _state(runtime, name) for name in ("postfix", "dovecot")}
    runtime.checker = _refuse(service, refusal.marker, complaint)
    with pytest.raises(InvalidInput) as info:
        pipeline.change_settings(change, replace=False, actor="test")
    error = info.value
    assert type(error) is InvalidInput  # refused up front, not rolled back
    assert error.message.startswith(f"{service} refused the new configuration: ")
    assert complaint in error.message
    apply_id = error.extra["apply_id"]
    assert isinstance(apply_id, int)
    record = pipeline.get_apply(apply_id)
    assert record["status"] == "invalid"
    assert record["error"] == error.message
    assert record["changes"][0]["name"] == next(iter(change))
    # Nothing stored, nothing live, and the staged release is gone again.
    assert _stored(sessions) == {}
    assert _tree(settings.config_dir) == tree
    assert [verb for _, verb in runtime.ops() if verb != "validate"] == []
    assert {name: _state(runtime, name) for name in ("postfix", "dovecot")} == states


def test_a_refusal_by_postfix_also_discards_dovecots_staged_release(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
) -> None:
    tree = _tree(settings.config_dir)
    runtime.checker = _refuse("postfix", "smtpd_tls_protocols = >=TLSv1.3", "TLS 1.3 only?")
    with pytest.raises(InvalidInput, match=r"TLS 1\.3 only"):
        pipeline.change_settings({"tls_server_protocols": ">=TLSv1.3"}, replace=False, actor="t")
    # Dovecot accepted its part, but it must not go live without Postfix's.
    assert runtime.ops() == [(D1, "validate"), (P1, "validate")]
    assert _tree(settings.config_dir) == tree


def test_validator_warnings_are_recorded(pipeline: ConfigEngine, runtime: FakeRuntime) -> None:
    runtime.warnings = lambda service, _files: [f"{service} grumbles"]
    record = pipeline.change_settings(
        {"tls_server_protocols": ">=TLSv1.3"}, replace=False, actor="test"
    )
    assert record is not None
    assert record["status"] == "succeeded"
    assert record["warnings"] == [
        "dovecot: doveconf: Warning: dovecot grumbles",
        "postfix: postfix grumbles",
    ]


# --- health gate and rollback -------------------------------------------------------------
def test_a_gate_failure_on_the_last_replica_rolls_back_every_replica(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    old = runtime.committed("postfix")
    assert old is not None
    fatal = "postfix/master[1]: fatal: bind 192.0.2.55 port 25: Cannot assign requested address"

    def health(container: FakeContainer) -> str | None:
        if container.name == P2 and container.loaded != old:
            container.write_log(fatal)
            return "port 25: no 220 banner"
        return None

    runtime.health = health
    with pytest.raises(ApplyFailed) as info:
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    error = info.value
    assert isinstance(error, InvalidInput)  # answered 422, like any refused change
    assert error.message.startswith("the new configuration was rolled back: ")
    assert P2 in error.message
    assert "port 25: no 220 banner" in error.message
    assert "Cannot assign requested address" in error.message  # the daemon's own words

    new = next(name for name in _releases(settings, "postfix") if name != old)
    ops = runtime.ops()
    forward = [*_rollout(P1, new), *_rollout(P2, new)]
    assert ops[: 1 + len(forward)] == [(P1, "validate"), *forward[:-1], (P2, "gate")]
    # The gate is retried until its timeout, then the touched replicas go back, newest
    # first: the previous release, a reload, and the gate again.
    rest = ops[len(forward) :]
    assert set(rest[: rest.index((P2, f"activate:{old}"))]) == {(P2, "gate")}
    rollback = rest[rest.index((P2, f"activate:{old}")) :]
    assert rollback == [*_rollout(P2, old), *_rollout(P1, old)]

    assert set(_state(runtime, "postfix").values()) == {(old, old)}
    assert runtime.committed("postfix") == old
    assert _stored(sessions) == {}  # the previous settings are back
    record = pipeline.get_apply(error.extra["apply_id"])
    assert record["status"] == "rolled_back"
    assert record["error"] == error.message.removeprefix("the new configuration was rolled back: ")
    steps = record["services"]["postfix"]["replicas"]
    assert [(s["container"], s["outcome"]) for s in steps] == [(P1, "ok"), (P2, "gate_failed")]
    assert all(s["from_release"] == old and s["to_release"] == new for s in steps)
    assert _applies(sessions)[-1] == ("api", "rolled_back")


def test_a_rollback_of_both_services_restores_dovecot_too(
    pipeline: ConfigEngine, runtime: FakeRuntime
) -> None:
    old = {service: runtime.committed(service) for service in ("postfix", "dovecot")}
    runtime.health = lambda c: "no banner" if c.name == P1 and c.loaded != old["postfix"] else None
    with pytest.raises(ApplyFailed):
        pipeline.change_settings({"tls_server_protocols": ">=TLSv1.3"}, replace=False, actor="t")
    for service in ("postfix", "dovecot"):
        assert runtime.committed(service) == old[service]
        assert set(_state(runtime, service).values()) == {(old[service], old[service])}
    rollback = runtime.ops()[-9:]
    assert rollback == [
        *_rollout(P1, old["postfix"]),
        *_rollout(D2, old["dovecot"]),
        *_rollout(D1, old["dovecot"]),
    ]


def test_a_replica_that_dies_on_reload_fails_its_gate_and_is_rolled_back(
    pipeline: ConfigEngine, runtime: FakeRuntime, sessions: sessionmaker[Session]
) -> None:
    old = runtime.committed("postfix")
    runtime.crash_on_reload = lambda c: c.name == P1 and c.active != old
    with pytest.raises(ApplyFailed, match="stopped after the reload"):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    p1 = runtime.container("postfix", 1)
    assert p1.starts == 2  # restarted by its policy, on the committed release
    assert set(_state(runtime, "postfix").values()) == {(old, old)}
    # The second replica was never touched.
    assert [verb for name, verb in runtime.ops() if name == P2] == []
    assert _applies(sessions)[-1] == ("api", "rolled_back")


# --- success --------------------------------------------------------------------------------
def test_success_commits_current_and_records_each_replica(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    old = runtime.committed("postfix")
    runtime.reload_seconds = 0.02
    runtime.gate_seconds = 0.02
    record = pipeline.change_settings(
        {"message_size_limit": 10 * MIB}, replace=False, actor="alice"
    )
    assert record is not None
    new = runtime.committed("postfix")
    assert new is not None
    assert new != old
    main_cf = (settings.config_dir / "postfix" / "current" / "main.cf").read_text()
    assert f"\nmessage_size_limit = {10 * MIB}\n" in main_cf
    assert _stored(sessions) == {"message_size_limit": 10 * MIB}

    assert record == pipeline.get_apply(record["id"])
    assert record["status"] == "succeeded"
    assert record["actor"] == "alice"
    assert record["trigger"] == "api"
    assert record["error"] is None
    assert record["changes"] == [{"name": "message_size_limit", "old": 50 * MIB, "new": 10 * MIB}]
    assert "previous_settings" not in record
    assert record["finished_at"] is not None
    postfix = record["services"]["postfix"]
    assert postfix["from_release"] == old
    assert postfix["to_release"] == new
    assert postfix["reasons"] == ["rendered files changed"]
    steps = postfix["replicas"]
    assert [step["container"] for step in steps] == [P1, P2]
    for step in steps:
        assert step["outcome"] == "ok"
        assert (step["from_release"], step["to_release"]) == (old, new)
        assert step["reload_ms"] >= 20
        assert step["gate_ms"] >= 20
    assert record["duration_ms"] >= sum(s["reload_ms"] + s["gate_ms"] for s in steps)


def test_a_secret_change_is_recorded_masked(
    pipeline: ConfigEngine, runtime: FakeRuntime, settings: Settings
) -> None:
    values = {
        "relayhost": "[smtp.example.net]:587",
        "relayhost_username": "mailer",
        "relayhost_password": "hunter2 but longer",
    }
    record = pipeline.change_settings(values, replace=False, actor="test")
    assert record is not None
    assert "hunter2" not in json.dumps(record)
    changes = {change["name"]: change for change in record["changes"]}
    assert changes["relayhost_password"] == {
        "name": "relayhost_password",
        "old": None,
        "new": "******** (changed)",
    }
    relay = settings.config_dir / "postfix" / "current" / "relay_passwords"
    assert relay.read_text() == "[smtp.example.net]:587 mailer:hunter2 but longer\n"


def test_one_apply_at_a_time(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(apply, "LOCK_WAIT", 0.3)
    # Another `mailyard` process has its own engine; the state volume's lock is shared.
    other = _engine(settings, sessions, runtime)
    refused: list[tuple[str, float]] = []

    def before_exec(_container: FakeContainer, argv: tuple[str, ...]) -> None:
        if argv[0] == ACTIVATE and not refused:
            for engine in (pipeline, other):
                began = time.monotonic()
                with pytest.raises(Conflict) as info:
                    engine.change_settings({"recipient_limit": 7}, replace=False, actor="t")
                refused.append((info.value.message, time.monotonic() - began))
            # The periodic reconcile does not wait: it simply runs again later.
            began = time.monotonic()
            with pytest.raises(Conflict):
                other.reconcile()
            assert time.monotonic() - began < 0.2

    runtime.before_exec = before_exec
    record = pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="a")
    assert record is not None
    assert record["status"] == "succeeded"
    assert len(refused) == 2
    for message, waited in refused:
        assert "another configuration change" in message
        assert waited >= 0.3  # a change waits for the running apply before giving up
    assert _stored(sessions) == {"message_size_limit": 10 * MIB}
    # Afterwards the lock is free again.
    assert other.change_settings({"recipient_limit": 7}, replace=False, actor="t") is not None


def test_a_change_waits_for_the_running_apply_and_builds_on_it(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    other = _engine(settings, sessions, runtime)
    results: list[Any] = []
    threads: list[threading.Thread] = []

    def second_change() -> None:
        results.append(other.change_settings({"recipient_limit": 7}, replace=False, actor="b"))

    def before_exec(_container: FakeContainer, argv: tuple[str, ...]) -> None:
        if argv[0] == ACTIVATE and not threads:
            threads.append(threading.Thread(target=second_change))
            threads[0].start()
            time.sleep(0.2)  # it is now waiting for the lock

    runtime.before_exec = before_exec
    first = pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="a")
    threads[0].join(timeout=30)
    assert first is not None
    assert len(results) == 1
    second = results[0]
    assert second is not None
    assert second["status"] == "succeeded"
    assert second["id"] > first["id"]
    # It read the settings after the first apply had committed them.
    assert second["changes"] == [{"name": "recipient_limit", "old": 100, "new": 7}]
    assert _stored(sessions) == {"message_size_limit": 10 * MIB, "recipient_limit": 7}


def test_a_service_with_no_running_replica_cannot_be_changed(
    pipeline: ConfigEngine, runtime: FakeRuntime, sessions: sessionmaker[Session]
) -> None:
    for number in (1, 2):
        runtime.container("postfix", number).running = False
    before = _applies(sessions)
    with pytest.raises(Unavailable, match="postfix is not running"):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    assert _stored(sessions) == {}
    assert _applies(sessions) == before
    assert [verb for _, verb in runtime.ops()] == []


def test_a_stopped_replica_is_skipped_and_starts_on_the_new_release(
    pipeline: ConfigEngine, runtime: FakeRuntime
) -> None:
    runtime.container("postfix", 2).running = False
    record = pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    assert record is not None
    new = runtime.committed("postfix")
    assert [name for name, _ in runtime.ops() if name.startswith("mailyard-postfix")] == [P1] * 4
    # `current` moved, so the stopped replica comes back on the new release.
    runtime.start(runtime.container("postfix", 2).replica())
    assert runtime.container("postfix", 2).active == new


# --- recovery after a controller restart ---------------------------------------------------
def _kill_on(container_name: str, verb: tuple[str, ...]) -> Callable[..., None]:
    def before_exec(container: FakeContainer, argv: tuple[str, ...]) -> None:
        if container.name == container_name and argv[: len(verb)] == verb:
            raise ControllerKilled

    return before_exec


def test_an_apply_left_in_progress_is_finished_at_the_next_start(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    old = runtime.committed("postfix")
    # Killed while waiting for the second replica's health gate.
    runtime.before_exec = _kill_on(P2, POSTFIX.gate)
    with pytest.raises(ControllerKilled):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    assert _applies(sessions)[-1] == ("api", "in_progress")
    assert runtime.committed("postfix") == old
    assert _stored(sessions) == {"message_size_limit": 10 * MIB}

    runtime.before_exec = lambda _c, _a: None
    runtime.calls.clear()
    restarted = _engine(settings, sessions, runtime)  # a new controller process
    assert restarted.reconcile() is None  # nothing left to do after the recovery
    new = runtime.committed("postfix")
    assert new != old
    assert set(_state(runtime, "postfix").values()) == {(new, new)}
    main_cf = (settings.config_dir / "postfix" / "current" / "main.cf").read_text()
    assert f"\nmessage_size_limit = {10 * MIB}\n" in main_cf
    assert _applies(sessions)[1:] == [
        ("api", "completed_after_restart"),
        ("recovery", "succeeded"),
    ]
    assert _stored(sessions) == {"message_size_limit": 10 * MIB}
    # A second start finds nothing to recover.
    assert restarted.reconcile() is None
    assert len(_applies(sessions)) == 3


def test_recovery_reloads_a_replica_killed_between_activate_and_reload(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    runtime.before_exec = _kill_on(P2, POSTFIX.reload)
    with pytest.raises(ControllerKilled):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    runtime.before_exec = lambda _c, _a: None
    _engine(settings, sessions, runtime).reconcile()
    new = runtime.committed("postfix")
    assert runtime.container("postfix", 2).loaded == new


def test_an_apply_that_cannot_be_finished_is_undone_at_the_next_start(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    old = runtime.committed("postfix")
    runtime.before_exec = _kill_on(P2, POSTFIX.gate)
    with pytest.raises(ControllerKilled):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    runtime.before_exec = lambda _c, _a: None
    # Meanwhile Postfix was upgraded and refuses the new limit.
    runtime.checker = _refuse("postfix", f"message_size_limit = {10 * MIB}", "limit refused")
    restarted = _engine(settings, sessions, runtime)
    assert restarted.reconcile() is None
    assert runtime.committed("postfix") == old
    assert set(_state(runtime, "postfix").values()) == {(old, old)}
    assert _stored(sessions) == {}
    with sessions() as session:
        original = session.scalars(select(ConfigApply).order_by(ConfigApply.id)).all()[1]
        assert original.status == "undone_after_restart"
        assert original.error is not None
        assert "limit refused" in original.error


def test_a_release_a_replica_runs_is_never_deleted(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    runtime.before_exec = _kill_on(P2, POSTFIX.gate)
    with pytest.raises(ControllerKilled):
        pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    runtime.before_exec = lambda _c, _a: None
    runtime.checker = _refuse("postfix", f"message_size_limit = {10 * MIB}", "limit refused")
    _engine(settings, sessions, runtime).reconcile()
    assert runtime.dangling == []


# --- drift --------------------------------------------------------------------------------
def test_a_hand_edited_release_is_detected_and_replaced_by_a_fresh_copy(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
) -> None:
    committed = runtime.committed("postfix")
    assert committed is not None
    edited = settings.config_dir / "postfix" / "releases" / committed / "main.cf"
    edited.write_text(edited.read_text() + "mynetworks = 0.0.0.0/0\n")
    tree = _tree(settings.config_dir)

    plan = pipeline.plan()
    assert _tree(settings.config_dir) == tree  # a plan writes nothing
    postfix, dovecot = plan["services"]["postfix"], plan["services"]["dovecot"]
    assert postfix["changed"] is True
    assert postfix["drift"] == ["main.cf was edited by hand"]
    assert postfix["running_release"] == committed
    assert postfix["desired_release"] == committed
    assert "-mynetworks = 0.0.0.0/0" in postfix["diff"]
    assert dovecot["changed"] is False
    assert dovecot["drift"] == []
    assert dovecot["diff"] == ""
    assert plan["changes"] == []
    assert [verb for _, verb in runtime.ops()] == []

    record = pipeline.reconcile()
    assert record is not None
    assert record["status"] == "succeeded"
    assert record["trigger"] == "reconcile"
    fresh = runtime.committed("postfix")
    assert fresh is not None
    assert re.fullmatch(rf"{committed}\.[0-9a-z]{{6}}", fresh)
    assert record["services"]["postfix"]["to_release"] == fresh
    assert "edited by hand" in record["services"]["postfix"]["reasons"][0]
    assert set(record["services"]) == {"postfix"}
    assert runtime.ops() == [(P1, "validate"), *_rollout(P1, fresh), *_rollout(P2, fresh)]
    current = settings.config_dir / "postfix" / "current" / "main.cf"
    assert "0.0.0.0/0" not in current.read_text()
    # The edited copy is left as it was (a daemon may have been reading it).
    assert "mynetworks = 0.0.0.0/0" in edited.read_text()
    # Repaired: nothing more to do, and the plan agrees.
    runtime.calls.clear()
    assert pipeline.reconcile() is None
    assert [verb for _, verb in runtime.ops()] == []
    assert pipeline.plan()["services"]["postfix"]["changed"] is False


def test_a_replica_on_another_release_is_moved_back(
    pipeline: ConfigEngine, runtime: FakeRuntime
) -> None:
    first = runtime.committed("postfix")
    pipeline.change_settings({"message_size_limit": 10 * MIB}, replace=False, actor="t")
    second = runtime.committed("postfix")
    assert first is not None
    assert second is not None
    # Someone ran `mailyard-activate` by hand in the second replica.
    runtime.container("postfix", 2).active = first
    runtime.calls.clear()
    plan = pipeline.plan()
    assert plan["services"]["postfix"]["replicas"] == {P1: second, P2: first}
    assert plan["services"]["postfix"]["changed"] is True
    assert plan["services"]["postfix"]["diff"] == ""
    record = pipeline.reconcile()
    assert record is not None
    assert record["services"]["postfix"]["reasons"] == [f"{P2} runs release {first}, not {second}"]
    assert runtime.ops() == [(P1, "validate"), *_rollout(P2, second)]
    assert runtime.container("postfix", 2).active == second


def test_the_reconcile_loop_does_not_retry_a_release_that_failed_its_gate(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    old = runtime.committed("postfix")
    # The database password was rotated: the desired release changes without a setting.
    (settings.secrets_dir / "db-postfix-password").write_text("rotated-password\n")
    runtime.health = lambda c: "no banner" if c.service == "postfix" and c.loaded != old else None
    with pytest.raises(ApplyFailed):
        pipeline.reconcile()
    assert _applies(sessions)[-1] == ("reconcile", "rolled_back")
    runtime.calls.clear()
    assert pipeline.reconcile() is None
    assert [verb for _, verb in runtime.ops() if verb != "validate"] == []
    assert _applies(sessions)[-1] == ("reconcile", "rolled_back")
    # Asked for explicitly, it is tried again.
    with pytest.raises(ApplyFailed):
        pipeline.reconcile(trigger="api")
    assert (P1, "reload") in runtime.ops()
    assert runtime.committed("postfix") == old


def test_the_reconcile_loop_does_not_retry_a_release_the_daemon_refused(
    pipeline: ConfigEngine,
    runtime: FakeRuntime,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    (settings.secrets_dir / "db-postfix-password").write_text("rotated-password\n")
    runtime.checker = _refuse("postfix", "rotated-password", "cannot connect to the database")
    with pytest.raises(InvalidInput):
        pipeline.reconcile()
    assert pipeline.reconcile() is None
    assert [status for _, status in _applies(sessions)].count("invalid") == 1


def test_a_repair_copy_that_failed_its_gate_is_not_retried_by_the_loop(
    pipeline: ConfigEngine, runtime: FakeRuntime, settings: Settings
) -> None:
    committed = runtime.committed("postfix")
    assert committed is not None
    edited = settings.config_dir / "postfix" / "releases" / committed / "main.cf"
    edited.write_text(edited.read_text() + "# edited\n")
    runtime.health = lambda c: (
        "no banner" if c.service == "postfix" and c.loaded != committed else None
    )
    with pytest.raises(ApplyFailed):
        pipeline.reconcile()
    copies = _releases(settings, "postfix")
    runtime.calls.clear()
    assert pipeline.reconcile() is None
    assert [verb for _, verb in runtime.ops() if verb != "validate"] == []
    assert _releases(settings, "postfix") == copies


def test_a_refused_hostname_change_leaves_the_certificate_alone(
    pipeline: ConfigEngine, runtime: FakeRuntime, settings: Settings
) -> None:
    certificate = (settings.certs_dir / "fullchain.pem").read_bytes()
    key = (settings.certs_dir / "privkey.pem").read_bytes()
    runtime.checker = _refuse("postfix", "myhostname = mx.example.net", "no such host")
    with pytest.raises(InvalidInput, match="no such host"):
        pipeline.change_settings({"hostname": "mx.example.net"}, replace=False, actor="t")
    assert (settings.certs_dir / "fullchain.pem").read_bytes() == certificate
    assert (settings.certs_dir / "privkey.pem").read_bytes() == key
