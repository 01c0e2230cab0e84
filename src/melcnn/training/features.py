"""Scattering features of a dataset, cached on disk (the expensive part of training; resumable).

Every clip goes through exactly the inference path: :func:`melcnn.audio.load_audio` (decode, mono,
16 kHz), :func:`melcnn.chunking.chunk`, :func:`melcnn.features.chunk_features`. The cache lives in
``DATA_DIR/features/<key>/`` where ``key`` hashes the feature settings and the chunk overlap, one
``.npy`` file per clip (written atomically), so an interrupted run resumes where it stopped and a
changed setting never reuses stale features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classifier import pool_bands, select_stats
from ..config import TIME_STATS, FeatureConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    """One manifest row."""

    clip_id: str
    path: Path
    label: int  # 1 spoof, 0 bona fide
    split: str
    generator: str
    speaker: str
    language: str
    augmentation: str
    duration_s: float
    source: str  # bona fide package (for a spoof: its partner's package, whose channel it inherits)
    view_of: str = ""  # clip id of the base clip when this clip is a channel-augmented view of it
    parent: str = ""  # the bona fide utterance this clip is (bona fide) or was made from or beside (spoof)

    @property
    def is_view(self) -> bool:
        return bool(self.view_of)


def read_clips(data_dir: Path) -> list[Clip]:
    """Rows of ``DATA_DIR/manifest.csv`` (written by :func:`melcnn.training.build.build_dataset`) as clips."""
    from .manifest import read_manifest

    data_dir = Path(data_dir)
    path = data_dir / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the data first with `melcnn data build {data_dir}`")
    return [
        Clip(
            clip_id=row["clip_id"],
            path=data_dir / row["path"],
            label=1 if row["label"] == "spoof" else 0,
            split=row["split"],
            generator=row["generator"],
            speaker=row["speaker"],
            language=row["language"],
            augmentation=row["augmentation"] or "none",
            duration_s=row["duration_s"],
            source=row["source"],
            view_of=row.get("view_of") or "",
            parent=row.get("parent") or "",
        )
        for row in read_manifest(path)
    ]


def cache_key(cfg: FeatureConfig, overlap_s: float, time_stats: tuple[str, ...] = ("mean",)) -> str:
    settings: dict = {"features": cfg.to_dict(), "overlap_s": overlap_s, "v": 1}
    if tuple(time_stats) != ("mean",):  # the mean's caches keep the key they had before time_stats existed
        settings["time_stats"] = list(time_stats)
    blob = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _feature_file(root: Path, clip_id: str) -> Path:
    safe = hashlib.sha1(clip_id.encode()).hexdigest()[:20]
    return root / safe[:2] / f"{safe}.npy"


def _is_current(feature_file: Path, clip_path: Path) -> bool:
    """Cached features exist and are not older than their clip. A build that is extended or re-planned
    in place (more minutes, another source in a split) remakes clips under their old ids with other
    laundering; their features must be computed again, not served from the cache."""
    try:
        made = feature_file.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    try:
        return made >= Path(clip_path).stat().st_mtime_ns
    except FileNotFoundError:  # the clip is gone: the cached features are all there is
        return True


def clip_features(
    path: str | Path, cfg: FeatureConfig, overlap_s: float, time_stats: tuple[str, ...] = ("mean",)
) -> np.ndarray:
    """Time-pooled scattering maps ``(n_chunks, C, R)`` of one file, through the inference path (decode,
    chunk, features; ``C`` = channels x ``time_stats``). Raises :class:`melcnn.MelcnnError` for a file
    that cannot be analysed."""
    from ..audio import load_audio
    from ..chunking import chunk
    from ..features import chunk_features

    y = load_audio(path, sample_rate=cfg.sample_rate, min_duration_s=cfg.chunk_s).samples
    c = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=overlap_s)
    return chunk_features(c.samples, cfg=cfg, time_stats=time_stats).astype(np.float32)


def _compute(args: tuple[str, str, dict, float, tuple[str, ...]]) -> tuple[str, int, str | None]:
    """Worker: features of one clip, saved atomically. Returns (clip id, n chunks, error or None)."""
    clip_path, out_path, cfg_dict, overlap_s, time_stats = args
    from ..errors import MelcnnError

    cfg = FeatureConfig.from_dict(cfg_dict)
    error = None
    try:
        feats = clip_features(clip_path, cfg, overlap_s, time_stats)
    except MelcnnError as exc:  # e.g. a clip shorter than one chunk: recorded as empty, not retried
        feats, error = np.zeros((0,), dtype=np.float32), str(exc)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, feats, allow_pickle=False)
    os.replace(tmp, out)
    return clip_path, len(feats), error


def cache_features(
    data_dir: Path,
    clips: Sequence[Clip],
    *,
    cfg: FeatureConfig,
    overlap_s: float,
    time_stats: tuple[str, ...] = ("mean",),
    workers: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Compute (or find) the features of ``clips`` with the statistics over time ``time_stats`` among
    others; returns the cache directory (read it with :func:`load_features`).

    The mean alone has a cache of its own (the transform's cheaper pooled path); any other choice is
    served from one cache that holds all of :data:`melcnn.config.TIME_STATS`, so comparing combinations
    computes the scattering once.
    """
    time_stats = ("mean",) if tuple(time_stats) == ("mean",) else TIME_STATS
    root = Path(data_dir) / "features" / cache_key(cfg, overlap_s, time_stats)
    root.mkdir(parents=True, exist_ok=True)
    settings = {"features": cfg.to_dict(), "overlap_s": overlap_s, "time_stats": list(time_stats)}
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    todo = [c for c in clips if not _is_current(_feature_file(root, c.clip_id), c.path)]
    done = len(clips) - len(todo)
    if progress:
        progress("features", done, len(clips))
    jobs = [(str(c.path), str(_feature_file(root, c.clip_id)), cfg.to_dict(), overlap_s, time_stats) for c in todo]
    failures = []
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        # spawn, not fork: the parent may already run the scattering thread pool
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for path, _, err in pool.map(_compute, jobs, chunksize=4):
                done += 1
                if err:
                    failures.append((path, err))
                if progress:
                    progress("features", done, len(clips))
    else:
        for job in jobs:
            path, _, err = _compute(job)
            done += 1
            if err:
                failures.append((path, err))
            if progress:
                progress("features", done, len(clips))
    if failures:
        log.warning("%d clips gave no features (first: %s: %s)", len(failures), *failures[0])
    return root


@dataclass
class FeatureSet:
    """Chunk features of a set of clips, with per-chunk labels and the clip each chunk came from."""

    x: np.ndarray  # (n_chunks, n_channels, n_rows) float32
    y: np.ndarray  # (n_chunks,) 1 spoof / 0 bona fide
    clip_index: np.ndarray  # (n_chunks,) index into `clips`
    clips: list[Clip]


def view_groups(fs: FeatureSet) -> np.ndarray:
    """Per chunk of ``fs``: its clip, the index of its view group (a base clip and its augmented views) and
    the index of its utterance (the bona fide utterance it is or was made from or beside: ``parent``; a
    clip without one is an utterance of its own with its views)."""
    base: dict[str, int] = {}
    group_of_clip = np.array([base.setdefault(c.view_of or c.clip_id, len(base)) for c in fs.clips], dtype=np.int64)
    utterances: dict[str, int] = {}
    utt_of_clip = np.array(
        [
            utterances.setdefault(c.parent or "view group " + (c.view_of or c.clip_id), len(utterances))
            for c in fs.clips
        ],
        dtype=np.int64,
    )
    return np.stack([fs.clip_index, group_of_clip[fs.clip_index], utt_of_clip[fs.clip_index]], axis=1)


def domain_ids(fs: FeatureSet) -> np.ndarray:
    """Per chunk of ``fs``: the index of its domain, a bona fide clip's source or a spoof's generator
    (codes are shared by neither class: a source and a generator of the same name stay two domains)."""
    codes: dict[tuple[int, str], int] = {}
    of_clip = np.array(
        [codes.setdefault((c.label, c.generator if c.label == 1 else c.source), len(codes)) for c in fs.clips],
        dtype=np.int64,
    )
    return of_clip[fs.clip_index]


def load_features(
    root: Path, clips: Sequence[Clip], time_stats: Sequence[str] = ("mean",), *, rows: int | None = None
) -> FeatureSet:
    """Stack the cached features of ``clips`` (clips without features, e.g. too short, are left out),
    keeping the channel blocks of ``time_stats`` (in that order) of those the cache holds.

    ``rows``: average the frequency rows into this many equal bands as each clip is read (the band
    pooling of :func:`melcnn.classifier.pool_bands`, so a head of that many bands takes the same inputs),
    so that the features of one head hold no more than that head reads."""
    settings = json.loads((Path(root) / "settings.json").read_text())
    stored = list(settings.get("time_stats", ["mean"]))
    if not set(time_stats) <= set(stored):
        raise ValueError(f"{root} holds the time statistics {stored}, not {list(time_stats)}")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    kept: list[Clip] = []
    for c in clips:
        f = _feature_file(root, c.clip_id)
        if not f.is_file():
            continue
        arr = np.load(f, allow_pickle=False)
        if arr.size == 0:
            continue
        x = select_stats(arr, tuple(stored), tuple(time_stats)).astype(np.float32)
        if rows is not None and rows != x.shape[2]:
            x = pool_bands(x, rows).reshape(len(x), x.shape[1], rows)
        xs.append(x)
        ys.append(np.full(len(arr), c.label, dtype=np.int64))
        idx.append(np.full(len(arr), len(kept), dtype=np.int64))
        kept.append(c)
    if not xs:
        raise ValueError("no cached features for these clips")
    return FeatureSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(idx), kept)
