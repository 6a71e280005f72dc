"""TLS that a scanner passes: testssl.sh (Debian's, scripts/install-testssl), bounded to
protocols, cipher categories and vulnerabilities, against every TLS port of the stack
(the web interface's included).
Nothing rated HIGH or CRITICAL anywhere, and no finding at all where TLS is mandatory.
Port 25 also accepts the TLS 1.2 CBC suites for old senders (testssl rates that LOW:
"obsoleted" ciphers, LUCKY13), because the alternative for them is plain text
(controller/services/tls_policy.py, docs/security.md). Certificate trust is not scanned:
the test stack's certificate is self-signed."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Stack

TESTSSL = REPO / ".cache" / "testssl"
# (port name in the stack, testssl's STARTTLS protocol or None for implicit TLS)
PORTS = {
    "smtp": "smtp",
    "smtps": None,
    "submission": "smtp",
    "imaps": None,
    "pop3s": None,
    "managesieve": "sieve",
    "https": None,
    "web": None,  # the web interface (profile web)
}
# What port 25 may offer beyond the mandatory ports, and only at this rating.
PORT_25_ALLOWED = {("cipherlist_OBSOLETED", "LOW"), ("LUCKY13", "LOW")}
# Checks every scan must have run: proof that it scanned, and was not cut short.
EXPECTED_IDS = {"TLS1_2", "TLS1_3", "cipherlist_aNULL", "heartbleed", "ROBOT", "LUCKY13"}


def _scan(stack: Stack, port_name: str, starttls: str | None, workdir: Path) -> list[dict]:
    report = workdir / f"{port_name}.json"
    command = [
        str(TESTSSL / "usr" / "bin" / "testssl"),
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--jsonfile",
        str(report),
        "--protocols",
        "--std",
        "--vulnerable",
        "--ip",
        "one",
        *(["--starttls", starttls] if starttls else []),
        f"{stack.host}:{stack.ports[port_name]}",
    ]
    env = {**os.environ, "TESTSSL_INSTALL_DIR": str(TESTSSL / "etc" / "testssl")}
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert report.exists(), f"testssl wrote no report for {port_name}: {result.stdout[-2000:]}"
    findings: list[dict[str, Any]] = json.loads(report.read_text())
    return findings


@pytest.fixture(scope="module")
def scans(full_stack: Stack) -> dict[str, list[dict]]:
    # The stack with every service: the web interface's port is one of the scanned.
    stack = full_stack
    if not (TESTSSL / "usr" / "bin" / "testssl").exists():
        pytest.fail("testssl.sh is missing: scripts/test installs it (scripts/install-testssl)")
    with (
        tempfile.TemporaryDirectory(prefix="mailyard-testssl-") as workdir,
        ThreadPoolExecutor(max_workers=len(PORTS)) as pool,
    ):
        # All ports at once: each scan is mostly waiting on handshakes.
        futures = {
            name: pool.submit(_scan, stack, name, starttls, Path(workdir))
            for name, starttls in PORTS.items()
        }
        return {name: future.result() for name, future in futures.items()}


def _problems(findings: list[dict]) -> set[tuple[str, str]]:
    """Every finding rated anything but OK or INFO (WARN means a check could not run)."""
    return {
        (item["id"], item["severity"])
        for item in findings
        if item["severity"] not in ("OK", "INFO")
    }


@pytest.mark.parametrize("port_name", list(PORTS))
def test_every_tls_port_passes_testssl(scans: dict[str, list[dict]], port_name: str) -> None:
    findings = scans[port_name]
    assert {item["id"] for item in findings} >= EXPECTED_IDS, "the scan did not run through"
    offered = {item["id"]: item["finding"] for item in findings}
    assert offered["TLS1_2"].startswith("offered")
    assert offered["TLS1"] == "not offered"
    assert offered["cipherlist_aNULL"] == "not offered"
    problems = _problems(findings)
    assert not {p for p in problems if p[1] in ("HIGH", "CRITICAL")}
    allowed = PORT_25_ALLOWED if port_name == "smtp" else set()
    assert problems <= allowed, [
        f"{item['id']} {item['severity']}: {item['finding']}"
        for item in findings
        if (item["id"], item["severity"]) in problems - allowed
    ]
