"""Keeping the running services on their desired releases: finishing (or undoing) an apply
a killed controller left in progress, and the periodic pass that corrects drift.

Failures are of two kinds (as in kopf's TemporaryError and PermanentError):
- temporary: the Docker engine, a container or the database cannot be reached. The loop
  tries again with a growing delay (interval, 2x, 4x ... up to MAX_BACKOFF) and at the
  normal interval once a pass succeeds;
- permanent: a daemon refused the releases, or they failed their health gate. Trying them
  again cannot help; the engine remembers them and the loop leaves them alone until the
  desired releases change (ConfigEngine.reconcile).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from controller.engine.records import ApplyRecords
from controller.errors import Conflict, InvalidInput, Unavailable

log = logging.getLogger(__name__)

MAX_BACKOFF = 600.0
# What may go away and come back on its own.
TEMPORARY_ERRORS: tuple[type[BaseException], ...] = (Unavailable, SQLAlchemyError, OSError)


def recover_interrupted(
    records: ApplyRecords,
    reconcile: Callable[[str], object],
    restore_settings: Callable[[Mapping[str, Any]], None],
) -> None:
    """Finish every apply a killed controller left `in_progress` (its settings are
    stored; the releases may be half rolled out); if that fails, restore the settings
    from before it and roll those out."""
    for apply_id, previous in records.take_interrupted():
        log.warning("apply %d was interrupted (controller restart); finishing it", apply_id)
        try:
            reconcile("recovery")
        except InvalidInput as exc:
            log.warning(
                "apply %d cannot be finished (%s); restoring the settings before it",
                apply_id,
                exc,
            )
            restore_settings(previous)
            try:
                reconcile("recovery")
            except InvalidInput as undo_error:
                records.finish(apply_id, "failed", error=f"{exc}; undo: {undo_error}")
                continue
            records.finish(apply_id, "undone_after_restart", error=str(exc))
        else:
            records.finish(apply_id, "completed_after_restart")


class ReconcileLoop:
    """One pass at a time; `run_once` says how long to wait before the next."""

    def __init__(self, reconcile: Callable[[], Mapping[str, Any] | None], interval: float) -> None:
        self.reconcile = reconcile
        self.interval = interval
        self.failures = 0  # temporary failures in a row

    def run_once(self) -> float:
        try:
            outcome = self.reconcile()
        except Conflict:
            return self.interval  # an apply is running; it ends in the desired state anyway
        except TEMPORARY_ERRORS as exc:
            self.failures += 1
            delay = min(self.interval * 2.0**self.failures, MAX_BACKOFF)
            log.warning("reconcile cannot run now (%s); next try in %.0fs", exc, delay)
            return delay
        except InvalidInput as exc:
            # Permanent: the engine will not try these releases again.
            self.failures = 0
            log.warning("reconcile: the desired releases were refused: %s", exc)
            return self.interval
        except Exception:
            self.failures += 1
            delay = min(self.interval * 2.0**self.failures, MAX_BACKOFF)
            log.exception("reconcile failed; next try in %.0fs", delay)
            return delay
        self.failures = 0
        if outcome is not None:
            log.warning(
                "reconcile: drift corrected by apply %s (%s)", outcome["id"], outcome["status"]
            )
        return self.interval


def start_reconcile_loop(
    reconcile: Callable[[], Mapping[str, Any] | None], interval: float
) -> threading.Thread:
    """Every `interval` seconds, correct drift (hand-edited files, a replica on another
    release). Errors are logged, never fatal: mail does not depend on this loop."""
    loop = ReconcileLoop(reconcile, interval)

    def run() -> None:
        delay = interval
        while True:
            time.sleep(delay)
            delay = loop.run_once()

    thread = threading.Thread(target=run, name="reconcile", daemon=True)
    thread.start()
    return thread
