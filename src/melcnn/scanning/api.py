"""The Python API of scanning: :class:`Scan` (discovery, workers, engine and output run together) and
:func:`scan`, the function exported as :func:`melcnn.scan`.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

import numpy as np

from ..config import MAX_DURATION_S
from ..errors import MelcnnError
from .discovery import _Target, discover
from .engine import _Engine
from .output import Output
from .rows import _error_row, _scored_row
from .stats import ScanStats
from .workers import FILE_TIMEOUT_S, WORKER_SEND_IMAGES, _WorkerPool, default_workers


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: the scan engines: worker processes on this machine, or Ray Data (:mod:`.ray_engine`)
ENGINES = ("local", "ray")


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
        engine: str = "local",
        ray_address: str | None = None,
        device: str | None = None,
        file_timeout_s: float | None = FILE_TIMEOUT_S,
    ):
        from ..detector import Detector, load_model

        if engine not in ENGINES:
            raise MelcnnError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if ray_address is not None and engine != "ray":
            raise MelcnnError("ray_address (--ray-address) joins a Ray cluster: it needs engine='ray' (--engine ray)")
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = list(paths)
        if isinstance(model, Detector):
            self.detector = model
            if device is not None and device != model.device:
                self.detector = Detector(model.checkpoint, device=device, entry=model.entry)
        else:
            self.detector = load_model(model, device=device or "cpu")
        self.device = self.detector.device
        self.overlap_s = (
            self.detector.default_overlap_s if overlap_s is None else self.detector.spec.validate_overlap(overlap_s)
        )
        self.model = {"name": self.detector.name, "weights_sha256": self.detector.checkpoint.sha256 or ""}
        self.engine = engine
        self.ray_address = ray_address
        self.ray_workers = workers  # engine="ray": actors (None: one per CPU of the Ray cluster)
        if workers is None:  # with the scattering on a GPU, the cores are all for decoding
            workers = _usable_cores() if self.device == "cuda" else default_workers()
        self.workers = max(1, workers)
        self.include, self.exclude = list(include), list(exclude)
        self.measurements = measurements
        self.max_duration_s = max_duration_s
        if file_timeout_s is not None and not file_timeout_s > 0:
            raise MelcnnError(f"file_timeout_s must be a positive number of seconds (or None), not {file_timeout_s}")
        self.file_timeout_s = file_timeout_s
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
        if self.engine == "ray":
            from .ray_engine import run_on_ray

            yield from run_on_ray(self)
            return
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
        # room in the event queue for two engine batches of worker messages (the default 16 on the CPU)
        events = max(16, 2 * engine.batch_images // WORKER_SEND_IMAGES)
        self._pool = pool = _WorkerPool(
            min(self.workers, len(tasks)), settings, iter(tasks), queue_size=events, file_timeout_s=self.file_timeout_s
        )
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
            return _scored_row(by_id.pop(fid), self.model, meta, s, threshold, t0)

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
            t_wait = time.perf_counter()
            try:  # with images waiting, take what has arrived and feed the engine rather than wait
                ev = pool.events.get_nowait() if batch else pool.events.get(timeout=0.5)
            except queue.Empty:
                self.stats.wait_s += time.perf_counter() - t_wait
                yield from flush()
                continue
            self.stats.wait_s += time.perf_counter() - t_wait
            kind = ev[0]
            if kind == "images":
                batch.append((ev[1], ev[2]))
                if sum(len(b[1]) for b in batch) >= engine.batch_images:
                    yield from flush()
            elif kind == "restart":  # the worker decodes the file again from the start
                batch[:] = [b for b in batch if b[0] != ev[1]]
                scores.pop(ev[1], None)
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
    engine: str = "local",
    ray_address: str | None = None,
    device: str | None = None,
    file_timeout_s: float | None = FILE_TIMEOUT_S,
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
        Decoding processes (default: half the cores, 1 to 4, see :func:`default_workers`; all cores
        with ``device="cuda"``).
    include, exclude : glob patterns
        Matched against each found file's name and full path.
    measurements : bool
        Compute pitch, energy and spectral measurements (False: scores only, faster).
    max_duration_s : float
        Longer files get the error code ``too_long``.
    engine : str
        ``"local"`` (worker processes on this machine) or ``"ray"`` (Ray Data actors, each with the
        detector loaded once; needs ``melcnn[ray]``; ``workers`` is then the number of actors, default
        one per CPU of the Ray cluster). The rows are the same.
    ray_address : str, optional
        With ``engine="ray"``: the Ray cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
        None starts a local Ray for this scan and shuts it down at the end (a session this process
        already opened with ``ray.init()`` is used instead, and left running). The files' paths must
        be readable by every node (a shared filesystem mounted at the same place). With
        ``device="cuda"`` each actor takes one GPU of the cluster.
    device : {"cpu", "cuda", "cpu-torch"}, optional
        Where the scattering runs (default: the model's device, "cpu" for a name): "cuda" batches
        256 images per GPU call and decodes on all cores (``workers`` default); see
        :func:`melcnn.load_model`.
    overlap_s : float, optional
        Chunk overlap in seconds (default: the model's).
    file_timeout_s : float or None
        A worker that sends nothing on its file for this many seconds, or takes this much longer than
        the audio it decoded (slower than real time), is stopped and replaced, and the file gets the
        error code ``timeout`` (default :data:`~melcnn.scanning.workers.FILE_TIMEOUT_S`, 120 s; the
        time workers wait for the scattering engine does not count). None: no limit. With
        ``engine="ray"`` the same holds for each actor's decoding process.

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
        engine=engine,
        ray_address=ray_address,
        device=device,
        file_timeout_s=file_timeout_s,
    )
