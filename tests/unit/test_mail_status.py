"""Held mail is never silent: one sentence per part that is down, with the choices."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fake_runtime import FakeRuntime

from controller.engine.mail_status import MailStatusWatch, check_mail_status
from controller.runtime import ContainerHealth
from controller.settings import Settings

SERVICES = {"postfix": 1, "amavis": 1, "clamav": 1, "opendkim": 1, "dovecot": 1}
NO_SIGNATURES = (
    "it has no virus signatures: freshclam could not download them (Can't connect to "
    "port 443 of host database.clamav.net) and keeps trying"
)
DEFERRED = "\n".join(
    json.dumps(
        {
            "queue_name": "deferred",
            "recipients": [
                {
                    "address": f"user{n}@example.org",
                    "delay_reason": "host amavis-filter[10.0.0.5] said: 451 4.5.0 AV: "
                    "ALL VIRUS SCANNERS FAILED",
                }
            ],
        }
    )
    for n in range(3)
)


@pytest.fixture
def runtime(tmp_path: Path) -> FakeRuntime:
    fake = FakeRuntime(tmp_path, SERVICES)
    fake.queue_json = ""
    return fake


def _database_answers() -> str | None:
    return None


def test_everything_healthy_is_flowing(settings: Settings, runtime: FakeRuntime) -> None:
    status = check_mail_status(settings, runtime, _database_answers)
    assert status.state == "flowing"
    assert status.problems == []
    assert status.summary.startswith("Mail flows")
    assert [s.service for s in status.services] == list(SERVICES)


def test_clamav_without_signatures_says_what_is_held_why_and_the_choices(
    settings: Settings, runtime: FakeRuntime
) -> None:
    runtime.health_reports["mailyard-clamav-1"] = ContainerHealth("starting", NO_SIGNATURES)
    runtime.queue_json = DEFERRED
    status = check_mail_status(settings, runtime, _database_answers)
    assert status.state == "held"
    assert status.problems == [status.summary]
    summary = status.summary
    assert summary.startswith("Mail is held in Postfix's queue (3 messages), not lost")
    assert "freshclam could not download them" in summary
    assert "clamav-signatures/" in summary
    assert "MAILYARD_FILTER=no-clamav" in summary
    assert status.queue is not None
    assert status.queue.deferred == 3
    assert "ALL VIRUS SCANNERS FAILED" in status.queue.top_reason


def test_the_filter_choice_decides_what_mail_depends_on(
    settings: Settings, runtime: FakeRuntime
) -> None:
    runtime.health_reports["mailyard-clamav-1"] = ContainerHealth("unhealthy", NO_SIGNATURES)
    settings = settings.model_copy(update={"filter_mode": "no-clamav"})
    assert check_mail_status(settings, runtime, _database_answers).state == "flowing"
    runtime.health_reports["mailyard-amavis-1"] = ContainerHealth("unhealthy", "port closed")
    held = check_mail_status(settings, runtime, _database_answers)
    assert held.state == "held"
    assert "Amavis" in held.summary
    settings = settings.model_copy(update={"filter_mode": "off"})
    assert check_mail_status(settings, runtime, _database_answers).state == "flowing"


def test_a_stopped_container_and_an_unreachable_database_are_problems(
    settings: Settings, runtime: FakeRuntime
) -> None:
    runtime.container("dovecot", 1).running = False
    status = check_mail_status(settings, runtime, lambda: "Can't connect to MySQL server")
    assert status.state == "held"
    assert len(status.problems) == 2
    assert "MariaDB does not answer (Can't connect to MySQL server)" in status.problems[0]
    assert "Dovecot" in status.problems[1]
    assert "its container is not running" in status.problems[1]


def test_one_healthy_replica_of_two_keeps_mail_flowing(settings: Settings, tmp_path: Path) -> None:
    runtime = FakeRuntime(tmp_path, {**SERVICES, "dovecot": 2})
    runtime.queue_json = ""
    runtime.health_reports["mailyard-dovecot-2"] = ContainerHealth("unhealthy", "imap closed")
    status = check_mail_status(settings, runtime, _database_answers)
    assert status.state == "flowing"
    dovecot = next(s for s in status.services if s.service == "dovecot")
    assert (dovecot.replicas, dovecot.healthy, dovecot.detail) == (2, 1, "imap closed")


def test_without_docker_the_state_is_unknown(settings: Settings) -> None:
    status = check_mail_status(settings, None, _database_answers)
    assert status.state == "unknown"
    assert "cannot reach Docker" in status.summary


def test_the_watch_logs_a_held_queue_once_and_when_it_flows_again(
    settings: Settings, runtime: FakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    watch = MailStatusWatch(
        lambda: check_mail_status(settings, runtime, _database_answers), interval=30
    )
    caplog.set_level(logging.INFO, logger="controller.engine.mail_status")
    runtime.health_reports["mailyard-clamav-1"] = ContainerHealth("starting", NO_SIGNATURES)
    watch.run_once()
    watch.run_once()
    held = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(held) == 1
    assert "ClamAV cannot scan" in held[0].getMessage()
    assert watch.latest is not None
    assert watch.latest.state == "held"
    del runtime.health_reports["mailyard-clamav-1"]
    watch.run_once()
    assert caplog.records[-1].getMessage().startswith("mail flows again")


def test_held_mail_is_delivered_at_once_when_it_can_flow_again(
    settings: Settings, runtime: FakeRuntime
) -> None:
    flushed: list[str] = []
    watch = MailStatusWatch(
        lambda: check_mail_status(settings, runtime, _database_answers),
        interval=30,
        on_flowing_again=lambda: flushed.append("postqueue -f"),
    )
    runtime.queue_json = DEFERRED
    watch.run_once()  # flowing from the start: nothing to flush
    runtime.health_reports["mailyard-clamav-1"] = ContainerHealth("starting", NO_SIGNATURES)
    watch.run_once()
    assert flushed == []
    del runtime.health_reports["mailyard-clamav-1"]
    watch.run_once()
    watch.run_once()
    assert flushed == ["postqueue -f"]
