"""One configuration change at a time, across the API's worker threads and `mailyard`
commands running next to the server in the same container."""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.errors import Conflict


class ApplyLock:
    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._thread_lock = threading.Lock()

    @contextmanager
    def exclusive(self, *, wait: float) -> Iterator[None]:
        """A thread lock and a file lock (state_dir/apply.lock). Waits up to `wait`
        seconds (an apply takes seconds), then answers 409."""
        busy = Conflict("another configuration change is being applied; retry shortly")
        deadline = time.monotonic() + wait
        acquired = (
            self._thread_lock.acquire(timeout=wait)
            if wait > 0
            else self._thread_lock.acquire(blocking=False)
        )
        if not acquired:
            raise busy
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            with open(self._state_dir / "apply.lock", "a") as handle:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise busy from None
                        time.sleep(0.2)
                yield
        finally:
            self._thread_lock.release()
