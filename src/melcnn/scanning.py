"""Scan archives: ``melcnn scan PATH...`` and :func:`melcnn.scan` (one row per media file, resumable).

Data flow::

    discover (main thread: walk, stat, include/exclude, skip rows already in the output)
      -> worker processes (decode, chunk, mel images, measurements)      [one file at a time each]
      -> collector thread (pipes -> one bounded queue; replaces dead workers)
      -> main thread: images of many files batched into the scattering engine, head, rows
      -> output (JSON Lines appended and fsync'd; Parquet/CSV: a JSON Lines journal beside, the
         table written at the end by an atomic rename)

The module is named ``scanning`` (not ``scan``) so that the package attribute ``melcnn.scan`` stays
the function. The calls into melcnn's internal batched feature path are all in :class:`_Engine`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import glob
import json
import math
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .config import MAX_DURATION_S
from .errors import MelcnnError

#: version of the row layout below (a column added or changed: bump it)
ROW_SCHEMA_VERSION = "1"

#: The columns of a row, in order, with their types (Parquet types; JSON and CSV hold the same values).
#: ``chunks`` and ``warnings`` are lists (JSON text in CSV). Failed files have ``error_code`` and
#: ``error_message`` and nulls for the results; measurements are null with ``--no-measurements``.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),
    ("size", "int64"),
    ("mtime", "float64"),
    ("format", "string"),
    ("duration_s", "float64"),
    ("analyzed_s", "float64"),
    ("prediction", "string"),
    ("fake_score", "float64"),
    ("threshold", "float64"),
    ("n_chunks", "int64"),
    ("chunks", "list<struct<start_s: float64, end_s: float64, fake_score: float64>>"),
    ("mean_pitch_hz", "float64"),
    ("pitch_stability", "float64"),
    ("voiced_ratio", "float64"),
    ("rms_energy", "float64"),
    ("silence_ratio", "float64"),
    ("spectral_centroid_hz", "float64"),
    ("warnings", "list<string>"),
    ("error_code", "string"),
    ("error_message", "string"),
    ("model", "string"),
    ("weights_sha256", "string"),
    ("processing_time_s", "float64"),
    ("scanned_at", "string"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

#: error codes of scan-level failures (the decoder's own codes come from :mod:`melcnn.errors`)
WORKER_DIED = "worker_died"
INTERNAL_ERROR = "internal_error"
NOT_FOUND = "not_found"
#: rows with these codes are not current: a rerun scans their files again (the fault was not the file's)
RETRIED_CODES = frozenset({WORKER_DIED, INTERNAL_ERROR})

#: images per scattering call: the engine's batch
BATCH_IMAGES = 16
#: images a worker sends per message (bounds the memory of a long file in flight)
WORKER_SEND_IMAGES = 16
#: files queued at each worker beyond the one it decodes (keeps it busy while the main thread works)
WORKER_PREFETCH = 1

_HEAD_BYTES = 512  # read to tell non-media from damaged media (MPEG-TS needs 189)


# ------------------------------------------------------------------------------------------- rows
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(path: str, size: int | None, mtime: float | None, model: dict[str, str], **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(path=path, size=size, mtime=mtime, chunks=[], warnings=[], scanned_at=_now())
    row["model"] = model["name"]
    row["weights_sha256"] = model["weights_sha256"]
    row.update(values)
    return row


def _error_row(target: _Target, model: dict[str, str], code: str, message: str, **values: Any) -> dict[str, Any]:
    return _row(target.path, target.size, target.mtime, model, error_code=code, error_message=message, **values)


def row_key(row: dict[str, Any]) -> tuple:
    """What makes a row current: same path, size, mtime and model (name and weights)."""
    return (row.get("path"), row.get("size"), row.get("mtime"), row.get("model"), row.get("weights_sha256"))


# -------------------------------------------------------------------------------------- discovery
@dataclass
class _Target:
    path: str
    size: int | None = None
    mtime: float | None = None
    error: tuple[str, str] | None = None  # (code, message) found while discovering


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


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def discover(
    paths: Iterable[str | os.PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    stats: ScanStats | None = None,
    stdin: TextIO | None = None,
) -> Iterator[_Target]:
    """Candidate files under ``paths`` (files, folders walked recursively, globs, ``-``: a list on stdin).

    Symbolic links are followed; a folder reached twice (a link loop) is walked once. Unreadable
    folders are counted in ``stats`` and passed over. Paths named explicitly that are missing, and
    folders named in a stdin list, become error entries (one row each). FIFOs, sockets and devices are
    counted and skipped (reading them could block). Each file is yielded once, as an absolute path.
    """
    stats = stats if stats is not None else ScanStats()
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def candidate(path: str, explicit: bool) -> Iterator[_Target]:
        path = os.path.abspath(path)
        if path in seen_files:
            return
        if not explicit and include and not _matches(path, include):
            return
        if exclude and _matches(path, exclude):
            return
        seen_files.add(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            stats.discovered += 1
            yield _Target(path, error=(NOT_FOUND, f"cannot read {path}: {exc.strerror or exc}"))
            return
        if stat.S_ISDIR(st.st_mode):
            stats.discovered += 1
            yield _Target(
                path, st.st_size, st.st_mtime, error=(NOT_FOUND, f"{path} is a folder, not a media file")
            )
            return
        if not stat.S_ISREG(st.st_mode):
            stats.special += 1
            return
        stats.discovered += 1
        yield _Target(path, st.st_size, st.st_mtime)

    def walk(top: str) -> Iterator[_Target]:
        def onerror(exc: OSError) -> None:
            stats.unreadable_dirs += 1

        for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                stats.unreadable_dirs += 1
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                stats.symlink_loops += 1
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames.sort()
            for name in sorted(filenames):
                yield from candidate(os.path.join(dirpath, name), explicit=False)

    def one(arg: str, from_list: bool) -> Iterator[_Target]:
        if os.path.isdir(arg) and not from_list:
            yield from walk(arg)
        elif os.path.lexists(arg) or from_list or not glob.has_magic(arg):
            if os.path.isdir(arg):  # a folder in a list of files (e.g. named like media): one error row
                yield from candidate(arg, explicit=True)
            else:
                yield from candidate(arg, explicit=not from_list)
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                stats.no_match.append(arg)
            for m in matches:
                if os.path.isdir(m):
                    yield from walk(m)
                else:
                    yield from candidate(m, explicit=False)

    for p in paths:
        arg = os.fspath(p)
        if arg == "-":
            for line in stdin if stdin is not None else sys.stdin:
                line = line.rstrip("\r\n")
                if line:
                    yield from one(line, from_list=True)
        else:
            yield from one(arg, from_list=False)
    stats.discovery_done = True


# ------------------------------------------------------------------------------------ worker side
_MAGIC = (
    b"RIFF", b"RF64", b"BW64", b"riff", b"FORM", b"fLaC", b"OggS", b"ID3", b"\x1aE\xdf\xa3", b".RMF",
    b"caff", b"wvpk", b"#!AMR", b"MAC ", b"TTA1", b"0&\xb2u", b"FLV", b"\x00\x00\x01\xba", b".snd", b"ADIF",
)  # fmt: skip


def looks_like_media(head: bytes) -> bool:
    """Does the start of a file carry a media container's signature? (Used only to tell a non-media
    file, which is skipped, from a damaged media file, which gets an error row.)"""
    if head.startswith(_MAGIC) or head[4:8] == b"ftyp":
        return True
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio / ADTS sync
        return True
    return len(head) >= 1 and head[0] == 0x47 and (len(head) < 189 or head[188] == 0x47)  # MPEG-TS


def _worker_main(conn: Any, settings: dict[str, Any]) -> None:
    """Worker process: decode files sent on ``conn`` and send back images, then a summary."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    from ._blas import single_threaded_blas
    from .config import FeatureConfig
    from .errors import MediaProcessingError, NotAudioError

    cfg = FeatureConfig(**settings["features"])
    conn.send(("ready",))
    kill_on = os.environ.get("MELCNN_SCAN_TEST_KILL_ON")  # tests: SIGKILL this worker on a file of this name
    with single_threaded_blas():
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            file_id, path = task
            t0 = time.time()
            if kill_on and os.path.basename(path) == kill_on:
                os.kill(os.getpid(), 9)
            try:
                result = _process_file(file_id, path, cfg, settings, conn.send, t0)
            except MediaProcessingError as exc:
                head = b""
                with contextlib.suppress(OSError), open(path, "rb") as fh:
                    head = fh.read(_HEAD_BYTES)
                if isinstance(exc, NotAudioError) and not looks_like_media(head):
                    result = ("skip", file_id, str(exc), t0)
                else:
                    result = ("error", file_id, exc.code, str(exc), t0)
            except MemoryError:
                result = ("error", file_id, INTERNAL_ERROR, "out of memory", t0)
            except Exception as exc:  # a bug or a library failure: a row, not a dead scan
                result = ("error", file_id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", t0)
            try:
                conn.send(result)
            except (EOFError, OSError):  # the main process is gone
                return


def _process_file(file_id: int, path: str, cfg: Any, settings: dict[str, Any], send: Callable, t0: float) -> tuple:
    """Decode ``path``, send its chunks' images (in parts), and return the "done" message."""
    from .audio import load_audio
    from .chunking import chunk

    decoded = load_audio(
        path, sample_rate=cfg.sample_rate, max_duration_s=settings["max_duration_s"], min_duration_s=cfg.chunk_s
    )
    y = decoded.samples
    chunks = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=settings["overlap_s"])
    for i in range(0, len(chunks), WORKER_SEND_IMAGES):
        send(("images", file_id, _Engine.images(chunks.samples[i : i + WORKER_SEND_IMAGES], cfg)))
    measurements, metric_warnings = None, []
    if settings["measurements"]:
        from .metrics import audio_metrics

        measurements, metric_warnings = audio_metrics(y, sample_rate=cfg.sample_rate)
    warnings = list(decoded.warnings) + list(metric_warnings)
    analyzed = float(chunks.ends_s[-1])
    if decoded.duration_s - analyzed >= 0.5:
        warnings.append(
            f"the last {decoded.duration_s - analyzed:.1f} s are shorter than a whole "
            f"{cfg.chunk_s:g} s chunk and were not scored"
        )
    meta = {
        "format": decoded.format,
        "duration_s": round(decoded.duration_s, 3),
        "analyzed_s": round(analyzed, 3),
        "starts": chunks.starts_s.tolist(),
        "ends": chunks.ends_s.tolist(),
        "warnings": warnings,
        "measurements": measurements,
    }
    return ("done", file_id, meta, t0)


def _worker_child(fd: int) -> None:
    """Entry point of a worker process (see :meth:`_WorkerPool._start`)."""
    conn = Connection(fd)
    try:
        settings = conn.recv()
    except (EOFError, OSError):
        return
    _worker_main(conn, settings)


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_WORKER_COMMAND = "import sys; from melcnn.scanning import _worker_child; _worker_child(int(sys.argv[1]))"


# ---------------------------------------------------------------------------- the batched engine
class _Engine:
    """melcnn's internal batched feature path, in one place (re-point here after restructurings).

    Worker side: :meth:`images` (mel images of chunks). Main side: :meth:`scores` (the scattering of
    a batch of images from any number of files, then the head). Together they equal
    ``Detector.score_chunks``.
    """

    def __init__(self, detector: Any):
        from .scattering import get_scattering

        cfg = detector.config
        self.checkpoint = detector.checkpoint
        self.scattering = get_scattering(
            J=cfg.scattering_J, L=cfg.scattering_L, shape=(cfg.image_size, cfg.image_size), device=detector.device
        )

    @staticmethod
    def images(chunks: np.ndarray, cfg: Any) -> np.ndarray:
        from .spectrogram import chunk_images

        return chunk_images(np.asarray(chunks), cfg=cfg)

    def scores(self, images: np.ndarray) -> np.ndarray:
        from ._blas import single_threaded_blas

        with single_threaded_blas():
            return self.checkpoint.fake_scores(self.scattering.pooled(images))


# ------------------------------------------------------------------------------ worker management
class _WorkerPool:
    """Worker processes fed by a collector thread; their messages come out of :attr:`events`.

    Events: ``("images", id, array)``, ``("done", id, meta, t0)``, ``("error", id, code, message, t0)``,
    ``("skip", id, message, t0)``, and ``("end",)`` when every task is answered. A worker that dies
    (killed, crashed) yields an ``error`` event with code ``worker_died`` for the file it was decoding,
    and is replaced; files queued behind it go to other workers.
    """

    def __init__(self, n: int, settings: dict[str, Any], tasks: Iterator[tuple[int, str]], queue_size: int = 16):
        self.settings = settings
        self.tasks = tasks
        self.events: queue.Queue = queue.Queue(maxsize=queue_size)
        self.workers: list[dict[str, Any]] = []
        self.replaced = 0
        self._stop = threading.Event()
        self._requeue: list[tuple[int, str]] = []
        self._tasks_done = False
        self._failed_starts = 0
        for _ in range(max(1, n)):
            self.workers.append(self._start())
        self.thread = threading.Thread(target=self._run, name="melcnn-scan-collector", daemon=True)
        self.thread.start()

    def _start(self) -> dict[str, Any]:
        # A fresh interpreter (not multiprocessing's spawn, which re-runs the caller's __main__ module
        # and so needs an ``if __name__ == "__main__"`` guard in every script that calls scan()).
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        conn = Connection(ours.detach())
        conn.send(self.settings)
        return {"proc": proc, "conn": conn, "assigned": [], "ready": False}

    def pids(self) -> list[int]:
        return [w["proc"].pid for w in self.workers]

    def _next_task(self) -> tuple[int, str] | None:
        if self._requeue:
            return self._requeue.pop(0)
        if self._tasks_done:
            return None
        try:
            return next(self.tasks)
        except StopIteration:
            self._tasks_done = True
            return None

    def _feed(self) -> None:
        for w in self.workers:
            while len(w["assigned"]) <= WORKER_PREFETCH:
                task = self._next_task()
                if task is None:
                    return
                try:
                    w["conn"].send(task)
                except OSError:  # the worker is gone; its death shows as end of file on its pipe
                    self._requeue.append(task)
                    return
                w["assigned"].append(task)

    def _put(self, event: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self.events.put(event, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _receive(self, w: dict[str, Any]) -> bool:
        """Read one message of ``w``; False if the pipe is closed."""
        try:
            msg = w["conn"].recv()
        except (EOFError, OSError):
            return False
        if msg[0] == "ready":
            w["ready"] = True
            self._failed_starts = 0
            return True
        if msg[0] != "images" and w["assigned"] and w["assigned"][0][0] == msg[1]:
            w["assigned"].pop(0)
        self._put(msg)
        return True

    def _replace(self, w: dict[str, Any]) -> None:
        try:
            code = w["proc"].wait(timeout=5)
        except subprocess.TimeoutExpired:
            w["proc"].kill()
            code = w["proc"].wait()
        if not w["ready"]:  # it died starting up: not its files' fault
            self._failed_starts += 1
            self._requeue.extend(w["assigned"])
            w["assigned"] = []
            if self._failed_starts >= 3:
                raise MelcnnError(f"scan worker processes exit while starting (exit status {code}); see stderr")
        if w["assigned"]:
            file_id, _ = w["assigned"].pop(0)
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            self._put(("error", file_id, WORKER_DIED, f"the worker process decoding this file died ({how})", None))
            self._requeue.extend(w["assigned"])
        w["conn"].close()
        self.workers.remove(w)
        if not self._stop.is_set():
            self.workers.append(self._start())
            self.replaced += 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._feed()
                if self._tasks_done and not self._requeue and not any(w["assigned"] for w in self.workers):
                    self._put(("end",))
                    return
                by_conn = {w["conn"]: w for w in self.workers}
                for r in wait(list(by_conn), timeout=0.5):
                    w = by_conn[r]
                    if not self._receive(w):  # end of file: the worker died
                        self._replace(w)
        except BaseException as exc:  # never die silently: the main thread would wait forever
            self._put(("fatal", f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for w in self.workers:
            with contextlib.suppress(OSError):
                w["conn"].send(None)
        for w in self.workers:
            try:
                w["proc"].wait(timeout=2)
            except subprocess.TimeoutExpired:
                w["proc"].kill()
                w["proc"].wait()
            w["conn"].close()


# ------------------------------------------------------------------------------------------ output
FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise MelcnnError(f"output {os.fspath(path)!r}: use a name ending in .parquet, .jsonl or .csv")
    return FORMATS[suffix]


def _parquet_schema():
    import pyarrow as pa

    chunk = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("fake_score", pa.float64())])
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "list<string>": pa.list_(pa.string())}
    return pa.schema([(n, pa.list_(chunk) if n == "chunks" else types[t]) for n, t in COLUMNS])


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """Rows of a JSON Lines file, the byte length of its good part, and whether a torn tail was found."""
    rows: list[dict[str, Any]] = []
    good = 0
    torn = False
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        nxt = len(data) if end < 0 else end + 1
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                torn = True
                if end < 0:  # the last line was cut by a kill: the good part ends before it
                    break
                pos = nxt
                continue
            if end < 0:
                torn = True  # complete JSON but no newline: rewrite it whole
                break
        good = nxt
        pos = nxt
    return rows, good, torn


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a scan output (Parquet, JSON Lines or CSV), in file order."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "jsonl":
        return _read_jsonl(path)[0]
    if fmt == "csv":
        import csv

        with open(path, newline="", encoding="utf-8") as fh:
            return [_from_csv(r) for r in csv.DictReader(fh)]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


_FLOAT_COLS = {n for n, t in COLUMNS if t == "float64"}
_INT_COLS = {n for n, t in COLUMNS if t == "int64"}
_LIST_COLS = {n for n, t in COLUMNS if t.startswith("list")}


def _to_csv(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (json.dumps(v) if k in _LIST_COLS else "" if v is None else repr(v) if isinstance(v, float) else v)
        for k, v in row.items()
    }


def _from_csv(rec: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if k in _LIST_COLS:
            out[k] = json.loads(v) if v else []
        elif v == "":
            out[k] = None
        elif k in _FLOAT_COLS:
            out[k] = float(v)
        elif k in _INT_COLS:
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Output:
    """A scan's output file, resumable and never left unreadable.

    JSON Lines: rows are appended (one ``write`` per row, ``fsync`` at least every
    :attr:`fsync_every_s`); a line cut by a kill is dropped on the next run. Parquet and CSV: rows go
    to a JSON Lines journal beside the output (``OUT.journal.jsonl``) and the table is written at the
    end to a temporary file and renamed over the output, so it is always the previous or the new
    complete table. Either way a rerun finds every finished row.
    """

    fsync_every_s = 1.0

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = output_format(self.path)
        if self.format == "parquet":
            import pyarrow  # noqa: F401  (fail now, not after hours of scanning)
        self.journal = self.path if self.format == "jsonl" else self.path.with_name(self.path.name + ".journal.jsonl")
        self.rows: dict[str, dict[str, Any]] = {}  # path -> latest row (previous runs and this one)
        self.dirty = False
        if self.format != "jsonl" and self.path.exists():
            for r in read_rows(self.path):
                self.rows[r["path"]] = r
        if self.journal.exists():
            rows, good, torn = _read_jsonl(self.journal)
            n_before = len(self.rows)
            for r in rows:
                if r.get("path") in self.rows:
                    self.dirty = True
                self.rows[r["path"]] = r
            if torn:
                with open(self.journal, "r+b") as fh:
                    fh.truncate(good)
                    fh.flush()
                    os.fsync(fh.fileno())
            if self.format != "jsonl":
                self.dirty = self.dirty or len(self.rows) != n_before or bool(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._last_sync = time.monotonic()

    def current(self, target: _Target, model: dict[str, str]) -> bool:
        row = self.rows.get(target.path)
        return (
            row is not None
            and row.get("error_code") not in RETRIED_CODES
            and row_key(row) == (target.path, target.size, target.mtime, model["name"], model["weights_sha256"])
        )

    def append(self, row: dict[str, Any]) -> None:
        if row["path"] in self.rows:
            self.dirty = True
        self.rows[row["path"]] = row
        os.write(self._fd, (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode())
        if self.format != "jsonl":
            self.dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_every_s:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Flush; write the table (Parquet/CSV) or drop superseded lines (JSON Lines) atomically."""
        if self._fd < 0:
            return
        self.sync()
        os.close(self._fd)
        self._fd = -1
        if not self.dirty:
            if self.format != "jsonl" and self.journal.exists() and self.path.exists():
                self.journal.unlink()
            return
        rows = list(self.rows.values())
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            if self.format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                records = [{k: r.get(k) for k in COLUMN_NAMES} for r in rows]
                table = pa.Table.from_pylist(records, schema=_parquet_schema())
                pq.write_table(table, tmp)
            elif self.format == "csv":
                import csv

                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    w = csv.DictWriter(fh, fieldnames=COLUMN_NAMES, extrasaction="ignore")
                    w.writeheader()
                    for r in rows:
                        w.writerow(_to_csv({k: r.get(k) for k in COLUMN_NAMES}))
            else:
                with open(tmp, "w", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if self.format != "jsonl":
            self.journal.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- scan
def _measurement_columns(m: dict[str, Any] | None) -> dict[str, Any]:
    if not m:
        return {}
    pitch, energy, spectral = m.get("pitch", {}), m.get("energy", {}), m.get("spectral", {})
    return {
        "mean_pitch_hz": pitch.get("mean_pitch_hz"),
        "pitch_stability": pitch.get("pitch_stability_score"),
        "voiced_ratio": pitch.get("voiced_ratio"),
        "rms_energy": energy.get("rms_energy"),
        "silence_ratio": energy.get("silence_ratio"),
        "spectral_centroid_hz": spectral.get("spectral_centroid"),
    }


def default_workers() -> int:
    """Decoding processes by default: half the usable cores (the other half runs the scattering), 1 to 4.

    On 2 cores one worker was faster than two: the second competes with the scattering's threads.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


class Scan:
    """A scan in progress: iterate it for the rows of this run. Create with :func:`scan`."""

    def __init__(
        self,
        paths: Iterable[str | os.PathLike] | str | os.PathLike,
        *,
        model: Any = "v2",
        out: str | os.PathLike | None = None,
        workers: int | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        measurements: bool = True,
        max_duration_s: float = MAX_DURATION_S,
        overlap_s: float | None = None,
        stdin: TextIO | None = None,
    ):
        from .chunking import validate_overlap
        from .detector import Detector, load_model

        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = list(paths)
        self.detector = model if isinstance(model, Detector) else load_model(model)
        if self.detector.device != "cpu":
            raise MelcnnError("melcnn scan runs on the CPU engine only (a GPU engine is not available yet)")
        cfg = self.detector.config
        self.overlap_s = (
            self.detector.default_overlap_s if overlap_s is None else validate_overlap(overlap_s, cfg.chunk_s)
        )
        self.model = {"name": self.detector.name, "weights_sha256": self.detector.checkpoint.sha256 or ""}
        self.workers = max(1, workers if workers is not None else default_workers())
        self.include, self.exclude = list(include), list(exclude)
        self.measurements = measurements
        self.max_duration_s = max_duration_s
        self.stdin = stdin
        self.stats = ScanStats()
        self.output = Output(out) if out is not None else None
        self._pool: _WorkerPool | None = None
        self.on_progress: Callable[[Scan, int], None] | None = None  # called after each row with the total so far
        self.total: int | None = None  # files to scan in this run, once discovery has finished

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (empty before the first row is asked for)."""
        return self._pool.pids() if self._pool else []

    def _targets(self) -> list[_Target]:
        own = set()
        if self.output is not None:
            own = {os.path.abspath(self.output.path), os.path.abspath(self.output.journal)}
        out = []
        for t in discover(self.paths, include=self.include, exclude=self.exclude, stats=self.stats, stdin=self.stdin):
            if t.path in own:
                continue
            if self.output is not None and self.output.current(t, self.model):
                self.stats.already_done += 1
                continue
            out.append(t)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            yield from self._run()
        finally:
            if self._pool is not None:
                self._pool.close()
            if self.output is not None:
                self.output.close()

    def _emit(self, row: dict[str, Any]) -> dict[str, Any]:
        self.stats.scanned += 1
        if row["error_code"]:
            self.stats.errors[row["error_code"]] += 1
        if row["duration_s"]:
            self.stats.audio_s += row["duration_s"]
        if self.output is not None:
            self.output.append(row)
        self._progress()
        return row

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self, self.stats.scanned + self.stats.non_media)

    def _run(self) -> Iterator[dict[str, Any]]:
        targets = self._targets()
        self.total = len(targets)
        self._progress()
        by_id: dict[int, _Target] = {}
        tasks = []
        for i, t in enumerate(targets):
            if t.error is not None:
                yield self._emit(_error_row(t, self.model, *t.error))
            else:
                by_id[i] = t
                tasks.append((i, t.path))
        if not tasks:
            return
        cfg = self.detector.config
        settings = {
            "features": cfg.to_dict(),
            "overlap_s": self.overlap_s,
            "max_duration_s": self.max_duration_s,
            "measurements": self.measurements,
        }
        engine = _Engine(self.detector)
        threshold = float(self.detector.threshold)
        self._pool = pool = _WorkerPool(min(self.workers, len(tasks)), settings, iter(tasks))
        scores: dict[int, list[np.ndarray]] = {}  # file id -> chunk scores so far
        metas: dict[int, tuple[dict[str, Any], float]] = {}
        batch: list[tuple[int, np.ndarray]] = []  # images waiting for the engine: (file id, images)
        ended = False

        def finish(fid: int) -> dict[str, Any] | None:
            meta, t0 = metas[fid]
            s = np.concatenate(scores.get(fid, [])) if scores.get(fid) else np.zeros(0)
            if len(s) < len(meta["starts"]):
                return None
            del metas[fid]
            scores.pop(fid, None)
            t = by_id.pop(fid)
            fake = float(s.mean())
            chunks = [
                {"start_s": round(a, 3), "end_s": round(b, 3), "fake_score": round(float(p), 4)}
                for a, b, p in zip(meta["starts"], meta["ends"], s, strict=True)
            ]
            return _row(
                t.path,
                t.size,
                t.mtime,
                self.model,
                format=meta["format"],
                duration_s=meta["duration_s"],
                analyzed_s=meta["analyzed_s"],
                prediction="FAKE" if fake >= threshold else "REAL",
                fake_score=round(fake, 4),
                threshold=threshold,
                n_chunks=len(chunks),
                chunks=chunks,
                warnings=meta["warnings"],
                processing_time_s=round(time.time() - t0, 3),
                **{k: _finite(v) for k, v in _measurement_columns(meta["measurements"]).items()},
            )

        def flush() -> Iterator[dict[str, Any]]:
            if not batch:
                return
            images = np.concatenate([b[1] for b in batch])
            t = time.perf_counter()
            out = engine.scores(images)
            self.stats.engine_s += time.perf_counter() - t
            self.stats.engine_chunks += len(images)
            self.stats.engine_calls += 1
            pos = 0
            fids = []
            for fid, imgs in batch:
                scores.setdefault(fid, []).append(out[pos : pos + len(imgs)])
                pos += len(imgs)
                fids.append(fid)
            batch.clear()
            for fid in dict.fromkeys(fids):
                if fid in metas:
                    row = finish(fid)
                    if row is not None:
                        yield self._emit(row)

        while not ended:
            t = time.perf_counter()
            try:  # with images waiting, take what has arrived and feed the engine rather than wait
                ev = pool.events.get_nowait() if batch else pool.events.get(timeout=0.5)
            except queue.Empty:
                self.stats.wait_s += time.perf_counter() - t
                yield from flush()
                continue
            self.stats.wait_s += time.perf_counter() - t
            kind = ev[0]
            if kind == "images":
                batch.append((ev[1], ev[2]))
                if sum(len(b[1]) for b in batch) >= BATCH_IMAGES:
                    yield from flush()
            elif kind == "done":
                metas[ev[1]] = (ev[2], ev[3])
                if not any(b[0] == ev[1] for b in batch):
                    row = finish(ev[1])
                    if row is not None:
                        yield self._emit(row)
            elif kind in ("error", "skip"):
                fid = ev[1]
                batch[:] = [b for b in batch if b[0] != fid]
                scores.pop(fid, None)
                target = by_id.pop(fid)
                if kind == "skip":
                    self.stats.non_media += 1
                    self._progress()
                    continue
                t0 = ev[4]
                elapsed = round(time.time() - t0, 3) if t0 else None
                yield self._emit(_error_row(target, self.model, ev[2], ev[3], processing_time_s=elapsed))
            elif kind == "end":  # every file answered: all their images came before
                ended = True
                yield from flush()
            elif kind == "fatal":
                raise MelcnnError(f"the scan's worker management failed: {ev[1]}")
        self.stats.workers_replaced = pool.replaced


def scan(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    *,
    model: Any = "v2",
    out: str | os.PathLike | None = None,
    workers: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    measurements: bool = True,
    max_duration_s: float = MAX_DURATION_S,
    overlap_s: float | None = None,
) -> Scan:
    """Scan files, folders (recursively) and globs for media; iterate the result for one row per file.

    Parameters
    ----------
    paths : path, glob, or a list of them
        ``"-"`` reads a list of paths (one a line) from stdin.
    model : str or Detector
        ``"v2"``, ``"v3"``, a registry name, a checkpoint directory, or a loaded :class:`Detector`.
    out : path, optional
        ``.parquet``, ``.jsonl`` or ``.csv``: rows are written there too, and files that already have
        a current row there (same path, size, mtime, model) are skipped (resume).
    workers : int, optional
        Decoding processes (default: half the cores, 1 to 4; see :func:`default_workers`).
    include, exclude : glob patterns
        Matched against each found file's name and full path.
    measurements : bool
        Compute pitch, energy and spectral measurements (False: scores only, faster).
    max_duration_s : float
        Longer files get the error code ``too_long``.

    Returns
    -------
    Scan
        Iterable of row dicts (the columns of :data:`COLUMNS`), in completion order; ``.stats``
        holds the counts (non-media files skipped, rows already in ``out``, errors by code).
    """
    return Scan(
        paths,
        model=model,
        out=out,
        workers=workers,
        include=include,
        exclude=exclude,
        measurements=measurements,
        max_duration_s=max_duration_s,
        overlap_s=overlap_s,
    )


# -------------------------------------------------------------------------------------- terminal
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
        return (
            f"{head}  {st.audio_s / 3600:.2f} h audio  {rate:.2f} files/s  ETA {eta}  errors {errors}"
        )

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


def add_arguments(parser: Any, default_model: str) -> None:
    """The options of ``melcnn scan`` (registered by :mod:`melcnn.cli`)."""
    add = parser.add_argument
    add("paths", nargs="+", metavar="PATH", help="files, folders (recursive), globs, or - (paths on stdin)")
    add(
        "--out",
        default="scan.parquet",
        metavar="FILE",
        help="results: .parquet (default scan.parquet), .jsonl or .csv; a rerun skips the files already there",
    )
    add("--model", default=default_model, help=f"v2, v3 or a checkpoint directory (default {default_model})")
    add("--workers", type=int, default=None, metavar="N", help="decoding processes (default: half the cores, 1-4)")
    add("--include", action="append", default=[], metavar="GLOB", help="only matching files (repeatable; default: all)")
    add("--exclude", action="append", default=[], metavar="GLOB", help="skip matching files (repeatable; default none)")
    add("--no-measurements", action="store_true", help="skip pitch, energy and spectral measurements (faster)")
    add("--report", default=None, metavar="HTML", help="also write a self-contained HTML report (default: none)")
    add("--max-duration", type=float, default=None, metavar="S", help="longest file in seconds (default 7200)")
    add("--overlap", type=float, default=None, metavar="S", help="chunk overlap in seconds (default: the model's)")
    add("--top", type=int, default=10, metavar="N", help="most suspicious files in the summary (default 10)")


def _say(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def run_cli(args: Any) -> int:
    """``melcnn scan``: returns the exit status (0 when the scan ran, whatever the files' verdicts)."""
    from .detector import load_model

    try:
        output_format(args.out)
    except MelcnnError as exc:
        _say(f"melcnn scan: {exc}", err=True)
        return 2
    try:
        detector = load_model(args.model)
    except MelcnnError as exc:
        _say(f"melcnn scan: cannot load model {args.model!r}: {exc}", err=True)
        return 4
    if args.workers is not None and args.workers < 1:
        _say("melcnn scan: --workers must be at least 1", err=True)
        return 2
    s = Scan(
        args.paths,
        model=detector,
        out=args.out,
        workers=args.workers,
        include=args.include,
        exclude=args.exclude,
        measurements=not args.no_measurements,
        max_duration_s=MAX_DURATION_S if args.max_duration is None else args.max_duration,
        overlap_s=args.overlap,
    )
    s.on_progress = progress = Progress()
    t0 = time.monotonic()
    interrupted = False
    try:
        for _ in s:
            pass
    except KeyboardInterrupt:
        interrupted = True
    progress(s, s.stats.scanned + s.stats.non_media, final=True)
    elapsed = time.monotonic() - t0
    assert s.output is not None
    rows = list(s.output.rows.values())
    _say(summary(s, rows, top=args.top, elapsed_s=elapsed))
    _say(f"results: {s.output.path}")
    if args.report:
        from .scan_report import write_report

        write_report(rows, args.report, summary=summary(s, rows, top=args.top, elapsed_s=elapsed))
        _say(f"report: {args.report}")
    if interrupted:
        _say("melcnn scan: interrupted; run the same command again to continue", err=True)
        return 130
    return 0
