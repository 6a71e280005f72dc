"""Settings propagation: how long a change made through the API takes to reach mail clients.

On one stack, `--runs` times each:
  (a) PATCH /api/v1/settings {"message_size_limit": X} -> until a fresh SMTP connection on
      port 25 and one on port 587 both advertise SIZE X in EHLO (polled while the call runs);
  (b) the apply record of that change: Postfix per-replica reload and gate, apply duration;
  (c) the same with mail_process_limit changed too, so Dovecot reloads as well;
  (d) POST /api/v1/mailboxes -> the first message to the new address accepted on port 25
      (RCPT accepted and 250 after DATA).

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/propagation.py [--runs 9]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
Uses a project of its own (mailyard-bench-*) on free loopback ports, with
MAILYARD_FILTER=off: the content filter sits after the queue, so it changes neither
figure, and offline ClamAV (the default filter) would never get its signatures.
"""

from __future__ import annotations

import argparse
import math
import smtplib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from _stack import Stack, machine, publish
from mailtools import make_message  # tests/stack, via _stack

HOST = "127.0.0.1"
MIB = 1024 * 1024
# Two values each, alternated so that every run is a real change (the defaults are
# 50 MiB and 1024, so the first run changes too).
SIZES = (30 * MIB, 40 * MIB)
PROCESS_LIMITS = (1000, 900)
# A new probe connection per port every PROBE_EVERY seconds, overlapping (at most
# MAX_IN_FLIGHT per port) rather than one after another. smtpd looks up the name of each
# client (PTR) before its banner, and such lookups for the host's Docker gateway address
# go to the machine's resolver; one it drops waits 5 s for glibc's retry. The resolver
# used here drops them in bursts once queried faster than roughly 20 a second, so the
# probes stay below that, and a stalled one does not blind the others. The cap keeps
# stalled probes from piling up into a flood of busy smtpd processes (which, unbounded,
# made the health gate time out and roll a good change back).
PROBE_EVERY = 0.1
MAX_IN_FLIGHT = 3
STALLED = 1.0  # seconds: a probe slower than this waited on something (such a lookup)
# Postfix's per-client limits (anvil) off: the bench measures propagation, not them.
UNLIMITED_CLIENT = {
    "client_connection_count_limit": 0,
    "client_connection_rate_limit": 0,
    "client_message_rate_limit": 0,
}
STABLE_FOR = 1.0  # seconds both ports must keep showing the new SIZE before a run ends
TIMEOUT = 120.0


def nearest_rank(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile (with fewer than 20 values, p95 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Probe:
    started: float  # monotonic time the connection was opened
    replied: float  # monotonic time the EHLO reply arrived (or the probe failed)
    size: int | None  # the SIZE advertised; None when the probe failed
    error: str = ""

    @property
    def took(self) -> float:
        return self.replied - self.started


class SizePoller:
    """Opens a fresh SMTP connection to one port every PROBE_EVERY seconds (each in a
    thread of its own) and notes the SIZE its EHLO reply advertises, until finished."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._probes: list[Probe] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._launcher = threading.Thread(target=self._launch, daemon=True)

    def start(self) -> None:
        self._launcher.start()

    def finish(self) -> None:
        """Stop launching probes and wait for the ones under way."""
        self._stop.set()
        self._launcher.join()
        for thread in self._threads:
            thread.join()

    def _launch(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            if len(self._threads) < MAX_IN_FLIGHT:
                thread = threading.Thread(target=self._probe, daemon=True)
                thread.start()
                self._threads.append(thread)
            due += PROBE_EVERY
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _probe(self) -> None:
        started = time.monotonic()
        try:
            with smtplib.SMTP(HOST, self.port, timeout=30) as client:
                client.ehlo()
                replied = time.monotonic()
                size = client.esmtp_features.get("size")
            probe = Probe(started, replied, int(size) if size else None)
        except (OSError, smtplib.SMTPException) as exc:
            probe = Probe(started, time.monotonic(), None, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._probes.append(probe)

    def probes(self) -> list[Probe]:
        with self._lock:
            return sorted(self._probes, key=lambda probe: probe.started)

    def settled(self, value: int) -> tuple[float | None, int]:
        """When fresh connections began to advertise `value` for good: the earliest EHLO
        reply showing it among probes opened after the last probe that showed another
        value. Also the flaps: probes that showed another value although they were
        opened after one that showed `value`. Failed probes say nothing either way."""
        answered = [probe for probe in self.probes() if probe.size is not None]
        first_new = min((p.started for p in answered if p.size == value), default=None)
        if first_new is None:
            return None, 0
        others = [p.started for p in answered if p.size != value]
        flaps = sum(started > first_new for started in others)
        last_other = max(others, default=-math.inf)
        after = [p.replied for p in answered if p.size == value and p.started > last_other]
        return (min(after) if after else None), flaps


@dataclass
class SettingsRun:
    api_ms: float  # PATCH sent -> response read
    propagation_ms: float  # PATCH sent -> both ports advertise the new SIZE
    per_port_ms: dict[str, float]
    apply: dict[str, Any]  # the apply record, as GET /config/applies/{id} returns it
    flaps: int
    probes: int
    stalled: int  # probes that took longer than STALLED
    failed: int  # probes that got no EHLO reply
    probe_ms: float  # median probe, connect -> EHLO reply
    conflicts: int  # 409 answers (another apply running, e.g. the reconcile loop) retried
    slow: list[str]  # the probes slower than STALLED, described


def change_settings(api: httpx.Client, values: dict[str, Any]) -> tuple[httpx.Response, float, int]:
    """PATCH the settings; retried on 409 (another apply holds the lock). Returns the
    response, the monotonic time the successful request was sent, and the retries."""
    conflicts = 0
    while True:
        sent = time.monotonic()
        response = api.patch("/settings", json=values)
        if response.status_code != 409 or conflicts >= 10:
            break
        conflicts += 1
        time.sleep(0.5)
    if response.status_code != 200:
        raise RuntimeError(
            f"PATCH /settings {values} answered {response.status_code}: {response.text}"
        )
    return response, sent, conflicts


def settings_run(api: httpx.Client, ports: dict[str, int], values: dict[str, Any]) -> SettingsRun:
    size = int(values["message_size_limit"])
    pollers = {name: SizePoller(port) for name, port in ports.items()}
    for poller in pollers.values():
        poller.start()
    try:
        # Every port answers, with the old value, before the change is sent.
        deadline = time.monotonic() + 60
        while not all(any(p.size for p in poller.probes()) for poller in pollers.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no EHLO answer before the change: {_errors(pollers)}")
            time.sleep(0.01)
        for name, poller in pollers.items():
            if any(p.size == size for p in poller.probes()):
                raise RuntimeError(f"port {name} advertised SIZE {size} before the change")

        response, sent, conflicts = change_settings(api, values)
        answered = time.monotonic()
        record = response.json().get("apply")
        if not record:
            raise RuntimeError(f"PATCH {values} changed nothing: {response.text}")

        deadline = answered + TIMEOUT
        while True:
            now = time.monotonic()
            settled = [poller.settled(size)[0] for poller in pollers.values()]
            if all(at is not None and now - at >= STABLE_FOR for at in settled):
                break
            if now > deadline:
                raise RuntimeError(
                    f"SIZE {size} not advertised on every port {TIMEOUT:.0f} s after the "
                    f"change (apply {record.get('id')}: {record.get('status')}); "
                    f"{_errors(pollers)}"
                )
            time.sleep(0.05)
    finally:
        for poller in pollers.values():
            poller.finish()

    # Final figures once every probe has answered (a late one may still show a flap).
    final = {name: poller.settled(size) for name, poller in pollers.items()}
    per_port = {name: ((at or math.nan) - sent) * 1000 for name, (at, _) in final.items()}
    probes = [probe for poller in pollers.values() for probe in poller.probes()]
    slow = [
        f"port {name}, opened {probe.started - sent:+.2f} s from the PATCH, took "
        f"{probe.took:.1f} s, showed "
        + (
            "no SIZE"
            if probe.size is None
            else "the new SIZE"
            if probe.size == size
            else "the old SIZE"
        )
        for name, poller in pollers.items()
        for probe in poller.probes()
        if probe.took > STALLED
    ]
    stored = api.get(f"/config/applies/{record['id']}")
    stored.raise_for_status()
    return SettingsRun(
        api_ms=(answered - sent) * 1000,
        propagation_ms=max(per_port.values()),
        per_port_ms=per_port,
        apply=stored.json(),
        flaps=sum(flaps for _, flaps in final.values()),
        probes=len(probes),
        stalled=sum(probe.took > STALLED for probe in probes),
        failed=sum(probe.size is None for probe in probes),
        probe_ms=statistics.median(probe.took * 1000 for probe in probes),
        conflicts=conflicts,
        slow=slow,
    )


def _errors(pollers: dict[str, SizePoller]) -> str:
    errors = [
        f"{name}: {failed[-1].error}"
        for name, poller in pollers.items()
        if (failed := [p for p in poller.probes() if p.error])
    ]
    return "last probe errors: " + "; ".join(errors) if errors else "no probe errors"


def replica_steps(record: dict[str, Any], service: str) -> list[dict[str, Any]]:
    steps = record.get("services", {}).get(service, {}).get("replicas", [])
    if not steps:
        raise RuntimeError(f"apply {record['id']} did not roll out {service}: {record}")
    for step in steps:
        if step.get("outcome") != "ok":
            raise RuntimeError(f"apply {record['id']}: {service} replica step {step}")
    return steps


@dataclass
class MailboxRun:
    api_ms: float  # POST sent -> response read
    accepted_ms: float  # POST sent -> 250 after DATA on port 25
    rejected: int  # attempts whose RCPT was refused before one was accepted
    banner_ms: float  # connect -> 220 banner of the accepted attempt (PTR lookup inside)


def mailbox_run(api: httpx.Client, smtp_port: int, address: str) -> MailboxRun:
    """Create a mailbox, then (from the moment the call returns, as a sender could only
    know of the address then) try to send it a message on port 25 until it is queued."""
    sent = time.monotonic()
    response = api.post("/mailboxes", json={"address": address, "password": "bench password 1"})
    answered = time.monotonic()
    if response.status_code != 201:
        raise RuntimeError(f"POST /mailboxes answered {response.status_code}: {response.text}")
    message = make_message("sender@remote.test", [address], "propagation").as_bytes()
    rejected = 0
    while True:
        opened = time.monotonic()
        with smtplib.SMTP(HOST, smtp_port, timeout=30) as client:
            banner_ms = (time.monotonic() - opened) * 1000
            client.ehlo()
            code, reply = client.mail("sender@remote.test")
            if code != 250:
                raise RuntimeError(f"MAIL FROM refused: {code} {reply!r}")
            code, reply = client.rcpt(address)
            if code == 250:
                code, reply = client.data(message)
                if code != 250:
                    raise RuntimeError(f"DATA for {address} refused: {code} {reply!r}")
                return MailboxRun(
                    (answered - sent) * 1000,
                    (time.monotonic() - sent) * 1000,
                    rejected,
                    banner_ms,
                )
        rejected += 1
        if time.monotonic() - answered > TIMEOUT:
            raise RuntimeError(f"RCPT {address} still refused after {TIMEOUT:.0f} s: {reply!r}")
        time.sleep(PROBE_EVERY)


def warm_up_postscreen(smtp_port: int) -> float:
    """One connection to port 25 so that postscreen caches this client as passed: its
    first connection waits out the greet test (postscreen_greet_wait, ~6 s); later ones
    go straight to smtpd. Returns how long the banner took."""
    began = time.monotonic()
    with smtplib.SMTP(HOST, smtp_port, timeout=60) as client:
        banner = time.monotonic() - began
        client.ehlo()
    return banner


def row(label: str, values: Sequence[float], unit: str = "ms") -> str:
    return (
        f"| {label} | {statistics.median(values):.0f} {unit} | "
        f"{nearest_rank(values, 95):.0f} {unit} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each measurement")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with Stack() as stack:
        stack.env["MAILYARD_FILTER"] = "off"
        stack.env["MAILYARD_SA_UPDATE"] = "no"
        stack.up()
        stack.wait_healthy()
        smtp_ports = {"25": stack.port("smtp"), "587": stack.port("submission")}
        with stack.api(stack.admin_token(), timeout=300) as api:
            # The probes open connections from this one address as fast as they can: far
            # past the per-client connection and message rates a stranger is allowed.
            api.patch("/settings", json=UNLIMITED_CLIENT).raise_for_status()
            api.post("/domains", json={"name": "bench.test"}).raise_for_status()
            greet_wait = warm_up_postscreen(stack.port("smtp"))
            print(f"postscreen warm-up: first banner on port 25 after {greet_wait:.1f} s")

            postfix_only: list[SettingsRun] = []
            for run in range(args.runs):
                values = {"message_size_limit": SIZES[run % 2]}
                postfix_only.append(settings_run(api, smtp_ports, values))
                print(f"(a) run {run + 1}: {_describe(postfix_only[-1])}")

            both: list[SettingsRun] = []
            for run in range(args.runs):
                values = {
                    # Continue the alternation so the size changes in every run here too.
                    "message_size_limit": SIZES[(args.runs + run) % 2],
                    "mail_process_limit": PROCESS_LIMITS[run % 2],
                }
                both.append(settings_run(api, smtp_ports, values))
                print(f"(c) run {run + 1}: {_describe(both[-1])}")

            mailboxes: list[MailboxRun] = []
            for run in range(args.runs):
                address = f"prop{run}-{uuid.uuid4().hex[:6]}@bench.test"
                mailboxes.append(mailbox_run(api, stack.port("smtp"), address))
                print(
                    f"(d) run {run + 1}: api {mailboxes[-1].api_ms:.0f} ms, queued "
                    f"{mailboxes[-1].accepted_ms:.0f} ms, {mailboxes[-1].rejected} refused, "
                    f"banner {mailboxes[-1].banner_ms:.0f} ms"
                )

    publish(report(args.runs, greet_wait, postfix_only, both, mailboxes))
    return 0


def _describe(run: SettingsRun) -> str:
    services = {
        service: [(s["reload_ms"], s["gate_ms"]) for s in detail["replicas"]]
        for service, detail in run.apply["services"].items()
    }
    ports = ", ".join(f"{port} {ms:.0f} ms" for port, ms in run.per_port_ms.items())
    return (
        f"api {run.api_ms:.0f} ms, new SIZE on {ports}, apply {run.apply['id']} "
        f"{run.apply['status']} {run.apply['duration_ms']} ms, (reload, gate) ms {services}; "
        f"{run.probes} probes (median {run.probe_ms:.0f} ms, {run.stalled} stalled, "
        f"{run.failed} failed), {run.flaps} flaps, {run.conflicts} 409s"
        + "".join(f"\n    slow probe: {text}" for text in run.slow)
    )


def _steps(runs: Sequence[SettingsRun], service: str, key: str) -> list[float]:
    return [float(step[key]) for run in runs for step in replica_steps(run.apply, service)]


def _outside_rollout(run: SettingsRun) -> float:
    """Apply time not spent in reloads and gates: render, validation, records."""
    rollout = sum(
        step["reload_ms"] + step["gate_ms"]
        for detail in run.apply["services"].values()
        for step in detail["replicas"]
    )
    return float(run.apply["duration_ms"] - rollout)


def _series(values: Iterable[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def report(
    runs: int,
    greet_wait: float,
    postfix_only: Sequence[SettingsRun],
    both: Sequence[SettingsRun],
    mailboxes: Sequence[MailboxRun],
) -> str:
    changes = [*postfix_only, *both]
    for run in changes:
        if run.apply["status"] != "succeeded":
            raise RuntimeError(f"apply {run.apply['id']} ended {run.apply['status']}")
    replicas = sorted({len(replica_steps(run.apply, "postfix")) for run in changes})
    probes = sum(run.probes for run in changes)
    stalled = sum(run.stalled for run in changes)
    failed = sum(run.failed for run in changes)
    flaps = sum(run.flaps for run in changes)
    conflicts = sum(run.conflicts for run in changes)
    visible_first = sum(run.propagation_ms < run.api_ms for run in changes)
    rejected = sum(run.rejected for run in mailboxes)
    slow_banners = sum(run.banner_ms > STALLED * 1000 for run in mailboxes)
    lines = [
        f"## Settings propagation ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/propagation.py "
        f"--runs {runs}` (images already built). One stack ({'/'.join(map(str, replicas))} "
        f"Postfix replica, one Dovecot; MAILYARD_FILTER=off: the filter works after the "
        f"queue and changes neither figure), {runs} runs of each measurement. p95 is the "
        "nearest-rank percentile: with fewer than 20 runs it is the slowest run.",
        "",
        "| figure | median | p95 |",
        "| --- | --- | --- |",
        "| **(a) `message_size_limit` changed (Postfix only)** | | |",
        row(
            "PATCH sent -> new SIZE in EHLO on new connections to both port 25 and 587",
            [r.propagation_ms for r in postfix_only],
        ),
        row("... on port 25", [r.per_port_ms["25"] for r in postfix_only]),
        row("... on port 587", [r.per_port_ms["587"] for r in postfix_only]),
        row("PATCH sent -> response read (the API call)", [r.api_ms for r in postfix_only]),
        "| **(b) its apply records** | | |",
        row("apply `duration_ms`", [float(r.apply["duration_ms"]) for r in postfix_only]),
        row("Postfix replica `reload_ms`", _steps(postfix_only, "postfix", "reload_ms")),
        row("Postfix replica `gate_ms`", _steps(postfix_only, "postfix", "gate_ms")),
        row(
            "apply outside reload and gate (render, validation, records)",
            [_outside_rollout(r) for r in postfix_only],
        ),
        "| **(c) `message_size_limit` and `mail_process_limit` changed (Dovecot too)** | | |",
        row(
            "PATCH sent -> new SIZE in EHLO on both ports",
            [r.propagation_ms for r in both],
        ),
        row("PATCH sent -> response read (the API call)", [r.api_ms for r in both]),
        row("apply `duration_ms`", [float(r.apply["duration_ms"]) for r in both]),
        row("Dovecot replica `reload_ms`", _steps(both, "dovecot", "reload_ms")),
        row("Dovecot replica `gate_ms`", _steps(both, "dovecot", "gate_ms")),
        row("Postfix replica `reload_ms`", _steps(both, "postfix", "reload_ms")),
        row("Postfix replica `gate_ms`", _steps(both, "postfix", "gate_ms")),
        row(
            "apply outside reloads and gates (render, validation, records)",
            [_outside_rollout(r) for r in both],
        ),
        "| **(d) mailbox created** | | |",
        row(
            "POST /mailboxes sent -> first message to it queued on port 25 (250 after DATA)",
            [r.accepted_ms for r in mailboxes],
        ),
        row("POST /mailboxes sent -> response read (the API call)", [r.api_ms for r in mailboxes]),
        "",
        "Per run, in order (ms): (a) new SIZE on both ports "
        f"{_series(r.propagation_ms for r in postfix_only)}; (a) apply outside reload "
        f"and gate {_series(_outside_rollout(r) for r in postfix_only)}; (c) new SIZE "
        f"on both ports {_series(r.propagation_ms for r in both)}; (d) message queued "
        f"{_series(r.accepted_ms for r in mailboxes)}."
        + (
            " In (a), runs 1 and 2 are the first apply of each of the two configurations "
            "(their releases are written then); later runs switch back to a release "
            "written before. Each run of (c) switches Postfix to a release from (a); its "
            "runs 1 and 2 write Dovecot's."
            if runs >= 2
            else ""
        ),
        "",
        "What the figures measure:",
        "",
        "- (a) Each run PATCHes `/api/v1/settings` with `message_size_limit` alternating "
        f"between {SIZES[0]} and {SIZES[1]} bytes, so every run is a real change. From "
        "before the call until the end of the run, a new SMTP connection (connect, EHLO, "
        f"QUIT) is opened every {PROBE_EVERY * 1000:.0f} ms to port 25 (postscreen, then "
        "smtpd) and to port 587 (submission; SIZE is read from the EHLO before "
        f"STARTTLS), overlapping up to {MAX_IN_FLIGHT} at a time per port so that a slow "
        "one does not delay the next. A port's time is the earliest EHLO reply "
        "showing the new SIZE among connections opened after the last one that showed "
        "the old SIZE; the run ends once both ports have shown it for "
        f"{STABLE_FOR:.1f} s. The figure is the later of the two ports; a probe took "
        f"{statistics.median(r.probe_ms for r in changes):.0f} ms (median), so the "
        "resolution is about the probe interval. Connections opened after one that "
        f"showed the new SIZE but still showing the old one (flaps), in all runs: {flaps}.",
        f"- In {visible_first} of {len(changes)} changes ((a) and (c)) the new SIZE was "
        "visible on both ports before the PATCH response arrived (median lead "
        f"{statistics.median(r.api_ms - r.propagation_ms for r in changes):.0f} ms): the "
        "response waits for the reload, the health gate (which starts with a 1 s settle "
        "pause) and the record.",
        f"- Probes opened: {probes}; slower than {STALLED:.0f} s: {stalled}; failed: "
        f"{failed}"
        + (
            " ("
            + "; ".join(
                f"({part}) run {number}: {text}"
                for part, series in (("a", postfix_only), ("c", both))
                for number, run in enumerate(series, 1)
                for text in run.slow
            )
            + ")"
            if stalled
            else ""
        )
        + ". smtpd looks up each client's name (PTR) before its banner. On this "
        "machine the resolver drops such lookups in bursts when asked faster than about "
        "20 a second (outside Docker too), and a dropped one waits 5 s for glibc's "
        "retry: hence the modest probe rate, and the overlap.",
        "- (b) From the apply records (`GET /api/v1/config/applies/{id}`): `reload_ms` is "
        "the reload command run in the replica (`postfix reload`), `gate_ms` the health "
        "gate after it (the engine first waits 1 s to let the daemon settle, then runs "
        "the protocol-level check until it passes), `duration_ms` the whole apply. The "
        "rest of `duration_ms` is rendering, validation of the staged release by the "
        "daemon's own checker (for Postfix including probe smtpd sessions) and the "
        "database records.",
        "- (c) As (a), with `mail_process_limit` alternating between "
        f"{PROCESS_LIMITS[0]} and {PROCESS_LIMITS[1]} too, so both services get a new "
        "release; the engine rolls out Dovecot (reload, gate) before Postfix, so the new "
        "SIZE appears after Dovecot's rollout.",
        "- (d) Each run POSTs a new mailbox (`/api/v1/mailboxes`); when the call returns "
        "(a sender cannot know of the address earlier) a client connects to port 25 and "
        "sends it a message (EHLO, MAIL, RCPT, DATA), on a new connection each time RCPT "
        "is refused. The figure ends at the 250 after DATA (message queued). RCPTs "
        f"refused before one was accepted, in all runs: {rejected}; accepted attempts "
        f"whose banner took over {STALLED:.0f} s (the lookup stall above): "
        f"{slow_banners}.",
        "- Before the first run one warm-up connection was made to port 25, so that "
        "postscreen had this client cached as passed: that first connection got its "
        f"banner after {greet_wait:.1f} s (postscreen's greet wait), which later "
        "connections skip.",
    ]
    if conflicts:
        lines.append(
            f"- {conflicts} PATCH(es) were answered 409 (another apply, e.g. the reconcile "
            "loop, held the lock) and retried; times count from the retry that succeeded."
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
