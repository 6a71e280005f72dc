"""The API's front door and the token limits against the running controller.

- An unauthenticated 10 MB body is refused (401/413) without the controller holding it:
  its memory is read while the connection is still open, the body sent but for its last
  byte, i.e. when a server that buffers bodies would be holding all of it.
- 50 bad tokens from one address get 429 after the first 20; they come from a
  throwaway container on the stack's edge network, so the address this host reaches
  the API from (the gateway, through Docker's published port) is not blocked for the
  other tests.
- A token bound to a domain gives nothing once that domain is deleted and created
  again; an expired token and a token used from outside its networks are refused.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from conftest import PASSWORD, Stack

TEN_MB = 10 * 1000 * 1000
CHUNK = 256 * 1024
# Well under the 10 MB a server holding the body would need; well over what the
# controller's background loops (reconcile, certificate checks) move in a moment.
MEMORY_MARGIN = 5 * 1024 * 1024

# Inside the controller container: the resident memory of the `mailyard serve` Python
# process (the largest of those whose command line says so: tini's says so too).
_RSS_OF_SERVE = """
import pathlib
sizes = [0]
for proc in pathlib.Path("/proc").iterdir():
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\\0")
        status = (proc / "status").read_text().splitlines()
    except OSError:
        continue
    if b"serve" in argv and any(part.endswith(b"mailyard") for part in argv):
        sizes += [int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS:")]
print(max(sizes))
"""


def _serve_rss(stack: Stack) -> int:
    rss = int(stack.exec("controller", "python3", "-c", _RSS_OF_SERVE).stdout.strip())
    # A Python web server with its dependencies loaded: tens of MiB, never a few.
    assert rss > 30 * 1024 * 1024, f"the `mailyard serve` process was not found ({rss} bytes)"
    return rss


# Inside a throwaway container on the edge network: 50 bad tokens, then a good one.
_HAMMER = """
import json, os, sys, urllib.error, urllib.request
url = sys.argv[1]
def call(token):
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return [response.status, None, ""]
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        return [error.code, error.headers.get("Retry-After"), body.get("detail", "")]
bad = "mailyard_0123456789abcdef_" + "x" * 43
print(json.dumps([call(bad) for _ in range(50)] + [call(os.environ["GOOD_TOKEN"])]))
"""


def _container_memory(stack: Stack) -> str:
    return subprocess.run(
        [
            "docker",
            "stats",
            "--no-stream",
            "--format",
            "{{.MemUsage}}",
            stack.container("controller"),
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


@contextmanager
def _almost_sent(
    stack: Stack, headers: dict[str, str], *, chunked: bool
) -> Iterator[tuple[int, str]]:
    """POST a 10 MB JSON body to the API but for its last byte (chunked: its last
    chunk); yields the response's status and text, read while the connection is open."""
    connection = socket.create_connection((stack.host, stack.ports["api"]), timeout=60)
    lines = [
        "POST /api/v1/domains HTTP/1.1",
        f"Host: {stack.host}",
        "Content-Type: application/json",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {TEN_MB}")
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    body = b'{"name": "' + b"a" * (TEN_MB - 12) + b'"}'
    assert len(body) == TEN_MB
    try:
        for start in range(0, TEN_MB - 1, CHUNK):
            piece = body[start : min(start + CHUNK, TEN_MB - 1)]
            connection.sendall(
                f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            )
        # A server that reads the body before it answers (as FastAPI does before any
        # dependency runs) waits for the last byte: no answer here, status 0.
        connection.settimeout(20)
        response = b""
        with suppress(TimeoutError):
            while b"\r\n\r\n" not in response or not _complete(response):
                data = connection.recv(65536)
                if not data:
                    break
                response += data
        head, _, text = response.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        yield status, text.decode(errors="replace") or "no answer before the body was complete"
        with suppress(OSError):  # the server may have closed already
            connection.sendall(b"1\r\n}\r\n0\r\n\r\n" if chunked else b"}")
    finally:
        connection.close()


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def test_a_10_mb_body_is_refused_without_the_controller_holding_it(stack: Stack) -> None:
    # Warm up the paths the refusals take, then take the baseline.
    assert stack.api("GET", "/domains").status_code == 200
    assert httpx.get(f"{stack.api_url}/domains", timeout=30).status_code == 401
    baseline = _serve_rss(stack)
    stats_before = _container_memory(stack)
    cases = [
        ({}, False, {401, 413}),  # no token, declared length
        ({}, True, {401}),  # no token, chunked: nothing declares the size
        ({"Authorization": "Bearer mailyard_0123456789abcdef_wrong"}, True, {401}),
        # A valid token: read up to the 1 MiB limit, then refused.
        ({"Authorization": f"Bearer {stack.admin_token}"}, True, {413}),
    ]
    for headers, chunked, expected in cases:
        with _almost_sent(stack, headers, chunked=chunked) as (status, text):
            during = _serve_rss(stack)
            grown = f"{(during - baseline) / 2**20:.1f} MiB"
            assert status in expected, (headers, chunked, status, text, grown)
            assert json.loads(text)["status"] == status
            assert during - baseline < MEMORY_MARGIN, (
                f"the controller grew by {grown} while a 10 MB "
                f"body was in flight ({headers}, chunked={chunked}); docker stats before: "
                f"{stats_before}, now: {_container_memory(stack)}"
            )
    after = _serve_rss(stack)
    assert after - baseline < MEMORY_MARGIN, (
        baseline,
        after,
        stats_before,
        _container_memory(stack),
    )
    # The API still answers, and nothing was created.
    listing = stack.api("GET", "/domains", params={"limit": 1000})
    assert listing.status_code == 200
    assert not any(item["name"].startswith("aaaa") for item in listing.json()["items"])


def _controller_address_on_edge(stack: Stack) -> str:
    inspected = json.loads(
        subprocess.run(
            ["docker", "inspect", stack.container("controller")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    networks: dict[str, Any] = inspected["NetworkSettings"]["Networks"]
    return str(networks[f"{stack.project}_edge"]["IPAddress"])


def test_50_bad_tokens_from_one_address_get_429(stack: Stack) -> None:
    image = f"mailyard/controller:{stack.env.get('MAILYARD_VERSION', 'latest')}"
    url = f"http://{_controller_address_on_edge(stack)}:8080/api/v1/domains"
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            f"{stack.project}_edge",
            "-e",
            f"GOOD_TOKEN={stack.admin_token}",
            "--entrypoint",
            "python3",
            image,
            "-c",
            _HAMMER,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    calls = json.loads(result.stdout)
    bad, good = calls[:50], calls[50]
    assert [status for status, _, _ in bad[:20]] == [401] * 20, bad[:20]
    assert [status for status, _, _ in bad[20:]] == [429] * 30, bad[20:]
    retry_after = {int(after) for _, after, _ in bad[20:]}
    assert all(0 < seconds <= 600 for seconds in retry_after), retry_after
    assert "more than 20 failed authentications" in bad[20][2]
    # A valid token from the same blocked address still works.
    assert good[0] == 200, good
    # This host's own address was not blocked by it.
    response = httpx.get(
        f"{stack.api_url}/domains",
        headers={"Authorization": "Bearer mailyard_0123456789abcdef_wrong"},
        timeout=30,
    )
    assert response.status_code == 401, response.text


def test_a_token_bound_to_a_domain_gives_nothing_after_it_is_recreated(stack: Stack) -> None:
    domain = stack.new_domain("bound")
    created = stack.api("POST", "/tokens", json={"name": "panel", "domains": [domain]})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert stack.api("GET", f"/domains/{domain}", token=token).status_code == 200

    assert stack.api("DELETE", f"/domains/{domain}", params={"cascade": "true"}).status_code == 204
    assert stack.api("POST", "/domains", json={"name": domain}).status_code == 201
    victim = stack.new_mailbox(domain, "newowner")

    assert stack.api("GET", f"/domains/{domain}", token=token).status_code == 404
    assert stack.api("GET", f"/mailboxes/{victim}", token=token).status_code == 404
    assert stack.api("GET", "/domains", token=token).json()["total"] == 0
    refused = stack.api(
        "POST", "/mailboxes", token=token, json={"address": f"x@{domain}", "password": PASSWORD}
    )
    assert refused.status_code == 403, refused.text
    assert stack.api("GET", f"/tokens/{created.json()['id']}").json()["domains"] == []
    # And a token cannot be made for a domain that does not exist.
    missing = f"missing-{uuid.uuid4().hex[:8]}.test"
    refused = stack.api("POST", "/tokens", json={"name": "early", "domains": [missing]})
    assert refused.status_code == 422
    assert missing in refused.json()["detail"]


def test_an_expired_token_is_refused(stack: Stack) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    created = stack.api(
        "POST", "/tokens", json={"name": "short", "admin": True, "expires_at": expires.isoformat()}
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert stack.api("GET", "/domains", token=token).status_code == 200
    while datetime.now(UTC) <= expires + timedelta(seconds=1):
        time.sleep(0.5)
    refused = stack.api("GET", "/domains", token=token)
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_a_token_works_only_from_its_networks(stack: Stack) -> None:
    # The address the controller sees for this host (through the published port: often
    # the compose network's gateway) is what the admin token's last use shows.
    assert stack.api("GET", "/domains").status_code == 200
    tokens = stack.api("GET", "/tokens", params={"limit": 1000}).json()["items"]
    seen = {t["last_used_from"] for t in tokens if t["name"] == "first admin token"}
    (here,) = seen
    assert here, tokens

    elsewhere = stack.api(
        "POST", "/tokens", json={"name": "office", "admin": True, "networks": ["192.0.2.0/24"]}
    ).json()
    refused = stack.api("GET", "/domains", token=elsewhere["token"])
    assert refused.status_code == 401
    assert f"may not be used from {here}" in refused.json()["detail"]
    assert "192.0.2.0" not in refused.json()["detail"]

    this_host = stack.api(
        "POST", "/tokens", json={"name": "this host", "admin": True, "networks": [here]}
    ).json()
    assert stack.api("GET", "/domains", token=this_host["token"]).status_code == 200
    shown = stack.api("GET", f"/tokens/{this_host['id']}").json()
    assert shown["last_used_from"] == here
    assert shown["networks"] == [f"{here}/32" if ":" not in here else f"{here}/128"]
    listed = stack.mailyard("token", "list").stdout
    assert "this host" in listed
    assert here in listed
