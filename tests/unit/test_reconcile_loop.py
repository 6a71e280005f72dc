"""controller/engine/reconcile.py: the periodic pass backs off while something it needs is
away (a temporary failure) and keeps its pace when the releases were refused (permanent:
the engine does not retry those)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy.exc import OperationalError

from controller.engine.reconcile import MAX_BACKOFF, ReconcileLoop
from controller.errors import Conflict, InvalidInput, Unavailable


def _loop(outcomes: list[BaseException | Mapping[str, Any] | None]) -> ReconcileLoop:
    pending: Iterator[BaseException | Mapping[str, Any] | None] = iter(outcomes)

    def reconcile() -> Mapping[str, Any] | None:
        outcome = next(pending)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return ReconcileLoop(reconcile, interval=10.0)


def test_temporary_failures_back_off_and_a_success_restores_the_interval() -> None:
    database_away = OperationalError("SELECT 1", {}, Exception("gone"))
    loop = _loop(
        [Unavailable("no docker"), database_away, OSError("refused"), None, Unavailable("x")]
    )
    assert [loop.run_once() for _ in range(5)] == [20.0, 40.0, 80.0, 10.0, 20.0]


def test_backoff_stops_growing_at_its_ceiling() -> None:
    loop = _loop([Unavailable("no docker")] * 12)
    delays = [loop.run_once() for _ in range(12)]
    assert delays[-1] == MAX_BACKOFF
    assert delays == sorted(delays)


def test_refused_releases_and_a_busy_engine_keep_the_normal_interval() -> None:
    loop = _loop([Unavailable("x"), InvalidInput("postfix refused"), Conflict("busy")])
    assert [loop.run_once() for _ in range(3)] == [20.0, 10.0, 10.0]
    assert loop.failures == 0


def test_an_unexpected_error_is_logged_and_backed_off_not_fatal() -> None:
    loop = _loop([RuntimeError("bug"), {"id": 3, "status": "succeeded"}])
    assert [loop.run_once() for _ in range(2)] == [20.0, 10.0]
