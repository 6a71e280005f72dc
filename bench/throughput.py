"""Throughput: messages per second delivered into the maildirs by Mailyard (controller,
SQL maps), without and with the filter chain, and, in the same run, by a reference
Postfix + Dovecot pair built from the same images but configured by hand with flat
files, as seed 002 does it (bench/reference/), with the ratios (issue 7, benchmark 1).

Up to three stacks one after the other, each its own project mailyard-bench-* on free
loopback ports, removed with `down -v` afterwards, errors or not:
  1. Mailyard (compose.yaml) with MAILYARD_FILTER=off: no content filter, so the figure
     is about the controller/SQL design rather than Amavis (bench/filter.py measures it);
  2. Mailyard with MAILYARD_FILTER=full (compose.yaml's default: Amavis, SpamAssassin,
     ClamAV), `--filter-messages` per load (0 skips it): ClamAV on an offline
     one-signature database (bench/filter.py's), MAILYARD_SA_UPDATE=no and
     SpamAssassin's network tests off, as in bench/filter.py;
  3. the reference (bench/reference/compose.yaml): mailyard/postfix and mailyard/dovecot
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
        [--filter-messages 300]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    bench_message,
    findings,
    fmt,
    load,
    log_counts,
    offline_signatures,
    wait_queue_empty,
    warm_up,
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
    messages: int  # per load
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
    result.warmup_s = warm_up(stack)
    time.sleep(args.settle)
    for number in range(1, args.repetitions + 1):
        run = load(stack, f"run{number}@{DOMAIN}", result.messages, args.sessions, args.timeout)
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


def run_mailyard(args: argparse.Namespace, variant: str, messages: int) -> StackResult:
    """Mailyard with MAILYARD_FILTER=`variant` (off or full), `messages` per load."""
    result = StackResult(f"Mailyard, MAILYARD_FILTER={variant}", messages)
    print(f"== Mailyard (MAILYARD_FILTER={variant}): starting a stack", flush=True)
    try:
        with (
            offline_signatures() as signatures,
            FilterStack(variant, signatures if variant == "full" else None) as stack,
        ):
            started = time.monotonic()
            stack.up()
            stack.wait_healthy(timeout=600)
            result.to_healthy_s = time.monotonic() - started
            print(f"   {stack.project} healthy after {result.to_healthy_s:.0f} s", flush=True)
            recipients = [f"run{number}@{DOMAIN}" for number in range(1, args.repetitions + 1)]
            with stack.api(stack.admin_token(), timeout=300) as api:
                if variant != "off":  # offline, SpamAssassin's network tests only time out
                    api.patch(
                        "/settings", json={"filter_spam_network_tests": False}
                    ).raise_for_status()
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
    result = StackResult("reference (flat files, seed 002)", args.messages)
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


def ratio_line(label: str, name: str, rate: float, other: float) -> str:
    """`label`: the ratio of two median rates, and how many fewer/more msg/s `name` delivers."""
    ratio = rate / other
    return (
        f"**Ratio {label}: {ratio:.2f}** (medians of the same run: {rate:.2f} / "
        f"{other:.2f} msg/s); {name} "
        + (
            f"delivers {(1 - ratio) * 100:.0f}% fewer messages per second."
            if ratio < 1
            else f"delivers {(ratio - 1) * 100:.0f}% more messages per second."
        )
    )


def report(results: list[StackResult], args: argparse.Namespace, size: int) -> str:
    ours, reference, *filtered = results
    command = (
        f".venv/bin/python bench/throughput.py --messages {args.messages} --sessions "
        f"{args.sessions} --repetitions {args.repetitions} --settle {args.settle:.0f} "
        f"--filter-messages {args.filter_messages}"
    )
    lines = [
        f"## Throughput: Mailyard and a hand-configured Postfix + Dovecot "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `{command}` (images already built). "
        "The machine is shared: other test stacks may have been running during the run "
        f"(at the start: {args.neighbours}; at the end: {neighbours()}).",
        "",
        f"Load: Postfix's `smtp-source` sends {args.messages} messages "
        + (
            f"({args.filter_messages} to Mailyard with the filter chain, which delivers far "
            "fewer per second) "
            if filtered
            else ""
        )
        + f"of {size} bytes (plain text) over {args.sessions} parallel sessions, one message per "
        "connection, to 127.0.0.1:25 from a helper container in the Postfix container's "
        "network namespace, all to one mailbox (a new one per repetition). A message "
        "counts once it is a file in that mailbox's Maildir (`new/` or `cur/`; counted "
        f"every {POLL} s), not when port 25 accepted it; the time runs from starting "
        "smtp-source to the count reaching all messages. msg/s = messages / that time. "
        f"{args.repetitions} repetitions per stack after a warm-up of {WARMUP_MESSAGES} "
        f"messages, {args.settle:.0f} s idle and an empty queue between them.",
        "",
        "| stack | messages per load | delivered msg/s (median) | each repetition (msg/s) | "
        "accepted on port 25, msg/s (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in [ours, *filtered, reference]:
        lines.append(
            f"| {result.name} | {result.messages} | {fmt(result.median_rate, 2)} | "
            + (", ".join(fmt(run.rate, 2) for run in result.runs) or "none")
            + f" | {fmt(result.median_accept_rate, 1)} |"
        )
    ratios = [("Mailyard / reference", ours, reference)]
    ratios += [("Mailyard with the filter chain / reference", full, reference) for full in filtered]
    ratios += [("Mailyard with / without the filter chain", full, ours) for full in filtered]
    for label, one, other in ratios:
        if one.median_rate and other.median_rate:
            lines += ["", ratio_line(label, one.name, one.median_rate, other.median_rate)]
    lines += [
        "",
        "The stacks:",
        "",
        "- Mailyard, MAILYARD_FILTER=off: `compose.yaml` with no content filter (the amavis "
        "and clamav containers idle), mailboxes created through the API. postscreen "
        "passes the client at once (127.0.0.1 is in mynetworks) to smtpd; Postfix "
        "resolves each recipient through proxymap queries to MariaDB (hosted domains, "
        "mailboxes, aliases, alias domains, relay domains, transport), asks SPF "
        "(postfix-policyd-spf-python, which skips loopback) and Dovecot's quota-status "
        "service at RCPT. Dovecot looks each LMTP recipient up in MariaDB (user_query), "
        "applies the quota plugin and runs the spam-to-Junk Sieve script before "
        "delivery.",
        *(
            [
                "- Mailyard, MAILYARD_FILTER=full (compose.yaml's default): the same, and "
                "Postfix hands each message to Amavis (2 children), which runs SpamAssassin "
                "(MAILYARD_SA_UPDATE=no, `filter_spam_network_tests` off: local rules only, "
                "as offline the network tests only time out) and ClamAV on an offline "
                "database holding one signature (EICAR; the real databases make scans "
                "slower), then re-injects it for delivery. A real host with network tests on "
                "spends more time per message waiting on DNS."
            ]
            if filtered
            else []
        ),
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
        "- Every stack: the same client path and message, the same Postfix and Dovecot builds; "
        "the reference has no database and no controller running beside it.",
    ]
    odd = []
    for result in [ours, *filtered, reference]:
        odd += findings(result.name, result.error, result.runs, result.log_counts)
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
    parser.add_argument(
        "--filter-messages",
        type=int,
        default=300,
        help="messages per load for Mailyard with MAILYARD_FILTER=full (0: skip that stack)",
    )
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()
    args.neighbours = neighbours()
    if not 1 <= args.repetitions <= REFERENCE_RECIPIENTS:
        parser.error(f"--repetitions: 1 to {REFERENCE_RECIPIENTS} (the reference's mailboxes)")
    os.chdir(REPO)

    results = [run_mailyard(args, "off", args.messages), run_reference(args)]
    if args.filter_messages > 0:
        results.append(run_mailyard(args, "full", args.filter_messages))
    text = report(results, args, len(bench_message().encode()))
    complete = all(not r.error and r.median_rate for r in results)
    return finish(text, complete=complete, no_publish=args.no_publish)


if __name__ == "__main__":
    sys.exit(main())
