"""Failure suite (issue 7): mail under load while parts of the stack fail.

Every scenario sends LOAD_MESSAGES messages with unique Message-IDs over SESSIONS
concurrent SMTP sessions to port 25 (as strangers, through postscreen), breaks one
service when half of them are accepted, and ends by checking that every Message-ID that
got a 250 after DATA was delivered exactly once. The senders behave like a real MTA: a
4xx or a lost connection means "try this message again later"; a 5xx is a failure.

Dovecot's duplicate filter drops a copy sent again after a lost reply. The one window
left is a SIGKILL of Dovecot between storing a message and recording it: Postfix then
logs "message may be sent more than once". A second copy is reported (not failed) only
for messages with such a lost reply on record, at the sender or in Postfix's log.

Run on their own: `.venv/bin/pytest tests/stack/test_failures.py -m failure -v`.
"""

from __future__ import annotations

import email.utils
import os
import re
import smtplib
import subprocess
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from conftest import PASSWORD, REPO, Stack, _wait_healthy, running_stack
from mailtools import imap_message_ids_bulk, wait_for

pytestmark = pytest.mark.failure

LOAD_MESSAGES = int(os.environ.get("MAILYARD_FAILURE_MESSAGES", "2000"))
SESSIONS = 20
PER_CONNECTION = 10
MAILBOXES = 4
SENDER = "load@sender.test"
# How long the senders may take to get every message accepted, retries included.
LOAD_DEADLINE = 420.0
# How long a stopped or killed service stays down.
OUTAGE_SECONDS = 10.0
SMTP_TIMEOUT = 60.0

SUMMARY: list[str] = []
CONFIG: list[pytest.Config] = []


# --- the ledger: what the senders saw ---------------------------------------------------
@dataclass
class Ledger:
    half: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    half_reached: threading.Event = field(default_factory=threading.Event)
    # Message-ID -> how often it got 250 after DATA (the senders stop at the first).
    accepted: Counter[str] = field(default_factory=Counter)
    accepted_at: dict[str, float] = field(default_factory=dict)
    # Message-IDs whose reply to the end of DATA was lost with the connection: the
    # server may have queued them, and the sender sends them again (RFC 5321 4.1.1.4).
    uncertain: set[str] = field(default_factory=set)
    temporary: Counter[str] = field(default_factory=Counter)
    permanent: list[str] = field(default_factory=list)
    connection_errors: Counter[str] = field(default_factory=Counter)
    given_up: list[str] = field(default_factory=list)

    def accept(self, message_id: str) -> None:
        with self.lock:
            self.accepted[message_id] += 1
            self.accepted_at[message_id] = time.monotonic()
            if sum(self.accepted.values()) >= self.half:
                self.half_reached.set()

    def reply(self, phase: str, code: int, text: str, message_id: str) -> None:
        line = f"{phase}: {code} {' '.join(text.split())[:160]}"
        with self.lock:
            if 500 <= code <= 599:
                self.permanent.append(f"{line} ({message_id})")
            else:
                self.temporary[line] += 1

    def lost(self, phase: str, error: BaseException, message_id: str | None) -> None:
        with self.lock:
            self.connection_errors[f"{phase}: {type(error).__name__}"] += 1
            if phase == "end of DATA" and message_id is not None:
                self.uncertain.add(message_id)

    def trouble(self) -> int:
        return sum(self.temporary.values()) + sum(self.connection_errors.values())


@dataclass
class Outgoing:
    message_id: str
    recipient: str
    payload: str


def _payload(message_id: str, recipient: str, number: int) -> str:
    lines = [
        f"From: Load generator <{SENDER}>",
        f"To: <{recipient}>",
        f"Subject: load message {number}",
        f"Date: {email.utils.formatdate()}",
        f"Message-ID: {message_id}",
        "",
        f"Message {number} of the failure suite.",
        "It only has to arrive, exactly once.",
    ]
    return "\r\n".join(lines) + "\r\n.\r\n"


# --- the senders -------------------------------------------------------------------------
def _send_one(client: smtplib.SMTP, message: Outgoing, ledger: Ledger) -> bool:
    """One transaction; True when the message got 250 after DATA."""
    phase = "MAIL FROM"
    try:
        code, text = client.mail(SENDER)
        if code == 250:
            phase = "RCPT TO"
            code, text = client.rcpt(message.recipient)
        if code in (250, 251):
            phase = "DATA"
            code, text = client.docmd("DATA")
        if code == 354:
            client.send(message.payload)
            # From here on a lost connection leaves the outcome unknown.
            phase = "end of DATA"
            code, text = client.getreply()
    except (OSError, smtplib.SMTPException) as error:
        ledger.lost(phase, error, message.message_id)
        return False
    if code == 250 and phase == "end of DATA":
        ledger.accept(message.message_id)
        return True
    ledger.reply(phase, code, text.decode(errors="replace"), message.message_id)
    return False


def _session(stack: Stack, pending: deque[Outgoing], ledger: Ledger) -> bool:
    """One connection, up to PER_CONNECTION messages; False when it ended in trouble."""
    try:
        # An explicit local_hostname: otherwise smtplib resolves this host's name
        # (socket.getfqdn) for every connection, which can take seconds.
        client = smtplib.SMTP(
            stack.host,
            stack.ports["smtp"],
            local_hostname="client.remote.test",
            timeout=SMTP_TIMEOUT,
        )
    except smtplib.SMTPConnectError as error:
        ledger.reply("greeting", error.smtp_code, error.smtp_error.decode(errors="replace"), "")
        return False
    except (OSError, smtplib.SMTPException) as error:
        ledger.lost("connect", error, None)
        return False
    try:
        code, text = client.ehlo()
        if code != 250:
            ledger.reply("EHLO", code, text.decode(errors="replace"), "")
            return False
        for _ in range(PER_CONNECTION):
            if not pending:
                break
            if not _send_one(client, pending[0], ledger):
                return False
            pending.popleft()
        client.quit()
    except (OSError, smtplib.SMTPException) as error:
        ledger.lost("EHLO/QUIT", error, None)
        return False
    finally:
        client.close()
    return True


def _sender(stack: Stack, messages: list[Outgoing], ledger: Ledger, deadline: float) -> None:
    pending = deque(messages)
    backoff = 0.5
    while pending:
        if time.monotonic() > deadline:
            with ledger.lock:
                ledger.given_up.extend(message.message_id for message in pending)
            return
        if _session(stack, pending, ledger):
            backoff = 0.5
        else:
            # Like a real MTA, only sooner: the message waits and is tried again.
            time.sleep(backoff)
            backoff = min(backoff * 2, 4.0)


def _warm_up(stack: Stack) -> None:
    """Postscreen makes a new client wait for its greeting test (about 6 s) once; after
    that the client is in its cache and goes straight to smtpd."""

    def greeted() -> bool:
        with stack.smtp() as client:
            return client.noop()[0] == 250

    wait_for("a session on port 25", greeted, timeout=60)


# --- faults ------------------------------------------------------------------------------
def _docker(stack: Stack, action: str, service: str) -> None:
    subprocess.run(["docker", action, stack.container(service)], check=True, timeout=120)


def _outage(how: str, service: str) -> Callable[[Stack], None]:
    """A fault: `docker <how>` (kill or stop) the service, OUTAGE_SECONDS later start it."""

    def fault(stack: Stack) -> None:
        _docker(stack, how, service)
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for readiness
        _docker(stack, "start", service)

    return fault


def _restart_postfix(stack: Stack) -> None:
    _docker(stack, "restart", "postfix")


# --- delivery check ------------------------------------------------------------------------
def _queue_entries(stack: Stack) -> int:
    result = stack.exec("postfix", "postqueue", "-j", check=False)
    if result.returncode != 0:
        return -1
    return len([line for line in result.stdout.splitlines() if line.strip()])


def _delivered(stack: Stack, mailboxes: list[str]) -> dict[str, list[str]]:
    return {
        mailbox: imap_message_ids_bulk(stack.host, stack.ports["imaps"], mailbox, PASSWORD)
        for mailbox in mailboxes
    }


def _settled(stack: Stack, mailboxes: list[str], timeout: float = 300) -> dict[str, list[str]]:
    """Waits until Postfix's queue is empty and the mailboxes stop changing."""
    wait_for("an empty Postfix queue", lambda: _queue_entries(stack) == 0, timeout, 2)
    previous = _delivered(stack, mailboxes)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(3)
        current = _delivered(stack, mailboxes)
        if current == previous and _queue_entries(stack) == 0:
            return current
        previous = current
    raise AssertionError(f"the mailboxes did not settle within {timeout:.0f}s")


_QUEUE_MESSAGE_ID = re.compile(r"postfix/cleanup\[\d+\]: (\w+): message-id=(<[^>]+>)")
_LOST_FINAL_REPLY = re.compile(
    r"postfix/lmtp\[\d+\]: (\w+): to=.*message may be sent more than once"
)


def _postfix_lost_final_replies(stack: Stack) -> set[str]:
    """Message-IDs whose delivery to Dovecot Postfix logged as "lost connection ...
    while sending end of data -- message may be sent more than once": Dovecot died
    after the final dot, so the message may have been stored without Postfix or the
    duplicate filter knowing it (a SIGKILL between storing and recording it)."""
    logs = subprocess.run(
        ["docker", "logs", stack.container("postfix")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = logs.stdout + logs.stderr
    message_ids = dict(_QUEUE_MESSAGE_ID.findall(text))
    return {
        message_ids[queue_id]
        for queue_id in _LOST_FINAL_REPLY.findall(text)
        if queue_id in message_ids
    }


def _problems(
    messages: list[Outgoing],
    ledger: Ledger,
    delivered: dict[str, list[str]],
    lost_final_replies: set[str],
) -> tuple[list[str], list[str]]:
    """(failures, notes): exactly-once violations, and duplicates that a lost reply to
    the end of DATA explains: the sender's (it could not know the first copy was
    queued, RFC 5321 4.1.1.4) or Postfix's (Dovecot was killed after the final dot).
    Everything else that arrives twice fails: Postfix's own restarts and the duplicate
    filter in Dovecot must prevent it."""
    copies: Counter[str] = Counter()
    failures: list[str] = []
    where = {message.message_id: message.recipient for message in messages}
    for mailbox, ids in delivered.items():
        copies.update(ids)
        strays = [message_id for message_id in ids if where.get(message_id) != mailbox]
        if strays:
            failures.append(f"{len(strays)} messages in the wrong mailbox {mailbox}: {strays[:5]}")
    accepted = set(ledger.accepted)
    missing = sorted(message_id for message_id in accepted if copies[message_id] == 0)
    duplicated = sorted(message_id for message_id in accepted if copies[message_id] > 1)
    uncertain = ledger.uncertain | lost_final_replies
    explained = [message_id for message_id in duplicated if message_id in uncertain]
    unexplained = [message_id for message_id in duplicated if message_id not in uncertain]
    never_accepted = sorted(message_id for message_id in copies if message_id not in accepted)
    if missing:
        failures.append(f"{len(missing)} accepted messages never delivered: {missing[:20]}")
    if unexplained:
        failures.append(
            f"{len(unexplained)} messages delivered more than once: "
            f"{[(message_id, copies[message_id]) for message_id in unexplained[:20]]}"
        )
    if never_accepted:
        failures.append(
            f"{len(never_accepted)} messages delivered without a 250 after DATA: "
            f"{never_accepted[:20]}"
        )
    notes = [
        f"duplicate after a lost end-of-DATA reply "
        f"({'to the sender' if message_id in ledger.uncertain else 'to Postfix'}): {message_id}"
        for message_id in explained
    ]
    return failures, notes


# --- one scenario ----------------------------------------------------------------------------
def _scenario(stack: Stack, name: str, fault: Callable[[Stack], None] | None) -> Ledger:
    started = time.monotonic()
    domain = stack.new_domain(name)
    mailboxes = [stack.new_mailbox(domain, f"load{number}") for number in range(MAILBOXES)]
    tag = uuid.uuid4().hex[:8]
    messages = []
    for number in range(LOAD_MESSAGES):
        message_id = f"<{name}-{tag}-{number:05d}@load.mailyard.test>"
        recipient = mailboxes[number % MAILBOXES]
        messages.append(Outgoing(message_id, recipient, _payload(message_id, recipient, number)))
    ledger = Ledger(half=LOAD_MESSAGES // 2)
    _warm_up(stack)

    load_started = time.monotonic()
    deadline = load_started + LOAD_DEADLINE
    fault_window = ""
    with ThreadPoolExecutor(SESSIONS) as pool:
        senders = [
            pool.submit(_sender, stack, messages[index::SESSIONS], ledger, deadline)
            for index in range(SESSIONS)
        ]
        if fault is not None:
            assert ledger.half_reached.wait(LOAD_DEADLINE), "half the load never got accepted"
            fault_started = time.monotonic()
            fault(stack)
            fault_ended = time.monotonic()
            fault_window = (
                f"; fault at {fault_started - load_started:.1f}s for "
                f"{fault_ended - fault_started:.1f}s, "
                f"{sum(1 for at in ledger.accepted_at.values() if at > fault_started)} "
                "accepted after it began"
            )
        for sender in senders:
            sender.result()
    load_seconds = time.monotonic() - load_started

    _wait_healthy(stack, timeout=300)
    delivered = _settled(stack, mailboxes)
    lost_final_replies = _postfix_lost_final_replies(stack)
    failures, notes = _problems(messages, ledger, delivered, lost_final_replies)
    total = time.monotonic() - started
    first_line = len(SUMMARY)
    SUMMARY.append(
        f"{name}: {len(ledger.accepted)}/{LOAD_MESSAGES} accepted in {load_seconds:.1f}s"
        f"{fault_window}; {sum(len(ids) for ids in delivered.values())} delivered; "
        f"4xx {sum(ledger.temporary.values())}, 5xx {len(ledger.permanent)}, "
        f"connection errors {sum(ledger.connection_errors.values())}, "
        f"lost end-of-DATA replies {len(ledger.uncertain)} (to senders), "
        f"{len(lost_final_replies & set(ledger.accepted))} (to Postfix); scenario {total:.0f}s"
    )
    SUMMARY.extend(f"  {name} 4xx x{count}: {line}" for line, count in ledger.temporary.items())
    SUMMARY.extend(
        f"  {name} error x{count}: {line}" for line, count in ledger.connection_errors.items()
    )
    SUMMARY.extend(f"  {name} {note}" for note in notes)
    _report(stack, SUMMARY[first_line:])

    assert not ledger.permanent, f"senders got 5xx: {ledger.permanent[:20]}"
    assert not ledger.given_up, (
        f"{len(ledger.given_up)} messages never accepted within {LOAD_DEADLINE:.0f}s "
        f"(4xx seen: {dict(ledger.temporary)}; errors: {dict(ledger.connection_errors)})"
    )
    assert not failures, "\n".join([*failures, *SUMMARY[first_line:]])
    return ledger


def _report(stack: Stack, lines: list[str]) -> None:
    """Shows `lines` on the terminal even though pytest captures output, and keeps them
    in test-logs/<project>/failure-suite.txt."""
    target = REPO / "test-logs" / stack.project
    target.mkdir(parents=True, exist_ok=True)
    with (target / "failure-suite.txt").open("a") as summary:
        summary.writelines(f"{line}\n" for line in lines)
    config = CONFIG[0]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


@pytest.fixture(scope="module")
def failure_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    started = time.monotonic()
    CONFIG[:] = [request.config]
    with running_stack(request) as stack:
        response = stack.api(
            "PATCH",
            "/settings",
            json={
                # Deferred mail (a service was down) is retried within seconds.
                "minimal_backoff_time": "5s",
                "maximal_backoff_time": "10s",
                # Offline host: with 20 concurrent sessions policyd-spf's DNS lookups
                # for the test domains time out (RCPT waits its Lookup_Time, 20 s), which
                # would measure the resolver, not the failures. SPF has its own tests.
                "spf_action": "off",
                # The load comes from one address (this host, through Docker's port
                # publishing) at 20 sessions and hundreds of messages a minute: far past
                # the per-client limits a hostile client meets (test_smtp_abuse.py).
                "client_connection_count_limit": 0,
                "client_connection_rate_limit": 0,
                "client_message_rate_limit": 0,
            },
            timeout=300,
        )
        assert response.status_code == 200, response.text
        yield stack
        _report(
            stack,
            [
                f"failure suite ({LOAD_MESSAGES} messages over {SESSIONS} sessions per "
                f"scenario): {time.monotonic() - started:.0f}s since the stack started",
                *SUMMARY,
            ],
        )


def test_baseline_load_is_delivered_exactly_once(failure_stack: Stack) -> None:
    ledger = _scenario(failure_stack, "baseline", None)
    assert ledger.trouble() == 0, (dict(ledger.temporary), dict(ledger.connection_errors))


def test_dovecot_killed_during_load(failure_stack: Stack) -> None:
    _scenario(failure_stack, "dovecot", _outage("kill", "dovecot"))


def test_mariadb_stopped_during_load_means_4xx_never_5xx(failure_stack: Stack) -> None:
    # _scenario asserts that no 5xx was ever answered; senders retried every 4xx.
    _scenario(failure_stack, "mariadb", _outage("stop", "db"))


def test_postfix_restarted_during_load(failure_stack: Stack) -> None:
    _scenario(failure_stack, "postfix", _restart_postfix)


def test_controller_killed_during_load_goes_unnoticed(failure_stack: Stack) -> None:
    ledger = _scenario(failure_stack, "controller", _outage("kill", "controller"))
    assert ledger.trouble() == 0, (dict(ledger.temporary), dict(ledger.connection_errors))
