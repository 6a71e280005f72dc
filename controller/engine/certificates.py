"""Getting, renewing and deploying the certificate Postfix and Dovecot serve.

- Due when ACME is on and the installed certificate is self-signed, does not cover the
  wanted names, or is in its renewal window: the CA's ACME Renewal Information (RFC 9773)
  when offered, otherwise once a third of its lifetime remains (so 6-day certificates
  renew after 4 days).
- A failed attempt keeps the old certificate and backs off: 1 min, 10 min, 100 min, then
  daily, so a broken DNS record never burns the CA's rate limits.
- Deploy: key and chain written atomically, then every Postfix and Dovecot replica is
  reloaded one at a time behind its health gate (ConfigEngine.reload_everywhere); if a
  gate fails the old files come back. Then every TLS port of every replica is read on
  the wire and must serve the new serial.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from controller.domain.mail_settings import MailSettings
from controller.errors import Action, MailyardError, Unavailable
from controller.runtime import Runtime
from controller.services import certificates as files
from controller.services.acme_client import (
    AcmeAccountConfig,
    AcmeFailure,
    AcmeSession,
    ChallengeStore,
)
from controller.services.managed import ManagedService
from controller.services.registry import REGISTRY
from controller.services.tls_probe import served_serial
from controller.settings import Settings


class Reloader(Protocol):
    """What a deploy needs of the ConfigEngine (engine/apply.py), which in turn asks this
    module for self-signed certificates."""

    def current_settings(self) -> MailSettings: ...

    def reload_everywhere(
        self,
        *,
        actor: str,
        trigger: str,
        changes: list[dict[str, Any]],
        undo: Callable[[], None],
        which: Callable[[ManagedService], bool] = ...,
    ) -> dict[str, Any]: ...


log = logging.getLogger(__name__)

BACKOFF = (timedelta(minutes=1), timedelta(minutes=10), timedelta(minutes=100), timedelta(days=1))
CHALLENGES_DIR = "acme-challenges"
ACCOUNT_KEY = "secrets/acme-account-key.pem"
STATE_FILE = "certificate-state.json"
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")


def self_signed_for(certs_dir: Path, hostname: str) -> Callable[[], None]:
    """Make sure a certificate is installed; our own self-signed one follows a new
    hostname (an ACME or uploaded one is never replaced here). Returns how to put the
    files from before back, for a change that does not go live."""
    saved = files.snapshot(certs_dir)
    if files.ensure_certificate(certs_dir, hostname):
        log.info("created a self-signed certificate for %s", hostname)
    return lambda: files.restore(certs_dir, saved)


def _now() -> datetime:
    return datetime.now(UTC)


class CertificateManager:
    def __init__(
        self,
        settings: Settings,
        config: Reloader,
        runtime: Runtime | None,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.config = config
        self.runtime = runtime
        self.clock = clock
        self.challenges = ChallengeStore(settings.state_dir / CHALLENGES_DIR)
        # Called after every deploy, e.g. to load the new certificate into the API's
        # own HTTPS listener.
        self.on_deployed: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # --- state -------------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.settings.state_dir / STATE_FILE

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_path().read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state

    def _save(self, state: dict[str, Any]) -> None:
        path = self._state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".certificate-state-")
        with os.fdopen(descriptor, "w") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
        os.replace(temporary, path)

    @staticmethod
    def wanted_names(mail: MailSettings) -> list[str]:
        return [mail.hostname, *(n for n in mail.certificate_extra_names if n != mail.hostname)]

    # --- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        mail = self.config.current_settings()
        state = self._load()
        info = files.installed(self.settings.certs_dir)
        next_renewal = self._next_renewal(mail, info, state)
        return {
            "acme_enabled": mail.acme_enabled,
            "directory_url": mail.acme_directory_url,
            "wanted_names": self.wanted_names(mail),
            "source": state.get("source", "self-signed" if info and info.self_signed else None),
            "names": info.names if info else [],
            "issuer": info.issuer if info else None,
            "serial": info.serial if info else None,
            "not_before": _iso(info.not_before) if info else None,
            "not_after": _iso(info.not_after) if info else None,
            "next_renewal_at": _iso(next_renewal) if next_renewal else None,
            "last_attempt_at": state.get("last_attempt_at"),
            "last_success_at": state.get("last_success_at"),
            "last_error": state.get("last_error"),
            "consecutive_failures": state.get("failures", 0),
        }

    def _next_renewal(
        self, mail: MailSettings, info: files.CertificateInfo | None, state: dict[str, Any]
    ) -> datetime | None:
        if not mail.acme_enabled:
            return None
        if state.get("source") == "custom" and info is not None:
            return None  # the admin's own certificate stays until a forced renewal
        if state.get("retry_at"):
            return datetime.fromisoformat(state["retry_at"])
        if info is None or info.self_signed or set(info.names) != set(self.wanted_names(mail)):
            return self.clock()
        if state.get("ari_suggested_at") and state.get("serial") == info.serial:
            return datetime.fromisoformat(state["ari_suggested_at"])
        return info.not_after - info.lifetime / 3

    def due(self) -> bool:
        mail = self.config.current_settings()
        info = files.installed(self.settings.certs_dir)
        when = self._next_renewal(mail, info, self._load())
        return when is not None and when <= self.clock()

    # --- renewal -----------------------------------------------------------------------

    def renew(self, *, actor: str, force: bool = False) -> dict[str, Any]:
        """Get a certificate now if one is due (or `force`), deploy and verify it."""
        mail = self.config.current_settings()
        if not mail.acme_enabled:
            raise Unavailable(
                "ACME is off; turn it on to get a certificate",
                action=Action(
                    api='PATCH /api/v1/settings {"acme_enabled": true}',
                    cli="mailyard settings set acme_enabled=true",
                ),
            )
        if not self._lock.acquire(timeout=300):
            raise Unavailable("a certificate renewal is already running; retry shortly")
        try:
            if not force and not self.due():
                return self.status()
            self._attempt(mail, actor)
            return self.status()
        finally:
            self._lock.release()

    def _attempt(self, mail: MailSettings, actor: str) -> None:
        state = self._load()
        state["last_attempt_at"] = _iso(self.clock())
        names = self.wanted_names(mail)
        try:
            session = AcmeSession(self._account_config(mail), self.settings.state_dir / ACCOUNT_KEY)
            issued = session.issue(names, self.challenges)
            info = files.describe(issued.fullchain_pem)
            self._deploy(issued.key_pem, issued.fullchain_pem, info, actor)
            suggested = session.suggested_renewal(issued.fullchain_pem)
        except Exception as exc:  # any failure must back off, never retry at once
            message = str(exc) if isinstance(exc, AcmeFailure | MailyardError) else repr(exc)
            failures = int(state.get("failures", 0)) + 1
            retry = self.clock() + BACKOFF[min(failures, len(BACKOFF)) - 1]
            state.update(failures=failures, last_error=message, retry_at=_iso(retry))
            self._save(state)
            log.warning("certificate for %s: %s (next attempt %s)", names, message, _iso(retry))
            raise Unavailable(f"no new certificate: {message}") from exc
        state.update(
            failures=0,
            last_error=None,
            retry_at=None,
            source="acme",
            serial=info.serial,
            last_success_at=_iso(self.clock()),
            ari_suggested_at=_iso(suggested) if suggested else None,
        )
        self._save(state)
        log.info("certificate %s for %s deployed (until %s)", info.serial, names, info.not_after)

    def install_custom(self, chain_pem: bytes, key_pem: bytes, *, actor: str) -> dict[str, Any]:
        """Deploy a certificate the admin brings, the same way as an issued one. While it
        is in place the scheduler does not replace it (force a renewal to go back to
        ACME)."""
        mail = self.config.current_settings()
        info = files.check_custom(chain_pem, key_pem, mail.hostname, self.clock())
        if not self._lock.acquire(timeout=300):
            raise Unavailable("a certificate renewal is running; retry shortly")
        try:
            self._deploy(key_pem, chain_pem, info, actor)
            state = self._load()
            state.update(source="custom", serial=info.serial, retry_at=None, last_error=None)
            state.update(failures=0, ari_suggested_at=None)
            self._save(state)
        finally:
            self._lock.release()
        return self.status()

    def _account_config(self, mail: MailSettings) -> AcmeAccountConfig:
        trust: Path | None = None
        extra = mail.acme_ca_bundle
        if extra:
            trust = self.settings.state_dir / "acme-trust.pem"
            system = SYSTEM_CAS.read_text() if SYSTEM_CAS.exists() else ""
            trust.parent.mkdir(parents=True, exist_ok=True)
            temporary = trust.with_name(".acme-trust.pem.tmp")
            temporary.write_text(system + "\n" + extra)
            os.replace(temporary, trust)
        return AcmeAccountConfig(
            directory_url=mail.acme_directory_url,
            contact_email=mail.acme_contact_email,
            key_type=mail.acme_key_type,
            trust_file=trust,
        )

    def _deploy(
        self, key_pem: bytes, chain_pem: bytes, info: files.CertificateInfo, actor: str
    ) -> None:
        saved = files.snapshot(self.settings.certs_dir)
        old = files.installed(self.settings.certs_dir)
        files.install(self.settings.certs_dir, key_pem, chain_pem)
        self.config.reload_everywhere(
            actor=actor,
            trigger="certificate",
            changes=[
                {"name": "certificate", "old": old.serial if old else None, "new": info.serial}
            ],
            undo=lambda: files.restore(self.settings.certs_dir, saved),
            which=lambda service: service.uses_certificate,
        )
        for hook in self.on_deployed:
            hook()
        mismatches = self.verify_on_the_wire(info.serial)
        if mismatches:
            raise Unavailable(
                "the new certificate is installed but not served everywhere: "
                + "; ".join(mismatches)
            )

    def verify_on_the_wire(self, serial: str) -> list[str]:
        """Every TLS port of every running replica, read over the network."""
        if self.runtime is None:
            return []
        problems = []
        tls_ports = [(service.name, tls) for service in REGISTRY for tls in service.tls_ports]
        for service_name, tls in tls_ports:
            port, mode = tls.port, tls.mode
            for replica in self.runtime.replicas(service_name):
                if not replica.running:
                    continue
                addresses = self.runtime.addresses(replica)
                if not addresses:
                    problems.append(f"{replica.name}: no address to check")
                    continue
                try:
                    served = served_serial(addresses[0], port, mode)
                except (OSError, ValueError) as exc:
                    problems.append(f"{replica.name} port {port}: {exc}")
                    continue
                if served != serial:
                    problems.append(f"{replica.name} port {port} serves {served}, not {serial}")
        return problems

    # --- scheduler ---------------------------------------------------------------------

    def start_scheduler(self, interval: float = 60.0) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(interval)
                try:
                    if self.config.current_settings().acme_enabled and self.due():
                        self.renew(actor="renewal scheduler")
                except MailyardError as exc:
                    log.warning("certificate renewal: %s", exc)
                except Exception:
                    log.exception("certificate renewal crashed; retrying in %.0fs", interval)

        thread = threading.Thread(target=loop, name="certificates", daemon=True)
        thread.start()
        return thread


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None
