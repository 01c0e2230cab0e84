"""Orchestration of ``melcnn data build``: fetch and inventory the sources, plan, make the clips in resumable
rounds, then write the manifest, failures, summary and audit.

Needs everything :mod:`melcnn.training.sources` and :mod:`melcnn.training.generators` need
(``scripts/install_training_deps.sh`` installs it). Generators that are not installed are skipped
and reported in ``summary.json``; bona fide packages that cannot be fetched likewise.

Layout of DATA_DIR::

    sources/debs/*.deb, sources/PKG/...   unpacked Debian packages (bona fide material)
    inventory.json, noise_files.json      usable source files, non-speech sounds (cached)
    plan.json                             every clip to make, with its generator and augmentation
    clips/SPLIT/LABEL/CLIP.flac (+ .json) 16 kHz mono 16-bit FLAC, and its manifest row
    clips/SPLIT/LABEL/views/CLIP~vK.flac  channel-augmented views of train and dev clips
    manifest.csv, summary.json, audit.json, failures.json

Every clip and its row are written atomically; a rerun skips clips whose row exists with the same
specification, so an interrupted build resumes. The build runs in rounds of whole utterances (a bona
fide clip, its spoof partner and their views) so that any prefix of it is a balanced data set. All
randomness derives from (seed, clip id).

The parts: :mod:`melcnn.training.plan` (which clips, with which generator and laundering),
:mod:`melcnn.training.clips` (making one clip, and the worker pool) and :mod:`melcnn.training.manifest`
(``manifest.csv`` and the summaries of its rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from . import audio as A
from . import generators as G
from . import protocol as P
from . import sources as S
from .clips import NOISE_LIST, Progress, describe_augmentation, finished_row, make_clips
from .manifest import format_diversity, summarise, write_manifest
from .plan import load_sentences, make_plan

DEFAULT_VIEWS = 2
BUILD_ROUNDS = 8  # the build runs in this many rounds of whole utterances
INVENTORY_VERSION = 4  # bump when the inventory changes (3: speech_s below SHORT_S; 4: game and Tux Paint sources)


def build_dataset(
    data_dir: Path,
    *,
    minutes: float | None = None,
    seed: int = 0,
    workers: int = 2,
    views: int = DEFAULT_VIEWS,
    revocoded_share: float = 0.0,
    transform_share: float = 0.0,
    candidate_transforms: tuple[str, ...] = (),
    view_denoise: float = 0.0,
    view_opus_ml: float = 0.0,
    manifest_only: bool = False,
    packages: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build (or resume) the dataset in ``data_dir``; returns the path of ``manifest.csv``.

    minutes: approximate cap on bona fide minutes (None: everything); the spoof side matches it.
    views: channel-augmented views of every train and dev clip (see :mod:`melcnn.training.augment`).
    revocoded_share: share of each split's utterances that get an extra re-vocoded TTS spoof (0: none; see
    :mod:`melcnn.training.plan`); adding it to a finished build makes only the new clips.
    transform_share: share of the train split's utterances that get an extra spoof from a signal-processing
    transform of the utterance (phase vocoder, minimum phase, formant shift; 0: none); also only new clips.
    candidate_transforms: transforms of :data:`~melcnn.training.protocol.CANDIDATE_TRANSFORMS` that each add
    an extra spoof to :data:`~melcnn.training.plan.CANDIDATE_SHARE` of the train split's utterances, each
    drawn on its own (to be screened by the cross-validation); also only new clips.
    view_denoise: share of the views that also pass through a noise suppressor (spectral gating; 0: none).
    Views of a finished build that draw it are made again (their parameters change); the others are kept.
    view_opus_ml: share of the views that also pass through a VoIP leg, Opus at 9-16 kbit/s decoded by libopus
    1.5 with its LACE or NoLACE post-filter or none (:mod:`melcnn.training.opus_ml`; 0: none); as for
    ``view_denoise``, only the views that draw it are made again.
    manifest_only: make no clip; write the manifest, summary and audit of the clips already finished
    (the build runs in rounds of whole utterances, so any prefix of it is a balanced data set).
    packages: build from these bona fide packages only (default: all of :data:`sources.PACKAGES`).
    """
    t0 = time.time()
    if view_opus_ml > 0 and not manifest_only:
        from .opus_ml import require

        require()  # fail now, with what to install, rather than in the first view that draws it
    if views > 0 and not manifest_only:
        A.require_av_encoders()  # likewise for the codecs of the views
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sources_dir = data_dir / "sources"
    status = S.fetch_packages(sources_dir, progress, packages)
    if not any(v == "ok" for v in status.values()):
        raise RuntimeError(f"no bona fide package could be fetched: {status}")
    inv_path = data_dir / "inventory.json"
    key = sorted(p for p, v in status.items() if v == "ok")
    # the inventory depends only on the exact .deb files: share it through the .deb cache, if any
    debs = sorted(d.name for d in (sources_dir / "debs").glob("*.deb") if d.name.split("_")[0] in key)
    cache = os.environ.get("MELCNN_DEB_CACHE")
    shared_inv = (
        Path(cache) / f"inventory-{hashlib.sha1(json.dumps(debs).encode()).hexdigest()[:12]}.json" if cache else None
    )
    if not inv_path.exists() and shared_inv is not None and shared_inv.exists():
        A.write_text_atomic(inv_path, shared_inv.read_text(encoding="utf-8"))
    files = None
    if inv_path.exists():
        try:
            cached = json.loads(inv_path.read_text())
            if cached.get("packages") == key and cached.get("version") == INVENTORY_VERSION:
                files = [S.RawFile(**r) for r in cached["files"]]
        except (OSError, ValueError, TypeError):
            files = None
    if files is None:
        if progress:
            progress("inventory", 0, 1)
        files = S.inventory(sources_dir, status)
        A.write_text_atomic(
            inv_path,
            json.dumps(
                {"version": INVENTORY_VERSION, "packages": key, "files": [asdict(f) for f in files]}, ensure_ascii=False
            ),
        )
        if shared_inv is not None:
            try:
                A.write_text_atomic(shared_inv, inv_path.read_text(encoding="utf-8"))
            except OSError:
                pass
    if progress:
        progress("inventory", 1, 1)
    utts = S.build_utterances(files, seed)
    avail = G.available_generators()
    fest = G.festival_voices_installed()
    noise = S.noise_files(sources_dir, status)
    A.write_text_atomic(data_dir / NOISE_LIST, json.dumps(noise))
    extra = defaultdict(list)
    for f in files:
        if f.package == "tuxpaint-stamps-default" and f.text:
            extra[f.language].append(f.text)
    specs = make_plan(
        utts,
        minutes=minutes,
        seed=seed,
        avail=avail,
        fest_installed=fest,
        sentences=load_sentences(),
        extra_train_texts={k: sorted(set(v)) for k, v in extra.items()},
        views=views,
        noise_files=len(noise),
        revocoded_share=revocoded_share,
        transform_share=transform_share,
        candidate_transforms=tuple(candidate_transforms),
        view_denoise=view_denoise,
        view_opus_ml=view_opus_ml,
    )
    A.write_text_atomic(
        data_dir / "plan.json",
        json.dumps(
            {
                "seed": seed,
                "minutes": minutes,
                "views": views,
                "revocoded_share": revocoded_share,
                "transform_share": transform_share,
                "candidate_transforms": list(candidate_transforms),
                "view_denoise": view_denoise,
                "view_opus_ml": view_opus_ml,
                "clips": [{k: v for k, v in s.items() if k != "utt"} for s in specs],
            },
            ensure_ascii=False,
            indent=0,
        ),
    )
    # in rounds of utterances (a bona fide clip, its spoof partner and their views together), in a seeded
    # order, so that the clips finished at any moment form a balanced data set (see `--manifest-only`)
    rounds: dict[int, list[dict]] = defaultdict(list)
    for s in specs:
        rounds[int(hashlib.sha1(f"{seed}:{s['parent']}".encode()).hexdigest(), 16) % BUILD_ROUNDS].append(s)
    results: list[dict] = []
    if manifest_only:  # the clips finished so far (by an interrupted or still running build), nothing new
        results = [r for r in (finished_row(data_dir, s) for s in specs) if r is not None]
    for k in range(0 if manifest_only else BUILD_ROUNDS):
        group = rounds.get(k, [])
        stage = f"round {k + 1}/{BUILD_ROUNDS}"
        base = [s for s in group if not s.get("view_of")]
        res = make_clips(base, data_dir, seed, workers, progress, stage + " clips")
        made = {r["clip_id"] for r in res if "error" not in r}
        views_k = [s for s in group if s.get("view_of") in made]
        results += res + make_clips(views_k, data_dir, seed, workers, progress, stage + " views")
    rows = [r for r in results if "error" not in r]
    by_id = {s["clip_id"]: s for s in specs}
    for r in rows:  # descriptions come from the plan, so that rows written by an older version agree
        if not r.get("view_of"):
            r["augmentation"] = describe_augmentation(by_id[r["clip_id"]]["aug"])
    failures = [r for r in results if "error" in r]
    A.write_text_atomic(
        data_dir / "failures.json",
        json.dumps(sorted(failures, key=lambda r: r["clip_id"]), ensure_ascii=False, indent=1),
    )
    manifest = data_dir / "manifest.csv"
    write_manifest(rows, manifest)
    problems = P.check_protocol(rows)
    summary = summarise(rows)
    summary.update(
        {
            "seed": seed,
            "minutes_requested": minutes,
            "packages": status,
            "generators_available": avail,
            "generator_licences": {
                g: G.LICENCES.get(g, "") for g in sorted({r["generator"] for r in rows}) if g in G.LICENCES
            },
            "failures_by_generator": dict(Counter(f["generator"] for f in failures)),
            "protocol_violations": problems,
        }
    )
    if progress:
        progress("audit", 0, 1)
    from .audit import format_audit, shortcut_audit

    try:
        audit = shortcut_audit(manifest)
    except Exception as e:  # the data is still usable; say why the audit did not run
        audit = {"error": f"{type(e).__name__}: {e}"}
    A.write_text_atomic(data_dir / "audit.json", json.dumps(audit, indent=1))
    if progress:
        progress("audit", 1, 1)
    summary["audit"] = {k: v for k, v in audit.items() if k != "features"}
    summary["build_seconds"] = round(time.time() - t0, 1)
    A.write_text_atomic(data_dir / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1))
    sys.stderr.write(format_diversity(summary["diversity"]) + "\n" + format_audit(audit) + "\n")
    if problems:
        raise RuntimeError("protocol violations: " + "; ".join(problems[:5]))
    return manifest
