"""``melcnn data build``: fetch the bona fide sources, generate the spoofs, split, write a manifest.

Needs everything :mod:`melcnn.training.sources` and :mod:`melcnn.training.generators` need
(``scripts/install_training_deps.sh`` installs it). Generators that are not installed are skipped
and reported in ``summary.json``; bona fide packages that cannot be fetched likewise.

Layout of DATA_DIR::

    sources/debs/*.deb, sources/PKG/...   unpacked Debian packages (bona fide material)
    inventory.json                        usable source files (cached)
    plan.json                             every clip to make, with its generator and augmentation
    clips/SPLIT/LABEL/CLIP.flac (+ .json) 16 kHz mono 16-bit FLAC, and its manifest row
    manifest.csv, summary.json, audit.json, failures.json

Every clip and its row are written atomically; a rerun skips clips whose row exists with the same
specification, so an interrupted build resumes. All randomness derives from (seed, clip id).

Design of the spoof side (see ``shared/DATA.md``): each bona fide utterance gets exactly one spoof
partner in its split: resynthesis of the utterance itself (about 65%: same speaker, text, language,
channel) or a TTS clip in the same language with a text of similar length (the utterance's own words
where the package names them). The partner inherits the utterance's native channel (G.722, GSM,
Vorbis, Opus, 8/11 kHz band limit), so channel is no cue; on top of that both classes get the same
stratified shares of channel augmentation (8 kHz round trip, GSM, Vorbis, MP3, Opus, G.722), additive
noise, level change, trimming margins, loudness normalisation and noise floor.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import audio as A
from . import generators as G
from . import protocol as P
from . import sources as S

Progress = Callable[[str, int, int], None]

RESYNTH_SHARE = 0.65  # share of bona fide utterances whose spoof partner is their own resynthesis
MIN_BONAFIDE = {"train": 4, "dev": 2, "eval": 4}  # per split, even for a tiny --minutes
INVENTORY_VERSION = 3  # bump when the inventory's contents change (3: speech_s measured below SHORT_S = 4.5 s)
MIN_TTS_S = 4.0  # seconds of speech asked of a TTS spoof at least (one 3 s chunk after trimming)
SPEECH_PER_RAW = 0.8  # trimmed seconds per raw (header) second, for the --minutes budget

# Channel augmentation, applied in these shares to each (split, label) group.
CHANNEL_AUG: tuple[tuple[str, float], ...] = (
    ("none", 0.45),
    ("band8k", 0.12),
    ("gsm", 0.08),
    ("vorbis", 0.09),
    ("mp3", 0.09),
    ("opus", 0.09),
    ("g722", 0.08),
)
NOISE_SHARE = 0.20  # additive noise, SNR 8-30 dB (white/pink/brown)
GAIN_SHARE = 0.30  # level change -18..+6 dB
FLOOR_DBFS = (-72.0, -58.0)  # noise floor added to every clip

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
)

SENTENCES_FILE = Path(__file__).with_name("sentences.txt")
CHARS_PER_S = {"zh": 4.5}
DEFAULT_CPS = 14.0


def stable_rng(*parts) -> np.random.Generator:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def load_sentences(path: Path = SENTENCES_FILE) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        lang, s = line.split("\t", 1)
        out[lang.strip()].append(s.strip())
    return dict(out)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s)


# -------------------------------------------------------------------------------------------- plan


def _select(utts: list[S.Utterance], minutes: float | None, seed: int) -> list[S.Utterance]:
    by_spk: dict[str, list[S.Utterance]] = defaultdict(list)
    for u in utts:
        by_spk[u.speaker].append(u)
    order = {}
    for spk, us in by_spk.items():
        us = sorted(us, key=lambda u: u.uid)
        perm = stable_rng("select", seed, spk).permutation(len(us))
        order[spk] = [us[int(i)] for i in perm]
    if minutes is None:
        return sorted(utts, key=lambda u: u.uid)
    avail = {s: sum(_speech_est(u) for u in us) for s, us in by_spk.items()}
    weight = {s: math.sqrt(max(a, 1.0)) for s, a in avail.items()}
    budget = float(minutes) * 60.0
    quota: dict[str, float] = {}
    remaining = set(avail)
    while remaining:  # water-filling with sqrt(available) weights
        share = budget / sum(weight[s] for s in remaining)
        capped = {s for s in remaining if avail[s] <= share * weight[s]}
        if not capped:
            for s in remaining:
                quota[s] = share * weight[s]
            break
        for s in capped:
            quota[s] = avail[s]
            budget -= avail[s]
        remaining -= capped
    chosen: list[S.Utterance] = []
    for spk in sorted(order):
        tot = 0.0
        for u in order[spk]:
            d = _speech_est(u)
            if tot + d / 2 > quota[spk]:
                break
            chosen.append(u)
            tot += d
    # every split gets a few bona fide clips, from its best-stocked speakers
    picked = {u.uid for u in chosen}
    for split, need in MIN_BONAFIDE.items():
        have = sum(1 for u in chosen if P.speaker_split(u.speaker) == split)
        spks = sorted((s for s in order if P.speaker_split(s) == split), key=lambda s: (-avail[s], s))
        k = 0
        while have < need and spks and k < 50:
            for spk in spks:
                nxt = next((u for u in order[spk] if u.uid not in picked), None)
                if nxt is not None and have < need:
                    chosen.append(nxt)
                    picked.add(nxt.uid)
                    have += 1
            k += 1
    return sorted(chosen, key=lambda u: u.uid)


def _speech_est(u: S.Utterance) -> float:
    """Expected seconds after trimming: packed utterances are measured, single files estimated."""
    return u.est_s if "packed" in u.meta else u.est_s * SPEECH_PER_RAW


def _stratified(n: int, shares: list[tuple[str, float]], rng: np.random.Generator) -> list[str]:
    raw = [(name, n * p) for name, p in shares]
    counts = {name: int(math.floor(x)) for name, x in raw}
    rest = n - sum(counts.values())
    for name, _x in sorted(raw, key=lambda t: -(t[1] - math.floor(t[1])))[:rest]:
        counts[name] += 1
    labels = [name for name, _ in shares for _ in range(counts[name])]
    return [labels[int(i)] for i in rng.permutation(len(labels))]


def _choose_text(
    u: S.Utterance, generator: str, sentences: dict[str, list[str]], rng: np.random.Generator
) -> tuple[str, str]:
    """(text, language) for the TTS partner of ``u``, of roughly u's length."""
    lang = u.language
    own_ok = bool(u.text) and not (generator == "festival_clunits" and u.package == "festvox-ru")
    # festvox-ru's own sentences would let Festival's Russian voice replay its database: use new text there
    pool = sentences.get(lang)
    cps = CHARS_PER_S.get(lang, DEFAULT_CPS)
    target = max(MIN_TTS_S, _speech_est(u))
    parts: list[str] = []
    est = 0.0
    if own_ok and (u.package != "festvox-ru" or rng.random() < 0.5):
        # the partner's own words; short ones (a letter, a word) are continued with sentences of its
        # language so that the spoof lasts at least one chunk
        parts, est = [u.text], len(u.text) / cps
        if est >= 0.85 * target or not pool:
            return u.text, lang
    if not pool:
        if u.text:
            return u.text, lang
        pool, lang = sentences["en"], "en"
        cps = CHARS_PER_S.get(lang, DEFAULT_CPS)
    for i in rng.permutation(len(pool)):
        if parts and est >= 0.85 * target:
            break
        s = pool[int(i)]
        parts.append(s)
        est += len(s) / cps + 0.4
    return " ".join(parts), lang


def _tts_options(
    split: str, lang: str, avail: dict[str, bool], fest_installed: set[str]
) -> list[tuple[str, list[str]]]:
    opts = []
    for g in P.SPLIT_GENERATORS[split]["tts"]:
        if not avail.get(g):
            continue
        voices = P.voices_for(g, split)
        if g.startswith("festival") and g in P.HELD_OUT_GENERATORS:
            # held-out voices (eval only) read their own language whatever the partner's language, so that
            # they have enough clips to measure; language cannot teach train anything about eval
            voices = [v for v in voices if v in fest_installed]
        elif g.startswith("festival"):
            voices = [v for v in voices if v in fest_installed and G.FESTIVAL_VOICES[v][0] == lang]
        elif g == "flite":
            voices = voices if lang == "en" else []
        elif g == "espeak":
            voices = voices if lang in G.ESPEAK_LANG else []
        if voices:
            opts.append((g, voices))
    return opts


def make_plan(
    utts: list[S.Utterance],
    *,
    minutes: float | None,
    seed: int,
    avail: dict[str, bool],
    fest_installed: set[str],
    sentences: dict[str, list[str]],
) -> list[dict]:
    chosen = _select(utts, minutes, seed)
    by_split: dict[str, list[S.Utterance]] = defaultdict(list)
    for u in chosen:
        by_split[P.speaker_split(u.speaker)].append(u)
    specs: list[dict] = []
    for split in P.SPLITS:
        us = by_split.get(split, [])
        rng = stable_rng("plan", seed, split)
        for u in us:
            specs.append(
                {
                    "clip_id": "bf." + _safe(u.uid),
                    "label": "bonafide",
                    "split": split,
                    "speaker": u.speaker,
                    "language": u.language,
                    "source": u.package,
                    "generator": "bonafide",
                    "voice": "",
                    "parent": u.uid,
                    "text": u.text,
                    "channel": u.channel,
                    "utt": asdict(u),
                }
            )
        if not us:
            continue
        perm = [us[int(i)] for i in rng.permutation(len(us))]
        resyn = [g for g in P.SPLIT_GENERATORS[split]["resynthesis"] if avail.get(g)]
        n = len(perm)
        n_res = int(round(RESYNTH_SHARE * n))
        if n >= 4:
            n_res = min(max(n_res, 2), n - 2)
        rr = 0
        tts_counter: Counter = Counter()
        voice_counter: Counter = Counter()
        for k, u in enumerate(perm):
            base = {
                "label": "spoof",
                "split": split,
                "language": u.language,
                "parent": u.uid,
                "channel": u.channel,
                "utt": asdict(u),
            }
            opts = _tts_options(split, u.language, avail, fest_installed)
            if (k < n_res and resyn) or not opts:
                if not resyn:
                    continue
                g = resyn[rr % len(resyn)]
                rr += 1
                specs.append(_resynthesis_spec(base, u, g))
            else:
                i = tts_counter[u.language]
                tts_counter[u.language] += 1
                g, voices = opts[i % len(opts)]
                v = voices[voice_counter[g] % len(voices)]
                voice_counter[g] += 1
                specs.append(_tts_spec(base, u, g, v, sentences, seed))
    _ensure_held_out(specs, avail, fest_installed, sentences, seed)
    # augmentation: the same stratified shares in every (split, label) group
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in specs:
        groups[(s["split"], s["label"])].append(s)
    for (split, label), ss in sorted(groups.items()):
        ss.sort(key=lambda s: s["clip_id"])
        rng = stable_rng("aug", seed, split, label)
        chans = _stratified(len(ss), list(CHANNEL_AUG), rng)
        noise = _stratified(len(ss), [("noise", NOISE_SHARE), ("", 1 - NOISE_SHARE)], rng)
        gain = _stratified(len(ss), [("gain", GAIN_SHARE), ("", 1 - GAIN_SHARE)], rng)
        for s, c, nz, gn in zip(ss, chans, noise, gain, strict=True):
            r = stable_rng("augparams", seed, s["clip_id"])
            s["aug"] = {
                "codec": c,
                "noise_snr_db": round(float(r.uniform(8.0, 30.0)), 1) if nz else None,
                "noise_colour": str(r.choice(["white", "pink", "brown"])) if nz else None,
                "gain_db": round(float(r.uniform(-18.0, 6.0)), 1) if gn else None,
                "floor_dbfs": round(float(r.uniform(*FLOOR_DBFS)), 1),
            }
    for s in specs:
        s["path"] = f"clips/{s['split']}/{s['label']}/{s['clip_id']}.flac"
        s["spec_hash"] = hashlib.sha1(
            json.dumps({k: v for k, v in s.items() if k != "spec_hash"}, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
    return sorted(specs, key=lambda s: s["clip_id"])


def _resynthesis_spec(base: dict, u: S.Utterance, g: str) -> dict:
    """A spoof made by resynthesising utterance ``u`` itself with generator ``g`` (same speaker and text)."""
    return {
        **base,
        "clip_id": f"sp.{g}.{_safe(u.uid)}",
        "speaker": u.speaker,
        "source": u.package,
        "generator": g,
        "voice": "",
        "text": u.text,
    }


def _tts_spec(base: dict, u: S.Utterance, g: str, v: str, sentences, seed: int) -> dict:
    if g.startswith("festival") and G.FESTIVAL_VOICES[v][0] != u.language:
        u = S.Utterance(**{**asdict(u), "language": G.FESTIVAL_VOICES[v][0], "text": ""})
    text, lang = _choose_text(u, g, sentences, stable_rng("text", seed, u.uid, g))
    if g.startswith("festival"):
        lang = G.FESTIVAL_VOICES[v][0]
    return {
        **base,
        "clip_id": f"sp.{g}.{_safe(u.uid)}",
        "speaker": f"{g}:{v}",
        "source": g,
        "generator": g,
        "voice": v,
        "text": text,
        "language": lang,
        "target_s": round(max(MIN_TTS_S, _speech_est(u)), 2),
    }


def _ensure_held_out(specs: list[dict], avail, fest_installed, sentences, seed: int) -> None:
    """Every available held-out generator appears in eval, even in a tiny build."""
    ev = [s for s in specs if s["split"] == "eval" and s["label"] == "spoof"]
    for g in P.HELD_OUT_GENERATORS:
        if not avail.get(g) or any(s["generator"] == g for s in ev):
            continue
        counts = Counter(s["generator"] for s in ev)
        kind = G.GENERATORS[g][0]
        cands = [s for s in ev if counts[s["generator"]] > 1 or s["generator"] not in P.HELD_OUT_GENERATORS]
        cands.sort(key=lambda s: (G.GENERATORS[s["generator"]][0] != kind, -counts[s["generator"]], s["clip_id"]))
        if not cands:
            return
        s = cands[0]
        u = S.Utterance(**s["utt"])
        base = {k: s[k] for k in ("label", "split", "language", "parent", "channel", "utt")}
        base["language"] = u.language
        if kind == "resynthesis":
            new = _resynthesis_spec(base, u, g)
        else:
            voices = P.voices_for(g, "eval")
            if g.startswith("festival"):
                voices = [v for v in voices if v in fest_installed]
                match = [v for v in voices if G.FESTIVAL_VOICES[v][0] == u.language]
                voices = match or voices
            if not voices:
                continue
            v = voices[0]
            if g.startswith("festival") and G.FESTIVAL_VOICES[v][0] != u.language:
                # no voice in this language: the voice reads its own language (recorded as such)
                u = S.Utterance(**{**s["utt"], "language": G.FESTIVAL_VOICES[v][0], "text": ""})
            new = _tts_spec(base, u, g, v, sentences, seed)
        specs[specs.index(s)] = new
        ev[ev.index(s)] = new


# -------------------------------------------------------------------------------------------- work


def _canonical(sources_dir: Path, utt: S.Utterance, seed: int) -> np.ndarray:
    """Bona fide utterance, trimmed (random margins) and loudness-normalised: what its spoof partner is made from."""
    x = S.render_utterance(sources_dir, utt, stable_rng("render", seed, utt.uid))
    x = A.trim_with_margin(x, stable_rng("trim", seed, utt.uid))
    return A.normalise_loudness(x)


def describe_augmentation(aug: dict) -> str:
    """'CONDITION:details', e.g. 'mp3+noise:noise=pink@18.2dB;gain=-6dB' or 'none'.

    CONDITION (before the colon) is the laundering condition to group results by: the codec or band
    limit, plus '+noise' where noise was added; the details give the levels.
    """
    cond = [] if aug["codec"] == "none" else [aug["codec"]]
    details = []
    if aug.get("noise_snr_db") is not None:
        cond.append("noise")
        details.append(f"noise={aug['noise_colour']}@{aug['noise_snr_db']:g}dB")
    if aug.get("gain_db") is not None:
        details.append(f"gain={aug['gain_db']:+g}dB")
    head = "+".join(cond) if cond else "none"
    return f"{head}:{';'.join(details)}" if details else head


def _post(x: np.ndarray, aug: dict, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    c = aug["codec"]
    if c != "none":
        x = A.codec_roundtrip(x, c, rng)
    if aug.get("noise_snr_db") is not None:
        x = A.add_noise_snr(x, aug["noise_snr_db"], aug["noise_colour"], rng)
    if aug.get("gain_db") is not None:
        x = x * 10.0 ** (aug["gain_db"] / 20.0)
    x = A.add_noise_floor(x, aug["floor_dbfs"], rng)
    x = A.limit_peak(x, 0.99)
    return x, describe_augmentation(aug)


def make_clip(spec: dict, data_dir: Path, seed: int) -> dict:
    """Produce one clip and its manifest row; skipped when the row exists with the same specification."""
    out = data_dir / spec["path"]
    side = out.with_suffix(".json")
    if out.exists() and side.exists():
        try:
            row = json.loads(side.read_text())
            if row.get("spec_hash") == spec["spec_hash"]:
                return row
        except (OSError, ValueError):
            pass
    sources_dir = data_dir / "sources"
    utt = S.Utterance(**spec["utt"])
    cid = spec["clip_id"]
    if spec["label"] == "bonafide":
        x = _canonical(sources_dir, utt, seed)
    else:
        rng_gen = stable_rng("gen", seed, cid)
        if spec["generator"] in G.RESYNTH:
            y = G.resynthesise(spec["generator"], _canonical(sources_dir, utt, seed), rng_gen)
        else:
            y = G.synthesise(
                spec["generator"], spec["voice"], spec["text"], spec["language"], rng_gen, target_s=spec.get("target_s")
            )
        if len(y) < A.SR // 10 or not np.all(np.isfinite(y)) or not np.any(y):
            raise RuntimeError(f"{spec['generator']} produced no usable audio")
        y = A.apply_channel(y, spec["channel"], stable_rng("chan", seed, cid))
        y = A.trim_with_margin(y, stable_rng("trim", seed, cid))
        x = A.normalise_loudness(y)
    x, aug = _post(x, spec["aug"], stable_rng("post", seed, cid))
    # the native channel (bona fide) or the partner's native channel applied (spoof) is in 'channel', for
    # both classes alike; 'augmentation' holds only the stratified laundering, same vocabulary for both
    lossy = A.channel_is_lossy(spec["channel"]) or spec["aug"]["codec"] in A.LOSSY_CODECS
    row = {
        "path": spec["path"],
        "label": spec["label"],
        "source": spec["source"],
        "generator": spec["generator"],
        "speaker": spec["speaker"],
        "language": spec["language"],
        "split": spec["split"],
        "duration_s": round(len(x) / A.SR, 3),
        "augmentation": aug,
        "clip_id": cid,
        "voice": spec["voice"],
        "channel": spec["channel"],
        "codec": int(lossy),
        "parent": spec["parent"],
        "text": spec["text"][:200],
        "spec_hash": spec["spec_hash"],
    }
    A.write_flac_atomic(out, x)
    A.write_text_atomic(side, json.dumps(row, ensure_ascii=False))
    return row


_WORKER: dict = {}


def _init_worker(data_dir: str, seed: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    G.limit_threads()
    _WORKER["data_dir"] = Path(data_dir)
    _WORKER["seed"] = seed
    import warnings

    warnings.filterwarnings("ignore")


def _work(spec: dict) -> dict:
    try:
        return make_clip(spec, _WORKER["data_dir"], _WORKER["seed"])
    except Exception as e:  # one failed clip is reported, not fatal
        return {"clip_id": spec["clip_id"], "generator": spec["generator"], "error": f"{type(e).__name__}: {e}"}


# Rough CPU seconds per audio second, to start the slow clips first.
_COST = {
    "hifigan_lj": 2.0,
    "hifigan_universal": 2.0,
    "griffinlim_linear": 0.7,
    "lpc": 0.2,
    "griffinlim_mel": 0.1,
    "world": 0.07,
    "world_vc": 0.07,
    "festival_clunits": 0.5,
    "festival_hts": 0.5,
    "piper": 0.5,
}


def _run(specs: list[dict], data_dir: Path, seed: int, workers: int, progress: Progress | None) -> list[dict]:
    todo = sorted(specs, key=lambda s: (-_COST.get(s["generator"], 0.05) * s["utt"]["est_s"], s["clip_id"]))
    for stale in (data_dir / "clips").rglob(".tmp-*"):  # left by a run that was killed mid-write
        stale.unlink(missing_ok=True)
    results = []
    total = len(todo)
    if progress:
        progress("clips", 0, total)
    if workers <= 1:
        _init_worker(str(data_dir), seed)
        for i, s in enumerate(todo, 1):
            results.append(_work(s))
            if progress:
                progress("clips", i, total)
        return results
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    for k in saved:
        os.environ[k] = "1"
    try:
        # spawn: no forked torch/BLAS state; a crashed worker raises BrokenProcessPool instead of hanging
        ex = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(str(data_dir), seed)
        )
        try:
            it = iter(todo)
            running = set()
            for s in it:  # keep a short queue so that Ctrl-C stops quickly
                running.add(ex.submit(_work, s))
                if len(running) >= 2 * workers:
                    break
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    results.append(f.result())
                    if progress:
                        progress("clips", len(results), total)
                    nxt = next(it, None)
                    if nxt is not None:
                        running.add(ex.submit(_work, nxt))
        except BaseException:
            # Ctrl-C: stop now; every clip is written atomically, so a rerun resumes where this stopped
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.terminate()
            ex.shutdown(wait=False, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


# ------------------------------------------------------------------------------------------ outputs


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
        "split_label": fin(by_sl),
        "split_label_generator": fin(by_slg),
        "split_label_language": fin(by_sll),
        "split_label_generator_language": fin(by_full),
        "speakers": {s: sorted(v) for s, v in sorted(spk.items())},
        "protocol": {
            "held_out_generators": list(P.HELD_OUT_GENERATORS),
            "speaker_splits": P.SPEAKER_SPLITS,
            "long_tail_rule": P.LONG_TAIL_RULE,
            "tts_voice_splits": P.TTS_VOICE_SPLITS,
        },
    }


# --------------------------------------------------------------------------------------------- API


def build_dataset(
    data_dir: Path, *, minutes: float | None = None, seed: int = 0, workers: int = 2, progress: Progress | None = None
) -> Path:
    """Build (or resume) the dataset in ``data_dir``; returns the path of ``manifest.csv``.

    minutes: approximate cap on bona fide minutes (None: everything); the spoof side matches it.
    """
    t0 = time.time()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sources_dir = data_dir / "sources"
    status = S.fetch_packages(sources_dir, progress)
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
    specs = make_plan(utts, minutes=minutes, seed=seed, avail=avail, fest_installed=fest, sentences=load_sentences())
    A.write_text_atomic(
        data_dir / "plan.json",
        json.dumps(
            {"seed": seed, "minutes": minutes, "clips": [{k: v for k, v in s.items() if k != "utt"} for s in specs]},
            ensure_ascii=False,
            indent=0,
        ),
    )
    results = _run(specs, data_dir, seed, workers, progress)
    rows = [r for r in results if "error" not in r]
    by_id = {s["clip_id"]: s for s in specs}
    for r in rows:  # descriptions come from the plan, so that rows written by an older version agree
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
    sys.stderr.write(format_audit(audit) + "\n")
    if problems:
        raise RuntimeError("protocol violations: " + "; ".join(problems[:5]))
    return manifest
