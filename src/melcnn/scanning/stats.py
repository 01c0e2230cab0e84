"""The counts of one scan (:class:`ScanStats`): what discovery found and skipped, rows, errors, timings."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ScanStats:
    """Counts of one scan (the CLI prints them; :class:`Scan` exposes them as ``.stats``)."""

    discovered: int = 0  # candidate files (and error entries) found
    already_done: int = 0  # skipped: a current row is in the output
    non_media: int = 0  # skipped: not media by content
    special: int = 0  # skipped: FIFOs, sockets, devices
    unreadable_dirs: int = 0
    symlink_loops: int = 0
    no_match: list[str] = field(default_factory=list)  # globs that matched nothing
    scanned: int = 0  # rows produced in this run
    errors: Counter = field(default_factory=Counter)  # error_code -> rows in this run
    audio_s: float = 0.0  # audio decoded in this run
    workers_replaced: int = 0
    engine_s: float = 0.0  # main thread: time in the scattering engine and head
    engine_chunks: int = 0
    engine_calls: int = 0
    wait_s: float = 0.0  # main thread: time waiting for the workers
    started: float = field(default_factory=time.monotonic)
    discovery_done: bool = False
