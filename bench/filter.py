"""Filter chain: messages per second delivered through the content filter (Amavis with
SpamAssassin and ClamAV) and without it, in the same run, and each container's memory
idle and under that load, for MAILYARD_FILTER=full, off and no-clamav (issue 5).

One stack after another (each its own project mailyard-bench-*, free loopback ports,
removed with `down -v` afterwards, errors or not):
  1. MAILYARD_FILTER=full, ClamAV on an offline signature file made here (the EICAR
     test string; tests/stack/compose.filter.yaml mounts it), since this machine cannot
     download ClamAV's databases;
  2. MAILYARD_FILTER=off (no content filter);
  3. MAILYARD_FILTER=no-clamav (Amavis with SpamAssassin only; fewer repetitions).
In each: MAILYARD_SA_UPDATE=no and the setting filter_spam_network_tests off (offline,
SpamAssassin's DNSBL/URIBL/Razor/Pyzor tests would only wait for timeouts); a few warm-up
messages; idle memory after settling; then `--repetitions` loads of `--messages`
messages sent by Postfix's smtp-source over `--sessions` parallel sessions to port 25,
each counted when it is a file in the recipient's Maildir, with `docker stats` sampled
about once a second for the peak memory per container.

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/filter.py [--messages 500] [--sessions 10] [--repetitions 3]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from _stack import Stack, machine, memory_mib, publish
from mailtools import wait_for  # tests/stack, via _stack

# The EICAR test file (as in tests/stack/test_filtering.py): the one signature ClamAV
# gets here. Harmless; every scanner detects it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
VERSION = os.environ.get("MAILYARD_VERSION", "latest")
DOMAIN = "bench.test"
PASSWORD = "bench password 1"
SENDER = "newsletter@sender.example"
WARMUP_MESSAGES = 10
IDLE_SAMPLES = 5
MESSAGE_FILE = "/bench-message.eml"  # in the loader container
POLL = 0.2  # seconds between two counts of the Maildir files
MIB = 1024 * 1024
# ClamAV's documentation: clamd with the official databases needs this much RAM (more
# while it reloads them). Cited, not measured: this machine cannot download them.
CLAMD_DOCUMENTED_MIB = (1.2 * 1024, 2.4 * 1024)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def bench_message() -> str:
    """A plain-text message of about 3 KiB, the same for every delivery. No Date or
    Message-ID: Postfix adds them (the client is local), so each copy is distinct."""
    paragraph = textwrap.fill(
        "This is the monthly summary of the allotment society. The water tap near the "
        "north gate will be repaired on Saturday morning, so please fill your cans on "
        "Friday evening. The seed exchange moves to the shed by the compost bays, and "
        "the committee asks every member to label their tools before the winter "
        "clear-out. Minutes of the last meeting are pinned to the notice board.",
        width=72,
    )
    body = "\n\n".join(f"{number}. {paragraph}" for number in range(1, 8))
    return (
        f"From: Allotment Society <{SENDER}>\n"
        "To: Bench Reader <reader@bench.test>\n"
        "Subject: Monthly summary from the allotment society\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        f"Hello,\n\n{body}\n\nKind regards,\nThe committee\n"
    )


@dataclass
class LoadRun:
    recipient: str
    messages: int
    accepted_s: float | None = None  # smtp-source done: every message queued on port 25
    delivered_s: float | None = None  # the last message's file in the Maildir
    delivered: int = 0
    queue_after: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def rate(self) -> float | None:
        return self.messages / self.delivered_s if self.delivered_s else None

    @property
    def accept_rate(self) -> float | None:
        return self.messages / self.accepted_s if self.accepted_s else None


@dataclass
class VariantResult:
    variant: str
    runs: list[LoadRun] = field(default_factory=list)
    idle: dict[str, float] = field(default_factory=dict)  # MiB, median
    peak: dict[str, float] = field(default_factory=dict)  # MiB, highest under load
    peak_total: float = 0.0  # MiB, highest sum of one stats round under load
    to_healthy_s: float = 0.0
    log_counts: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def rates(self) -> list[float]:
        return [run.rate for run in self.runs if run.rate is not None]

    @property
    def median_rate(self) -> float | None:
        rates = self.rates
        return statistics.median(rates) if rates and len(rates) == len(self.runs) else None


class FilterStack(Stack):
    """A bench stack with MAILYARD_FILTER=`variant` (and, given `signatures`, ClamAV on
    that offline signature directory), plus a helper container for the load."""

    def __init__(self, variant: str, signatures: Path | None) -> None:
        super().__init__()
        files = ["compose.yaml"]
        self.env["MAILYARD_FILTER"] = variant
        self.env["MAILYARD_SA_UPDATE"] = "no"
        if signatures is not None:
            files.append("tests/stack/compose.filter.yaml")
            self.env["MAILYARD_TEST_CLAMAV_SIGNATURES"] = str(signatures)
        self.env["COMPOSE_FILE"] = os.pathsep.join(files)
        self.loader: str | None = None

    def containers(self) -> dict[str, str]:
        """Container name -> service, for this project's compose services."""
        listing = subprocess.run(
            [
                "docker",
                "ps",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                "label=com.docker.compose.service",
                "--format",
                '{{.Names}}\t{{.Label "com.docker.compose.service"}}',
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pairs = (line.split("\t") for line in listing.splitlines() if "\t" in line)
        # Not the loader (no service label: the template prints "<no value>").
        return {name: service for name, service in pairs if service and "<" not in service}

    def start_loader(self) -> str:
        """A container of the Postfix image in the Postfix container's network namespace:
        its connections to 127.0.0.1:25 reach postscreen from 127.0.0.1, and its own
        processes (smtp-source, the Maildir counting) are not in any service's memory.
        The mail volume is mounted read-only for counting the delivered files."""
        name = f"{self.project}-loader"
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                # scripts/clean-test-stacks removes it with the project if left behind.
                "--label",
                f"com.docker.compose.project={self.project}",
                "--network",
                f"container:{self.container('postfix')}",
                "-v",
                f"{self.project}_mail:/var/vmail:ro",
                "--entrypoint",
                "sleep",
                f"mailyard/postfix:{VERSION}",
                "infinity",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        self.loader = name
        return name

    def down(self) -> None:
        if self.loader is not None:
            subprocess.run(["docker", "rm", "-f", self.loader], capture_output=True, check=False)
            self.loader = None
        super().down()


class StatsStream:
    """`docker stats` (streaming: it redraws all containers a few times a second; Docker
    refreshes the values about once a second) for the given containers,
    read in a thread; each round is kept with the time it started."""

    def __init__(self, containers: dict[str, str]) -> None:
        self.containers = containers
        self.rounds: list[tuple[float, dict[str, float]]] = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            ["docker", "stats", "--format", "{{.Name}}\t{{.MemUsage}}", *containers],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        current: dict[str, float] = {}
        started = time.time()
        for raw in self.process.stdout:
            if "\x1b[H" in raw:  # the cursor goes home: a new round
                if current:
                    with self.lock:
                        self.rounds.append((started, current))
                current, started = {}, time.time()
            line = ANSI.sub("", raw).strip()
            name, _, usage = line.partition("\t")
            if name in self.containers:
                try:
                    current[self.containers[name]] = memory_mib(usage)
                except ValueError:
                    continue  # "--": the container is not running
        if current:
            with self.lock:
                self.rounds.append((started, current))

    def between(self, start: float, end: float) -> list[dict[str, float]]:
        with self.lock:
            return [values for when, values in self.rounds if start <= when <= end]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()  # docker stats may keep streaming after SIGTERM
            self.process.wait(timeout=10)
        self.thread.join(timeout=10)


def idle_memory(stack: FilterStack, samples: int) -> dict[str, float]:
    """Median of `samples` `docker stats --no-stream` readings per service."""
    containers = stack.containers()
    readings: dict[str, list[float]] = {}
    for number in range(samples):
        if number:
            time.sleep(2)
        output = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in output.splitlines():
            name, _, usage = line.partition("\t")
            if name in containers:
                readings.setdefault(containers[name], []).append(memory_mib(usage))
    return {service: statistics.median(values) for service, values in sorted(readings.items())}


def queue_counts(stack: FilterStack) -> dict[str, int]:
    """Messages in Postfix's queue by queue name (incoming, active, deferred, ...)."""
    counts: dict[str, int] = {}
    for line in stack.exec("postfix", "postqueue", "-j").stdout.splitlines():
        if line.strip():
            queue = json.loads(line)["queue_name"]
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def maildir(stack: FilterStack, address: str) -> str:
    home = stack.exec("dovecot", "doveadm", "user", "-f", "home", address).stdout.strip()
    if not home.startswith("/var/vmail/"):
        raise RuntimeError(f"{address}: home {home!r} is not on the mail volume")
    return f"{home}/Maildir"


# Runs in the loader container: prints "<epoch seconds> <files>" every POLL seconds until
# the Maildir (all folders, new/ and cur/) holds $2 files or $3 seconds have passed.
COUNT_SCRIPT = r"""
end=$(( $(date +%s) + $3 ))
while :; do
  n=$(find "$1" -type f \( -path '*/new/*' -o -path '*/cur/*' \) 2>/dev/null | wc -l)
  echo "$(date +%s.%N) $n"
  [ "$n" -ge "$2" ] && exit 0
  [ "$(date +%s)" -ge "$end" ] && exit 1
  sleep $4
done
"""


def load(
    stack: FilterStack, recipient: str, messages: int, sessions: int, timeout: float
) -> LoadRun:
    """Sends `messages` with smtp-source and waits until all are files in the Maildir."""
    assert stack.loader is not None
    run = LoadRun(recipient, messages)
    directory = maildir(stack, recipient)
    started = time.time()
    sender = subprocess.Popen(
        [
            "docker",
            "exec",
            stack.loader,
            "smtp-source",
            "-4",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-F",
            MESSAGE_FILE,
            "-f",
            SENDER,
            "-t",
            recipient,
            "-M",
            "loader.sender.example",
            "127.0.0.1:25",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    counter = subprocess.Popen(
        [
            "docker",
            "exec",
            stack.loader,
            "sh",
            "-c",
            COUNT_SCRIPT,
            "count",
            directory,
            str(messages),
            str(int(timeout)),
            str(POLL),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    output, _ = sender.communicate(timeout=timeout)
    if sender.returncode == 0:
        run.accepted_s = time.time() - started
    else:
        run.error = f"smtp-source exited {sender.returncode}: {output.strip()[-500:]}"
    counted, _ = counter.communicate(timeout=timeout + 30)
    last = counted.split()[-2:] if counted.split() else ["0", "0"]
    run.delivered = int(last[1])
    if run.delivered >= messages:
        run.delivered_s = float(last[0]) - started
    elif not run.error:
        run.error = f"only {run.delivered} of {messages} delivered within {timeout:.0f} s"
    run.queue_after = queue_counts(stack)
    return run


def wait_queue_empty(stack: FilterStack, timeout: float = 300) -> None:
    wait_for("Postfix's queue empty", lambda: not queue_counts(stack), timeout=timeout, interval=2)


def log_counts(stack: FilterStack) -> dict[str, int]:
    """Signs of trouble in the logs: deferred/bounced deliveries, warnings, Amavis's (!)."""
    patterns = {
        "postfix": {
            "status=deferred": "status=deferred",
            "status=bounced": "status=bounced",
            # Not Postfix's "not owned by root" at start for the release files: they
            # belong to the controller's user on a read-only volume (docs/security.md).
            "warning:": r"warning:(?! not owned by root: /etc/mailyard/)",
            "fatal:/panic:/error:": r"\b(fatal|panic|error):",
        },
        # Not "(!)Net::Server ... Re-exec server during HUP": the settings change reloads.
        "amavis": {"(!) or TROUBLE": r"\(!!?\)(?!.*during HUP)|TROUBLE", "error": r"(?i)\berror\b"},
        "clamav": {"ERROR/WARNING": r"ERROR|WARNING"},
        "dovecot": {"Error:/Warning:": r"Error:|Warning:|Fatal:"},
    }
    counts: dict[str, int] = {}
    present = set(stack.services())  # e.g. bench/reference/compose.yaml: postfix, dovecot
    for service, wanted in patterns.items():
        if service not in present:
            continue
        logs = subprocess.run(
            ["docker", "logs", stack.container(service)],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = (logs.stdout + logs.stderr).splitlines()
        for label, pattern in wanted.items():
            matching = [line for line in lines if re.search(pattern, line)]
            counts[f"{service} {label}"] = len(matching)
            for line in matching[:5]:
                print(f"  [{stack.project} {service}] {line[:300]}", flush=True)
    return counts


@contextmanager
def offline_signatures() -> Iterator[Path]:
    """A ClamAV signature directory with one MD5 signature (md5:size:name) of EICAR."""
    with tempfile.TemporaryDirectory(prefix="mailyard-bench-clamav-") as directory:
        database = Path(directory) / "mailyard-bench.hdb"
        digest = hashlib.md5(EICAR).hexdigest()  # noqa: S324 - ClamAV's signature format
        database.write_text(f"{digest}:{len(EICAR)}:Eicar-Test-File\n")
        Path(directory).chmod(0o755)
        database.chmod(0o644)
        yield Path(directory)


def warm_up(stack: FilterStack) -> float | None:
    """Starts the stack's loader with the bench message, then delivers WARMUP_MESSAGES to
    warmup@DOMAIN (which must exist) over 2 sessions and waits for an empty queue; the
    seconds the delivery took."""
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
    print(f"   warm-up: {WARMUP_MESSAGES} delivered in {warmup.delivered_s:.1f} s", flush=True)
    wait_queue_empty(stack)
    return warmup.delivered_s


def run_variant(
    variant: str, repetitions: int, args: argparse.Namespace, signatures: Path | None
) -> VariantResult:
    result = VariantResult(variant)
    print(f"== MAILYARD_FILTER={variant}: starting a stack", flush=True)
    with FilterStack(variant, signatures) as stack:
        started = time.monotonic()
        stack.up()
        stack.wait_healthy(timeout=600)
        result.to_healthy_s = time.monotonic() - started
        print(f"   {stack.project} healthy after {result.to_healthy_s:.0f} s", flush=True)
        recipients = [f"run{number}@{DOMAIN}" for number in range(1, repetitions + 1)]
        with stack.api(stack.admin_token(), timeout=300) as api:
            api.patch("/settings", json={"filter_spam_network_tests": False}).raise_for_status()
            api.post("/domains", json={"name": DOMAIN}).raise_for_status()
            for address in [f"warmup@{DOMAIN}", *recipients]:
                api.post(
                    "/mailboxes",
                    json={"address": address, "password": PASSWORD, "quota_mb": 10240},
                ).raise_for_status()
        warm_up(stack)

        time.sleep(args.settle)
        result.idle = idle_memory(stack, IDLE_SAMPLES)
        print(f"   idle MiB: {result.idle}", flush=True)

        stats = StatsStream(stack.containers())
        try:
            for recipient in recipients:
                began = time.time()
                run = load(stack, recipient, args.messages, args.sessions, args.timeout)
                rounds = stats.between(began, time.time())
                result.runs.append(run)
                print(
                    f"   {recipient}: delivered {run.delivered}/{run.messages}"
                    + (f" in {run.delivered_s:.1f} s = {run.rate:.2f} msg/s" if run.rate else "")
                    + (f", accepted in {run.accepted_s:.1f} s" if run.accepted_s else "")
                    + f", queue after {run.queue_after or 'empty'}, {len(rounds)} stats rounds"
                    + (f", ERROR {run.error}" if run.error else ""),
                    flush=True,
                )
                for values in rounds:
                    for service, mib in values.items():
                        result.peak[service] = max(result.peak.get(service, 0.0), mib)
                    # A round with every service: its sum is what the stack held at once.
                    if len(values) == len(result.idle):
                        result.peak_total = max(result.peak_total, sum(values.values()))
                if run.error:
                    break
                wait_queue_empty(stack)
                time.sleep(5)
        finally:
            stats.close()
        result.log_counts = log_counts(stack)
    return result


def findings(
    name: str, error: str | None, runs: list[LoadRun], log_counts: dict[str, int]
) -> list[str]:
    """Report lines: a failed stack, failed or unfinished loads, what the logs showed."""
    lines = [f"{name} failed: {error}"] if error else []
    for run in runs:
        if run.error:
            lines.append(f"{name} {run.recipient}: {run.error}")
        if run.queue_after:
            lines.append(f"{name} {run.recipient}: queue after {run.queue_after}")
    found = {label: count for label, count in log_counts.items() if count}
    lines.append(
        f"{name} logs: "
        + (", ".join(f"{label}: {count}" for label, count in found.items()) or "clean")
    )
    return lines


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(results: list[VariantResult], args: argparse.Namespace, size: int) -> str:
    by_variant = {result.variant: result for result in results}
    full, off = by_variant.get("full"), by_variant.get("off")
    command = (
        f".venv/bin/python bench/filter.py --messages {args.messages} --sessions "
        f"{args.sessions} --repetitions {args.repetitions} --no-clamav-repetitions "
        f"{args.no_clamav_repetitions} --settle {args.settle:.0f}"
    )
    lines = [
        f"## Filter chain: throughput and memory ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `{command}` (images already built). The machine "
        "is shared: other test stacks may have been running during the run.",
        "",
        f"Load: Postfix's `smtp-source` sends {args.messages} messages of {size} bytes "
        f"(plain text) over {args.sessions} parallel sessions, one message per "
        "connection, to port 25 (postscreen), all to one mailbox (a new one per "
        "repetition). A message counts once it is a file in that mailbox's Maildir "
        f"(`new/` or `cur/`, any folder; counted every {POLL} s); the time runs from "
        "starting smtp-source to the count reaching all messages. msg/s = messages / "
        "that time.",
        "",
        "| MAILYARD_FILTER | delivered msg/s (median) | each repetition (msg/s) | "
        "accepted on port 25, msg/s (median) |",
        "| --- | --- | --- | --- |",
    ]
    for result in results:
        accepted = [run.accept_rate for run in result.runs if run.accept_rate is not None]
        lines.append(
            f"| {result.variant} | {fmt(result.median_rate, 2)} | "
            + (", ".join(fmt(run.rate, 2) for run in result.runs) or "none")
            + f" | {fmt(statistics.median(accepted) if accepted else None, 1)} |"
        )
    if full and off and full.median_rate and off.median_rate:
        lines += [
            "",
            f"Without the filter the stack delivers **{off.median_rate / full.median_rate:.1f}"
            f" times** as many messages per second as with Amavis + SpamAssassin + ClamAV "
            f"(off / full, medians of the same run: {off.median_rate:.2f} / "
            f"{full.median_rate:.2f}).",
        ]
    services = sorted({service for result in results for service in result.idle})
    header = " | ".join(f"{r.variant} idle | {r.variant} peak under load" for r in results)
    lines += [
        "",
        "Memory per container, MiB (`docker stats` MemUsage: idle = median of "
        f"{IDLE_SAMPLES} `--no-stream` readings after the warm-up and {args.settle:.0f} s "
        "idle; peak = the highest of `docker stats`' streaming readings (values refreshed "
        "about once a second) during "
        "the loads):",
        "",
        f"| container | {header} |",
        "| --- |" + " --- |" * (2 * len(results)),
    ]
    for service in services:
        cells = " | ".join(
            f"{fmt(r.idle.get(service))} | {fmt(r.peak.get(service) if r.runs else None)}"
            for r in results
        )
        lines.append(f"| {service} | {cells} |")
    totals = " | ".join(
        f"**{sum(r.idle.values()):.1f}** | **{sum(r.peak.values()):.1f}**"
        if r.runs
        else f"**{sum(r.idle.values()):.1f}** | n/a"
        for r in results
    )
    at_once = " | ".join(f" | {fmt(r.peak_total or None)}" for r in results)
    lines += [
        f"| **sum** | {totals} |",
        f"| highest sum of one reading round under load |{at_once} |",
        "",
        "RAM each variant needs (the sum of the per-container peaks above, an upper bound: "
        "the peaks need not coincide):",
        "",
    ]
    for result in results:
        need = sum((result.peak if result.runs else result.idle).values())
        lines.append(f"- `{result.variant}`: {need:.0f} MiB measured")
        if result is not full or not full.runs:
            continue
        clamd = full.peak.get("clamav", 0.0)
        low, high = (need - clamd + value for value in CLAMD_DOCUMENTED_MIB)
        lines[-1] += (
            f" with a one-signature ClamAV database (clamd: {clamd:.0f} MiB). With the "
            f"real ClamAV databases (freshclam), clamd alone needs 1.2-2.4 GiB according to "
            f"ClamAV's documentation (not measured here: this machine is offline), so "
            f"`full` needs about {low / 1024:.1f}-{high / 1024:.1f} GiB."
        )
    lines += [
        "",
        "What the figures measure:",
        "",
        "- Each variant is a fresh stack (own project) with MAILYARD_SA_UPDATE=no and "
        "`filter_spam_network_tests` false (no DNSBL/URIBL/Razor/Pyzor: offline they "
        "only time out), so SpamAssassin runs its local rules only; a real host with "
        "network tests on spends more time per message waiting on DNS.",
        "- `full`: ClamAV on an offline database holding one signature (EICAR), so "
        "its scans are cheaper and its memory far smaller than with the real "
        "databases. `no-clamav`: Amavis with SpamAssassin, clamd not started. `off`: "
        "no content filter; the amavis and clamav containers idle.",
        "- smtp-source runs in a helper container sharing the Postfix container's "
        "network namespace and connects to 127.0.0.1:25: 127.0.0.1 is in mynetworks, so "
        "postscreen lets it through without the greeting and deep tests, and SPF is "
        "skipped for it. From another container it would go through postscreen's tests "
        "and SPF, whose DNS lookups offline only time out; the figures are about the "
        "content filter, so the client is the trusted one in every variant. The helper's "
        "processes are not counted in any container's memory.",
        "- Amavis runs 2 children (`$max_servers`), and Postfix sends it at most that "
        f"many messages at once; a warm-up of {WARMUP_MESSAGES} messages precedes the "
        "measurements.",
    ]
    odd = []
    for result in results:
        odd += findings(f"`{result.variant}`", result.error, result.runs, result.log_counts)
    lines += ["", "Errors and log findings:", "", *(f"- {line}" for line in odd), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per load")
    parser.add_argument("--sessions", type=int, default=10, help="parallel SMTP sessions")
    parser.add_argument("--repetitions", type=int, default=3, help="loads per stack (full and off)")
    parser.add_argument(
        "--no-clamav-repetitions",
        type=int,
        default=1,
        help="loads for the no-clamav stack (0: idle memory only; negative: skip it)",
    )
    parser.add_argument("--settle", type=float, default=20, help="seconds idle before sampling")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for one load's delivery"
    )
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()

    plan = [("full", args.repetitions), ("off", args.repetitions)]
    if args.no_clamav_repetitions >= 0:
        plan.append(("no-clamav", args.no_clamav_repetitions))
    results: list[VariantResult] = []
    with offline_signatures() as signatures:
        for variant, repetitions in plan:
            try:
                results.append(
                    run_variant(
                        variant, repetitions, args, signatures if variant == "full" else None
                    )
                )
            except Exception as error:  # noqa: BLE001 - reported, the other variants go on
                traceback.print_exc()
                results.append(VariantResult(variant, error=f"{type(error).__name__}: {error}"))
    # The table lists the variants from the most filtering to none.
    order = {"full": 0, "no-clamav": 1, "off": 2}
    results.sort(key=lambda result: order[result.variant])
    text = report(results, args, len(bench_message().encode()))
    complete = all(not r.error and r.median_rate for r in results if r.variant != "no-clamav")
    if args.no_publish or not complete:
        print(text)
        if not complete:
            print("full or off did not complete: not appended to docs/benchmarks.md")
            return 1
        return 0
    publish(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
