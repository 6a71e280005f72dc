"""Milter on ports 587/465: the header From/Sender must belong to the SASL login.

Runs as the postfix user inside the postfix container, on a unix socket only (no
network listener), started and restarted by the entrypoint:
    python3 sender_milter.py SOCKET
It comes before OpenDKIM in smtpd_milters, so a refused message never reaches the
signer. It asks Postfix's own smtpd_sender_login_maps through proxymap
(`postmap -q KEY proxy:mysql:...`), so the rules are literally those Postfix applies to
the envelope sender, with the same database connection pool and no password here.
The decision itself is sender_binding.check (unit-tested without libmilter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import Milter  # Debian's python3-milter (pymilter)
from sender_binding import LookupFailed, Refusal, check

POSTMAP = "/usr/sbin/postmap"
POSTCONF = "/usr/sbin/postconf"
# A lookup through proxymap takes a few milliseconds; one that hangs must not hold the
# SMTP session for milter_content_timeout.
LOOKUP_TIMEOUT = 20.0


def _login_map() -> str:
    """smtpd_sender_login_maps as Postfix expands it (proxy:mysql:/etc/mailyard/active/...):
    proxymap serves only tables named exactly as in main.cf."""
    # Fixed program and arguments.
    result = subprocess.run(  # noqa: S603
        [POSTCONF, "-xh", "smtpd_sender_login_maps"],
        capture_output=True,
        text=True,
        check=True,
        timeout=LOOKUP_TIMEOUT,
    )
    value = result.stdout.strip()
    if not value:
        raise SystemExit("smtpd_sender_login_maps is empty: nothing to bind senders to")
    return value


def lookup(key: str) -> set[str]:
    """The logins that own `key` in smtpd_sender_login_maps (empty: none)."""
    try:
        # No shell: the key (from a header, already parsed as an address) is one argument,
        # and Postfix's mysql client quotes it for SQL itself.
        result = subprocess.run(  # noqa: S603
            [POSTMAP, "-q", key, *LOGIN_MAP.replace(",", " ").split()],
            capture_output=True,
            text=True,
            timeout=LOOKUP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LookupFailed(str(error)) from error
    # postmap -q: 0 found, 1 not found; a warning or fatal error on stderr is a failure
    # to ask (e.g. the database is down), never "not found".
    if result.stderr.strip():
        raise LookupFailed(result.stderr.strip().splitlines()[-1])
    if result.returncode == 0:
        return {owner for owner in result.stdout.strip().split(",") if owner.strip()}
    if result.returncode == 1:
        return set()
    raise LookupFailed(f"postmap exited {result.returncode}")


def log(text: str) -> None:
    # One line per decision on stderr; the entrypoint's output is the container's log.
    print(f"sender-milter: {text}", file=sys.stderr, flush=True)


class SenderBinding(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection (libmilter's thread for it)."""

    def __init__(self) -> None:
        self.login: str | None = None
        self.queue_id = "-"
        self.headers: list[tuple[str, str]] = []

    @Milter.noreply  # type: ignore[misc]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.login = self.getsymval("{auth_authen}") or None
        self.headers = []
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[misc]
    def header(self, name: str, value: str) -> int:
        self.headers.append((name, value))
        return Milter.CONTINUE

    def eoh(self) -> int:
        self.queue_id = self.getsymval("i") or "-"
        started = time.monotonic()
        try:
            refusal: Refusal | None = check(self.login, self.headers, lookup)
        except LookupFailed as error:
            log(f"{self.queue_id}: cannot ask smtpd_sender_login_maps: {error}")
            self.setreply("451", "4.3.0", "Cannot check the From address now; try again later")
            return Milter.TEMPFAIL
        elapsed_ms = (time.monotonic() - started) * 1000
        if refusal is None:
            log(f"{self.queue_id}: login={self.login} allowed ({elapsed_ms:.1f} ms)")
            return Milter.ACCEPT
        log(f"{self.queue_id}: login={self.login} refused: {refusal.xcode} {refusal.text}")
        # libmilter reads '%' as a format character: double each one.
        self.setreply(refusal.code, refusal.xcode, refusal.text.replace("%", "%%"))
        return Milter.REJECT


LOGIN_MAP = ""


def main() -> None:
    global LOGIN_MAP  # noqa: PLW0603 - read once at start, used by every thread
    if len(sys.argv) != 2 or not sys.argv[1].startswith("/"):
        raise SystemExit("usage: sender_milter.py /path/to/socket")
    LOGIN_MAP = _login_map()
    log(f"asking {LOGIN_MAP} on unix:{sys.argv[1]} (pid {os.getpid()})")
    Milter.factory = SenderBinding
    # Only what this milter does: read macros and headers, reply. No message changes.
    Milter.set_flags(0)
    Milter.runmilter("mailyard-sender", f"unix:{sys.argv[1]}", timeout=60)


if __name__ == "__main__":
    main()
