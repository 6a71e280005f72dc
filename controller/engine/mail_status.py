"""Is mail flowing, and if it is held, why and what the administrator can do.

Mail is never lost when a part of the stack is down: Postfix keeps it in its queue
(Amavis or ClamAV down, Dovecot down) or tells the sending server to try again later
(MariaDB or Postfix down). But a held queue is silent: port 25 still answers 250. This
module turns the containers' own health checks and Postfix's queue into one sentence per
problem, for the controller's health (/healthz), `GET /api/v1/status`, `mailyard status`
and the controller's log (MailStatusWatch).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from controller.runtime import Runtime
from controller.settings import Settings

log = logging.getLogger(__name__)

State = Literal["flowing", "held", "unknown"]


@dataclass(frozen=True)
class ServiceState:
    service: str
    replicas: int
    healthy: int
    detail: str  # what the health check of a replica that is not healthy last said


@dataclass(frozen=True)
class QueueState:
    messages: int
    deferred: int
    # The delay reason Postfix gave most often, e.g. "... 451 4.5.0 AV: ALL VIRUS
    # SCANNERS FAILED" while ClamAV has no signatures.
    top_reason: str


@dataclass(frozen=True)
class MailStatus:
    state: State
    summary: str  # one sentence
    problems: list[str] = field(default_factory=list)  # one sentence each
    services: list[ServiceState] = field(default_factory=list)
    queue: QueueState | None = None
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def view(self) -> dict[str, Any]:
        return asdict(self)


# What each part does for mail, and what its absence means. `held`: the message waits in
# Postfix's queue; `refused`: Postfix answers 4xx and the sender's server (or mail
# client) tries again later.
_HELD = "Mail is held in Postfix's queue{count}, not lost"
_REFUSED = "Mail is not accepted for now, not lost (senders get 'try again later')"


def _clamav_problem(detail: str, count: str) -> str:
    return (
        f"{_HELD.format(count=count)}: ClamAV cannot scan because {detail}; wait for "
        "freshclam, or on a host without internet put signature files into the "
        "clamav-signatures/ folder (taken at once), or set MAILYARD_FILTER=no-clamav and "
        "run `docker compose up -d`."
    )


def _amavis_problem(detail: str, count: str) -> str:
    return (
        f"{_HELD.format(count=count)}: Amavis, the content filter, is not working "
        f"({detail}); it is delivered once Amavis is healthy again (see `docker compose "
        "logs amavis`), or set MAILYARD_FILTER=off and run `docker compose up -d` to "
        "deliver without filtering."
    )


def _dovecot_problem(detail: str, count: str) -> str:
    return (
        f"{_HELD.format(count=count)}: Dovecot, which stores mail, is not working "
        f"({detail}); it is delivered once Dovecot is healthy again (see `docker compose "
        "logs dovecot`)."
    )


def _postfix_problem(detail: str, _count: str) -> str:
    return (
        f"{_REFUSED}: Postfix is not working ({detail}); see `docker compose logs "
        "postfix` and `docker compose up -d postfix`."
    )


def _opendkim_problem(detail: str, _count: str) -> str:
    return (
        "Mail your users send is refused for now (their mail clients retry), not lost: "
        f"OpenDKIM, which signs it, is not working ({detail}); see `docker compose logs "
        "opendkim`."
    )


def _database_problem(detail: str) -> str:
    return (
        f"{_REFUSED}: MariaDB does not answer ({detail}), so Postfix cannot look up "
        "domains and mailboxes; see `docker compose ps db` and `docker compose logs db`."
    )


# In the order a message meets them; each with the sentence for when it is not healthy.
_CHECKED: tuple[tuple[str, Callable[[str, str], str]], ...] = (
    ("postfix", _postfix_problem),
    ("amavis", _amavis_problem),
    ("clamav", _clamav_problem),
    ("opendkim", _opendkim_problem),
    ("dovecot", _dovecot_problem),
)


def checked_services(settings: Settings) -> list[str]:
    """The services mail depends on with this MAILYARD_FILTER choice."""
    skipped = {"off": {"amavis", "clamav"}, "no-clamav": {"clamav"}, "full": set()}
    return [name for name, _ in _CHECKED if name not in skipped[settings.filter_mode]]


def _service_state(runtime: Runtime, service: str) -> ServiceState:
    replicas = runtime.replicas(service)
    healthy = 0
    details: list[str] = []
    for replica in replicas:
        health = runtime.container_health(replica) if replica.running else None
        if replica.running and health is not None and health.status in ("healthy", "none"):
            healthy += 1
        elif not replica.running:
            details.append("its container is not running")
        elif health is not None and health.output:
            details.append(health.output)
        else:
            details.append(f"its health check says {health.status if health else 'nothing'}")
    if not replicas:
        details.append("it has no container (scaled to 0?)")
    return ServiceState(service, len(replicas), healthy, details[0] if details else "")


def queue_state(runtime: Runtime) -> QueueState | None:
    """Postfix's queue over every replica (`postqueue -j`: one JSON object a message)."""
    messages = deferred = 0
    reasons: Counter[str] = Counter()
    answered = False
    for replica in runtime.replicas("postfix"):
        if not replica.running:
            continue
        result = runtime.exec(replica, ["postqueue", "-j"])
        if not result.ok:
            continue
        answered = True
        for line in result.output.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            messages += 1
            if entry.get("queue_name") != "deferred":
                continue
            deferred += 1
            for recipient in entry.get("recipients") or []:
                reason = str(recipient.get("delay_reason") or "").strip()
                if reason:
                    reasons[reason[:200]] += 1
    if not answered:
        return None
    top = reasons.most_common(1)[0][0] if reasons else ""
    return QueueState(messages=messages, deferred=deferred, top_reason=top)


def check_mail_status(
    settings: Settings, runtime: Runtime | None, database_error: Callable[[], str | None]
) -> MailStatus:
    """The whole picture, read now. `database_error` returns why MariaDB does not answer,
    or None when it does."""
    problems: list[str] = []
    db_error = database_error()
    if db_error is not None:
        problems.append(_database_problem(db_error))
    if runtime is None:
        problems.append(
            "The controller cannot reach Docker, so it cannot tell whether mail is held; "
            "see `docker compose ps`."
        )
        return MailStatus("unknown", problems[0], problems)
    services = [_service_state(runtime, name) for name in checked_services(settings)]
    queue = queue_state(runtime)
    count = f" ({queue.messages} message{'s' * (queue.messages != 1)})" if queue else ""
    sentences = dict(_CHECKED)
    for service in services:
        if service.healthy == 0:
            problems.append(sentences[service.service](service.detail, count))
    if problems:
        return MailStatus("held", problems[0], problems, services, queue)
    summary = "Mail flows: every part mail depends on is healthy"
    if queue and queue.deferred:
        summary += (
            f"; {queue.deferred} message(s) wait for a retry, most often because: "
            f"{queue.top_reason}"
        )
    return MailStatus("flowing", summary + ".", [], services, queue)


class MailStatusWatch:
    """Checks every `interval` seconds in a thread; logs a warning when mail becomes held
    (and again every `repeat` seconds while it stays held) and when it flows again.
    /healthz shows the latest result.

    When held mail can flow again, `on_flowing_again` runs (the controller flushes
    Postfix's queue): otherwise the held messages would wait for their next retry, up to
    maximal_backoff_time (over an hour) later."""

    def __init__(
        self,
        check: Callable[[], MailStatus],
        interval: float,
        repeat: float = 600.0,
        on_flowing_again: Callable[[], None] | None = None,
    ) -> None:
        self._check = check
        self.interval = interval
        self.repeat = repeat
        self._on_flowing_again = on_flowing_again
        self.latest: MailStatus | None = None
        self._logged_at = 0.0

    def run_once(self) -> MailStatus:
        status = self._check()
        previous, self.latest = self.latest, status
        now = time.monotonic()
        changed = previous is None or previous.problems != status.problems
        if status.state != "flowing" and (changed or now - self._logged_at >= self.repeat):
            for problem in status.problems:
                log.warning("%s", problem)
            self._logged_at = now
        elif status.state == "flowing" and previous is not None and previous.state != "flowing":
            log.info("mail flows again: %s", status.summary)
            if self._on_flowing_again is not None and status.queue and status.queue.messages:
                log.info("delivering the %d held message(s) now", status.queue.messages)
                self._on_flowing_again()
        return status

    def start(self) -> threading.Thread:
        def loop() -> None:
            while True:
                try:
                    self.run_once()
                except Exception:
                    log.exception("the mail status check failed; retrying")
                time.sleep(self.interval)

        thread = threading.Thread(target=loop, name="mail-status", daemon=True)
        thread.start()
        return thread
