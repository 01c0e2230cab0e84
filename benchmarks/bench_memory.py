"""Peak memory of an analysis against the recording's length: 1, 10 and 60 minute files.

    python benchmarks/bench_memory.py [--minutes 1 10 60] [--models v2 v3] [--how api cli scan]
                                      [--format mp3] [--workdir DIR]

Writes speech-like recordings of the given lengths (the two bundled example clips cut into
utterances, each with its own gain and speed, separated by short low-level pauses; 44.1 kHz stereo
MP3 at 128 kbit/s as users send them, or ``--format flac``) into ``--workdir`` (default: a temporary
folder; files already there are reused), then analyses each one in a fresh Python process and
prints that process's peak resident memory (``getrusage(...).ru_maxrss``) and its wall time:

* ``api``: ``melcnn.load_model(model).analyze(media_path=...)``; the HTTP server runs exactly this
  call for each request;
* ``cli``: ``melcnn analyze FILE --model M --json`` (run in-process in the fresh interpreter);
* ``scan``: ``melcnn.scan([FILE], model=M, workers=1)``: the main process (scattering and head)
  and the decoding worker process, reported separately (``main / worker``).

Uses the shipped weights. Not a test: run it and paste the output. The machine's load is printed,
since a shared machine's wall times move with it (the memory figures do not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

RATE = 44100  # Hz of the written files
UTTERANCE_S = (4.0, 11.0)  # length of each utterance cut from the examples
PAUSE_S = (0.15, 0.9)


def _examples() -> list[np.ndarray]:
    import soundfile as sf

    root = resources.files("melcnn") / "examples"
    return [sf.read(str(root / name), dtype="float32")[0] for name in ("bonafide_en.flac", "spoof_en.flac")]


def _utterances(seconds: float, seed: int = 0):
    """Yield 16 kHz mono float32 pieces (utterances and pauses) adding up to ``seconds``."""
    import soxr

    rng = np.random.default_rng(seed)
    clips = _examples()
    left = int(seconds * 16000)
    while left > 0:
        clip = clips[int(rng.integers(len(clips)))]
        n = int(rng.uniform(*UTTERANCE_S) * 16000)
        start = int(rng.integers(0, max(1, len(clip) - n)))
        piece = clip[start : start + n]
        speed = rng.uniform(0.9, 1.1)  # a different speaker rate (and pitch)
        piece = soxr.resample(piece, 16000, int(16000 / speed)) * np.float32(10 ** (rng.uniform(-12, 0) / 20))
        pause = (10**-3.5 * rng.standard_normal(int(rng.uniform(*PAUSE_S) * 16000))).astype(np.float32)
        for part in (piece.astype(np.float32), pause):
            part = part[:left]
            left -= len(part)
            if len(part):
                yield part


def make_recording(path: Path, minutes: float, fmt: str) -> Path:
    """Write a ``minutes``-long speech-like recording (44.1 kHz; MP3: stereo 128 kbit/s, FLAC: mono)."""
    import av
    import soxr

    if path.is_file():
        return path
    tmp = path.with_suffix(".part")
    resampler = soxr.ResampleStream(16000, RATE, 1, dtype="float32")
    layout = "stereo" if fmt == "mp3" else "mono"
    with av.open(str(tmp), "w", format=fmt) as box:
        stream = box.add_stream("libmp3lame" if fmt == "mp3" else "flac", rate=RATE, layout=layout)
        if fmt == "mp3":
            stream.bit_rate = 128_000

        def encode(y: np.ndarray) -> None:
            if not len(y):
                return
            data = np.stack([y, 0.9 * y]).reshape(1, -1, order="F") if layout == "stereo" else y[None, :]
            sample_fmt = "flt" if fmt == "mp3" else "s16"
            if sample_fmt == "s16":
                data = np.clip(np.round(data * 32767), -32768, 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=sample_fmt, layout=layout)
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                box.mux(packet)

        for piece in _utterances(minutes * 60.0, seed=int(minutes)):
            encode(resampler.resample_chunk(piece))
        encode(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        for packet in stream.encode(None):
            box.mux(packet)
    tmp.rename(path)
    return path


# Runs in a fresh interpreter: one analysis, then this process's (and its workers') peak RSS as JSON.
_CHILD = r"""
import contextlib, io, json, resource, sys, time
how, model, path = sys.argv[1:4]
t = time.perf_counter()
extra = {}
if how == "api":
    import melcnn
    report = melcnn.load_model(model).analyze(media_path=path)
    extra = {"fake_score": report["fake_score"], "chunks": len(report["chunks"])}
elif how == "cli":
    from melcnn.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["analyze", path, "--model", model, "--json"])
    assert code == 0, code
    report = json.loads(buf.getvalue())
    extra = {"fake_score": report["fake_score"], "chunks": len(report["chunks"])}
else:
    import melcnn
    rows = list(melcnn.scan([path], model=model, workers=1))
    assert len(rows) == 1 and not rows[0]["error_code"], rows
    extra = {"fake_score": rows[0]["fake_score"], "chunks": rows[0]["n_chunks"]}
wall = time.perf_counter() - t
mb = lambda who: resource.getrusage(who).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "self_mb": mb(resource.RUSAGE_SELF),
                  "children_mb": mb(resource.RUSAGE_CHILDREN), **extra}))
"""


def measure(how: str, model: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, how, model, str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{how} {model} {path.name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("--models", nargs="+", default=["v2", "v3"])
    ap.add_argument("--how", nargs="+", default=["api", "cli", "scan"], choices=["api", "cli", "scan"])
    ap.add_argument("--format", default="mp3", choices=["mp3", "flac"])
    ap.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the generated files here")
    args = ap.parse_args()

    import melcnn

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="melcnn-bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files = {}
    for m in args.minutes:
        t = time.perf_counter()
        path = workdir / f"speech_{m:g}min.{args.format}"
        existed = path.is_file()
        files[m] = make_recording(path, m, args.format)
        made = "reused" if existed else f"written in {time.perf_counter() - t:.0f} s"
        print(f"input: {path} ({path.stat().st_size / 2**20:.1f} MB, {made})", flush=True)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}; melcnn from {Path(melcnn.__file__).parent}"
    )
    print()
    head = ("input", "model", "how", "peak RSS (MB)", "wall (s)", "chunks", "fake_score")
    print(" ".join(f"{h:>{w}s}" for h, w in zip(head, (10, 5, 5, 16, 9, 7, 10), strict=True)))
    for m, path in files.items():
        for model in args.models:
            for how in args.how:
                r = measure(how, model, path)
                rss = f"{r['self_mb']:.0f}" if how != "scan" else f"{r['self_mb']:.0f} / {r['children_mb']:.0f}"
                print(
                    f"{m:>7g} min {model:>5s} {how:>5s} {rss:>16s} {r['wall_s']:>9.1f} {r['chunks']:>7d} "
                    f"{r['fake_score']:>10.4f}",
                    flush=True,
                )
    print(f"\nload at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
