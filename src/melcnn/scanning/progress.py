"""What a scan shows on the terminal: the live :class:`Progress` bar (or plain lines) and the end-of-scan
:func:`summary`.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .api import Scan


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """A live bar on a terminal (stderr); plain lines every ``interval_s`` seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, *, interval_s: float | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 10.0)
        self._last = 0.0
        self._width = 0
        self._final_shown = False

    def line(self, s: Scan, done: int) -> str:
        st = s.stats
        elapsed = time.monotonic() - st.started
        rate = done / elapsed if elapsed > 0 else 0.0
        total = s.total
        if total is None:
            return f"discovering: {st.discovered} files"
        eta = _fmt_s((total - done) / rate) if rate > 0 and done < total else "-"
        errors = sum(st.errors.values())
        head = f"{done}/{total} files"
        if self.tty:
            width = 24
            filled = int(width * done / total) if total else width
            head = f"[{'#' * filled}{'.' * (width - filled)}] {head}"
        return f"{head}  {st.audio_s / 3600:.2f} h audio  {rate:.2f} files/s  ETA {eta}  errors {errors}"

    def __call__(self, s: Scan, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        final = final or (s.total is not None and done >= s.total)
        if final and self._final_shown:
            return
        self._final_shown = final
        if not final and now - self._last < self.interval_s:
            return
        self._last = now
        text = self.line(s, done)
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
            self._width = len(text)
        else:
            self.stream.write(f"scan: {text}\n")
        self.stream.flush()


def summary(s: Scan, rows: Sequence[dict[str, Any]], *, top: int = 10, elapsed_s: float | None = None) -> str:
    """The end-of-scan summary: this run's counts, then verdicts and errors over ``rows`` (the whole output)."""
    st = s.stats
    elapsed = elapsed_s if elapsed_s is not None else time.monotonic() - st.started
    rate = st.scanned / elapsed if elapsed > 0 else 0.0
    lines = [
        f"scanned {st.scanned} files in {_fmt_s(elapsed)} ({rate:.2f} files/s, "
        f"{st.audio_s / 3600:.2f} h of audio, {st.audio_s / elapsed if elapsed > 0 else 0:.1f} audio-s/s)"
    ]
    skipped = []
    if st.already_done:
        skipped.append(f"{st.already_done} already in the output")
    if st.non_media:
        skipped.append(f"{st.non_media} non-media files")
    if st.special:
        skipped.append(f"{st.special} special files (FIFOs, sockets, devices)")
    if st.unreadable_dirs:
        skipped.append(f"{st.unreadable_dirs} unreadable folders")
    if st.symlink_loops:
        skipped.append(f"{st.symlink_loops} folders reached again through links")
    if skipped:
        lines.append("skipped: " + ", ".join(skipped))
    for pattern in st.no_match:
        lines.append(f"no match: {pattern}")
    if st.workers_replaced:
        lines.append(f"worker processes replaced: {st.workers_replaced}")
    verdicts = Counter(r["prediction"] or "error" for r in rows)
    lines.append(
        f"verdicts ({len(rows)} files): "
        + ", ".join(f"{k} {verdicts[k]}" for k in ("FAKE", "REAL", "error") if verdicts[k])
    )
    errors = Counter(r["error_code"] for r in rows if r["error_code"])
    if errors:
        lines.append("errors: " + ", ".join(f"{code} {n}" for code, n in errors.most_common()))
    scored = sorted((r for r in rows if r["fake_score"] is not None), key=lambda r: -r["fake_score"])[:top]
    if scored:
        lines.append("most suspicious:")
        lines += [f"  {r['fake_score']:.4f} {r['prediction']}  {r['path']}" for r in scored]
    return "\n".join(lines)
