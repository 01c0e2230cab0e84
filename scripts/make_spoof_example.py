"""Make the bundled spoof example `src/melcnn/examples/spoof_en.flac` (reproducible).

    python scripts/make_spoof_example.py   # needs festival + festvox-us-slt-hts (install_training_deps.sh)

Festival's HTS voice cmu_us_slt_arctic_hts (statistical parametric TTS; a generator the shipped models
never saw in training: it is held out for evaluation) reads three sentences written for melcnn. The
audio goes through the same clip finishing as the training data (trim, loudness, noise floor) and is
saved as 16 kHz mono 16-bit FLAC.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

TEXT = (
    "Hello, this is your bank calling about a recent payment on your account. "
    "Please confirm the last four digits of your card so that we can stop the transfer. "
    "If you do not call us back today, the account will be locked."
)
OUT = Path(__file__).resolve().parents[1] / "src" / "melcnn" / "examples" / "spoof_en.flac"


def main() -> int:
    from melcnn.training.generators import tts_festival

    y = np.asarray(tts_festival(TEXT, "cmu_us_slt_arctic_hts", np.random.default_rng(0)), dtype=np.float64)  # 16 kHz
    # trim leading/trailing near-silence, normalise to -20 dBFS RMS, add a -75 dBFS noise floor
    env = np.abs(y) > 0.01 * np.abs(y).max()
    idx = np.flatnonzero(env)
    y = y[max(0, idx[0] - 1600) : idx[-1] + 1600]
    y *= 10 ** (-20 / 20) / np.sqrt(np.mean(y**2))
    y += np.random.default_rng(1).normal(0, 10 ** (-75 / 20), len(y))
    y = np.clip(y, -1, 1)
    sf.write(OUT, y.astype(np.float32), 16000, subtype="PCM_16")
    print(f"wrote {OUT} ({len(y) / 16000:.1f} s, {OUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
