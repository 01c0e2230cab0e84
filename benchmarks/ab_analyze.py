"""A/B speed of `Detector.analyze`: this checkout against a git revision, interleaved on one machine.

    python benchmarks/ab_analyze.py [--base HEAD] [--rounds 6] [--repeats 5] [--quiet-cores 0.15] [--shared-wisdom]

On a shared machine absolute timings drift with the other load; comparing two separate runs of
``bench_analyze.py`` mixes that drift into the difference. This script exports ``--base`` (any git
revision; its ``src`` tree, with its compiled kernels built) to a temporary directory and alternates
fresh worker processes of the two versions (base first in even rounds, this checkout first in odd
ones), each version with its own cache directory (its own FFTW wisdom; with ``--shared-wisdom`` both
start from a copy of the user's, which takes FFTW's plan-to-plan noise of 5-10 % out of a comparison
of changes that plan their FFTs by the same rules); both use this checkout's
shipped weights. Each worker loads the shipped V2 and V3 models, warms up, and times
``--repeats`` analyses of the 15.5 s MP3 of ``bench_analyze.py`` per model, noting for each how
much CPU the *other* processes of the machine used meanwhile (from ``/proc/stat``, in cores).
Printed per version and model: the best and the median warm time over all analyses and over the
"quiet" ones only (other processes below ``--quiet-cores``), the process CPU time of an analysis
(all threads), the ratios new/base, the median per-stage timings, and the largest difference of
the unrounded chunk scores between the versions. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WORKER = r"""
import json, os, sys, time
import melcnn

def busy_ticks():  # all CPUs' busy time, in clock ticks
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle and iowait

def own_ticks():
    t = os.times()
    return (t.user + t.system) * os.sysconf("SC_CLK_TCK")

clip, repeats = sys.argv[1], int(sys.argv[2])
out = {"module": melcnn.__file__}
hz = os.sysconf("SC_CLK_TCK")
for v in ("v2", "v3"):
    det = melcnn.load_model(v)
    det.analyze(media_path=clip)
    det.analyze(media_path=clip)
    totals, cpus, others, stages = [], [], [], []
    for _ in range(repeats):
        b0, o0 = busy_ticks(), own_ticks()
        t, c = time.perf_counter(), time.process_time()
        r = det.analyze(media_path=clip)
        wall = time.perf_counter() - t
        cpus.append(time.process_time() - c)
        others.append(max(0.0, (busy_ticks() - b0) - (own_ticks() - o0)) / hz / wall)
        totals.append(wall)
        stages.append(r["timings"])
    # unrounded chunk scores (the report rounds them)
    from melcnn.audio import load_audio
    from melcnn.chunking import chunk
    cfg = det.config
    y = load_audio(clip, sample_rate=cfg.sample_rate, max_duration_s=7200, min_duration_s=cfg.chunk_s).samples
    chunks = chunk(y, sr=cfg.sample_rate, chunk_s=cfg.chunk_s, overlap_s=det.default_overlap_s)
    scores = [float(s) for s in det.score_chunks(chunks.samples)]
    out[v] = {"totals": totals, "cpus": cpus, "others": others, "stages": stages, "scores": scores}
print(json.dumps(out))
"""


def export_src(rev: str, dest: Path) -> Path:
    """``git archive REV src`` (and its build files) under ``dest``, with this checkout's weights; returns ``src``.

    Both versions then run the same model, so the score comparison isolates the code. If the
    revision has compiled kernels (``_kernels.pyx``), they are built there as ``pip install`` would
    (without them the base would silently run the slower NumPy fallback).
    """
    paths = ["src", "setup.py", "pyproject.toml"] if _in_rev(rev, "setup.py") else ["src"]
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *paths], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    weights = dest / "src" / "melcnn" / "weights"
    shutil.rmtree(weights, ignore_errors=True)
    shutil.copytree(ROOT / "src" / "melcnn" / "weights", weights)
    if (dest / "src" / "melcnn" / "_kernels.pyx").exists():
        subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=dest, capture_output=True, check=True
        )
        # setup.py builds nothing, quietly, where Cython is missing: then the base would time the NumPy
        # fallback against this checkout's compiled kernels
        if not any((dest / "src" / "melcnn").glob("_kernels*.[sp][oy]*")):
            sys.exit(
                f"ab_analyze: the compiled kernels of {rev} were not built (is Cython installed? "
                "`pip install cython`); the comparison would time the base's NumPy fallback"
            )
    return dest / "src"


def _in_rev(rev: str, path: str) -> bool:
    done = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{rev}:{path}"], capture_output=True)
    return done.returncode == 0


def seed_cache(dest: Path, wisdom: bool = False) -> Path:
    """A cache directory for one version: the scattering filter banks copied from the user's cache
    (they take 15-20 s to build), and with ``wisdom`` the user's FFTW wisdom (else each version
    plans by its own rules)."""
    from melcnn.scattering import cache_dir

    dest.mkdir(parents=True)
    for pattern in ("scattering2d-*.npz", *(["fftw-wisdom-*.txt"] if wisdom else [])):
        for path in cache_dir().glob(pattern):
            shutil.copy2(path, dest / path.name)
    return dest


def run_worker(src: Path, clip: Path, repeats: int, cache: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), MELCNN_CACHE_DIR=str(cache))
    p = subprocess.run(
        [sys.executable, "-c", _WORKER, str(clip), str(repeats)], env=env, capture_output=True, text=True, check=True
    )
    result = json.loads(p.stdout.splitlines()[-1])
    assert Path(result["module"]).is_relative_to(src), result["module"]
    return result


def _fmt(values: list[float]) -> str:
    if not values:
        return f"{'-':>8s}{'-':>8s}"
    return f"{min(values):8.3f}{statistics.median(values):8.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5, help="timed analyses per model and worker process")
    ap.add_argument("--quiet-cores", type=float, default=0.15, help="other processes' CPU below which a run is quiet")
    ap.add_argument(
        "--shared-wisdom", action="store_true", help="both versions start from the user's FFTW wisdom (same plans)"
    )
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_analyze import make_clip

    # resolve the revision once: HEAD may move while this runs (other people commit)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.base], capture_output=True, text=True, check=True)
    commit = rev.stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="melcnn-ab-"))
    clip = make_clip(tmp / "speech_15s.mp3")
    sources = {"base": export_src(commit, tmp / "base"), "new": ROOT / "src"}
    caches = {name: seed_cache(tmp / f"cache-{name}", args.shared_wisdom) for name in sources}
    for name in sources:  # plans (and FFTW wisdom) made outside the timed rounds
        run_worker(sources[name], clip, 1, caches[name])
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    for r in range(args.rounds):
        order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
        for name in order:
            runs[name].append(run_worker(sources[name], clip, args.repeats, caches[name]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"base = {args.base} ({commit[:7]}), new = working tree; {os.cpu_count()} cores")
    print(f"{args.rounds} rounds x {args.repeats} warm analyses per model and version, interleaved")
    print(f"quiet = other processes used < {args.quiet_cores} cores during the analysis\n")
    print(f"{'':10s}{'wall: all (best, median)':>24s}{'quiet (n, best, median)':>28s}{'cpu (best, median)':>20s}")
    for v in ("v2", "v3"):
        summary = {}
        for name in ("base", "new"):
            res = [
                (t, c, o)
                for run in runs[name]
                for t, c, o in zip(*(run[v][k] for k in ("totals", "cpus", "others")), strict=True)
            ]
            walls = [t for t, _, _ in res]
            quiet = [t for t, _, o in res if o < args.quiet_cores]
            cpus = [c for _, c, _ in res]
            summary[name] = (walls, quiet, cpus)
            print(f"{v.upper()} {name:6s}{_fmt(walls):>24s}{len(quiet):>12d}{_fmt(quiet):>16s}{_fmt(cpus):>20s}")
        ratio = [
            (
                min(summary["new"][i]) / min(summary["base"][i]),
                statistics.median(summary["new"][i]) / statistics.median(summary["base"][i]),
            )
            if summary["new"][i] and summary["base"][i]
            else (float("nan"), float("nan"))
            for i in range(3)
        ]
        print(
            f"{v.upper()} new/base: wall best {ratio[0][0]:.2f} median {ratio[0][1]:.2f}; quiet best {ratio[1][0]:.2f} "
            f"median {ratio[1][1]:.2f}; cpu best {ratio[2][0]:.2f} median {ratio[2][1]:.2f}"
        )
        for name in ("base", "new"):
            stages = [s for run in runs[name] for s in run[v]["stages"]]
            print(
                f"   {name:5s} stages (median s): "
                + ", ".join(f"{k} {statistics.median(s[k] for s in stages):.4f}" for k in stages[0])
            )
        diff = max(abs(a - b) for a, b in zip(runs["base"][0][v]["scores"], runs["new"][0][v]["scores"], strict=True))
        print(f"   max |chunk score new - base| {diff:.2e}\n")


if __name__ == "__main__":
    main()
