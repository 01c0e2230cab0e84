"""The decoding worker processes of a scan: what a worker does with a file (decode, chunk, mel images,
measurements, all while it decodes: :func:`melcnn.streaming.analyze_stream`, the path of
``Detector.analyze``), and the pool that feeds them, collects their messages, replaces a worker that
dies and stops one that hangs on a file (``file_timeout_s``, the rule of :class:`_FileClock`). The Ray
engine's actors drive one worker each, file by file, under the same rule (:class:`_FileWorker`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..errors import MelcnnError
from .discovery import looks_like_media
from .engine import _Engine
from .rows import INTERNAL_ERROR, TIMEOUT, WORKER_DIED

#: images a worker sends per message (bounds the memory of a long file in flight)
WORKER_SEND_IMAGES = 16
#: default of ``file_timeout_s`` (``--file-timeout``): a worker that sends nothing on its file for this
#: many seconds, or whose file takes this much longer than the audio decoded from it, is stopped. A
#: healthy worker sends a batch of images every few seconds on a loaded machine and decodes many
#: times faster than real time; time spent waiting for the engine (the main process) is not counted.
FILE_TIMEOUT_S = 120.0
#: files queued at each worker beyond the one it decodes (keeps it busy while the main thread works)
WORKER_PREFETCH = 1

_HEAD_BYTES = 512  # read to tell non-media from damaged media (MPEG-TS needs 189)


def _worker_main(conn: Any, settings: dict[str, Any]) -> None:
    """Worker process: decode files sent on ``conn`` and send back images, then a summary."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    from .._blas import single_threaded_blas
    from ..config import FeatureConfig

    cfg = FeatureConfig(**settings["features"])
    conn.send(("ready",))
    with single_threaded_blas():
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            file_id, path = task
            result = _file_outcome(file_id, path, cfg, settings, conn.send, time.time())
            try:
                conn.send(result)
            except (EOFError, OSError):  # the main process is gone
                return


def _file_outcome(file_id: int, path: str, cfg: Any, settings: dict[str, Any], send: Callable, t0: float) -> tuple:
    """:func:`_process_file`'s ``("done", ...)`` message, or what a failure becomes: ``("skip", id, message,
    t0)`` for a file that is not media by content, else ``("error", id, code, message, t0)``."""
    from ..errors import MediaProcessingError, NotAudioError

    try:
        return _process_file(file_id, path, cfg, settings, send, t0)
    except MediaProcessingError as exc:
        head = b""
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
        if isinstance(exc, NotAudioError) and not looks_like_media(head):
            return ("skip", file_id, str(exc), t0)
        return ("error", file_id, exc.code, str(exc), t0)
    except MemoryError:
        return ("error", file_id, INTERNAL_ERROR, "out of memory", t0)
    except Exception as exc:  # a bug or a library failure: a row, not a dead scan
        return ("error", file_id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", t0)


def _process_file(file_id: int, path: str, cfg: Any, settings: dict[str, Any], send: Callable, t0: float) -> tuple:
    """Decode ``path`` and send its chunks' images as they come (in parts); return the "done" message.

    If the decoding starts over (libsndfile failed part-way, FFmpeg decodes the file again), a
    ``("restart", id)`` message tells the main process to forget the images sent so far.
    """
    from ..streaming import analyze_stream

    def images(chunks: Any) -> None:
        send(("images", file_id, _Engine.images(chunks, cfg)))

    stream = analyze_stream(
        path,
        cfg=cfg,
        overlap_s=settings["overlap_s"],
        max_duration_s=settings["max_duration_s"],
        on_batch=images,
        on_restart=lambda: send(("restart", file_id)),
        measurements=settings["measurements"],
        batch_chunks=WORKER_SEND_IMAGES,
    )
    meta = {
        "format": stream.audio.format,
        "duration_s": round(stream.audio.duration_s, 3),
        "analyzed_s": round(stream.analyzed_s, 3),
        "starts": stream.starts_s.tolist(),
        "ends": stream.ends_s.tolist(),
        "warnings": stream.warnings,
        "measurements": stream.measurements,
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


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding melcnn/
_WORKER_COMMAND = "import sys; from melcnn.scanning.workers import _worker_child; _worker_child(int(sys.argv[1]))"
#: a worker computes on one thread (NumPy's BLAS held to one, no scattering), so its BLAS and OpenMP
#: libraries start no thread pools. Measured on 2 cores: a worker's imports 650 -> 530 CPU-ms, its
#: start-up and first file 40-80 ms less (medians); idle pool threads only compete with the engine.
_WORKER_THREAD_ENV = dict.fromkeys(
    ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"), "1"
)


def _start_worker(settings: dict[str, Any]) -> tuple[subprocess.Popen, Connection]:
    """Start a worker process (:func:`_worker_main`) and send it ``settings``; it says ``("ready",)`` when it
    can take files. A fresh interpreter, not multiprocessing's spawn, which re-runs the caller's __main__
    module and so needs an ``if __name__ == "__main__"`` guard in every script that calls scan()."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, **_WORKER_THREAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER_COMMAND, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        env=env,
    )
    theirs.close()
    conn = Connection(ours.detach())
    conn.send(settings)
    return proc, conn


def _reap(proc: subprocess.Popen) -> int:
    """The exit status of a worker whose pipe has ended (killed if it lingers)."""
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _died_message(code: int) -> str:
    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    return f"the worker process decoding this file died ({how})"


def _failed_starts_error(code: int) -> MelcnnError:
    return MelcnnError(f"scan worker processes exit while starting (exit status {code}); see stderr")


def _step_s(settings: dict[str, Any]) -> float:
    """Audio seconds one more chunk stands for (chunk less overlap)."""
    sr = settings["features"]["sample_rate"]
    return (int(settings["features"]["chunk_s"] * sr) - int(settings["overlap_s"] * sr)) / sr


class _FileClock:
    """A worker's time on one file, as the timeout rule counts it (see :class:`_WorkerPool`).

    ``waited_s`` arguments are the caller's running total of time the worker is not to blame for (its
    messages waited for the engine); only its increase since the file started, or since the last
    progress, is subtracted.
    """

    def __init__(self, file_id: int, waited_s: float, step_s: float):
        now = time.monotonic()
        self.file_id = file_id
        self.step_s = step_s
        self.started = self.progressed = now
        self.waited_at_start = self.waited_at_progress = waited_s
        self.audio_s = 0.0  # audio the images sent on the file stand for

    def progress(self, msg: tuple, waited_s: float) -> None:
        """A message of the worker on this file: ``images`` add audio, ``restart`` starts it over."""
        self.progressed, self.waited_at_progress = time.monotonic(), waited_s
        if msg[0] == "images":
            self.audio_s += len(msg[2]) * self.step_s
        elif msg[0] == "restart":
            self.audio_s = 0.0

    def _counted(self, waited_s: float) -> tuple[float, float]:
        """Seconds without progress and seconds on the file, less the time waited."""
        now = time.monotonic()
        silent_s = now - self.progressed - (waited_s - self.waited_at_progress)
        spent_s = now - self.started - (waited_s - self.waited_at_start)
        return silent_s, spent_s

    def overdue(self, limit: float, waited_s: float) -> str | None:
        """The ``timeout`` error message when the file is past ``limit`` (``--file-timeout``), else None."""
        silent_s, spent_s = self._counted(waited_s)
        if silent_s > limit:
            why = f"it made no progress for {silent_s:.0f} s"
        elif spent_s > limit + self.audio_s:
            why = f"it took {spent_s:.0f} s for {self.audio_s:.0f} s of audio (slower than real time)"
        else:
            return None
        return f"decoding this file was stopped: {why}; the limit is --file-timeout {limit:g} s"

    def left_s(self, limit: float, waited_s: float) -> float:
        """Seconds until :meth:`overdue` can next say so, if nothing happens meanwhile."""
        silent_s, spent_s = self._counted(waited_s)
        return max(0.0, min(limit - silent_s, limit + self.audio_s - spent_s))


class _WorkerPool:
    """Worker processes fed by a collector thread; their messages come out of :attr:`events`.

    Events: ``("images", id, array)``, ``("restart", id)`` (forget the file's images so far),
    ``("done", id, meta, t0)``, ``("error", id, code, message, t0)``, ``("skip", id, message, t0)``, and
    ``("end",)`` when every task is answered. A worker that dies (killed, crashed) yields an ``error``
    event with code ``worker_died`` for the file it was decoding, and is replaced; files queued behind
    it go to other workers. A worker that hangs on a file is killed and replaced, and the file gets
    ``timeout``: when it sent nothing on that file for ``file_timeout_s`` seconds, or its time on the
    file exceeds ``file_timeout_s`` plus the duration of the audio it sent (slower than real time).
    The time the collector waits for room in :attr:`events` (the main process is the bottleneck, so
    the workers wait for it) is not counted. ``file_timeout_s=None`` turns this off.
    """

    def __init__(
        self,
        n: int,
        settings: dict[str, Any],
        tasks: Iterator[tuple[int, str]],
        queue_size: int = 16,
        file_timeout_s: float | None = FILE_TIMEOUT_S,
    ):
        self.settings = settings
        self.tasks = tasks
        self.file_timeout_s = file_timeout_s
        self._step_s = _step_s(settings)
        self.events: queue.Queue = queue.Queue(maxsize=queue_size)
        self.workers: list[dict[str, Any]] = []
        self.replaced = 0
        self.timed_out = 0
        self._waited_s = 0.0  # time the collector spent waiting for room in events
        self._stop = threading.Event()
        self._requeue: list[tuple[int, str]] = []
        self._tasks_done = False
        self._failed_starts = 0
        for _ in range(max(1, n)):
            self.workers.append(self._start())
        self.thread = threading.Thread(target=self._run, name="melcnn-scan-collector", daemon=True)
        self.thread.start()

    def _start(self) -> dict[str, Any]:
        proc, conn = _start_worker(self.settings)
        # "clock": the _FileClock of the file the worker is on, once it is ready; "timed_out": (file id, message)
        return {"proc": proc, "conn": conn, "assigned": [], "ready": False, "clock": None, "timed_out": None}

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
                self._start_clock(w)

    def _put(self, event: tuple) -> bool:
        t = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self.events.put(event, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            self._waited_s += time.monotonic() - t

    def _start_clock(self, w: dict[str, Any]) -> None:
        """Start timing the file at the head of ``w``'s queue, if not yet (and ``w`` is ready)."""
        if w["ready"] and w["assigned"] and (w["clock"] is None or w["clock"].file_id != w["assigned"][0][0]):
            w["clock"] = _FileClock(w["assigned"][0][0], self._waited_s, self._step_s)

    def _receive(self, w: dict[str, Any]) -> bool:
        """Read one message of ``w``; False if the pipe is closed."""
        try:
            msg = w["conn"].recv()
        except (EOFError, OSError):
            return False
        if msg[0] == "ready":
            w["ready"] = True
            self._failed_starts = 0
            self._start_clock(w)
            return True
        clock = w["clock"]
        if clock is not None and clock.file_id == msg[1]:  # progress on the file being timed
            clock.progress(msg, self._waited_s)
        if msg[0] in ("done", "error", "skip") and w["assigned"] and w["assigned"][0][0] == msg[1]:
            w["assigned"].pop(0)
            w["clock"] = None
            self._start_clock(w)
        self._put(msg)
        return True

    def _check_timeouts(self) -> None:
        """Kill the workers that hang on a file (see the class docstring); :meth:`_replace` reports it."""
        limit = self.file_timeout_s
        if limit is None:
            return
        for w in self.workers:
            clock = w["clock"]
            if clock is None or w["timed_out"] is not None:
                continue
            message = clock.overdue(limit, self._waited_s)
            if message is None:
                continue
            w["timed_out"] = (clock.file_id, message)
            with contextlib.suppress(OSError):
                w["proc"].kill()  # its pipe ends: _run replaces it

    def _replace(self, w: dict[str, Any]) -> None:
        code = _reap(w["proc"])
        if not w["ready"]:  # it died starting up: not its files' fault
            self._failed_starts += 1
            self._requeue.extend(w["assigned"])
            w["assigned"] = []
            if self._failed_starts >= 3:
                raise _failed_starts_error(code)
        if w["assigned"]:
            file_id, _ = w["assigned"].pop(0)
            if w["timed_out"] is not None and w["timed_out"][0] == file_id:
                self.timed_out += 1
                self._put(("error", file_id, TIMEOUT, w["timed_out"][1], None))
            else:
                self._put(("error", file_id, WORKER_DIED, _died_message(code), None))
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
                self._check_timeouts()
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


class _FileWorker:
    """One worker process driven in the caller's thread, file by file: the Ray engine's actors decode in one.

    :meth:`run` hands the worker a file and passes its ``images`` and ``restart`` messages to a callback
    (which scores them; its time is not counted against the file) until the outcome: ``done``, ``skip``
    or ``error`` as :func:`_file_outcome` makes them. The rule of :class:`_WorkerPool` bounds the file: a
    worker past ``file_timeout_s`` is killed and the outcome is an ``error`` with code ``timeout``; a
    worker that dies gives ``worker_died``. Either way a fresh worker is started for the next file. The
    wait for the next message is bounded by the deadline, so a hang costs nothing until it expires.
    """

    def __init__(self, settings: dict[str, Any], file_timeout_s: float | None = FILE_TIMEOUT_S):
        self.settings = settings
        self.file_timeout_s = file_timeout_s
        self.step_s = _step_s(settings)
        self.replaced = 0
        self._failed_starts = 0
        self._start()

    def _start(self) -> None:
        self.proc, self.conn = _start_worker(self.settings)
        self.ready = False

    def _replace(self, kill: bool) -> int:
        """Stop (``kill``) or reap the worker and start another; its exit status."""
        if kill:
            with contextlib.suppress(OSError):
                self.proc.kill()
        code = _reap(self.proc)
        self.conn.close()
        self._start()
        self.replaced += 1
        return code

    def _send(self, task: tuple[int, str]) -> bool:
        try:
            self.conn.send(task)
            return True
        except OSError:
            return False

    def run(self, file_id: int, path: str, on_message: Callable[[tuple], None]) -> tuple:
        """Decode ``path`` in the worker; its outcome, with ``None`` as start time for ``timeout`` and
        ``worker_died`` errors (as :class:`_WorkerPool` reports them)."""
        limit = self.file_timeout_s
        waited_s = 0.0  # time in on_message
        clock = None
        if not self._send((file_id, path)):  # the idle worker is gone: not this file's fault
            self._replace(kill=False)
            self._send((file_id, path))
        while True:
            if self.ready and clock is None:
                clock = _FileClock(file_id, waited_s, self.step_s)
            wait_s = None if clock is None or limit is None else clock.left_s(limit, waited_s)
            if not self.conn.poll(wait_s):
                assert clock is not None and limit is not None
                message = clock.overdue(limit, waited_s)
                if message is not None:
                    self._replace(kill=True)
                    return ("error", file_id, TIMEOUT, message, None)
                continue
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):  # it died
                code = self._replace(kill=False)
                if clock is None:  # while starting: not the file's fault, try again
                    self._failed_starts += 1
                    if self._failed_starts >= 3:
                        raise _failed_starts_error(code) from None
                    self._send((file_id, path))  # a worker that dies again shows as end of file
                    continue
                return ("error", file_id, WORKER_DIED, _died_message(code), None)
            if msg[0] == "ready":
                self.ready = True
                self._failed_starts = 0
                continue
            if clock is None or msg[1] != file_id:
                continue
            if msg[0] in ("done", "error", "skip"):
                return msg
            clock.progress(msg, waited_s)
            t = time.monotonic()
            on_message(msg)
            waited_s += time.monotonic() - t

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()


def default_workers() -> int:
    """Decoding processes by default: half the usable cores (the other half runs the scattering), 1 to 4.

    On 2 cores one worker was faster than two: the second competes with the scattering's threads.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))
