"""The optional web interface (compose profile "web", service mailman-web: Debian's
mailman3-web): Postorius and HyperKitty over HTTPS with the stack's certificate, lists
created through the controller's API visible in Postorius, the superuser able to log in,
and no plain HTTP on the web port."""

from __future__ import annotations

import re
import socket

import httpx
import pytest
from conftest import HOSTNAME, Stack
from cryptography import x509
from mailtools import insecure_tls, wait_for


@pytest.fixture(scope="module")
def web_stack(full_stack: Stack) -> Stack:
    """The shared stack with every service, the web interface included (conftest)."""
    return full_stack


def _base(stack: Stack) -> str:
    return f"https://{stack.host}:{stack.ports['web']}"


def _host(stack: Stack) -> str:
    """The Host header a browser sends for https://HOSTNAME:<published port>/."""
    return f"{HOSTNAME}:{stack.ports['web']}"


def _get(stack: Stack, path: str) -> httpx.Response:
    return httpx.get(
        f"{_base(stack)}{path}",
        headers={"Host": _host(stack)},
        verify=False,  # noqa: S501 - the stack's certificate is self-signed here
        timeout=30,
    )


def _served_serial(stack: Stack) -> str:
    with (
        socket.create_connection((stack.host, stack.ports["web"]), timeout=30) as raw,
        insecure_tls().wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der
    return f"{x509.load_der_x509_certificate(der).serial_number:X}"


def test_postorius_and_hyperkitty_over_https_with_the_stacks_certificate(
    web_stack: Stack,
) -> None:
    status = web_stack.api("GET", "/certificates")
    assert status.status_code == 200, status.text
    assert _served_serial(web_stack) == status.json()["serial"]

    index = _get(web_stack, "/postorius/lists/")
    assert index.status_code == 200, index.text[:500]
    assert "Postorius" in index.text
    archives = _get(web_stack, "/hyperkitty/")
    assert archives.status_code == 200, archives.text[:500]
    assert "HyperKitty" in archives.text
    root = _get(web_stack, "/")
    assert root.status_code == 302
    assert root.headers["location"] == "/postorius/lists/"
    # Static files are served by nginx from the image.
    assert _get(web_stack, "/static/postorius/img/favicon.ico").status_code == 200
    # Only the stack's names are accepted as Host.
    other = httpx.get(
        f"{_base(web_stack)}/postorius/lists/",
        headers={"Host": "evil.example"},
        verify=False,  # noqa: S501
        timeout=30,
    )
    assert other.status_code == 400
    # Mailman core's archiver API is not reachable from outside.
    assert _get(web_stack, "/hyperkitty/api/mailman/urls?mlist=x").status_code == 404


def test_a_list_created_through_the_controller_shows_up_in_postorius(web_stack: Stack) -> None:
    domain = web_stack.new_domain("web")
    response = web_stack.api(
        "POST", f"/domains/{domain}/lists", json={"name": "webteam"}, timeout=60
    )
    assert response.status_code == 201, response.text
    address = response.json()["address"]
    assert address == f"webteam@{domain}"

    wait_for(
        f"{address} in Postorius's list index",
        lambda: address in _get(web_stack, "/postorius/lists/").text,
        timeout=30,
        interval=1,
    )
    summary = _get(web_stack, f"/postorius/lists/webteam.{domain}/")
    assert summary.status_code == 200
    assert address in summary.text


def test_the_superuser_logs_in_over_https(web_stack: Stack) -> None:
    password = web_stack.exec(
        "mailman-web", "cat", "/var/lib/mailyard-web/admin-password"
    ).stdout.strip()
    assert password
    login = f"{_base(web_stack)}/accounts/login/"
    headers = {"Host": _host(web_stack)}
    with httpx.Client(verify=False, timeout=30, headers=headers) as client:  # noqa: S501
        page = client.get(login)
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        # Django checks the Referer against the Host (with the published port) over HTTPS.
        answer = client.post(
            login,
            data={"csrfmiddlewaretoken": token.group(1), "login": "admin", "password": password},
            headers={"Referer": f"https://{_host(web_stack)}/accounts/login/"},
        )
        assert answer.status_code == 302, answer.text[:500]
        assert answer.headers["location"] == "/postorius/lists/"
        admin = client.get(f"{_base(web_stack)}/admin/")
        assert admin.status_code == 200
        assert "Site administration" in admin.text


def test_plain_http_is_not_answered(web_stack: Stack) -> None:
    with socket.create_connection((web_stack.host, web_stack.ports["web"]), timeout=30) as raw:
        raw.sendall(
            f"GET /postorius/lists/ HTTP/1.1\r\nHost: {_host(web_stack)}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        try:
            answer = raw.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", answer[:200]
    # And TLS on the same port works.
    with (
        socket.create_connection((web_stack.host, web_stack.ports["web"]), timeout=30) as raw,
        insecure_tls().wrap_socket(raw, server_hostname=HOSTNAME) as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
