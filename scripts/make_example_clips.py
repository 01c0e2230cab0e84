"""Build the bundled real-speech example clip ``src/melcnn/examples/bonafide_en.flac``.

The clip is a concatenation of a few English voice prompts recorded by Allison Smith for the Asterisk
PBX (Debian package ``asterisk-core-sounds-en-g722``, licence CC-BY-SA-3.0; see
``src/melcnn/examples/README.md``). Get and unpack the package first (Debian/Ubuntu)::

    cd /tmp && apt-get update && apt-get download asterisk-core-sounds-en-g722
    dpkg-deb -x asterisk-core-sounds-en-g722_*.deb /tmp/ast-en
    pip install g722          # G.722 decoder (module name ``G722``)

then run::

    python scripts/make_example_clips.py /tmp/ast-en

The prompts are raw G.722 at 64 kbit/s, 16 kHz after decoding. Each prompt is trimmed to its speech
(frames within 35 dB of the prompt's loudest 10 ms frame) plus ``PAD_S`` of the prompt's own recorded
room noise on each side, so consecutive prompts are separated by ~0.3 s of *recorded* low-level noise
(about -80 dBFS); no digital zeros are inserted and nothing else is changed (no gain, no filtering).
The output is deterministic: the same package version gives the same samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000  # Hz, G.722 output rate
PAD_S = 0.15  # seconds of recorded noise kept before and after each prompt's speech
ACTIVE_DB = 35.0  # dB below the prompt's loudest 10 ms frame that still counts as speech
SOUNDS_SUBDIR = Path("usr/share/asterisk/sounds/en_US_f_Allison")

#: the prompts used, in order (file stems in ``SOUNDS_SUBDIR``)
PROMPTS: tuple[str, ...] = (
    "tt-weasels",
    "demo-nomatch",
    "vm-mailboxfull",
    "conf-onlyperson",
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "melcnn" / "examples" / "bonafide_en.flac"


def decode_g722(path: Path) -> np.ndarray:
    """Decode a raw G.722 (64 kbit/s) file to float32 samples in [-1, 1] at 16 kHz."""
    from G722 import G722  # pip install g722

    pcm = np.asarray(G722(SAMPLE_RATE, 64_000).decode(path.read_bytes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def trim_to_speech(x: np.ndarray) -> np.ndarray:
    """Keep the speech of one prompt plus ``PAD_S`` seconds of its recorded noise on each side."""
    hop = SAMPLE_RATE // 100  # 10 ms frames
    n = len(x) // hop
    frames = x[: n * hop].reshape(n, hop).astype(np.float64)
    level_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(level_db > level_db.max() - ACTIVE_DB)
    pad = int(PAD_S * SAMPLE_RATE)
    start = max(0, active[0] * hop - pad)
    stop = min(len(x), (active[-1] + 1) * hop + pad)
    return x[start:stop]


def make_clip(root: Path) -> np.ndarray:
    """Concatenate the trimmed ``PROMPTS`` found under the extracted package ``root``."""
    parts = []
    for stem in PROMPTS:
        path = root / SOUNDS_SUBDIR / f"{stem}.g722"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: extract asterisk-core-sounds-en-g722 to {root}")
        parts.append(trim_to_speech(decode_g722(path)))
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="directory the .deb was extracted to (dpkg-deb -x)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output FLAC path")
    args = parser.parse_args(argv)

    clip = make_clip(args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, clip, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    print(f"wrote {args.out}: {len(clip) / SAMPLE_RATE:.2f} s, {args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
