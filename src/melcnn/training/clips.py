"""Making the clips of a plan: one clip or view and its manifest row (canonical audio, generation,
laundering), and the worker pool that makes many.

Every clip and its row (a ``.json`` beside the ``.flac``) are written atomically; a clip whose row exists
with the same ``spec_hash`` is not made again, so an interrupted build resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import audio as A
from . import generators as G
from . import sources as S
from .plan import stable_rng

Progress = Callable[[str, int, int], None]


def _canonical(sources_dir: Path, utt: S.Utterance, seed: int) -> np.ndarray:
    """Bona fide utterance, trimmed (random margins) and loudness-normalised: what its spoof partner is made from."""
    x = S.render_utterance(sources_dir, utt, stable_rng("render", seed, utt.uid))
    x = A.trim_with_margin(x, stable_rng("trim", seed, utt.uid))
    return A.normalise_loudness(x)


def describe_augmentation(aug: dict) -> str:
    """'CONDITION:details', e.g. 'mp3+noise:noise=pink@18.2dB;gain=-6dB' or 'none'.

    CONDITION (before the colon) is the laundering condition to group results by: the codec or band
    limit, plus '+noise' where noise was added; the details give the levels.
    """
    cond = [] if aug["codec"] == "none" else [aug["codec"]]
    details = []
    if aug.get("noise_snr_db") is not None:
        cond.append("noise")
        details.append(f"noise={aug['noise_colour']}@{aug['noise_snr_db']:g}dB")
    if aug.get("gain_db") is not None:
        details.append(f"gain={aug['gain_db']:+g}dB")
    head = "+".join(cond) if cond else "none"
    return f"{head}:{';'.join(details)}" if details else head


def _post(x: np.ndarray, aug: dict, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    c = aug["codec"]
    if c != "none":
        x = A.codec_roundtrip(x, c, rng)
    if aug.get("noise_snr_db") is not None:
        x = A.add_noise_snr(x, aug["noise_snr_db"], aug["noise_colour"], rng)
    if aug.get("gain_db") is not None:
        x = x * 10.0 ** (aug["gain_db"] / 20.0)
    x = A.add_noise_floor(x, aug["floor_dbfs"], rng)
    x = A.limit_peak(x, 0.99)
    return x, describe_augmentation(aug)


def finished_row(data_dir: Path, spec: dict) -> dict | None:
    """The manifest row of a clip already made to ``spec`` (None where it is not)."""
    out = data_dir / spec["path"]
    try:
        row = json.loads(out.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return row if row.get("spec_hash") == spec["spec_hash"] and out.exists() else None


def make_clip(spec: dict, data_dir: Path, seed: int) -> dict:
    """Produce one clip and its manifest row; skipped when the row exists with the same specification."""
    row = finished_row(data_dir, spec)
    if row is not None:
        return row
    out = data_dir / spec["path"]
    side = out.with_suffix(".json")
    sources_dir = data_dir / "sources"
    utt = S.Utterance(**spec["utt"])
    cid = spec["clip_id"]
    if spec.get("view_of"):
        return _make_view(spec, data_dir, seed)
    if spec["label"] == "bonafide":
        x = _canonical(sources_dir, utt, seed)
    else:
        rng_gen = stable_rng("gen", seed, cid)
        if spec["generator"] in G.RESYNTH or spec["generator"] in G.TRANSFORMS:
            y = G.resynthesise(spec["generator"], _canonical(sources_dir, utt, seed), rng_gen)
        else:
            y = G.synthesise(
                spec["generator"], spec["voice"], spec["text"], spec["language"], rng_gen, target_s=spec.get("target_s")
            )
        if len(y) < A.SR // 10 or not np.all(np.isfinite(y)) or not np.any(y):
            raise RuntimeError(f"{spec['generator']} produced no usable audio")
        y = A.apply_channel(y, spec["channel"], stable_rng("chan", seed, cid))
        y = A.trim_with_margin(y, stable_rng("trim", seed, cid))
        x = A.normalise_loudness(y)
    x, aug = _post(x, spec["aug"], stable_rng("post", seed, cid))
    # the native channel (bona fide) or the partner's native channel applied (spoof) is in 'channel', for
    # both classes alike; 'augmentation' holds only the stratified laundering, same vocabulary for both
    lossy = A.channel_is_lossy(spec["channel"]) or spec["aug"]["codec"] in A.LOSSY_CODECS
    row = _row(spec, x, aug, lossy)
    A.write_flac_atomic(out, x)
    A.write_text_atomic(side, json.dumps(row, ensure_ascii=False))
    return row


def _row(spec: dict, x: np.ndarray, augmentation: str, lossy: bool) -> dict:
    return {
        "path": spec["path"],
        "label": spec["label"],
        "source": spec["source"],
        "generator": spec["generator"],
        "speaker": spec["speaker"],
        "language": spec["language"],
        "split": spec["split"],
        "duration_s": round(len(x) / A.SR, 3),
        "augmentation": augmentation,
        "clip_id": spec["clip_id"],
        "voice": spec["voice"],
        "channel": spec["channel"],
        "codec": int(lossy),
        "parent": spec["parent"],
        "text": spec["text"][:200],
        "view_of": spec.get("view_of", ""),
        "spec_hash": spec["spec_hash"],
    }


def _make_view(spec: dict, data_dir: Path, seed: int) -> dict:
    """A channel-augmented view of a finished clip (see :mod:`melcnn.training.augment`)."""
    import soundfile as sf

    from . import augment as V

    base = data_dir / spec["path"].split("/views/")[0] / (spec["view_of"] + ".flac")
    x, _ = sf.read(str(base), dtype="float64")
    bank = _noise_bank(data_dir)
    y = V.apply_view(x, spec["view"], stable_rng("viewapply", seed, spec["clip_id"]), bank)
    out = data_dir / spec["path"]
    row = _row(spec, y, V.describe_view(spec["view"]), spec["view"]["channel"] not in ("none", "band", "u8"))
    A.write_flac_atomic(out, y)
    A.write_text_atomic(out.with_suffix(".json"), json.dumps(row, ensure_ascii=False))
    return row


NOISE_LIST = "noise_files.json"


def _noise_bank(data_dir: Path) -> list[np.ndarray]:
    if "noise" not in _WORKER:
        from . import augment as V

        lst = data_dir / NOISE_LIST
        files = [data_dir / "sources" / p for p in json.loads(lst.read_text())] if lst.exists() else []
        _WORKER["noise"] = V.load_noise_bank(files)
    return _WORKER["noise"]


_WORKER: dict = {}


def _init_worker(data_dir: str, seed: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    G.limit_threads()
    _WORKER["data_dir"] = Path(data_dir)
    _WORKER["seed"] = seed
    import warnings

    warnings.filterwarnings("ignore")


def _work(spec: dict) -> dict:
    try:
        return make_clip(spec, _WORKER["data_dir"], _WORKER["seed"])
    except Exception as e:  # one failed clip is reported, not fatal
        return {"clip_id": spec["clip_id"], "generator": spec["generator"], "error": f"{type(e).__name__}: {e}"}


# Rough CPU seconds per audio second, to start the slow clips first.
_COST = {
    "hifigan_lj": 2.0,
    "hifigan_universal": 2.0,
    "hifigan_16k": 1.6,
    "griffinlim_linear": 0.7,
    "lpc": 0.2,
    "griffinlim_mel": 0.1,
    "world": 0.07,
    "world_vc": 0.07,
    "festival_clunits": 0.5,
    "festival_hts": 0.5,
    "piper": 0.5,
}
_COST.update({g: _COST[voc] for g, (_tts, voc) in G.REVOCODED.items()})  # re-vocoded TTS: its vocoder's cost


def make_clips(
    specs: list[dict], data_dir: Path, seed: int, workers: int, progress: Progress | None, stage: str = "clips"
) -> list[dict]:
    todo = sorted(specs, key=lambda s: (-_COST.get(s["generator"], 0.05) * s["utt"]["est_s"], s["clip_id"]))
    for stale in (data_dir / "clips").rglob(".tmp-*"):  # left by a run that was killed mid-write
        stale.unlink(missing_ok=True)
    results = []
    total = len(todo)
    if progress:
        progress(stage, 0, total)
    if workers <= 1:
        _init_worker(str(data_dir), seed)
        for i, s in enumerate(todo, 1):
            results.append(_work(s))
            if progress:
                progress(stage, i, total)
        return results
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    for k in saved:
        os.environ[k] = "1"
    try:
        # spawn: no forked torch/BLAS state; a crashed worker raises BrokenProcessPool instead of hanging
        ex = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(str(data_dir), seed)
        )
        try:
            it = iter(todo)
            running = set()
            for s in it:  # keep a short queue so that Ctrl-C stops quickly
                running.add(ex.submit(_work, s))
                if len(running) >= 2 * workers:
                    break
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    results.append(f.result())
                    if progress:
                        progress(stage, len(results), total)
                    nxt = next(it, None)
                    if nxt is not None:
                        running.add(ex.submit(_work, nxt))
        except BaseException:
            # Ctrl-C: stop now; every clip is written atomically, so a rerun resumes where this stopped
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results
