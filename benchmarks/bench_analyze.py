"""Speed of `Detector.analyze` on a 15.5 s speech clip: warm V2/V3 time, stages, fresh process, peak RSS.

    python benchmarks/bench_analyze.py [--model-dir DIR] [--repeats 7]

Uses the shipped V2/V3 checkpoints when installed; otherwise (or with --random) a checkpoint with
random weights of the shipped shape (speed does not depend on the weights). The clip is the bundled
real-speech example, repeated to 15.5 s and written as a 44.1 kHz stereo MP3, as users send them.
Prints one table; timings are medians over the repeats (and the best one). The stages overlap:
the energy and spectral measurements run on the scattering's worker thread during "features", so
"measurements" is Praat's pitch tracking (and any wait for them). Not a test: run it and paste the
output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np


def make_clip(out: Path, seconds: float = 15.5) -> Path:
    import av
    import soundfile as sf
    import soxr

    y, sr = sf.read(str(resources.files("melcnn") / "examples" / "bonafide_en.flac"), dtype="float32")
    y = np.tile(y, int(np.ceil(seconds * sr / len(y))))[: int(seconds * sr)]
    y44 = soxr.resample(y, sr, 44100)
    stereo = np.stack([y44, 0.9 * y44]).astype(np.float32)
    with av.open(str(out), "w", format="mp3") as box:
        stream = box.add_stream("libmp3lame", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(stereo.reshape(1, -1, order="F"), format="flt", layout="stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out


def random_checkpoint(variant: str, out: Path) -> Path:
    from melcnn.classifier import Checkpoint, HeadConfig, save_checkpoint, torch_head, weights_from_torch
    from melcnn.config import FeatureConfig
    from melcnn.registry import MODELS

    head = HeadConfig()
    ck = Checkpoint(
        name=MODELS[variant].name,
        variant=variant,
        version="bench-random",
        features=FeatureConfig(),
        head=head,
        weights=weights_from_torch(torch_head(head)),
    )
    return save_checkpoint(ck, out / variant)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--random", action="store_true", help="use random weights even if shipped ones exist")
    args = ap.parse_args()

    import melcnn
    from melcnn.registry import available

    tmp = Path(tempfile.mkdtemp(prefix="melcnn-bench-"))
    clip = make_clip(tmp / "speech_15s.mp3")
    shipped = {e.variant for e in available()} if not args.random else set()
    models = {v: (v if v in shipped else str(random_checkpoint(v, tmp))) for v in ("v2", "v3")}
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(
        f"clip: {clip.name} (15.5 s, 44.1 kHz stereo MP3); weights: "
        + ", ".join(f"{v}={'shipped' if v in shipped else 'random'}" for v in models)
    )
    print()
    rows = {}
    for variant, ref in models.items():
        t = time.perf_counter()
        det = melcnn.load_model(ref)
        load_s = time.perf_counter() - t
        for _ in range(3):  # warm-up
            det.analyze(media_path=clip)
        totals, stages = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = det.analyze(media_path=clip)
            totals.append(time.perf_counter() - t)
            stages.append(r["timings"])
        med = statistics.median(totals)
        stage_medians = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
        rows[variant] = (med, load_s, len(r["chunks"]), stage_medians, min(totals))
    print(f"{'':24s}" + "".join(f"{v.upper():>12s}" for v in rows))
    print(f"{'chunks':24s}" + "".join(f"{rows[v][2]:>12d}" for v in rows))
    print(f"{'load_model (s)':24s}" + "".join(f"{rows[v][1]:>12.3f}" for v in rows))
    print(f"{'warm analyze (s)':24s}" + "".join(f"{rows[v][0]:>12.3f}" for v in rows))
    print(f"{'  best of the repeats':24s}" + "".join(f"{rows[v][4]:>12.3f}" for v in rows))
    print(f"{'realtime factor':24s}" + "".join(f"{rows[v][0] / 15.5:>12.4f}" for v in rows))
    for stage in rows["v2"][3]:
        print(f"{'  ' + stage + ' (s)':24s}" + "".join(f"{rows[v][3][stage]:>12.4f}" for v in rows))

    print()
    for variant, ref in models.items():
        walls, rss = [], []
        for _ in range(3):
            t = time.perf_counter()
            p = subprocess.run(
                [sys.executable, "-c", _FRESH, ref, str(clip)], capture_output=True, text=True, check=True
            )
            walls.append(time.perf_counter() - t)
            rss.append(json.loads(p.stdout.splitlines()[-1])["maxrss_mb"])
        print(
            f"fresh `melcnn analyze --json` process, {variant.upper()}: wall {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f}), peak RSS {max(rss):.0f} MB"
        )


# runs the CLI in-process after a fresh interpreter start, then reports its own peak RSS
_FRESH = """
import sys, json, resource, io, contextlib
from melcnn.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main(["analyze", sys.argv[2], "--model", sys.argv[1], "--json"])
assert code == 0, code
json.loads(buf.getvalue())
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

if __name__ == "__main__":
    main()
