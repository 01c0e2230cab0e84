"""``manifest.csv`` of a built data set: its columns, its one writer and its one reader, and summaries of its rows.

A row describes one clip (path relative to DATA_DIR, label, split, source, generator, speaker, language,
laundering, ...); :func:`melcnn.training.features.read_clips` gives the rows as typed clips for training.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from . import audio as A
from . import protocol as P

MANIFEST_COLUMNS = (
    "path",
    "label",
    "source",
    "generator",
    "speaker",
    "language",
    "split",
    "duration_s",
    "augmentation",
    "clip_id",
    "voice",
    "channel",
    "codec",
    "parent",
    "text",
    "view_of",
)


def write_manifest(rows: list[dict], path: Path) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["split"], r["label"], r["clip_id"])):
        w.writerow(r)
    A.write_text_atomic(path, buf.getvalue())


def read_manifest(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["duration_s"] = float(r["duration_s"])
        r["codec"] = int(r["codec"])
    return rows


def summarise(rows: list[dict]) -> dict:
    def nest():
        return defaultdict(lambda: {"clips": 0, "minutes": 0.0})

    by_sl = nest()
    by_slg = nest()
    by_sll = nest()
    by_full = nest()
    for r in rows:
        m = r["duration_s"] / 60.0
        for d, k in (
            (by_sl, f"{r['split']}/{r['label']}"),
            (by_slg, f"{r['split']}/{r['label']}/{r['generator']}"),
            (by_sll, f"{r['split']}/{r['label']}/{r['language']}"),
            (by_full, f"{r['split']}/{r['label']}/{r['generator']}/{r['language']}"),
        ):
            d[k]["clips"] += 1
            d[k]["minutes"] += m

    def fin(d):
        return {k: {"clips": v["clips"], "minutes": round(v["minutes"], 2)} for k, v in sorted(d.items())}

    spk = defaultdict(set)
    for r in rows:
        spk[r["split"]].add(r["speaker"])
    return {
        "clips": len(rows),
        "minutes": round(sum(r["duration_s"] for r in rows) / 60.0, 2),
        "diversity": diversity(rows),
        "split_label": fin(by_sl),
        "split_label_generator": fin(by_slg),
        "split_label_language": fin(by_sll),
        "split_label_generator_language": fin(by_full),
        "speakers": {s: sorted(v) for s, v in sorted(spk.items())},
        "protocol": P.describe(),
    }


def diversity(rows: list[dict]) -> dict:
    """Counts that say how diverse the data is, per split (base clips; views counted apart)."""
    out = {}
    for split in P.SPLITS:
        rs = [r for r in rows if r["split"] == split and not r.get("view_of")]
        bona = [r for r in rs if r["label"] == "bonafide"]
        spoof = [r for r in rs if r["label"] == "spoof"]
        views = [r for r in rows if r["split"] == split and r.get("view_of")]
        out[split] = {
            "sources": len({r["source"] for r in bona}),
            "speakers": len({r["speaker"] for r in bona}),
            "languages": len({r["language"] for r in rs}),
            "channels": sorted({r["channel"] for r in bona}),
            "generators": len({r["generator"] for r in spoof}),
            "voices": len({r["speaker"] for r in spoof if r.get("voice")}),
            "minutes_bonafide": round(sum(r["duration_s"] for r in bona) / 60, 1),
            "minutes_spoof": round(sum(r["duration_s"] for r in spoof) / 60, 1),
            "views": len(views),
            "minutes_views": round(sum(r["duration_s"] for r in views) / 60, 1),
        }
    return out


def format_diversity(div: dict) -> str:
    lines = ["split   sources speakers languages channels generators voices  bona fide min  spoof min  views"]
    for split, d in div.items():
        lines.append(
            f"{split:7s} {d['sources']:7d} {d['speakers']:8d} {d['languages']:9d} {len(d['channels']):8d} "
            f"{d['generators']:10d} {d['voices']:6d} {d['minutes_bonafide']:14.1f} {d['minutes_spoof']:10.1f} "
            f"{d['views']:6d}"
        )
    return "\n".join(lines)
