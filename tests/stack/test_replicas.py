"""Several replicas (`docker compose up --scale postfix=2 --scale dovecot=2`): a change
reaches every replica, one at a time, each behind its own health gate."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from conftest import Stack, running_stack


@pytest.fixture(scope="module")
def scaled(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with running_stack(
        request,
        "--scale",
        "postfix=2",
        "--scale",
        "dovecot=2",
        extra_compose_files=("tests/stack/compose.scale.yaml",),
        # One more Postfix and one more Dovecot than services.
        extra_containers=2,
    ) as stack:
        yield stack


def _replica_names(stack: Stack, service: str) -> list[str]:
    ids = stack.run_compose("ps", "-q", service).stdout.split()
    names = stack.run_compose("ps", "--format", "{{.Name}}", service).stdout.split()
    assert len(ids) == 2, f"expected two {service} replicas, got {names}"
    return sorted(names, key=lambda name: int(name.rsplit("-", 1)[1]))


def _in_container(name: str, *command: str) -> str:
    return subprocess.run(
        ["docker", "exec", name, *command], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_change_rolls_through_every_replica_in_order(scaled: Stack) -> None:
    postfix = _replica_names(scaled, "postfix")
    dovecot = _replica_names(scaled, "dovecot")

    response = scaled.api(
        "PATCH",
        "/settings",
        json={"message_size_limit": 12 * 1024 * 1024, "mail_process_limit": 700},
        timeout=180,
    )

    assert response.status_code == 200, response.text
    services = response.json()["apply"]["services"]
    # Dovecot (which Postfix depends on) goes first; then each Postfix replica in turn.
    assert list(services) == ["dovecot", "postfix"]
    assert [step["container"] for step in services["dovecot"]["replicas"]] == dovecot
    assert [step["container"] for step in services["postfix"]["replicas"]] == postfix
    assert all(
        step["outcome"] == "ok" for service in services.values() for step in service["replicas"]
    )
    target = services["postfix"]["to_release"]
    for name in postfix:
        assert _in_container(name, "readlink", "/etc/mailyard/active").endswith(target)
        # The running master serves the new limit: ask a fresh smtpd on 587 inside.
        ehlo = _in_container(
            name,
            "bash",
            "-c",
            # One command at a time: smtpd hangs up on a client that sends QUIT before
            # the EHLO reply has announced PIPELINING (smtpd_forbid_unauth_pipelining).
            "exec 3<>/dev/tcp/127.0.0.1/587; read -t5 l <&3; printf 'EHLO t.example\\r\\n' >&3; "
            "while read -t5 l <&3; do echo \"$l\"; [[ $l == '250 '* ]] && break; done; "
            "printf 'QUIT\\r\\n' >&3; cat <&3",
        )
        assert f"250-SIZE {12 * 1024 * 1024}" in ehlo, ehlo
    for name in dovecot:
        process_limit = _in_container(name, "doveconf", "-h", "service/imap/process_limit")
        assert process_limit == "700"
