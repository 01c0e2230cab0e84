"""``--engine ray``: the same scan on Ray Data, on a local Ray or a cluster joined with ``--ray-address``.

Discovery, resume and the output stay on the driver (:class:`~melcnn.scanning.api.Scan`); the files to
scan become a Ray dataset that a pool of actors (:class:`_ScanActor`, the detector loaded once in each)
turns into rows, written by the driver as they arrive::

    ray.data.from_items(files) -> map_batches(_ScanActor, actor pool) -> iter_rows (driver) -> Output

Each actor has one decoding process of its own, the local engine's worker (:func:`.workers._worker_main`,
driven file by file by :class:`.workers._FileWorker`): it decodes a file and sends its chunks' images,
which the actor scores with the same batched path (:class:`.engine._Engine`) as they come, then builds
the row with :func:`.rows._scored_row`, so both engines give the same rows.

Why a process: ``file_timeout_s`` (``--file-timeout``) must bound a file whose decoding hangs, and such a
hang is usually in C (FFmpeg searching a damaged stream) where nothing in the same process can stop it.
A thread with a deadline could give up waiting but not stop the decoder, which would keep a core and
the file for the actor's life. Ray itself offers no per-task deadline: Ray Data gives the driver no
handle on its actors' tasks, ``ray.cancel`` does not interrupt a running task of a regular actor, and
killing the actor would lose the row (``worker_died`` instead of ``timeout``) and reload the detector.
Killing the decoding process ends the hang at once; the actor answers with the ``timeout`` row (the
local engine's rule and message, :class:`.workers._FileClock`), starts a fresh process and goes on.
A decoder that crashes gives ``worker_died`` the same way, without losing the actor. The normal path
pays what the local engine pays: one process started with the actor (while it loads the detector)
and the images pickled through a socket (a few tenths of a millisecond per 256 KB image, against
27-43 ms of scattering); the actor waits on the socket with the deadline as its timeout, so nothing
polls. Measured file by file on the busy 2-core VM (12 files of 30 s, alternating rounds), decoding
in the process cost about 10 ms of CPU more per file than decoding in the actor (2-5 % of the file's
total, less than the spread between rounds), and whole Ray scans of 24 such files did not differ
beyond their noise. Decoding the next chunks overlaps the scoring of the last, so an actor may use a
little more than its one CPU at times.

The actors open the files by path: on a multi-node cluster the paths must name the same files on every
node (a shared filesystem mounted at the same place); the weights travel through Ray's object store,
so the nodes need melcnn (the same version) and ``melcnn[ray]`` installed, nothing else. Ray is
imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MelcnnError
from .rows import WORKER_DIED, _error_row, _scored_row, _Target
from .workers import _PACKAGE_ROOT, FILE_TIMEOUT_S, _FileWorker

if TYPE_CHECKING:
    from .api import Scan

#: object store of a local Ray started for a scan: it holds the weights and small row records only
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
#: at most this many dataset blocks (one file per block below it: the actors share the work file by file)
MAX_BLOCKS = 10_000
#: loggers quietened while a scan runs on Ray (melcnn shows its own progress)
_QUIET_LOGGERS = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra: pandas, pyarrow)
    except ImportError as exc:
        raise MelcnnError(
            f"--engine ray needs Ray Data ({exc}): pip install 'melcnn[ray]'"
            " (the same version on every node of the cluster)"
        ) from None
    return ray


def require_ray() -> None:
    """Raise :class:`MelcnnError` saying what to install when Ray Data cannot be imported."""
    _import_ray()


def _connect(ray: Any, address: str | None, workers: int | None) -> bool:
    """Join the cluster at ``address`` or start a local Ray; True when this call started Ray."""
    if ray.is_initialized():  # the caller's own Ray session: use it, leave it running
        return False
    if address is not None:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ... depending on the address
            raise MelcnnError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    # Ray's processes, the actors among them, inherit the environment of ray.init: this melcnn on their
    # path as for the local engine's workers (a runtime_env would cost each actor a fresh worker process)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, saved) if p)
    try:
        ray.init(
            address="local",
            num_cpus=workers or cores,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            logging_level=logging.WARNING,
        )
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    return True


class _ScanActor:
    """A Ray Data actor: the detector loaded once, then batches of files turned into row records.

    A batch holds ``id``, ``path``, ``size`` and ``mtime`` columns; each file gives one record: ``kind``
    (``row`` or ``skip``: not media by content), ``row`` (the row as JSON text), the engine's time,
    image and call counts, and ``replaced`` (decoding processes the file cost: 1 after a timeout or a
    crash). Failures become error rows, never exceptions. The files decode in the actor's own worker
    process (:class:`.workers._FileWorker`), which ``file_timeout_s`` bounds.
    """

    def __init__(
        self,
        checkpoint: Any,
        settings: dict[str, Any],
        model: dict[str, str],
        device: str = "cpu",
        file_timeout_s: float | None = FILE_TIMEOUT_S,
    ):
        from ..detector import Detector
        from .engine import _Engine

        self.worker = _FileWorker(settings, file_timeout_s)  # starts while the detector loads
        self.detector = Detector(checkpoint, device=device)
        self.engine = _Engine(self.detector)
        self.model = model
        self.threshold = float(self.detector.threshold)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {k: [] for k in ("id", "kind", "row", "engine_s", "images", "calls", "replaced")}
        for fid, path, size, mtime in zip(batch["id"], batch["path"], batch["size"], batch["mtime"], strict=True):
            replaced = self.worker.replaced
            kind, row, engine = self._scan(int(fid), _Target(str(path), int(size), float(mtime)))
            out["id"].append(int(fid))
            out["kind"].append(kind)
            out["row"].append(json.dumps(row))
            for k, v in zip(("engine_s", "images", "calls"), engine, strict=True):
                out[k].append(v)
            out["replaced"].append(self.worker.replaced - replaced)
        return {
            "id": np.asarray(out["id"], dtype=np.int64),
            "kind": np.asarray(out["kind"], dtype=object),
            "row": np.asarray(out["row"], dtype=object),
            "engine_s": np.asarray(out["engine_s"], dtype=np.float64),
            "images": np.asarray(out["images"], dtype=np.int64),
            "calls": np.asarray(out["calls"], dtype=np.int64),
            "replaced": np.asarray(out["replaced"], dtype=np.int64),
        }

    def _scan(self, fid: int, target: _Target) -> tuple[str, dict[str, Any] | None, tuple[float, int, int]]:
        """One file, as the local engine does it: decoded and imaged by a worker process, scored here, a row."""
        t0 = time.time()
        scores: list[np.ndarray] = []
        engine_s = 0.0

        def score(message: tuple) -> None:  # the worker's ("images", id, array) parts, scored as they come
            nonlocal engine_s
            if message[0] == "restart":  # the decoding starts over: forget the scores so far
                scores.clear()
                return
            t = time.perf_counter()
            scores.append(self.engine.scores(message[2]))
            engine_s += time.perf_counter() - t

        def engine() -> tuple[float, int, int]:  # engine seconds, images, calls
            return engine_s, sum(len(s) for s in scores), len(scores)

        outcome = self.worker.run(fid, target.path, score)
        if outcome[0] == "skip":
            return "skip", None, engine()
        if outcome[0] == "error":
            return "row", self._error(target, outcome[2], outcome[3], t0), engine()
        s = np.concatenate(scores) if scores else np.zeros(0)
        return "row", _scored_row(target, self.model, outcome[2], s, self.threshold, t0), engine()

    def _error(self, target: _Target, code: str, message: str, t0: float) -> dict[str, Any]:
        return _error_row(target, self.model, code, message, processing_time_s=round(time.time() - t0, 3))


def run_on_ray(scan: Scan) -> Iterator[dict[str, Any]]:
    """The rows of ``scan`` computed on Ray (what :meth:`Scan._run` does with ``engine="ray"``)."""
    ray = _import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    targets = scan._targets()
    scan.total = len(targets)
    scan._progress()
    files: dict[int, _Target] = {}
    for i, t in enumerate(targets):
        if t.error is not None:
            yield scan._emit(_error_row(t, scan.model, *t.error))
        else:
            files[i] = t
    if not files:  # nothing to decode (a finished scan rerun): Ray is not started
        return
    settings = {
        "features": scan.detector.config.to_dict(),
        "overlap_s": scan.overlap_s,
        "max_duration_s": scan.max_duration_s,
        "measurements": scan.measurements,
    }
    started = _connect(ray, scan.ray_address, scan.ray_workers)
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    try:
        for name, level in _QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        actors = scan.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = min(actors, len(files))
        items = [{"id": i, "path": t.path, "size": t.size, "mtime": t.mtime} for i, t in files.items()]
        # The dataset keeps the context current when it is made: set ours, make it, give the caller's back.
        ctx = DataContext.get_current()
        ours = {
            "enable_progress_bars": False,  # melcnn's own progress line instead
            "target_max_block_size": 1,  # every file's record its own output block: rows arrive one by one
            "max_errored_blocks": -1,  # a block whose actor died is dropped; its files get worker_died below
        }
        saved = {k: getattr(ctx, k) for k in ours}
        try:
            for k, v in ours.items():
                setattr(ctx, k, v)
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for max_task_retries; it warns about passing it this way
                warnings.simplefilter("ignore", DeprecationWarning)
                ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
                    _ScanActor,
                    fn_constructor_kwargs={
                        "checkpoint": scan.detector.checkpoint,  # through the object store, once
                        "settings": settings,
                        "model": scan.model,
                        "device": scan.device,
                        "file_timeout_s": scan.file_timeout_s,
                    },
                    compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
                    batch_size=1,
                    batch_format="numpy",
                    num_cpus=1,
                    num_gpus=1 if scan.device == "cuda" else 0,  # --device cuda: one GPU per actor
                    max_task_retries=0,  # a file that kills its actor is not retried forever: worker_died
                )
        finally:
            for k, v in saved.items():
                setattr(ctx, k, v)
        records = iter(ds.iter_rows())
        while True:
            t_wait = time.perf_counter()
            try:
                rec = next(records)
            except StopIteration:
                break
            except Exception as exc:  # Ray could not run the pipeline (e.g. actors that cannot start)
                raise MelcnnError(
                    f"the scan on Ray failed: {type(exc).__name__}: {exc} (is the same melcnn installed on every node?)"
                ) from None
            finally:
                scan.stats.wait_s += time.perf_counter() - t_wait
            target = files.pop(int(rec["id"]), None)
            if target is None:  # a retried block's record that already came
                continue
            scan.stats.engine_s += float(rec["engine_s"])
            scan.stats.engine_chunks += int(rec["images"])
            scan.stats.engine_calls += int(rec["calls"])
            scan.stats.workers_replaced += int(rec["replaced"])
            if rec["kind"] == "skip":
                scan.stats.non_media += 1
                scan._progress()
                continue
            yield scan._emit(json.loads(rec["row"]))
        for target in files.values():  # blocks Ray dropped: the actor died (a crash, a lost node)
            message = "the Ray actor scanning this file died or its task failed (see Ray's logs)"
            yield scan._emit(_error_row(target, scan.model, WORKER_DIED, message))
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if started:
            ray.shutdown()
