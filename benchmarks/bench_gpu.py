"""Throughput of melcnn's batched torch scattering engine on a GPU, against Kymatio and the NumPy engine (not a test).

    python benchmarks/bench_gpu.py                # a CUDA machine (an H200: about 70 s)
    python benchmarks/bench_gpu.py --device cpu   # the same steps on the CPU, small sizes (a quick check)

Prints, in order:

* the environment: Python, torch and its CUDA version, the device's name and memory, CPU cores;
* parity: max abs difference of the torch engine's coefficients (full and time-pooled) to the NumPy
  engine's, over the largest coefficient, on mel images of the bundled speech and on noise (the
  tests require <= 1e-5), and to Kymatio 0.3.0's when it is installed;
* scattering throughput, chunks (256 x 256 images) per second at each ``--batches`` size:
  "on device" times ``pooled`` transforms of images already on the device (warm-up first, then
  ``torch.cuda.synchronize`` around each of ``--rounds`` calls; median and best); "from NumPy" adds
  the copies to and from the device (what a scan does); the peak device memory of a call; Kymatio's
  ``ScatteringTorch2D`` (full coefficients, its only output) on the same batch on the same device;
  and the NumPy engine on all CPU cores for reference. The target on an H100/H200 is >= 10,000
  chunks/s on device (Kymatio: about 2,100/s at batch 1024);
* a scan: ``--files`` WAV/FLAC files of ``--seconds`` each (44.1 kHz stereo speech-like signals,
  generated in a temporary folder), scanned by ``melcnn scan --device cuda`` (a subprocess, all
  cores decoding, measurements on) and by ``melcnn.scan(..., measurements=False)`` in this process:
  files/s, chunks/s, the share of the wall time the main process spent in the scattering and head
  ("engine busy"), and the GPU's own utilisation sampled by ``nvidia-smi`` every 0.2 s where it
  is installed ("GPU busy").

Needs torch (``melcnn[gpu]``); Kymatio (``melcnn[test]``) only for its comparisons. No network. The
scattering cache lives in a temporary folder unless ``--cache`` names one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's melcnn, installed or not
sys.path.insert(1, str(ROOT / "tests"))  # media_factory, for the scan's files


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def environment(torch: Any, device: str) -> None:
    print("== environment ==")
    print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA (torch build) {torch.version.cuda}")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        memory = props.total_memory / 2**30
        print(f"device: {torch.cuda.get_device_name(0)}, {memory:.0f} GiB, {props.multi_processor_count} SMs")
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            )
            print(f"driver, max SM clock: {smi.stdout.strip()}")
    else:
        print(f"device: CPU (torch threads {torch.get_num_threads()})")
    print(f"CPU cores usable: {cores()}, load average {os.getloadavg()[0]:.1f}")


def speech_images(n: int) -> np.ndarray:
    """Up to ``n`` mel images of the bundled example clips (real speech), through melcnn's feature path."""
    import melcnn
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk
    from melcnn.spectrogram import chunk_images

    cfg = melcnn.load_model("v2").config
    out = []
    for name in ("bonafide_en.flac", "spoof_en.flac"):
        y = load_audio(Path(melcnn.__file__).parent / "examples" / name).samples
        out.append(chunk_images(chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=0.0).samples, cfg=cfg))
    return np.concatenate(out)[:n]


def batch_of(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` images: the speech images repeated, each with a little noise (so no two are equal)."""
    idx = np.arange(n) % len(images)
    return (images[idx] + 0.01 * rng.standard_normal((n, 256, 256), dtype=np.float32)).astype(np.float32)


def rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def parity(torch_dev: str, kymatio: Any, device: str, speech: np.ndarray) -> None:
    from melcnn.scattering import Scattering

    print("\n== parity: max |torch engine - reference| / max |reference| (the tests require <= 1e-5) ==")
    rng = np.random.default_rng(0)
    x = np.concatenate([speech[:6], rng.random((2, 256, 256), dtype=np.float32)])
    ours, numpy_engine = Scattering(device=torch_dev), Scattering()
    full, pooled = ours(x), ours.pooled(x)
    print(
        f"vs NumPy engine, 6 speech + 2 noise images: full {rel_diff(full, numpy_engine(x)):.1e}, "
        f"pooled {rel_diff(pooled, numpy_engine.pooled(x)):.1e}"
    )
    if kymatio is not None:
        from _kymatio import run

        print(f"vs Kymatio 0.3.0 ScatteringTorch2D, same images: full {rel_diff(full, run(kymatio, x, device)):.1e}")


def rate(v: float) -> str:
    """A chunks/s figure in 8 characters (a decimal below 100)."""
    return f"{v:>8.0f}" if v >= 100 else f"{v:>8.1f}"


def time_calls(fn: Callable[[], Any], sync: Callable[[], None], rounds: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return times


def throughput(torch: Any, torch_dev: str, device: str, kymatio: Any, speech: np.ndarray, args: Any) -> float:
    """Print the chunks/s table; return the best on-device rate of the torch engine."""
    from melcnn.scattering import Scattering

    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    print(f"\n== scattering throughput, chunks/s (median and best of {args.rounds} calls after a warm-up) ==")
    print(f"{'batch':>5}  {'on device':>17}  {'from NumPy':>17}  {'peak memory':>11}  {'Kymatio on device':>17}")
    rng = np.random.default_rng(1)
    best_rate = 0.0
    for b in args.batches:
        x = batch_of(speech, b, rng)
        scat = Scattering(device=torch_dev, batch=b)
        engine = scat._engine
        row = f"{b:>5}"
        try:
            xt = torch.from_numpy(x).to(engine.device)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t = time_calls(lambda: engine.run(xt, pooled=True), sync, args.rounds)  # noqa: B023 - called here
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:>7.1f} GiB" if cuda else f"{'n/a':>11}"
            best_rate = max(best_rate, b / min(t))
            row += f"  {rate(b / statistics.median(t))} {rate(b / min(t))}"
            t = time_calls(lambda: scat.pooled(x), sync, args.rounds, warmup=1)  # noqa: B023 - called here
            row += f"  {rate(b / statistics.median(t))} {rate(b / min(t))}  {peak}"
            del xt
        except torch.cuda.OutOfMemoryError:
            row += "  out of device memory"
        if kymatio is not None and b <= args.kymatio_max_batch:
            try:
                xt = torch.from_numpy(x).to(engine.device)
                with torch.no_grad():
                    t = time_calls(lambda: kymatio(xt), sync, max(1, args.rounds // 2), warmup=1)  # noqa: B023
                row += f"  {rate(b / statistics.median(t))} {rate(b / min(t))}"
                del xt
            except torch.cuda.OutOfMemoryError:
                row += "  out of device memory"
        print(row, flush=True)
        if cuda:
            torch.cuda.empty_cache()
    threads = cores()
    numpy_engine = Scattering(threads=threads)
    n = 8 * threads
    x = batch_of(speech, n, rng)
    t = time_calls(lambda: numpy_engine.pooled(x), lambda: None, 2, warmup=1)
    print(f"NumPy engine (the CPU default), {threads} threads, batch {n}: {rate(n / min(t)).strip()} chunks/s")
    numpy_engine.close()
    return best_rate


def make_archive(root: Path, files: int, seconds: float) -> None:
    """``files`` speech-like WAV/FLAC files (44.1 kHz stereo): eight distinct signals, copied."""
    from media_factory import make_media

    kinds = ("wav_s16", "flac")
    originals = [make_media(kinds[i % 2], root / "src", seconds=seconds, seed=i, name=f"s{i}") for i in range(8)]
    for i in range(files):
        src = originals[i % len(originals)]
        dst = root / "archive" / f"part{i % 4}" / f"clip{i:04d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


class GpuSampler:
    """``nvidia-smi``'s utilisation.gpu every 0.2 s while running (None where nvidia-smi is missing)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.proc: subprocess.Popen | None = None
        if shutil.which("nvidia-smi"):
            cmd = [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-i",
                "0",
                "-lms",
                "200",
            ]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def stop(self) -> str:
        if self.proc is None:
            return "n/a (no nvidia-smi)"
        self.proc.terminate()
        self.proc.wait()
        if not self.samples:
            return "n/a (no samples)"
        return f"{statistics.mean(self.samples):.0f} % (mean of {len(self.samples)} samples)"


def scan_runs(device: str, torch_dev: str, engine_rate: float, args: Any, tmp: Path) -> None:
    import melcnn

    print(f"\n== scan: {args.files} files of {args.seconds:g} s (WAV/FLAC, 44.1 kHz stereo), model v2 ==")
    t = time.perf_counter()
    make_archive(tmp, args.files, args.seconds)
    print(f"archive generated in {time.perf_counter() - t:.1f} s")
    archive = tmp / "archive"

    out = tmp / "cli.jsonl"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    )
    cmd = [sys.executable, "-m", "melcnn", "scan", str(archive), "--out", str(out), "--device", device]
    sampler = GpuSampler() if device == "cuda" else None
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    gpu = sampler.stop() if sampler else "n/a (CPU)"
    if done.returncode != 0:
        print(f"melcnn scan failed (exit status {done.returncode}):\n{done.stderr[-2000:]}")
        return
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    chunks = sum(r["n_chunks"] or 0 for r in rows)
    print(
        f"`melcnn scan --device {device}` (measurements on, default workers): {len(rows)} files in {wall:.1f} s "
        f"(process start to exit): {len(rows) / wall:.1f} files/s, {rate(chunks / wall).strip()} chunks/s; "
        f"GPU busy {gpu}"
    )

    sampler = GpuSampler() if device == "cuda" else None
    t = time.perf_counter()
    s = melcnn.scan(archive, model="v2", device=torch_dev, measurements=False)
    rows = list(s)
    wall = time.perf_counter() - t
    gpu = sampler.stop() if sampler else "n/a (CPU)"
    chunks = s.stats.engine_chunks
    print(
        f"melcnn.scan(device={torch_dev!r}, measurements=False), {s.workers} workers: {len(rows)} files in "
        f"{wall:.1f} s: {len(rows) / wall:.1f} files/s, {rate(chunks / wall).strip()} chunks/s in "
        f"{s.stats.engine_calls} engine calls; engine busy {s.stats.engine_s / wall:.0%} of the wall time; "
        f"GPU busy {gpu}"
    )
    busy = s.stats.engine_s / wall
    print(
        f"the workers delivered {rate(chunks / wall).strip()} chunks/s; the engine alone does "
        f"{rate(engine_rate).strip()} on device: "
        + ("the engine bounds this scan" if busy > 0.7 else "decoding (the CPU side) bounds this scan")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (default) or cpu (a quick check)")
    ap.add_argument("--batches", default=None, help="batch sizes, comma-separated (default 64,256,1024; CPU 1,4,16)")
    ap.add_argument("--rounds", type=int, default=None, help="timed calls per batch size (default 10; CPU 2)")
    ap.add_argument("--files", type=int, default=None, help="files in the scanned archive (default 200; CPU 8)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per file (default 60; CPU 10)")
    ap.add_argument(
        "--kymatio-max-batch", type=int, default=None, help="largest batch for Kymatio (default 1024; CPU 4)"
    )
    ap.add_argument("--no-scan", action="store_true", help="skip the scan")
    ap.add_argument("--cache", default=None, help="melcnn cache folder (default: a temporary one)")
    args = ap.parse_args()
    cpu = args.device == "cpu"
    args.batches = [int(b) for b in (args.batches or ("1,4,16" if cpu else "64,256,1024")).split(",")]
    args.rounds = args.rounds or (2 if cpu else 10)
    args.files = args.files or (8 if cpu else 200)
    args.seconds = args.seconds or (10.0 if cpu else 60.0)
    args.kymatio_max_batch = args.kymatio_max_batch or (4 if cpu else 1024)

    import torch

    if not cpu and not torch.cuda.is_available():
        sys.exit("bench_gpu: CUDA is not available here (no GPU, or a CPU-only torch); run with --device cpu")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="melcnn-bench-gpu-") as tmp:
        os.environ["MELCNN_CACHE_DIR"] = args.cache or str(Path(tmp) / "cache")
        environment(torch, args.device)
        torch_dev = "cpu-torch" if cpu else "cuda"
        try:
            from _kymatio import kymatio_scattering

            kymatio = kymatio_scattering(device=args.device)
        except ImportError:
            print("Kymatio is not installed: no Kymatio comparisons (pip install kymatio==0.3.0)")
            kymatio = None
        speech = speech_images(64)
        parity(torch_dev, kymatio, args.device, speech)
        rate = throughput(torch, torch_dev, args.device, kymatio, speech, args)
        if not cpu:
            verdict = "reached" if rate >= 10_000 else "NOT reached"
            print(f"target >= 10,000 chunks/s on device: {verdict} (best {rate:.0f} chunks/s)")
        if not args.no_scan:
            scan_runs(args.device, torch_dev, rate, args, Path(tmp))
    print(f"\nbenchmark wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
