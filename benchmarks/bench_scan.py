"""Throughput of ``melcnn.scan`` on a generated mixed-format archive, against the engine's own chunk rate.

    python benchmarks/bench_scan.py [--files 16] [--seconds 12] [--models v2,v3] [--workers 1,2]

Writes an archive of ``--files`` speech-like clips of ``--seconds`` each in seven formats (WAV, FLAC,
MP3, M4A/AAC, OGG Vorbis, Opus, MP4 video with AAC), plus two non-media files and a damaged one,
into a temporary folder. Then, per model, measured in the same process and run:

* engine: ``Detector.score_chunks`` over the archive's chunks, decoded beforehand (mel images +
  scattering + head, batches of 16): the chunks/s the scattering engine does on its own;
* analyze loop: ``Detector.analyze`` file after file (what users wrote before ``scan``);
* scan: ``melcnn.scan`` with each ``--workers`` count, with and without measurements: files/s,
  audio-s/s, chunks/s and the ratio to the engine's chunks/s. "wall" includes starting the worker
  processes; "steady" counts from the first row to the last; "engine busy" is the share of the wall
  time the main thread spent in the scattering and head (the rest: waiting for the workers).
* CPU-ms/chunk: CPU time of this process and the workers per scored chunk (the scan's includes
  decoding, measurements, worker start-up and non-media probing), split into "main" (this process:
  scattering, head, collecting the workers' images) and "workers" (decoding, mel images,
  measurements, start-up); "CPU ratio" = engine's / scan's, the throughput ratio to expect when both
  keep every core busy, which a shared, loaded machine's wall-clock ratio does not show reliably.
  The engine line gives the parts of the workers' share measured in this process: decoding
  (``load_audio`` and chunking) and the mel images (also inside the engine's own figure).
* "in-run": the CPU ratio with the engine's cost taken from the scan itself, (main + mel images) /
  (main + workers): the main process does the engine's work but the images (plus the collecting,
  0.2-0.3 ms per chunk). On a loaded machine the same scattering's CPU time drifts by a fifth between
  the engine's measurement and the scan's, so "CPU ratio" moves with it; this one does not.

Not a test: run it and paste the output. The machine's load (``os.getloadavg``) is printed, since a
shared machine's figures move with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

KINDS = ("wav_s16", "flac", "mp3", "m4a_aac", "ogg_vorbis", "ogg_opus", "mp4_video")


def make_archive(root: Path, files: int, seconds: float) -> list[Path]:
    from media_factory import KINDS as INFO
    from media_factory import make_media

    out = []
    for i in range(files):
        kind = KINDS[i % len(KINDS)]
        sub = root / f"batch{i % 3}"
        out.append(make_media(kind, sub, seconds=seconds, seed=i, name=f"clip{i:03d}{INFO[kind].suffix}"))
    (root / "notes.txt").write_text("not media\n")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(2000))
    make_media("truncated_mp3", root, seconds=2.0, name="damaged.mp3")
    return out


def engine_rate(detector, media: list[Path]) -> dict[str, float]:
    """The engine's chunks/s and CPU-s per chunk, and the CPU-s per chunk of decoding and of the mel images."""
    from melcnn._blas import single_threaded_blas
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk
    from melcnn.spectrogram import chunk_images

    cfg = detector.config
    load_audio(media[0], sample_rate=cfg.sample_rate)  # warm (the decoders' imports)
    parts = []
    c = time.process_time()
    for p in media:
        y = load_audio(p, sample_rate=cfg.sample_rate).samples
        ch = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=detector.default_overlap_s)
        parts.append(np.asarray(ch.samples))
    chunks = np.concatenate(parts)
    decode = (time.process_time() - c) / len(chunks)
    detector.score_chunks(chunks[:16])  # warm
    with single_threaded_blas():  # as the workers compute them
        c = time.process_time()
        for i in range(0, len(chunks), 16):
            chunk_images(chunks[i : i + 16], cfg=cfg)
        images = (time.process_time() - c) / len(chunks)
    t, c = time.perf_counter(), cpu_s()
    for i in range(0, len(chunks), 16):
        detector.score_chunks(chunks[i : i + 16])
    wall = time.perf_counter() - t
    return {
        "rate": len(chunks) / wall,
        "chunks": len(chunks),
        "cpu": (cpu_s() - c) / len(chunks),
        "decode": decode,
        "images": images,
    }


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its finished children (the scan's workers)."""
    return main_cpu_s() + children_cpu_s()


def main_cpu_s() -> float:
    """CPU seconds of this process (all threads)."""
    return time.process_time()


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the scan's workers, once waited for)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def analyze_loop(detector, media: list[Path]) -> float:
    t = time.perf_counter()
    for p in media:
        detector.analyze(p)
    return len(media) / (time.perf_counter() - t)


def scan_run(detector, root: Path, workers: int, measurements: bool) -> dict:
    import melcnn

    t0, m0, w0 = time.perf_counter(), main_cpu_s(), children_cpu_s()
    first = None
    rows = []
    s = melcnn.scan(root, model=detector, workers=workers, measurements=measurements)
    stats = s.stats
    for r in s:
        rows.append(r)
        if first is None:
            first = time.perf_counter()
    t1 = time.perf_counter()
    # the loop's end closed the scan: its workers have exited and been waited for, so their CPU time counts
    main_cpu, workers_cpu = main_cpu_s() - m0, children_cpu_s() - w0
    ok = [r for r in rows if r["error_code"] is None]
    n_chunks = sum(r["n_chunks"] for r in ok)
    audio = sum(r["duration_s"] for r in ok)
    steady_rows = max(len(rows) - 1, 1)
    return {
        "rows": len(rows),
        "errors": len(rows) - len(ok),
        "wall_s": t1 - t0,
        "files_s": len(rows) / (t1 - t0),
        "audio_s_s": audio / (t1 - t0),
        "chunks_s": n_chunks / (t1 - t0),
        "steady_chunks_s": n_chunks * steady_rows / len(rows) / max(t1 - (first or t0), 1e-9),
        "engine_busy": stats.engine_s / (t1 - t0),
        "batch": stats.engine_chunks / max(stats.engine_calls, 1),
        "cpu_per_chunk": (main_cpu + workers_cpu) / max(n_chunks, 1),
        "main_per_chunk": main_cpu / max(n_chunks, 1),
        "workers_per_chunk": workers_cpu / max(n_chunks, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--models", default="v2,v3")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()

    import melcnn

    print(f"cores: {len(os.sched_getaffinity(0))}, load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="melcnn-bench-scan-") as tmp:
        root = Path(tmp)
        media = make_archive(root, args.files, args.seconds)
        print(f"archive: {len(media)} clips of {args.seconds:g} s in {len(KINDS)} formats + 3 non-media/damaged files")
        for name in args.models.split(","):
            det = melcnn.load_model(name)
            eng = engine_rate(det, media)
            rate, engine_cpu = eng["rate"], eng["cpu"]
            loop = analyze_loop(det, media)
            print(f"\n== {det.name} ({eng['chunks']:.0f} chunks) ==")
            print(
                f"engine (score_chunks, decoded input): {rate:6.2f} chunks/s, {engine_cpu * 1e3:.0f} CPU-ms/chunk"
                f" (of which mel images {eng['images'] * 1e3:.1f}); decoding alone: {eng['decode'] * 1e3:.1f}"
            )
            print(f"analyze loop, one file at a time:     {loop:6.2f} files/s")
            print(
                "workers measurements   wall s  files/s  audio-s/s  chunks/s  ratio  steady chunks/s  ratio"
                "  engine busy  chunks/call  CPU-ms/chunk (main + workers)  CPU ratio  in-run"
            )
            for w in (int(x) for x in args.workers.split(",")):
                for meas in (True, False):
                    r = scan_run(det, root, w, meas)
                    print(
                        f"{w:7d} {'yes' if meas else 'no':>12} {r['wall_s']:8.2f} {r['files_s']:8.2f} "
                        f"{r['audio_s_s']:10.1f} {r['chunks_s']:9.2f} {r['chunks_s'] / rate:6.0%} "
                        f"{r['steady_chunks_s']:16.2f} {r['steady_chunks_s'] / rate:6.0%}"
                        f"{r['engine_busy']:12.0%} {r['batch']:12.1f} {r['cpu_per_chunk'] * 1e3:13.1f}"
                        f" ({r['main_per_chunk'] * 1e3:4.1f} + {r['workers_per_chunk'] * 1e3:4.1f})"
                        f" {engine_cpu / r['cpu_per_chunk']:10.0%}"
                        f" {(r['main_per_chunk'] + eng['images']) / r['cpu_per_chunk']:7.0%}"
                    )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
