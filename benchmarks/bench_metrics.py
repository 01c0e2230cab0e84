"""Time :func:`melcnn.metrics.audio_metrics` per 15 s file, against ``librosa.pyin``.

The 15 s, 16 kHz input is the bundled real-speech example clip, repeated to 15 s. Prints the best
and median wall-clock time (and the best CPU time, less sensitive to a busy machine) of several runs
of our whole metrics (pitch + energy + spectral), of our pitch tracker alone and of the telephone-band
measure (which runs beside every analysis, also without measurements), the same for
``librosa.pyin`` (fmin C2, fmax C7, the reference of the tests), and the mean F0 of both::

    python benchmarks/bench_metrics.py [--repeats 20] [--pyin-repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.resources
import statistics
import time
from collections.abc import Callable

import numpy as np
import soundfile as sf

from melcnn import metrics

DURATION_S = 15.0  # seconds of audio per benchmarked "file"


def _load_15s() -> tuple[np.ndarray, int]:
    ref = importlib.resources.files("melcnn") / "examples" / "bonafide_en.flac"
    with importlib.resources.as_file(ref) as path:
        x, sr = sf.read(path, dtype="float32")
    n = int(DURATION_S * sr)
    return np.resize(x, n), sr  # np.resize repeats the clip


def _times(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this process) seconds of each of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _fmt(name: str, times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    return (
        f"{name:<28s} wall best {min(wall) * 1e3:8.1f} ms  median {statistics.median(wall) * 1e3:8.1f} ms"
        f"   cpu best {min(cpu) * 1e3:8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="runs of our metrics")
    parser.add_argument("--pyin-repeats", type=int, default=2, help="runs of librosa.pyin (slow)")
    args = parser.parse_args()

    x, sr = _load_15s()
    print(f"input: {len(x) / sr:.1f} s at {sr} Hz (bundled example clip, repeated)")
    metrics.audio_metrics(x, sample_rate=sr)  # warm-up: imports parselmouth
    sections, _ = metrics.audio_metrics(x, sample_rate=sr)
    print(_fmt("melcnn audio_metrics (all)", _times(lambda: metrics.audio_metrics(x, sample_rate=sr), args.repeats)))
    print(_fmt("melcnn pitch_track (Praat)", _times(lambda: metrics.pitch_track(x, sample_rate=sr), args.repeats)))

    def telephone_band() -> None:  # fed as a decoder feeds it: an MP3 frame's 1152 samples at 44.1 kHz -> 418
        band = metrics.TelephoneBand(sr)
        for i in range(0, len(x), 418):
            band.push(x[i : i + 418])
        band.edge_db()

    print(_fmt("melcnn TelephoneBand", _times(telephone_band, args.repeats)))

    import librosa

    fmin, fmax = librosa.note_to_hz("C2"), librosa.note_to_hz("C7")
    result: dict[str, np.ndarray] = {}

    def pyin() -> None:
        f0, voiced, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=sr)
        result["f0"] = f0[voiced]

    pyin()  # warm-up: numba compilation
    print(_fmt("librosa.pyin (C2..C7)", _times(pyin, args.pyin_repeats)))
    ours = sections["pitch"]["mean_pitch_hz"]
    ref = float(np.mean(result["f0"]))
    print(f"mean F0: melcnn {ours:.2f} Hz, pyin {ref:.2f} Hz, difference {100 * (ours - ref) / ref:+.2f} %")


if __name__ == "__main__":
    main()
