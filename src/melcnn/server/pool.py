"""Bounded analysis: a fixed pool of worker threads and a fixed number of admission slots.

A request takes a slot before its upload is read (503 when none is free) and gives it back only
when its analysis has really ended, even if the client was already answered 504: a thread cannot
be stopped, so the slot stays taken while it runs, and the number of analyses, queued uploads and
temporary files is bounded by ``workers + queue_size`` whatever clients do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Slot:
    """One admission; ``release()`` is idempotent."""

    def __init__(self, pool: AnalysisPool):
        self._pool = pool
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._pool._release()


class AnalysisPool:
    """``workers`` threads; at most ``workers + queue_size`` admitted requests at once."""

    def __init__(self, *, workers: int, queue_size: int):
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="melcnn-analyze")
        self._lock = threading.Lock()
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Requests admitted now (uploading, queued or running)."""
        with self._lock:
            return self._admitted

    def try_admit(self) -> Slot | None:
        """A slot, or None when ``capacity`` requests are already admitted (never blocks)."""
        with self._lock:
            if self._admitted >= self.capacity:
                return None
            self._admitted += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1

    def submit(self, fn: Callable[[], T], *, on_done: Callable[[], Any]) -> Future[T]:
        """Run ``fn`` on a worker; ``on_done`` runs once it finished or was cancelled before starting."""
        future = self._executor.submit(fn)
        future.add_done_callback(lambda _f: on_done())
        return future

    def shutdown(self) -> None:
        """Cancel queued work; running analyses finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)
