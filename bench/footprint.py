"""Footprint and start: each container's memory idle and under load; time from
`docker compose up -d` (images built) to all healthy and to the first message accepted.

One stack (project mailyard-bench-*, free loopback ports, removed with `down -v`
afterwards, errors or not), started as a user would: compose.yaml with its defaults (the
default services, not the `web` profile; MAILYARD_FILTER=full unless --filter says
otherwise), except what this offline machine needs: ClamAV reads an offline signature
database made here (EICAR; tests/stack/compose.filter.yaml mounts it, as bench/filter.py
does) and MAILYARD_SA_UPDATE=no.
  1. `up -d`, polling `docker inspect` for the moment each container is first healthy
     and the moment all are healthy at once;
  2. a domain and a mailbox through the API, one message to port 25 from this host
     (smtplib), then that message read over IMAPS;
  3. the setting filter_spam_network_tests off (offline, SpamAssassin's network tests
     would only wait for timeouts), a warm-up, `--settle` seconds idle, then the idle
     memory: median of `--samples` `docker stats --no-stream` readings per container;
  4. a load as in bench/filter.py: Postfix's smtp-source sends `--load-messages`
     messages over `--load-sessions` sessions to one mailbox, each counted when it is a
     file in the Maildir, with `docker stats` streamed for the peak memory per container.

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/footprint.py [--samples 7] [--settle 30] [--load-messages 500]
Prints the figures and appends them to docs/benchmarks.md with the machine's description
(not with --no-publish, nor when a step failed).
"""

from __future__ import annotations

import argparse
import json
import smtplib
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

from _stack import REPO, finish, machine, neighbours
from filter import (
    DOMAIN,
    PASSWORD,
    POLL,
    WARMUP_MESSAGES,
    FilterStack,
    LoadRun,
    StatsStream,
    bench_message,
    findings,
    fmt,
    idle_memory,
    load,
    log_counts,
    offline_signatures,
    warm_up,
)
from mailtools import imap_message_ids, make_message, wait_for  # tests/stack, via _stack

FIRST_MAILBOX = "bench"  # @ filter.DOMAIN, the first message's recipient
LOAD_MAILBOX = "load"


@dataclass
class Footprint:
    services: list[str] = field(default_factory=list)
    up_returned_s: float | None = None  # `up -d` itself (it waits for depends_on health)
    healthy_s: dict[str, float] = field(default_factory=dict)  # first seen healthy
    all_healthy_s: float | None = None  # all healthy in the same poll
    first_accepted_s: float | None = None
    first_readable_s: float | None = None
    warmup_s: float | None = None
    idle: dict[str, float] = field(default_factory=dict)  # MiB, median
    peak: dict[str, float] = field(default_factory=dict)  # MiB, highest under load
    peak_total: float | None = None  # MiB, highest sum of one complete stats round
    stats_rounds: int = 0
    load: LoadRun | None = None
    log_counts: dict[str, int] = field(default_factory=dict)
    error: str = ""


def start(stack: FilterStack, result: Footprint, timeout: float) -> float:
    """`up -d` in the background while polling each container's health; the times are
    seconds from starting `up -d`, returned (time.monotonic())."""
    expected = set(result.services)
    started = time.monotonic()
    up = subprocess.Popen(
        [*stack.compose, "up", "-d", "--no-build"],
        cwd=REPO,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while result.all_healthy_s is None:
        now = time.monotonic() - started
        if result.up_returned_s is None and up.poll() is not None:
            if up.returncode:
                raise RuntimeError(f"`up -d` exited {up.returncode}: {up.communicate()[0]}")
            result.up_returned_s = now
        if now > timeout:
            missing = sorted(expected - set(result.healthy_s))
            raise TimeoutError(f"not all healthy after {timeout:.0f} s (first missing {missing})")
        names = list(stack.containers())
        inspected = subprocess.run(
            ["docker", "inspect", *names], capture_output=True, text=True, check=False
        ).stdout
        healthy = {
            state["Config"]["Labels"]["com.docker.compose.service"]
            for state in (json.loads(inspected or "[]") if names else [])
            if (state["State"].get("Health") or {}).get("Status") == "healthy"
        }
        for service in healthy - set(result.healthy_s):
            result.healthy_s[service] = now
        if healthy >= expected:
            result.all_healthy_s = now
        else:
            time.sleep(0.5)
    up.communicate(timeout=120)
    if result.up_returned_s is None:  # returned between the last two polls
        result.up_returned_s = result.all_healthy_s
    return started


def measure(args: argparse.Namespace, result: Footprint) -> None:
    first = f"{FIRST_MAILBOX}@{DOMAIN}"
    with (
        offline_signatures() as signatures,
        FilterStack(args.filter, signatures if args.filter == "full" else None) as stack,
    ):
        result.services = stack.services()
        print(f"== {stack.project}: `up -d` ({len(result.services)} services)", flush=True)
        began = start(stack, result, args.timeout)
        print(
            f"   `up -d` returned after {result.up_returned_s:.1f} s, all healthy after "
            f"{result.all_healthy_s:.1f} s",
            flush=True,
        )
        with stack.api(stack.admin_token(), timeout=300) as api:
            api.post("/domains", json={"name": DOMAIN}).raise_for_status()
            api.post("/mailboxes", json={"address": first, "password": PASSWORD}).raise_for_status()
            message = make_message("sender@remote.test", [first], "first")
            with smtplib.SMTP("127.0.0.1", stack.port("smtp"), timeout=120) as client:
                client.send_message(message)
            result.first_accepted_s = time.monotonic() - began
            wait_for(
                "the first message readable over IMAPS",
                lambda: (
                    message["Message-ID"]
                    in imap_message_ids("127.0.0.1", stack.port("imaps"), first, PASSWORD)
                ),
                timeout=300,
                interval=0.2,
            )
            result.first_readable_s = time.monotonic() - began
            print(
                f"   first message accepted after {result.first_accepted_s:.1f} s, readable "
                f"after {result.first_readable_s:.1f} s",
                flush=True,
            )
            api.patch("/settings", json={"filter_spam_network_tests": False}).raise_for_status()
            for name in ("warmup", LOAD_MAILBOX):
                api.post(
                    "/mailboxes",
                    json={"address": f"{name}@{DOMAIN}", "password": PASSWORD, "quota_mb": 10240},
                ).raise_for_status()

        result.warmup_s = warm_up(stack)
        time.sleep(args.settle)
        result.idle = idle_memory(stack, args.samples)
        print(f"   idle MiB: {result.idle}", flush=True)

        stats = StatsStream(stack.containers())
        try:
            loading = time.time()
            result.load = load(
                stack,
                f"{LOAD_MAILBOX}@{DOMAIN}",
                args.load_messages,
                args.load_sessions,
                timeout=900,
            )
            rounds = stats.between(loading, time.time())
        finally:
            stats.close()
        run = result.load
        print(
            f"   load: delivered {run.delivered}/{run.messages}"
            + (f" in {run.delivered_s:.1f} s = {run.rate:.2f} msg/s" if run.rate else "")
            + f", {len(rounds)} stats rounds"
            + (f", ERROR {run.error}" if run.error else ""),
            flush=True,
        )
        result.stats_rounds = len(rounds)
        for values in rounds:
            for service, mib in values.items():
                result.peak[service] = max(result.peak.get(service, 0.0), mib)
            if len(values) == len(result.services):  # every container in this round
                result.peak_total = max(result.peak_total or 0.0, sum(values.values()))
        result.log_counts = log_counts(stack)


def report(result: Footprint, args: argparse.Namespace) -> str:
    command = (
        f".venv/bin/python bench/footprint.py --filter {args.filter} --samples {args.samples} "
        f"--settle {args.settle:.0f} --load-messages {args.load_messages} --load-sessions "
        f"{args.load_sessions}"
    )
    run = result.load
    lines = [
        f"## Footprint and start ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `{command}` (images already built). The machine "
        "is shared: other test stacks may have been running during the run (at the "
        f"start: {args.neighbours}; at the end: {neighbours()}).",
        "",
        f"Stack: `compose.yaml` with its defaults, {len(result.services)} services "
        f"({', '.join(sorted(result.services))}; not the `web` profile), MAILYARD_FILTER="
        f"{args.filter}" + (" (the default)" if args.filter == "full" else "") + "; "
        "ClamAV on an offline one-signature database and MAILYARD_SA_UPDATE=no (this "
        "machine is offline).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| `up -d` returned (it waits for the services other services depend on) "
        f"| {fmt(result.up_returned_s)} s |",
        f"| `up -d` to all services healthy | {fmt(result.all_healthy_s)} s |",
        f"| `up -d` to first message accepted on port 25 (incl. creating domain and "
        f"mailbox) | {fmt(result.first_accepted_s)} s |",
        f"| `up -d` to that message readable over IMAPS | {fmt(result.first_readable_s)} s |",
        f"| load: delivered msg/s ({args.load_messages} messages, {args.load_sessions} "
        f"sessions) | {fmt(run.rate if run else None, 2)} |",
        f"| load: accepted on port 25, msg/s | {fmt(run.accept_rate if run else None)} |",
        "",
        f"Per container: first seen healthy (s after `up -d`); memory in MiB (`docker stats` "
        f"MemUsage), idle = median of {args.samples} `--no-stream` readings after "
        f"{args.settle:.0f} s idle, peak = the highest of the streaming readings during "
        f"the load ({result.stats_rounds} rounds):",
        "",
        "| container | healthy after, s | idle MiB | peak under load MiB |",
        "| --- | --- | --- | --- |",
    ]
    for service in sorted(set(result.services) | set(result.idle)):
        lines.append(
            f"| {service} | {fmt(result.healthy_s.get(service))} | "
            f"{fmt(result.idle.get(service))} | {fmt(result.peak.get(service))} |"
        )
    lines += [
        f"| **sum** | | **{fmt(sum(result.idle.values()) if result.idle else None)}** | "
        f"**{fmt(sum(result.peak.values()) if result.peak else None)}** |",
        f"| highest sum of one reading round under load | | | {fmt(result.peak_total)} |",
        "",
        "What the figures measure:",
        "",
        "- The times run from starting `docker compose up -d --no-build` (images built, "
        "no volumes yet: the database is created on this start) and are found by polling "
        "`docker inspect` about every second, so they are late by up to that; each "
        "container's health is its image's healthcheck.",
        "- The first message: a domain and a mailbox created through the API once all "
        "are healthy, then one message sent with smtplib from this host to the published "
        "port 25 (through postscreen; the default settings, SpamAssassin's network tests "
        "still on), and the time until it is listed in the mailbox's INBOX over IMAPS "
        "(polled every 0.2 s).",
        f"- Then the setting `filter_spam_network_tests` is turned off (offline they only "
        f"time out), a warm-up of {WARMUP_MESSAGES} messages is delivered and the stack "
        f"idles {args.settle:.0f} s before the idle readings.",
        f"- The load: Postfix's `smtp-source` sends {args.load_messages} messages of "
        f"{len(bench_message().encode())} bytes (plain text) over {args.load_sessions} "
        "parallel sessions, one message per connection, to 127.0.0.1:25 from a helper "
        "container in the Postfix container's network namespace (as bench/filter.py and "
        "bench/throughput.py), all to one mailbox; a message counts once it is a file in "
        f"that mailbox's Maildir (counted every {POLL} s); msg/s = messages / time from "
        "starting smtp-source to the last file. The helper's processes are in no "
        "container's memory.",
        "- ClamAV's memory is that of a one-signature database: with the real databases "
        "(freshclam) clamd alone needs 1.2-2.4 GiB according to ClamAV's documentation "
        "(see the filter chain section). The sum of the peaks is an upper bound: the "
        "peaks need not coincide.",
    ]
    odd = findings("the stack", result.error, [run] if run else [], result.log_counts)
    odd.append(
        f"warm-up ({WARMUP_MESSAGES} messages, 2 sessions) delivered in {fmt(result.warmup_s)} s"
    )
    lines += ["", "Errors, log findings and warm-up:", "", *(f"- {line}" for line in odd), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7, help="idle memory samples")
    parser.add_argument("--settle", type=float, default=30, help="seconds idle before sampling")
    parser.add_argument("--load-messages", type=int, default=500, help="messages in the load")
    parser.add_argument("--load-sessions", type=int, default=10, help="parallel SMTP sessions")
    parser.add_argument(
        "--filter",
        choices=["full", "no-clamav", "off"],
        default="full",
        help="MAILYARD_FILTER (compose.yaml's default: full)",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds to wait for all healthy"
    )
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()
    args.neighbours = neighbours()

    result = Footprint()
    try:
        measure(args, result)
    except Exception as error:  # noqa: BLE001 - reported with what was measured
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    text = report(result, args)
    complete = not result.error and result.load is not None and not result.load.error
    return finish(text, complete=complete, no_publish=args.no_publish)


if __name__ == "__main__":
    sys.exit(main())
