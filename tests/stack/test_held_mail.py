"""Held mail is never silent: ClamAV without signatures, as on a host without internet.

Mail waits in Postfix's queue (nothing lost, nothing passed unscanned) while `mailyard
status`, GET /api/v1/status, /healthz and the controller's log say what is held, why and
what to do; the way out for an offline host (signature files in the folder) delivers it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from conftest import Stack
from mailtools import make_message, wait_for


def _remove_clamav_with_its_signatures(stack: Stack) -> None:
    stack.run_compose("rm", "--stop", "--force", "clamav")
    volume = f"{stack.project}_clamav"
    subprocess.run(["docker", "volume", "rm", volume], check=True, capture_output=True)


def _clamav_healthy(stack: Stack) -> bool:
    ids = stack.run_compose("ps", "-q", "clamav").stdout.split()
    if not ids:
        return False
    health = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Health.Status}}", ids[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    return health.stdout.strip() == "healthy"


def test_clamav_without_signatures_holds_mail_says_why_and_delivers_once_given_them(
    full_stack: Stack,
) -> None:
    stack = full_stack
    folder = Path(stack.env["MAILYARD_TEST_CLAMAV_SIGNATURES"])
    database = folder / "mailyard-test.hdb"
    signatures = database.read_bytes()
    alice = stack.new_mailbox(stack.new_domain("held"), "alice")
    message = make_message("bob@sender.test", [alice], "waits for ClamAV")
    try:
        # A first start without internet and with nothing in the signatures folder.
        database.unlink()
        _remove_clamav_with_its_signatures(stack)
        stack.run_compose("up", "-d", "--no-deps", "--no-build", "clamav")

        # Port 25 still answers 250: the message is accepted and queued.
        with stack.smtp() as client:
            assert client.send_message(message) == {}

        def status_says_held() -> bool:
            result = stack.mailyard("status", check=False)
            return result.returncode == 1 and "freshclam could not download" in result.stdout

        wait_for("`mailyard status` to say why mail is held", status_says_held, timeout=180)
        printed = stack.mailyard("status", check=False).stdout
        first_line = printed.splitlines()[0]
        assert first_line.startswith("Mail is held in Postfix's queue"), printed
        assert "ClamAV cannot scan" in first_line
        assert "clamav-signatures/" in first_line
        assert "MAILYARD_FILTER=no-clamav" in first_line

        status = stack.api("GET", "/status").json()
        assert status["state"] == "held"
        assert status["summary"].startswith("Mail is held")
        assert status["queue"]["messages"] >= 1
        health = httpx.get(f"http://{stack.host}:{stack.ports['api']}/healthz", timeout=10)
        assert health.status_code == 200  # the controller itself is fine
        assert health.json()["mail"]["state"] == "held"
        log = stack.run_compose("logs", "--no-color", "controller").stdout
        assert "Mail is held in Postfix's queue" in log
        assert message["Message-ID"] not in stack.inbox(alice)

        # The way out on a host without internet: signature files into the folder.
        database.write_bytes(signatures)
        stack.wait_for_delivery(alice, message["Message-ID"], timeout=240)
        wait_for(
            "the status to say mail flows",
            lambda: stack.api("GET", "/status").json()["state"] == "flowing",
            timeout=60,
        )
    finally:
        if not database.exists():
            database.write_bytes(signatures)
        stack.run_compose("up", "-d", "--no-deps", "--no-build", "clamav")
        wait_for("ClamAV healthy again", lambda: _clamav_healthy(stack), timeout=240)
