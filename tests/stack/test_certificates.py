"""Certificates from a real ACME CA (Pebble, tests/stack/pebble) with real HTTP-01
validation against the controller's port-80 responder."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator

import httpx
import pytest
from conftest import HOSTNAME, Stack, running_stack
from cryptography import x509

PEBBLE_DIRECTORY = "https://pebble:14000/dir"


@pytest.fixture(scope="module")
def acme_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with running_stack(
        request,
        extra_compose_files=("tests/stack/compose.acme.yaml",),
        expected_containers=6,
    ) as stack:
        yield stack


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _served_serial(stack: Stack, port_name: str) -> str:
    port = stack.ports[port_name]
    if port_name in {"smtp", "submission"}:
        with smtplib.SMTP(stack.host, port, timeout=60) as client:
            client.ehlo("tls-check.remote.test")
            client.starttls(context=_context())
            assert isinstance(client.sock, ssl.SSLSocket)
            der = client.sock.getpeercert(binary_form=True)
    else:
        with (
            socket.create_connection((stack.host, port), timeout=30) as raw,
            _context().wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    assert der
    return f"{x509.load_der_x509_certificate(der).serial_number:X}"


TLS_PORTS = ("smtp", "smtps", "submission", "imaps", "pop3s")


def test_first_issuance_replaces_the_self_signed_certificate_on_every_port(
    acme_stack: Stack,
) -> None:
    stack = acme_stack
    before = stack.api("GET", "/certificates").json()
    assert before["source"] == "self-signed"
    self_signed = {_served_serial(stack, name) for name in TLS_PORTS}
    assert self_signed == {before["serial"]}

    ca = stack.exec("pebble", "cat", "/var/lib/pebble-ca/ca.pem").stdout
    response = stack.api(
        "PATCH",
        "/settings",
        json={
            "acme_enabled": True,
            "acme_directory_url": PEBBLE_DIRECTORY,
            "acme_ca_bundle": ca,
            "acme_contact_email": "postmaster@mailyard.test",
            "certificate_extra_names": ["autoconfig.mailyard.test"],
        },
        timeout=180,
    )
    assert response.status_code == 200, response.text

    renewed = stack.api("POST", "/certificates/renew", timeout=300)

    assert renewed.status_code == 200, renewed.text
    status = renewed.json()
    assert status["source"] == "acme"
    assert "Pebble" in status["issuer"]
    assert sorted(status["names"]) == sorted([HOSTNAME, "autoconfig.mailyard.test"])
    assert status["last_error"] is None
    assert status["serial"] != before["serial"]
    assert status["next_renewal_at"] is not None
    for name in TLS_PORTS:
        assert _served_serial(stack, name) == status["serial"], name
    assert "PRIVATE KEY" not in stack.api("GET", "/certificates").text


def test_port_80_answers_challenges_only_and_redirects_the_rest(acme_stack: Stack) -> None:
    base = f"http://{acme_stack.host}:{acme_stack.ports['http']}"
    missing = httpx.get(f"{base}/.well-known/acme-challenge/{'x' * 43}", timeout=10)
    assert missing.status_code == 404
    other = httpx.get(f"{base}/login?next=/", headers={"Host": "evil.example"}, timeout=10)
    assert other.status_code == 301
    assert other.headers["location"] == f"https://{HOSTNAME}/login"
