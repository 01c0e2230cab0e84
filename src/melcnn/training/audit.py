"""Shortcut audit: can trivial file properties tell bona fide from spoof?

A logistic regression on per-file duration, leading and trailing silence, fraction of exact-zero
samples, RMS level, share of energy above 4 kHz and a lossy-codec flag is trained on the train split
and scored on eval (and dev). Its EER should sit near chance (>= 35%); if it does not, the data has
a shortcut a detector can learn instead of the artefacts of synthesis: fix the data, not the audit.

Needs numpy, soundfile and scikit-learn (falls back to a NumPy logistic regression without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import audio as A

FEATURES = ("duration_s", "lead_silence_s", "trail_silence_s", "zero_fraction", "rms_dbfs", "hf_fraction", "codec_flag")
NEAR_CHANCE_EER = 0.35


def _eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """:func:`melcnn.training.evaluate.eer` of ``scores`` (NaN where a class is missing)."""
    from .evaluate import eer

    labels = np.asarray(labels, dtype=int)
    if labels.min() == labels.max():
        return float("nan")
    return eer(np.asarray(scores, dtype=float), labels)[0]


def power_spectrum(x: np.ndarray, sr: int, nfft: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Mean power spectrum over Hann-windowed frames (50% overlap)."""
    if len(x) < nfft:
        x = np.pad(x, (0, nfft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[:: nfft // 2]
    spec = np.mean(np.abs(np.fft.rfft(frames * np.hanning(nfft), axis=1)) ** 2, axis=0)
    return np.fft.rfftfreq(nfft, 1.0 / sr), spec


def file_features(path: Path, codec_flag: int) -> dict[str, float]:
    import soundfile as sf

    pcm, sr = sf.read(str(path), dtype="int16", always_2d=True)
    pcm = pcm[:, 0]
    x = pcm.astype(np.float64) / 32768.0
    n = len(x)
    a, b = A.active_bounds(x) if n else (0, 0)
    freqs, spec = power_spectrum(x, sr)
    tot = float(spec.sum()) + 1e-20
    return {
        "duration_s": n / sr,
        "lead_silence_s": a / sr,
        "trail_silence_s": (n - b) / sr,
        "zero_fraction": float(np.mean(pcm == 0)) if n else 1.0,
        "rms_dbfs": A.db(float(np.sqrt(np.mean(x**2)))) if n else -240.0,
        "hf_fraction": float(spec[freqs > 4000.0].sum() / tot),
        "bandwidth_hz": float(freqs[min(len(freqs) - 1, int(np.searchsorted(np.cumsum(spec) / tot, 0.995)))]),
        "codec_flag": float(codec_flag),
    }


def _read_rows(manifest: Path | list[dict]) -> tuple[list[dict], Path]:
    if isinstance(manifest, list):
        raise TypeError("pass the manifest path")
    from .manifest import read_manifest

    manifest = Path(manifest)
    return read_manifest(manifest), manifest.parent


def _fit_predict(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-9
    Ztr, Zte = (Xtr - mu) / sd, (Xte - mu) / sd
    try:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=2000, class_weight="balanced")
        clf.fit(Ztr, ytr)
        return clf.decision_function(Zte), clf.coef_[0]
    except ImportError:
        w = np.zeros(Ztr.shape[1])
        b = 0.0
        cw = np.where(ytr == 1, 0.5 / max(ytr.mean(), 1e-9), 0.5 / max(1 - ytr.mean(), 1e-9))
        for _ in range(3000):
            p = 1.0 / (1.0 + np.exp(-(Ztr @ w + b)))
            g = cw * (p - ytr)
            w -= 0.1 * (Ztr.T @ g / len(ytr) + 1e-3 * w)
            b -= 0.1 * g.mean()
        return Zte @ w + b, w


def shortcut_audit(manifest: Path) -> dict:
    """Train on train, score eval (and dev); EER pooled and per eval generator, plus single-feature EERs."""
    rows, root = _read_rows(manifest)
    rows = [r for r in rows if not r.get("view_of")]  # the base clips; views are drawn alike for both classes
    feats = np.array([[file_features(root / r["path"], int(r["codec"]))[k] for k in FEATURES] for r in rows])
    y = np.array([1 if r["label"] == "spoof" else 0 for r in rows])
    split = np.array([r["split"] for r in rows])
    gen = np.array([r["generator"] for r in rows])
    tr = split == "train"
    if len(set(y[tr])) < 2:
        raise ValueError("the train split needs both classes for the audit")
    out: dict = {"features": list(FEATURES), "n_train": int(tr.sum()), "near_chance_eer": NEAR_CHANCE_EER}
    for name in ("eval", "dev"):
        te = split == name
        if len(set(y[te])) < 2:
            continue
        scores, coef = _fit_predict(feats[tr], y[tr], feats[te])
        res: dict[str, Any] = {"n": int(te.sum()), "eer": round(_eer(y[te], scores), 4)}
        if name == "eval":
            per = {}
            bona = y[te] == 0
            for g in sorted(set(gen[te]) - {"bonafide"}):
                m = bona | (gen[te] == g)
                per[g] = round(_eer(y[te][m], scores[m]), 4)
            res["eer_per_generator"] = per
            out["coefficients"] = {k: round(float(c), 4) for k, c in zip(FEATURES, coef, strict=True)}
            # each feature alone, in its better direction, fitted on nothing: how far from chance is it?
            single = {}
            for j, k in enumerate(FEATURES):
                e = _eer(y[te], feats[te, j])
                single[k] = round(float(min(e, 1.0 - e)), 4) if np.isfinite(e) else None
            res["single_feature_eer"] = single
            means = {}
            for k, j in zip(FEATURES, range(len(FEATURES)), strict=True):
                means[k] = {
                    "bonafide": round(float(feats[te][bona, j].mean()), 4),
                    "spoof": round(float(feats[te][~bona, j].mean()), 4),
                }
            res["feature_means"] = means
        out[name] = res
    out["eer"] = out.get("eval", {}).get("eer")
    out["passes"] = bool(out["eer"] is not None and out["eer"] >= NEAR_CHANCE_EER)
    return out


def format_audit(audit: dict) -> str:
    if "error" in audit:
        return f"shortcut audit failed: {audit['error']}"
    lines = [
        f"shortcut audit (logistic regression on {', '.join(audit['features'])}; train -> eval): "
        f"EER {100 * audit['eer']:.1f}% ({'near chance, OK' if audit['passes'] else 'BELOW 35%: shortcut!'})"
    ]
    if "dev" in audit:
        lines.append(f"  dev EER {100 * audit['dev']['eer']:.1f}%")
    ev = audit.get("eval", {})
    if ev.get("eer_per_generator"):
        lines.append(
            "  eval EER per generator: " + ", ".join(f"{g} {100 * e:.0f}%" for g, e in ev["eer_per_generator"].items())
        )
    if ev.get("single_feature_eer"):
        lines.append(
            "  single-feature EER: "
            + ", ".join(f"{k} {100 * e:.0f}%" for k, e in ev["single_feature_eer"].items() if e is not None)
        )
    return "\n".join(lines)
