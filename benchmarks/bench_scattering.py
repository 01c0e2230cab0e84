"""Benchmark melcnn's NumPy scattering against Kymatio's torch implementation (not a test).

Prints, on this machine: per-image milliseconds of Kymatio 0.3.0's torch ``Scattering2D`` (2 torch
threads) and of ``melcnn.scattering.Scattering`` for batches of 1, 5 and 9 images of 256 x 256,
measured warm and interleaved (best of several rounds, since shared machines are noisy); the
parity of the two; the same pooled transform with the compiled kernels and FFTW (the defaults), with
the NumPy kernels (melcnn installed without a C compiler) and with the scipy.fft fallback;
the cold filter-bank build and FFTW plan measurement versus the cached filters and wisdom in fresh
processes; and a fresh process's import + load + first call (the ``melcnn analyze`` budget).

Usage: ``python benchmarks/bench_scattering.py [--rounds N] [--threads T]``. The cache lives in a
temporary directory, so the user's cache is neither used nor touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FRESH_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from melcnn.scattering import Scattering
t1 = time.perf_counter()
s = Scattering()
t2 = time.perf_counter()
s(np.random.default_rng(0).random((1, 256, 256), dtype=np.float32))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "construct_s": t2 - t1, "first_call_s": t3 - t2,
                  "torch_imported": "torch" in sys.modules, "kymatio_imported": "kymatio" in sys.modules}))
"""


def fresh_process(cache: str) -> dict:
    env = dict(os.environ, MELCNN_CACHE_DIR=cache)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - t
    return result


def images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Image-like test inputs in [0, 1]: smooth blobs plus a little noise."""
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(2, 12, 3)
        img = 0.5 + 0.3 * np.sin(a * xx + b * yy) * np.cos(c * yy) + 0.05 * rng.standard_normal((256, 256))
        out.append(np.clip(img, 0, 1))
    return np.asarray(out, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per batch size (best is reported)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both implementations")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="melcnn-bench-") as cache:
        print("== filter bank: cold build vs cached load (fresh processes) ==")
        cold = fresh_process(cache)
        warm = fresh_process(cache)
        print(
            f"cold  (Kymatio filter_bank + write cache): construct {cold['construct_s']:.2f} s, "
            f"first call (measures FFTW plans, writes wisdom) {cold['first_call_s']:.2f} s"
        )
        print(
            f"cached (load + verify sha256 + prepare):  construct {warm['construct_s']:.3f} s; "
            f"import {warm['import_s']:.2f} s, first call (plans from cached wisdom) {warm['first_call_s']:.2f} s, "
            f"whole process {warm['process_wall_s']:.2f} s; torch imported: {warm['torch_imported']}, "
            f"kymatio imported: {warm['kymatio_imported']}"
        )

        os.environ["MELCNN_CACHE_DIR"] = cache
        import torch

        torch.set_num_threads(args.threads)
        from melcnn.scattering import Scattering

        ours = Scattering(threads=args.threads)
        numpy_kernels = Scattering(threads=args.threads, kernels="numpy")
        fallback = Scattering(threads=args.threads, fft="scipy")
        print(f"\nmelcnn: {ours._engine.kernels} kernels, {ours._engine.fft.backend} FFTs")
        # Kymatio's own ScatteringTorch2D forward, with its filters loaded from our cache
        from _kymatio import kymatio_scattering, run

        kym_module = kymatio_scattering()

        def kym(x: np.ndarray) -> np.ndarray:
            return run(kym_module, x)

        rng = np.random.default_rng(0)
        x = images(9, rng)
        print("\n== parity (max |ours - kymatio| / max |kymatio|, per image) ==")
        ref, got = kym(x), ours(x)
        rel = np.abs(got - ref).max(axis=(1, 2, 3)) / np.abs(ref).max(axis=(1, 2, 3))
        print(" ".join(f"{r:.1e}" for r in rel))
        xr = rng.random((3, 256, 256), dtype=np.float32)
        ref, got = kym(xr), ours(xr)
        rel = np.abs(got - ref).max(axis=(1, 2, 3)) / np.abs(ref).max(axis=(1, 2, 3))
        print("uniform noise:", " ".join(f"{r:.1e}" for r in rel))

        print(f"\n== warm per-image time, {args.threads} threads, best of {args.rounds} interleaved rounds ==")
        print(
            f"{'batch':>5} {'kymatio torch':>14} {'melcnn':>10} {'speed-up':>9} {'melcnn pooled()':>16}"
            f" {'pooled(), NumPy kernels':>24} {'pooled(), scipy.fft':>20}"
        )
        for b in (1, 5, 9):
            xb = x[:b]
            runs = (
                ("kym", kym),
                ("ours", ours),
                ("pooled", ours.pooled),
                ("numpyk", numpy_kernels.pooled),
                ("scipy", fallback.pooled),
            )
            best = {name: np.inf for name, _ in runs}
            for _, fn in runs:
                fn(xb)
            for _ in range(args.rounds):
                for name, fn in runs:
                    t = time.perf_counter()
                    fn(xb)
                    best[name] = min(best[name], (time.perf_counter() - t) / b * 1e3)
            print(
                f"{b:>5} {best['kym']:>11.1f} ms {best['ours']:>7.1f} ms {best['kym'] / best['ours']:>8.1f}x"
                f" {best['pooled']:>13.1f} ms {best['numpyk']:>21.1f} ms {best['scipy']:>17.1f} ms"
            )
        for s in (ours, numpy_kernels, fallback):
            s.close()


if __name__ == "__main__":
    main()
