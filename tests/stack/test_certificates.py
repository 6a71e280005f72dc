"""Certificates from a real ACME CA (Pebble, tests/stack/pebble) with real HTTP-01
validation against the controller's port-80 responder."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import HOSTNAME, PASSWORD, Stack, running_stack
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mailtools import IdleSession, make_message, wait_for

PEBBLE_DIRECTORY = "https://pebble:14000/dir"


# Short-lived certificates, so renewal by time happens within the test: with 90 s of
# validity a certificate is due once a third (30 s) remains, i.e. 60 s after issuance.
VALIDITY_SECONDS = 90


@pytest.fixture(scope="module")
def acme_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with running_stack(
        request,
        extra_compose_files=("tests/stack/compose.acme.yaml",),
        extra_env={"MAILYARD_TEST_ACME_CERT_VALIDITY_SECONDS": str(VALIDITY_SECONDS)},
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
    # The API's own HTTPS listener took the new certificate without a restart.
    assert _served_serial(stack, "https") == status["serial"]
    over_https = httpx.get(
        f"https://{stack.host}:{stack.ports['https']}/api/v1/certificates",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        verify=False,  # noqa: S501 - the Pebble root is not in the host's trust store
        timeout=30,
    )
    assert over_https.status_code == 200
    assert over_https.json()["serial"] == status["serial"]


def test_port_80_answers_challenges_only_and_redirects_the_rest(acme_stack: Stack) -> None:
    base = f"http://{acme_stack.host}:{acme_stack.ports['http']}"
    missing = httpx.get(f"{base}/.well-known/acme-challenge/{'x' * 43}", timeout=10)
    assert missing.status_code == 404
    other = httpx.get(f"{base}/login?next=/", headers={"Host": "evil.example"}, timeout=10)
    assert other.status_code == 301
    assert other.headers["location"] == f"https://{HOSTNAME}/login"


def _status(stack: Stack) -> dict[str, Any]:
    response = stack.api("GET", "/certificates")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _renewal_keeps_open_sessions(stack: Stack, renew: Callable[[str], str]) -> None:
    """Opens an IMAP IDLE session and an SMTP session paused after RCPT, lets `renew`
    replace the certificate (it gets the old serial, returns the new one), then checks
    both sessions complete and every port serves the new certificate."""
    first = _status(stack)["serial"]
    domain = stack.new_domain("renew")
    reader = stack.new_mailbox(domain, "reader")
    idle = IdleSession(stack.host, stack.ports["imaps"], reader, PASSWORD)
    smtp = stack.smtp()
    assert smtp.mail("someone@remote.test")[0] == 250
    assert smtp.rcpt(reader)[0] == 250

    renewed = renew(first)
    assert renewed != first

    message = make_message("someone@remote.test", [reader], "during renewal")
    assert smtp.data(message.as_string())[0] == 250
    smtp.quit()
    idle.wait_for_exists(timeout=60)
    idle.done()
    status, data = idle.imap.search(None, "HEADER", "Message-ID", str(message["Message-ID"]))
    assert status == "OK"
    assert data[0].split()
    idle.imap.logout()
    wait_for(
        "every port to serve the renewed certificate",
        lambda: {_served_serial(stack, name) for name in TLS_PORTS} == {renewed},
        timeout=30,
    )


def test_renewal_by_time_keeps_open_sessions(acme_stack: Stack) -> None:
    def scheduler_renews(first: str) -> str:
        # Nobody asks: the scheduler renews once a third of the lifetime remains.
        renewed: str = wait_for(
            "the scheduler to renew the certificate",
            lambda: (serial := _status(acme_stack)["serial"]) != first and serial,
            timeout=VALIDITY_SECONDS + 60,
            interval=2,
        )
        return renewed

    _renewal_keeps_open_sessions(acme_stack, scheduler_renews)


def test_forced_renewal_keeps_open_sessions(acme_stack: Stack) -> None:
    def forced(first: str) -> str:
        response = acme_stack.api("POST", "/certificates/renew", timeout=300)
        assert response.status_code == 200, response.text
        serial: str = response.json()["serial"]
        return serial

    _renewal_keeps_open_sessions(acme_stack, forced)


def test_unreachable_challenge_keeps_the_certificate_and_backs_off(acme_stack: Stack) -> None:
    stack = acme_stack
    before = _status(stack)
    # No such name on the test network: Pebble cannot resolve it, the challenge fails.
    response = stack.api(
        "PATCH", "/settings", json={"certificate_extra_names": ["nowhere.mailyard.test"]}
    )
    assert response.status_code == 200, response.text
    try:
        refused = stack.api("POST", "/certificates/renew", timeout=300)
        assert refused.status_code == 503, refused.text
        assert "nowhere.mailyard.test" in refused.json()["detail"]
        status = _status(stack)
        assert "nowhere.mailyard.test" in status["last_error"]
        assert status["consecutive_failures"] >= 1
        # The next attempt waits (1 min after the first failure, then 10, 100, daily).
        last = datetime.fromisoformat(status["last_attempt_at"])
        assert datetime.fromisoformat(status["next_renewal_at"]) >= last + timedelta(seconds=59)
        served = {_served_serial(stack, name) for name in TLS_PORTS}
        assert served == {status["serial"]}
        # What is installed is still a certificate without the unreachable name.
        assert "nowhere.mailyard.test" not in status["names"]
        assert status["names"] == before["names"]
        assert status["source"] == "acme"
    finally:
        restored = stack.api("PATCH", "/settings", json={"certificate_extra_names": []})
        assert restored.status_code == 200, restored.text


def test_custom_certificate_whose_key_does_not_match_is_refused(acme_stack: Stack) -> None:
    stack = acme_stack
    before = _status(stack)
    certificate_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(certificate_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .sign(certificate_key, hashes.SHA256())
    )
    response = stack.api(
        "PUT",
        "/certificates/custom",
        json={
            "certificate_chain": certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "private_key": other_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
        },
    )
    assert response.status_code == 422, response.text
    assert "does not belong to the certificate" in response.json()["detail"]
    assert "PRIVATE KEY" not in response.text
    # Nothing was installed: the refused certificate is served nowhere.
    refused_serial = f"{certificate.serial_number:X}"
    assert _status(stack)["serial"] != refused_serial
    assert refused_serial not in {_served_serial(stack, name) for name in TLS_PORTS}
    assert _status(stack)["source"] == before["source"]
