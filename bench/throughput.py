"""Throughput: messages per second delivered into the maildirs by Mailyard (controller,
SQL maps, MAILYARD_FILTER=off) and, in the same run, by a reference Postfix + Dovecot pair
built from the same images but configured by hand with flat files, as seed 002 does it
(bench/reference/), with the ratio of the two (issue 7, benchmark 1).

Two stacks one after the other, each its own project mailyard-bench-* on free loopback
ports, removed with `down -v` afterwards, errors or not:
  1. Mailyard (compose.yaml) with MAILYARD_FILTER=off: no content filter, so the figure
     is about the controller/SQL design rather than Amavis (bench/filter.py measures it);
  2. the reference (bench/reference/compose.yaml): mailyard/postfix and mailyard/dovecot
     with their entrypoints overridden, hash: tables made by postmap, a passwd-file for
     Dovecot, LMTP over TCP from Postfix to Dovecot as in Mailyard; no controller, no
     database.
In each, the same client and the same load (bench/filter.py's helpers): Postfix's
smtp-source in a helper container sharing the Postfix container's network namespace
sends `--messages` messages over `--sessions` parallel sessions to 127.0.0.1:25, after a
warm-up; a message counts once it is a file in the recipient's Maildir (not when port 25
accepted it). `--repetitions` loads per stack, a new recipient each; medians.

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/throughput.py [--messages 2000] [--sessions 20] [--repetitions 3]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

from _stack import REPO, machine, neighbours, publish
from filter import (
    DOMAIN,
    MESSAGE_FILE,
    PASSWORD,
    POLL,
    WARMUP_MESSAGES,
    FilterStack,
    LoadRun,
    bench_message,
    fmt,
    load,
    log_counts,
    wait_queue_empty,
)

REFERENCE_DIR = REPO / "bench" / "reference"
REFERENCE_COMPOSE = REFERENCE_DIR / "compose.yaml"
# bench/reference/postfix/vmailbox and dovecot/users list run1..run5.
REFERENCE_RECIPIENTS = 5


class ReferenceStack(FilterStack):
    """The hand-configured Postfix + Dovecot pair of bench/reference/compose.yaml. Its
    services and its mail volume have Mailyard's names, so FilterStack's helper container
    (smtp-source, Maildir counting), queue and log checks work on it unchanged."""

    def __init__(self) -> None:
        super().__init__("off", None)
        self.env["COMPOSE_FILE"] = str(REFERENCE_COMPOSE.relative_to(REPO))


@dataclass
class StackResult:
    name: str
    runs: list[LoadRun] = field(default_factory=list)
    to_healthy_s: float = 0.0
    warmup_s: float | None = None
    log_counts: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def median_rate(self) -> float | None:
        rates = [run.rate for run in self.runs if run.rate is not None]
        return statistics.median(rates) if rates and len(rates) == len(self.runs) else None

    @property
    def median_accept_rate(self) -> float | None:
        rates = [run.accept_rate for run in self.runs if run.accept_rate is not None]
        return statistics.median(rates) if rates else None


def measure(stack: FilterStack, result: StackResult, args: argparse.Namespace) -> None:
    """Warm-up, then `args.repetitions` loads; the stack is up and its mailboxes exist."""
    stack.start_loader()
    subprocess.run(
        ["docker", "exec", "-i", stack.loader or "", "sh", "-c", f"cat > {MESSAGE_FILE}"],
        input=bench_message(),
        text=True,
        check=True,
    )
    warmup = load(stack, f"warmup@{DOMAIN}", WARMUP_MESSAGES, 2, timeout=300)
    if warmup.error:
        raise RuntimeError(f"warm-up failed: {warmup.error}")
    result.warmup_s = warmup.delivered_s
    print(f"   warm-up: {WARMUP_MESSAGES} delivered in {warmup.delivered_s:.1f} s", flush=True)
    wait_queue_empty(stack)
    time.sleep(args.settle)
    for number in range(1, args.repetitions + 1):
        run = load(stack, f"run{number}@{DOMAIN}", args.messages, args.sessions, args.timeout)
        result.runs.append(run)
        print(
            f"   {run.recipient}: delivered {run.delivered}/{run.messages}"
            + (f" in {run.delivered_s:.1f} s = {run.rate:.2f} msg/s" if run.rate else "")
            + (f", accepted in {run.accepted_s:.1f} s" if run.accepted_s else "")
            + f", queue after {run.queue_after or 'empty'}"
            + (f", ERROR {run.error}" if run.error else ""),
            flush=True,
        )
        if run.error:
            break
        wait_queue_empty(stack)
        time.sleep(args.settle)
    result.log_counts = log_counts(stack)


def run_mailyard(args: argparse.Namespace) -> StackResult:
    result = StackResult("Mailyard")
    print("== Mailyard (MAILYARD_FILTER=off): starting a stack", flush=True)
    try:
        with FilterStack("off", None) as stack:
            started = time.monotonic()
            stack.up()
            stack.wait_healthy(timeout=600)
            result.to_healthy_s = time.monotonic() - started
            print(f"   {stack.project} healthy after {result.to_healthy_s:.0f} s", flush=True)
            recipients = [f"run{number}@{DOMAIN}" for number in range(1, args.repetitions + 1)]
            with stack.api(stack.admin_token(), timeout=300) as api:
                api.post("/domains", json={"name": DOMAIN}).raise_for_status()
                for address in [f"warmup@{DOMAIN}", *recipients]:
                    api.post(
                        "/mailboxes",
                        json={"address": address, "password": PASSWORD, "quota_mb": 10240},
                    ).raise_for_status()
            measure(stack, result, args)
    except Exception as error:  # noqa: BLE001 - reported; the reference still runs
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    return result


def run_reference(args: argparse.Namespace) -> StackResult:
    result = StackResult("reference (flat files, seed 002)")
    print("== reference (bench/reference/compose.yaml): starting a stack", flush=True)
    try:
        with ReferenceStack() as stack:
            started = time.monotonic()
            stack.up()
            stack.wait_healthy(timeout=300)
            result.to_healthy_s = time.monotonic() - started
            print(f"   {stack.project} healthy after {result.to_healthy_s:.0f} s", flush=True)
            measure(stack, result, args)
    except Exception as error:  # noqa: BLE001 - reported with the other stack's figures
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    return result


def report(results: list[StackResult], args: argparse.Namespace, size: int) -> str:
    ours, reference = results
    command = (
        f".venv/bin/python bench/throughput.py --messages {args.messages} --sessions "
        f"{args.sessions} --repetitions {args.repetitions} --settle {args.settle:.0f}"
    )
    lines = [
        f"## Throughput: Mailyard and a hand-configured Postfix + Dovecot "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `{command}` (images already built). "
        "The machine is shared: other test stacks may have been running during the run "
        f"(at the start: {args.neighbours}; at the end: {neighbours()}).",
        "",
        f"Load: Postfix's `smtp-source` sends {args.messages} messages of {size} bytes "
        f"(plain text) over {args.sessions} parallel sessions, one message per "
        "connection, to 127.0.0.1:25 from a helper container in the Postfix container's "
        "network namespace, all to one mailbox (a new one per repetition). A message "
        "counts once it is a file in that mailbox's Maildir (`new/` or `cur/`; counted "
        f"every {POLL} s), not when port 25 accepted it; the time runs from starting "
        "smtp-source to the count reaching all messages. msg/s = messages / that time. "
        f"{args.repetitions} repetitions per stack after a warm-up of {WARMUP_MESSAGES} "
        f"messages, {args.settle:.0f} s idle and an empty queue between them.",
        "",
        "| stack | delivered msg/s (median) | each repetition (msg/s) | "
        "accepted on port 25, msg/s (median) |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        lines.append(
            f"| {result.name} | {fmt(result.median_rate, 2)} | "
            + (", ".join(fmt(run.rate, 2) for run in result.runs) or "none")
            + f" | {fmt(result.median_accept_rate, 1)} |"
        )
    if ours.median_rate and reference.median_rate:
        ratio = ours.median_rate / reference.median_rate
        lines += [
            "",
            f"**Ratio Mailyard / reference: {ratio:.2f}** (medians of the same run: "
            f"{ours.median_rate:.2f} / {reference.median_rate:.2f} msg/s); Mailyard "
            + (
                f"delivers {(1 - ratio) * 100:.0f}% fewer messages per second."
                if ratio < 1
                else f"delivers {(ratio - 1) * 100:.0f}% more messages per second."
            ),
        ]
    lines += [
        "",
        "The two stacks:",
        "",
        "- Mailyard: `compose.yaml` with MAILYARD_FILTER=off (no content filter; the amavis "
        "and clamav containers idle), mailboxes created through the API. postscreen "
        "passes the client at once (127.0.0.1 is in mynetworks) to smtpd; Postfix "
        "resolves each recipient through proxymap queries to MariaDB (hosted domains, "
        "mailboxes, aliases, alias domains, relay domains, transport), asks SPF "
        "(postfix-policyd-spf-python, which skips loopback) and Dovecot's quota-status "
        "service at RCPT. Dovecot looks each LMTP recipient up in MariaDB (user_query), "
        "applies the quota plugin and runs the spam-to-Junk Sieve script before "
        "delivery.",
        "- Reference (`bench/reference/`): the same images, entrypoints overridden, "
        "configured by hand after seed 002: `virtual_mailbox_domains`, "
        "`virtual_mailbox_maps`, `virtual_alias_maps` and a sender blocklist as `hash:` "
        "tables built by postmap, the seed's port-25 restrictions (SPF through the same "
        "policy daemon, which skips loopback), smtpd directly on port 25 (no postscreen, "
        "as in the seed), Dovecot with a passwd-file (passdb and userdb), no quota, no "
        "Sieve, delivery over LMTP on TCP port 24 as in Mailyard. Changes from the seed: "
        "smtpd's process limit is Postfix's default (100, as in Mailyard) instead of the "
        "seed's 5; no TLS, submission or SASL (not used by this client); no DNSBL client "
        "restrictions (offline here, and none in Mailyard by default); nothing chrooted.",
        "- Both: the same client path and message, the same Postfix and Dovecot builds; "
        "the reference has no database and no controller running beside it.",
    ]
    odd = []
    for result in results:
        if result.error:
            odd.append(f"{result.name} failed: {result.error}")
        for run in result.runs:
            if run.error:
                odd.append(f"{result.name} {run.recipient}: {run.error}")
            if run.queue_after:
                odd.append(f"{result.name} {run.recipient}: queue after {run.queue_after}")
        found = {label: count for label, count in result.log_counts.items() if count}
        odd.append(
            f"{result.name} logs: "
            + (", ".join(f"{label}: {count}" for label, count in found.items()) or "clean")
        )
        odd.append(
            f"{result.name}: `up -d` to healthy {result.to_healthy_s:.0f} s; warm-up "
            f"({WARMUP_MESSAGES} messages, 2 sessions) delivered in "
            f"{fmt(result.warmup_s)} s"
        )
    lines += ["", "Errors, log findings and start-up:", "", *(f"- {line}" for line in odd), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per load")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("--repetitions", type=int, default=3, help="loads per stack")
    parser.add_argument("--settle", type=float, default=5, help="seconds idle before each load")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for one load's delivery"
    )
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()
    args.neighbours = neighbours()
    if not 1 <= args.repetitions <= REFERENCE_RECIPIENTS:
        parser.error(f"--repetitions: 1 to {REFERENCE_RECIPIENTS} (the reference's mailboxes)")
    os.chdir(REPO)

    results = [run_mailyard(args), run_reference(args)]
    text = report(results, args, len(bench_message().encode()))
    complete = all(not r.error and r.median_rate for r in results)
    if args.no_publish or not complete:
        print(text)
        if not complete:
            print("a stack did not complete: not appended to docs/benchmarks.md")
            return 1
        return 0
    publish(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
