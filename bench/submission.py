"""Submission: messages per second that authenticated users submit on port 587 and that
arrive in the recipient's Maildir, and the time each message takes at the client, on the
path issue 13 changed: STARTTLS and AUTH (Dovecot's auth policy), the sender milter
(header From/Sender bound to the login), OpenDKIM, the hourly outbound limit
(policyd-rate-limit) and the anvil limits.

One stack (project mailyard-bench-*, free loopback ports, `down -v` afterwards):
MAILYARD_FILTER=off, so that the figure is about the submission path rather than Amavis
(bench/filter.py measures that). Where the settings exist, the per-client message rate
limit is turned off and the hourly limit raised above the load, so that both are
consulted for every message but never refuse one. `--sessions` client threads (Python's
smtplib, each one STARTTLS + AUTH session) send `--messages` messages in all, a message
from the sender's own address to a local mailbox; a message counts once it is in that
Maildir. `--repetitions` loads, medians.

To compare two versions, run it in each checkout with its own images on the same quiet
machine (MAILYARD_VERSION=<tag>), one after the other; the client is the same, so the
ratio of the two figures is the cost of what changed.
    .venv/bin/python bench/submission.py [--messages 600] [--sessions 6] [--repetitions 3]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage

from _stack import REPO, finish, machine, neighbours
from filter import FilterStack
from mailtools import insecure_tls, wait_for

PASSWORD = "bench password 1"


def _git_describe() -> str:
    return subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def _delivered(stack: FilterStack, address: str) -> int:
    status = stack.exec(
        "dovecot", "doveadm", "mailbox", "status", "-u", address, "messages", "INBOX"
    )
    return int(status.stdout.split("=", 1)[1])


def _session(
    stack: FilterStack, sender: str, recipient: str, count: int, latencies: list[float]
) -> None:
    with smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=60) as client:
        client.ehlo("bench.client.test")
        client.starttls(context=insecure_tls())
        client.ehlo("bench.client.test")
        client.login(sender, PASSWORD)
        for _ in range(count):
            message = EmailMessage()
            message["From"] = sender
            message["To"] = recipient
            message["Subject"] = "submission bench"
            message["Message-ID"] = f"<{uuid.uuid4().hex}@bench.test>"
            message.set_content("A message of a few hundred bytes.\n" * 8)
            started = time.monotonic()
            client.send_message(message)
            latencies.append(time.monotonic() - started)


def _load(
    stack: FilterStack, sender: str, recipient: str, messages: int, sessions: int
) -> tuple[float, list[float]]:
    before = _delivered(stack, recipient)
    latencies: list[float] = []
    lock = threading.Lock()
    shares = [messages // sessions + (1 if i < messages % sessions else 0) for i in range(sessions)]
    started = time.monotonic()

    def run(count: int) -> None:
        mine: list[float] = []
        _session(stack, sender, recipient, count, mine)
        with lock:
            latencies.extend(mine)

    with ThreadPoolExecutor(max_workers=sessions) as pool:
        for future in [pool.submit(run, share) for share in shares]:
            future.result()
    wait_for(
        f"{messages} messages in {recipient}'s Maildir",
        lambda: _delivered(stack, recipient) >= before + messages,
        timeout=600,
        interval=0.2,
    )
    return messages / (time.monotonic() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600, help="messages per load")
    parser.add_argument("--sessions", type=int, default=6, help="parallel SMTP sessions")
    parser.add_argument("--repetitions", type=int, default=3, help="loads")
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()

    rates: list[float] = []
    latencies: list[float] = []
    complete = True
    version = os.environ.get("MAILYARD_VERSION", "latest")
    try:
        with FilterStack("off", None) as stack:
            stack.up()
            stack.wait_healthy()
            token = stack.admin_token()
            with stack.api(token, timeout=300) as api:
                schema = api.get("/settings/schema").json()
                names = set(schema.get("properties", schema))
                relaxed = {
                    name: value
                    for name, value in {
                        "client_message_rate_limit": 0,
                        "outbound_messages_per_hour": 1_000_000,
                    }.items()
                    if name in names
                }
                if relaxed:
                    api.patch("/settings", json=relaxed).raise_for_status()
                api.post("/domains", json={"name": "bench.test"}).raise_for_status()
                for local in ("sender", "reader"):
                    api.post(
                        "/mailboxes",
                        json={"address": f"{local}@bench.test", "password": PASSWORD},
                    ).raise_for_status()
            _load(stack, "sender@bench.test", "reader@bench.test", 20, 2)  # warm-up
            for _ in range(args.repetitions):
                rate, taken = _load(
                    stack, "sender@bench.test", "reader@bench.test", args.messages, args.sessions
                )
                rates.append(rate)
                latencies.extend(taken)
    except Exception:  # noqa: BLE001 - report what was measured, then say it failed
        traceback.print_exc()
        complete = False

    per_message = sorted(latencies)
    lines = [
        f"\n## Submission on port 587 ({datetime.now(UTC):%Y-%m-%d}, images {version}, "
        f"{_git_describe()})",
        "",
        f"- Machine: {machine()}; {neighbours()}.",
        f"- Load: {args.repetitions} x {args.messages} messages over {args.sessions} "
        "authenticated sessions (STARTTLS, AUTH), MAILYARD_FILTER=off; counted in the "
        "recipient's Maildir (bench/submission.py).",
    ]
    if rates:
        lines.append(
            f"- Delivered: median {statistics.median(rates):.1f} msg/s "
            f"(runs: {', '.join(f'{rate:.1f}' for rate in rates)})."
        )
    if per_message:
        p95 = per_message[int(len(per_message) * 0.95) - 1]
        lines.append(
            f"- Time per message at the client (send_message, from MAIL FROM to the final "
            f"250): median {statistics.median(per_message) * 1000:.1f} ms, "
            f"p95 {p95 * 1000:.1f} ms."
        )
    return finish("\n".join(lines), complete=complete, no_publish=args.no_publish)


if __name__ == "__main__":
    sys.exit(main())
