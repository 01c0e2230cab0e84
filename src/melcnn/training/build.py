"""``melcnn data build``: fetch the bona fide sources, generate the spoofs, split, write a manifest.

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

Splits follow :mod:`melcnn.training.protocol`: a clip belongs to the split of its bona fide source, and
its spoof partner is made by a generator of that split reading a text of that split. Design of the
spoof side (see ``docs/training.md``): each bona fide utterance gets exactly one spoof partner:
resynthesis of the utterance itself (about half: same speaker, text, language, channel) or a TTS clip in
the same language with a text of similar length (the utterance's own words where the package names
them). The partner inherits the utterance's native channel (G.722, GSM, Vorbis, 8-bit, low-rate MP3,
band limit), so channel is no cue; on top of that both classes get the same stratified shares of
laundering (8 kHz round trip, GSM, Vorbis, MP3, Opus, G.722), additive noise, level change, trimming
margins, loudness normalisation and noise floor, and train/dev clips get views
(:mod:`melcnn.training.augment`).
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

RESYNTH_SHARE = 0.5  # share of bona fide utterances whose spoof partner is their own resynthesis
# relative share of each resynthesis generator within its split (the neural vocoders and Griffin-Lim cost
# 0.7-2 CPU seconds per audio second, the rest a tenth of that)
GENERATOR_WEIGHT = {"hifigan_lj": 0.35, "hifigan_universal": 0.35, "hifigan_16k": 0.35, "griffinlim_linear": 0.5}
DEFAULT_VIEWS = 2
BUILD_ROUNDS = 8  # the build runs in this many rounds of whole utterances
VIEW_SPLITS = ("train", "dev")  # splits whose clips get channel-augmented views (eval: the invariance report)
MIN_BONAFIDE = {"train": 4, "dev": 4, "eval": 6}  # per split, even for a tiny --minutes (eval: 1 per generator)
INVENTORY_VERSION = 4  # bump when the inventory changes (3: speech_s below SHORT_S; 4: game and Tux Paint sources)
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
    "view_of",
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
    """Bona fide utterances within a budget of ``minutes``: shared among sources by water-filling with
    sqrt(available) weights (every source contributes, the big ones do not swamp the rest), and within a
    source round-robin over its speakers in a seeded order."""
    if minutes is None:
        return sorted(utts, key=lambda u: u.uid)
    by_src: dict[str, dict[str, list[S.Utterance]]] = defaultdict(lambda: defaultdict(list))
    for u in utts:
        by_src[u.package][u.speaker].append(u)
    order: dict[str, list[S.Utterance]] = {}
    for src, spks in by_src.items():
        lists = []
        for spk in sorted(spks):
            us = sorted(spks[spk], key=lambda u: u.uid)
            perm = stable_rng("select", seed, spk).permutation(len(us))
            lists.append([us[int(i)] for i in perm])
        inter = []
        for k in range(max(len(x) for x in lists)):
            inter += [x[k] for x in lists if k < len(x)]
        order[src] = inter
    avail = {s: sum(_speech_est(u) for u in us) for s, us in order.items()}
    quota = _water_fill(avail, float(minutes) * 60.0)
    chosen: list[S.Utterance] = []
    for src in sorted(order):
        tot = 0.0
        for u in order[src]:
            d = _speech_est(u)
            if tot + d / 2 > quota[src]:
                break
            chosen.append(u)
            tot += d
    # every split gets a few bona fide clips, from its best-stocked sources
    picked = {u.uid for u in chosen}
    for split, need in MIN_BONAFIDE.items():
        have = sum(1 for u in chosen if P.source_split(u.package) == split)
        srcs = sorted((s for s in order if P.source_split(s) == split), key=lambda s: (-avail[s], s))
        k = 0
        while have < need and srcs and k < 50:
            for src in srcs:
                nxt = next((u for u in order[src] if u.uid not in picked), None)
                if nxt is not None and have < need:
                    chosen.append(nxt)
                    picked.add(nxt.uid)
                    have += 1
            k += 1
    return sorted(chosen, key=lambda u: u.uid)


def _water_fill(avail: dict[str, float], budget: float) -> dict[str, float]:
    weight = {s: math.sqrt(max(a, 1.0)) for s, a in avail.items()}
    quota: dict[str, float] = {}
    remaining = set(avail)
    while remaining:
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
    return quota


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


def sentence_pools(sentences: dict[str, list[str]], extra_train: dict[str, list[str]] | None = None):
    """TTS texts per split and language: the shared pool divided by :func:`protocol.text_split`, plus
    (train only) texts of train sources (Tux Paint's stamp descriptions)."""
    pools: dict[str, dict[str, list[str]]] = {s: defaultdict(list) for s in P.SPLITS}
    for lang, ss in sentences.items():
        for t in ss:
            pools[P.text_split(t)][lang].append(t)
    for lang, ss in (extra_train or {}).items():
        pools["train"][lang] += [t for t in ss if len(t) >= 20]
    return {s: dict(v) for s, v in pools.items()}


def _choose_text(
    u: S.Utterance, generator: str, sentences: dict[str, list[str]], rng: np.random.Generator
) -> tuple[str, str]:
    """(text, language) for the TTS partner of ``u``, of roughly u's length. ``sentences``: the split's pool."""
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
        pool, lang = sentences.get("en") or [t for ts in sentences.values() for t in ts], "en"
        cps = CHARS_PER_S.get(lang, DEFAULT_CPS)
    for i in rng.permutation(len(pool)):
        if parts and est >= 0.85 * target:
            break
        s = pool[int(i)]
        parts.append(s)
        est += len(s) / cps + 0.4
    return " ".join(parts), lang


def _tts_voices(g: str, lang: str, fest_installed: set[str]) -> list[str]:
    """Voices of TTS generator ``g`` that read ``lang`` natively ([] where none does)."""
    vb = G.voices_by_language(g, fest_installed)
    if lang in vb:
        return vb[lang]
    if "*" in vb and lang in G.ESPEAK_LANG:
        return vb["*"]
    return []


def _weighted_cycle(names: list[str], n: int) -> list[str]:
    """``n`` picks from ``names`` in proportion to :data:`GENERATOR_WEIGHT` (smooth weighted round robin)."""
    if not names:
        return []
    w = {g: GENERATOR_WEIGHT.get(g, 1.0) for g in names}
    cur = dict.fromkeys(names, 0.0)
    out = []
    for _ in range(n):
        for g in names:
            cur[g] += w[g]
        best = max(names, key=lambda g: cur[g])
        cur[best] -= sum(w.values())
        out.append(best)
    return out


def make_plan(
    utts: list[S.Utterance],
    *,
    minutes: float | None,
    seed: int,
    avail: dict[str, bool],
    fest_installed: set[str],
    sentences: dict[str, list[str]],
    extra_train_texts: dict[str, list[str]] | None = None,
    views: int = 0,
    noise_files: int = 0,
) -> list[dict]:
    """Every clip to make: bona fide utterances, one spoof partner each (same split), and ``views``
    channel-augmented views of each train/dev clip."""
    chosen = _select(utts, minutes, seed)
    pools = sentence_pools(sentences, extra_train_texts)
    kinds = {g: v[0] for g, v in G.GENERATORS.items()}
    by_split: dict[str, list[S.Utterance]] = defaultdict(list)
    for u in chosen:
        by_split[P.source_split(u.package)].append(u)
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
        resyn = P.generators_for(split, "resynthesis", avail, kinds)
        tts = P.generators_for(split, "tts", avail, kinds)
        n = len(perm)
        n_res = int(round(RESYNTH_SHARE * n)) if tts else n
        if n >= 4 and tts and resyn:
            n_res = min(max(n_res, 2), n - 2)
        res_cycle = iter(_weighted_cycle(resyn, n))
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
            opts = [(g, v) for g in tts if (v := _tts_voices(g, u.language, fest_installed))]
            if (k < n_res and resyn) or (not opts and resyn):
                specs.append(_resynthesis_spec(base, u, next(res_cycle)))
                continue
            if not opts:  # no generator of this split reads the language: a voice reads its own language
                opts = [(g, v) for g in tts for vs in G.voices_by_language(g, fest_installed).values() if (v := vs)]
                if not opts:
                    continue
            i = tts_counter[u.language]
            tts_counter[u.language] += 1
            g, voices = opts[i % len(opts)]
            v = voices[voice_counter[g] % len(voices)]
            voice_counter[g] += 1
            specs.append(_tts_spec(base, u, g, v, pools[split], seed))
    _ensure_generators(specs, avail, fest_installed, pools, seed)
    # laundering of the base clips: the same stratified shares in every (split, label) group
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
    specs += _view_specs(specs, views, seed, noise_files)
    for s in specs:
        s["spec_hash"] = hashlib.sha1(
            json.dumps({k: v for k, v in s.items() if k != "spec_hash"}, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
    return sorted(specs, key=lambda s: s["clip_id"])


def _view_specs(specs: list[dict], views: int, seed: int, noise_files: int) -> list[dict]:
    """``views`` augmented views of every train and dev clip; channels stratified per (split, label)."""
    from . import augment as V

    out = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in specs:
        if s["split"] in VIEW_SPLITS:
            groups[(s["split"], s["label"])].append(s)
    for (split, label), ss in sorted(groups.items()):
        ss = sorted(ss, key=lambda s: s["clip_id"])
        chans = _stratified(len(ss) * views, list(V.VIEW_CHANNELS), stable_rng("views", seed, split, label))
        for i, (s, k) in enumerate((s, k) for s in ss for k in range(1, views + 1)):
            cid = f"{s['clip_id']}~v{k}"
            v = {key: s[key] for key in s if key not in ("aug", "path", "clip_id", "spec_hash")}
            v.update(
                {
                    "clip_id": cid,
                    "view_of": s["clip_id"],
                    "view": V.draw_view(chans[i], stable_rng("view", seed, cid), noise_files),
                    "path": f"clips/{split}/{label}/views/{cid}.flac",
                }
            )
            out.append(v)
    return out


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
    """A TTS spoof partner of ``u``: voice ``v`` of ``g`` reads a text of u's split (u's own words where
    they exist). ``source`` is the partner's package (the channel it inherits), ``speaker`` the voice."""
    vlangs = [lang for lang, vs in G.voices_by_language(g).items() if v in vs and lang != "*"]
    if vlangs and u.language not in vlangs:
        u = S.Utterance(**{**asdict(u), "language": vlangs[0], "text": ""})
    text, lang = _choose_text(u, g, sentences, stable_rng("text", seed, u.uid, g))
    return {
        **base,
        "clip_id": f"sp.{g}.{_safe(u.uid)}",
        "speaker": f"{g}:{v}",
        "source": base["utt"]["package"],
        "generator": g,
        "voice": v,
        "text": text,
        "language": lang,
        "target_s": round(max(MIN_TTS_S, _speech_est(u)), 2),
    }


def _ensure_generators(specs: list[dict], avail, fest_installed, pools, seed: int) -> None:
    """Every available generator appears in its split, even in a tiny build (one spoof of the split's most
    used generator is given to it)."""
    kinds = {g: v[0] for g, v in G.GENERATORS.items()}
    for g, split in P.GENERATOR_SPLITS.items():
        ss = [s for s in specs if s["split"] == split and s["label"] == "spoof"]
        if not avail.get(g) or not ss or any(s["generator"] == g for s in ss):
            continue
        counts = Counter(s["generator"] for s in ss)
        cands = [s for s in ss if counts[s["generator"]] > 1]
        cands.sort(key=lambda s: (kinds[s["generator"]] != kinds[g], -counts[s["generator"]], s["clip_id"]))
        if not cands:
            continue
        s = cands[0]
        u = S.Utterance(**s["utt"])
        base = {k: s[k] for k in ("label", "split", "parent", "channel", "utt")}
        base["language"] = u.language
        if kinds[g] == "resynthesis":
            new = _resynthesis_spec(base, u, g)
        else:
            voices = _tts_voices(g, u.language, fest_installed) or next(
                iter(G.voices_by_language(g, fest_installed).values()), []
            )
            if not voices:
                continue
            new = _tts_spec(base, u, g, voices[0], pools[split], seed)
        specs[specs.index(s)] = new


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


def _finished_row(data_dir: Path, spec: dict) -> dict | None:
    """The manifest row of a clip already made to ``spec`` (None where it is not)."""
    out = data_dir / spec["path"]
    try:
        row = json.loads(out.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return row if row.get("spec_hash") == spec["spec_hash"] and out.exists() else None


def make_clip(spec: dict, data_dir: Path, seed: int) -> dict:
    """Produce one clip and its manifest row; skipped when the row exists with the same specification."""
    row = _finished_row(data_dir, spec)
    if row is not None:
        return row
    out = data_dir / spec["path"]
    side = out.with_suffix(".json")
    sources_dir = data_dir / "sources"
    utt = S.Utterance(**spec["utt"])
    cid = spec["clip_id"]
    if spec.get("view_of"):
        return _make_view(spec, data_dir, seed)
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
    row = _row(spec, x, aug, lossy)
    A.write_flac_atomic(out, x)
    A.write_text_atomic(side, json.dumps(row, ensure_ascii=False))
    return row


def _row(spec: dict, x: np.ndarray, augmentation: str, lossy: bool) -> dict:
    return {
        "path": spec["path"],
        "label": spec["label"],
        "source": spec["source"],
        "generator": spec["generator"],
        "speaker": spec["speaker"],
        "language": spec["language"],
        "split": spec["split"],
        "duration_s": round(len(x) / A.SR, 3),
        "augmentation": augmentation,
        "clip_id": spec["clip_id"],
        "voice": spec["voice"],
        "channel": spec["channel"],
        "codec": int(lossy),
        "parent": spec["parent"],
        "text": spec["text"][:200],
        "view_of": spec.get("view_of", ""),
        "spec_hash": spec["spec_hash"],
    }


def _make_view(spec: dict, data_dir: Path, seed: int) -> dict:
    """A channel-augmented view of a finished clip (see :mod:`melcnn.training.augment`)."""
    import soundfile as sf

    from . import augment as V

    base = data_dir / spec["path"].split("/views/")[0] / (spec["view_of"] + ".flac")
    x, _ = sf.read(str(base), dtype="float64")
    bank = _noise_bank(data_dir)
    y = V.apply_view(x, spec["view"], stable_rng("viewapply", seed, spec["clip_id"]), bank)
    out = data_dir / spec["path"]
    row = _row(spec, y, V.describe_view(spec["view"]), spec["view"]["channel"] not in ("none", "band", "u8"))
    A.write_flac_atomic(out, y)
    A.write_text_atomic(out.with_suffix(".json"), json.dumps(row, ensure_ascii=False))
    return row


NOISE_LIST = "noise_files.json"


def _noise_bank(data_dir: Path) -> list[np.ndarray]:
    if "noise" not in _WORKER:
        from . import augment as V

        lst = data_dir / NOISE_LIST
        files = [data_dir / "sources" / p for p in json.loads(lst.read_text())] if lst.exists() else []
        _WORKER["noise"] = V.load_noise_bank(files)
    return _WORKER["noise"]


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
    "hifigan_16k": 1.6,
    "griffinlim_linear": 0.7,
    "lpc": 0.2,
    "griffinlim_mel": 0.1,
    "world": 0.07,
    "world_vc": 0.07,
    "festival_clunits": 0.5,
    "festival_hts": 0.5,
    "piper": 0.5,
}


def _run(
    specs: list[dict], data_dir: Path, seed: int, workers: int, progress: Progress | None, stage: str = "clips"
) -> list[dict]:
    todo = sorted(specs, key=lambda s: (-_COST.get(s["generator"], 0.05) * s["utt"]["est_s"], s["clip_id"]))
    for stale in (data_dir / "clips").rglob(".tmp-*"):  # left by a run that was killed mid-write
        stale.unlink(missing_ok=True)
    results = []
    total = len(todo)
    if progress:
        progress(stage, 0, total)
    if workers <= 1:
        _init_worker(str(data_dir), seed)
        for i, s in enumerate(todo, 1):
            results.append(_work(s))
            if progress:
                progress(stage, i, total)
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
                        progress(stage, len(results), total)
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


# --------------------------------------------------------------------------------------------- API


def build_dataset(
    data_dir: Path,
    *,
    minutes: float | None = None,
    seed: int = 0,
    workers: int = 2,
    views: int = DEFAULT_VIEWS,
    manifest_only: bool = False,
    packages: list[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build (or resume) the dataset in ``data_dir``; returns the path of ``manifest.csv``.

    minutes: approximate cap on bona fide minutes (None: everything); the spoof side matches it.
    views: channel-augmented views of every train and dev clip (see :mod:`melcnn.training.augment`).
    manifest_only: make no clip; write the manifest, summary and audit of the clips already finished
    (the build runs in rounds of whole utterances, so any prefix of it is a balanced data set).
    packages: build from these bona fide packages only (default: all of :data:`sources.PACKAGES`).
    """
    t0 = time.time()
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
    )
    A.write_text_atomic(
        data_dir / "plan.json",
        json.dumps(
            {
                "seed": seed,
                "minutes": minutes,
                "views": views,
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
        results = [r for r in (_finished_row(data_dir, s) for s in specs) if r is not None]
    for k in range(0 if manifest_only else BUILD_ROUNDS):
        group = rounds.get(k, [])
        stage = f"round {k + 1}/{BUILD_ROUNDS}"
        res = _run([s for s in group if not s.get("view_of")], data_dir, seed, workers, progress, stage + " clips")
        made = {r["clip_id"] for r in res if "error" not in r}
        views_k = [s for s in group if s.get("view_of") in made]
        results += res + _run(views_k, data_dir, seed, workers, progress, stage + " views")
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
