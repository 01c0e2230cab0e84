"""Re-encoding invariance: does the verdict change when a file passes through an everyday codec?

Each evaluated file is written again as a real file in six ways a recording reaches a user (MP3 at
128 and 32 kbit/s, AAC 64 kbit/s in M4A, Opus 24 kbit/s, an 8 kHz G.711 telephone WAV, and a level
change of -10 dB), decoded by melcnn's own audio loader, and scored by the checkpoint. Where the Opus 1.5
decoder is installed (:mod:`melcnn.training.opus_ml`), three more: a VoIP leg at 12 kbit/s decoded plainly,
with the LACE and with the NoLACE post-filter, saved as 16 kHz WAV as a recorded call would be. Per
condition: the share of verdicts that flip at the threshold and the mean absolute change of the file score.
Needs PyAV and soundfile.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import eer

# name -> (file suffix, PyAV format, encoder, sample rate, bit rate); None: FLAC with a level change
CONDITIONS: dict[str, tuple[str, str, str, int, int] | None] = {
    "mp3_128k": (".mp3", "mp3", "libmp3lame", 44100, 128_000),
    "mp3_32k": (".mp3", "mp3", "libmp3lame", 22050, 32_000),
    "aac_64k": (".m4a", "mp4", "aac", 44100, 64_000),
    "opus_24k": (".opus", "ogg", "libopus", 48000, 24_000),
    "telephone_8k": (".wav", "wav", "pcm_mulaw", 8000, 0),
    "level_-10dB": None,
}
LEVEL_DB = -10.0
# name -> (bit rate, Opus 1.5 post-filter): a VoIP leg (libopus, VoIP mode, 16 kHz), saved as 16-bit WAV
VOIP_CONDITIONS: dict[str, tuple[int, str]] = {
    "voip_opus_12k": (12_000, "none"),
    "voip_opus_12k_lace": (12_000, "lace"),
    "voip_opus_12k_nolace": (12_000, "nolace"),
}


def conditions() -> list[str]:
    """The report's conditions here: :data:`CONDITIONS`, and :data:`VOIP_CONDITIONS` where the Opus ML decoder
    is installed."""
    from .opus_ml import available

    return list(CONDITIONS) + (list(VOIP_CONDITIONS) if available() else [])


def encode_file(x: np.ndarray, sr: int, condition: str, out: Path) -> Path:
    """Write samples ``x`` (at ``sr``) as a file of ``condition``; returns its path."""
    import soundfile as sf

    from . import audio as A

    if condition in VOIP_CONDITIONS:
        from .opus_ml import roundtrip

        path = out.with_suffix(".wav")
        y = roundtrip(A.resample(x, sr, A.SR), *VOIP_CONDITIONS[condition])
        sf.write(str(path), A.to_int16(np.clip(y, -1.0, 1.0)), A.SR, subtype="PCM_16")
        return path
    spec = CONDITIONS[condition]
    if spec is None:
        path = out.with_suffix(".flac")
        sf.write(str(path), A.to_int16(np.clip(x * 10 ** (LEVEL_DB / 20), -1, 1)), sr, format="FLAC")
        return path
    suffix, fmt, codec, rate, bitrate = spec
    path = out.with_suffix(suffix)
    z = A.resample(x, sr, rate)
    if condition.startswith("telephone"):
        from scipy.signal import butter, sosfiltfilt

        z = sosfiltfilt(butter(4, [300.0, 3400.0], btype="bandpass", fs=rate, output="sos"), z)
    A.av_encode(path, A.to_int16(np.clip(z, -1.0, 1.0)), rate, codec, fmt, bitrate)
    return path


def file_score(path: Path, ckpt) -> float | None:
    """The checkpoint's file score of ``path`` through melcnn's decoder and feature path (None: too short)."""
    from ..errors import MelcnnError
    from .features import clip_features

    try:
        feats = clip_features(path, ckpt.features, ckpt.spec.default_overlap_s, ckpt.time_stats)
    except MelcnnError:
        return None
    return float(np.mean(ckpt.fake_scores(feats))) if len(feats) else None


def reencoding_report(
    paths: list[Path],
    base_scores: list[float],
    ckpt,
    *,
    labels: list[int] | None = None,
    records: list[dict[str, Any]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Per condition: share of flipped verdicts and mean |score change| over ``paths`` (16 kHz clips).

    With ``labels`` (1 = spoof, 0 = bona fide) each condition also says which way the verdicts flip:
    ``bonafide_to_fake`` (share of the bona fide files called REAL before and FAKE after: false alarms the
    codec makes), ``spoof_to_real`` (spoofs called FAKE before and REAL after: fakes it hides), the mean
    score change within each class, what each class's verdicts are before and after (``bonafide_real_before``
    / ``_after``: the share of bona fide files called REAL; ``spoof_fake_before`` / ``_after``: the share of
    spoofs called FAKE), and the EER of the same files before and after (``eer_before`` / ``eer_after``):
    a condition can flip few verdicts and still leave the score uninformative, or flip many that were wrong.
    ``records``, when given, receives one row per file and condition (path, label, condition, score before
    and after). ``only``: these conditions instead of all of :func:`conditions`.
    """
    import soundfile as sf

    thr = ckpt.threshold
    conds = conditions() if only is None else list(only)
    known = list(CONDITIONS) + list(VOIP_CONDITIONS)
    unknown = set(conds) - set(known)
    if unknown:
        raise ValueError(f"unknown re-encoding conditions {sorted(unknown)}; known: {known}")
    res: dict[str, dict[str, list[float]]] = {c: {"delta": [], "flip": [], "label": [], "before": []} for c in conds}
    labels = [-1] * len(paths) if labels is None else list(labels)
    with tempfile.TemporaryDirectory(prefix="melcnn-reenc-") as td:
        for i, (p, s0, y) in enumerate(zip(paths, base_scores, labels, strict=True)):
            x, sr = sf.read(str(p), dtype="float64")
            for cond in conds:
                f = encode_file(x, sr, cond, Path(td) / f"c{i}_{cond}")
                s1 = file_score(f, ckpt)
                f.unlink(missing_ok=True)
                if s1 is None:
                    continue
                res[cond]["delta"].append(s1 - s0)
                res[cond]["flip"].append(float((s1 >= thr) != (s0 >= thr)))
                res[cond]["label"].append(y)
                res[cond]["before"].append(s0)
                if records is not None:
                    records.append(
                        {"path": str(p), "label": y, "condition": cond, "score_before": s0, "score_after": s1}
                    )
            if progress:
                progress("re-encoding", i + 1, len(paths))
    out = {}
    for cond, r in res.items():
        d = np.array(r["delta"])
        out[cond] = {
            "files": len(d),
            "flip_rate": round(float(np.mean(r["flip"])), 4) if len(d) else None,
            "mean_abs_change": round(float(np.mean(np.abs(d))), 4) if len(d) else None,
            "mean_change": round(float(np.mean(d)), 4) if len(d) else None,
        }
        cls_of = np.array(r["label"])
        flip = np.array(r["flip"], dtype=bool)
        before = np.array(r["before"])
        after = before + d
        for cls, name, towards, right in (
            (0, "bonafide", "bonafide_to_fake", "bonafide_real"),
            (1, "spoof", "spoof_to_real", "spoof_fake"),
        ):
            m = cls_of == cls
            if m.any():
                # a flip of a bona fide file that was called FAKE goes the right way (towards REAL): not counted
                wrong = flip[m] & ((d[m] > 0) if cls == 0 else (d[m] < 0))
                out[cond][f"{name}_files"] = int(m.sum())
                out[cond][towards] = round(float(np.mean(wrong)), 4)
                out[cond][f"{name}_mean_change"] = round(float(np.mean(d[m])), 4)
                for when, s in (("before", before[m]), ("after", after[m])):  # the share given the right verdict
                    out[cond][f"{right}_{when}"] = round(float(np.mean((s >= thr) == bool(cls))), 4)
        if (cls_of == 0).any() and (cls_of == 1).any():  # labels are given (all 0 or 1)
            out[cond]["eer_before"] = round(eer(before, cls_of)[0], 4)
            out[cond]["eer_after"] = round(eer(after, cls_of)[0], 4)
    return out


def markdown_lines(rep: dict[str, Any]) -> list[str]:
    """The report of :func:`reencoding_report` as a Markdown table (one row per condition), then a blank line."""
    lines: list[str] = []
    by_class = all("bonafide_to_fake" in m and "spoof_to_real" in m for m in rep.values())
    # reports written before the before/after figures were added lack them
    before_after = by_class and all("eer_after" in m for m in rep.values() if m["files"])
    head = "| re-encoding | files | verdicts flipped | mean abs score change | mean change |"
    if by_class:
        head += " bona fide -> FAKE | spoof -> REAL | mean change bona fide / spoof |"
    if before_after:
        head += " bona fide called REAL before / after | spoofs called FAKE before / after | EER before / after |"
    lines += [head, "|---" * (head.count("|") - 1) + "|"]
    for cond, m in rep.items():
        if m["files"]:
            row = (
                f"| {cond} | {m['files']} | {m['flip_rate']:.1%} | {m['mean_abs_change']:.3f} | "
                f"{m['mean_change']:+.3f} |"
            )
            if by_class:
                row += (
                    f" {m['bonafide_to_fake']:.1%} | {m['spoof_to_real']:.1%} | "
                    f"{m['bonafide_mean_change']:+.3f} / {m['spoof_mean_change']:+.3f} |"
                )
            if before_after:
                row += (
                    f" {m['bonafide_real_before']:.1%} / {m['bonafide_real_after']:.1%} |"
                    f" {m['spoof_fake_before']:.1%} / {m['spoof_fake_after']:.1%} |"
                    f" {m['eer_before']:.1%} / {m['eer_after']:.1%} |"
                )
            lines.append(row)
    lines.append("")
    return lines
