"""Pictures produced by ``plots=true``, kept under the server's private folder and served by id only.

An id is 32 random URL-safe characters (``secrets.token_urlsafe(24)``); the only way from a request
to a file is a lookup of that id in this store, so no client-controlled path ever reaches the file
system. Each picture expires ``ttl_s`` seconds after it was made; at most ``max_items`` are kept
(the oldest go first).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    """One stored picture."""

    path: Path
    media_type: str
    expires_at: float  # time.monotonic() seconds


class ArtifactStore:
    """Thread-safe store of expiring pictures in ``root`` (created 0700)."""

    def __init__(self, root: Path, *, ttl_s: float, max_items: int = 1000):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ttl_s = float(ttl_s)
        self.max_items = int(max_items)
        self._items: OrderedDict[str, Artifact] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, src: Path, media_type: str = "image/png") -> str:
        """Move ``src`` into the store and return its new id."""
        art_id = secrets.token_urlsafe(24)
        dest = self.root / f"{art_id}{Path(src).suffix.lower()[:8]}"
        shutil.move(str(src), dest)
        os.chmod(dest, 0o600)
        evicted: list[Artifact] = []
        with self._lock:
            self._items[art_id] = Artifact(dest, media_type, time.monotonic() + self.ttl_s)
            while len(self._items) > self.max_items:
                evicted.append(self._items.popitem(last=False)[1])
        for art in evicted:
            art.path.unlink(missing_ok=True)
        return art_id

    def get(self, art_id: str) -> tuple[bytes, Artifact] | None:
        """The picture's bytes and record, or None if ``art_id`` is unknown or expired."""
        with self._lock:
            art = self._items.get(art_id)
        if art is None or art.expires_at <= time.monotonic():
            return None
        try:
            return art.path.read_bytes(), art
        except OSError:
            return None

    def purge_expired(self) -> int:
        """Delete expired pictures; returns how many."""
        now = time.monotonic()
        with self._lock:
            gone = [k for k, a in self._items.items() if a.expires_at <= now]
            arts = [self._items.pop(k) for k in gone]
        for art in arts:
            art.path.unlink(missing_ok=True)
        return len(arts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
