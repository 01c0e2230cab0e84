"""The build plan: which clips to make (bona fide selection, spoof partners, laundering, views), as specs.

Splits follow :mod:`melcnn.training.protocol`: a clip belongs to the split of its bona fide source, and
its spoof partner is made by a generator of that split reading a text of that split. Design of the spoof
side (see ``docs/training.md``): each bona fide utterance gets exactly one spoof partner: resynthesis of
the utterance itself (about half: same speaker, text, language, channel) or a TTS clip in the same
language with a text of similar length (the utterance's own words where the package names them). On
request (``revocoded_share``), a share of the utterances get an extra spoof from their split's re-vocoded
generator (a TTS engine's speech rendered again by a neural vocoder; these extras are laundered and
viewed in groups of their own, so that adding them to a build changes none of its other clips). The
partner inherits the utterance's native channel (G.722, GSM, Vorbis, 8-bit, low-rate MP3, band limit), so
channel is no cue; on top of that both classes get the same stratified shares of laundering (8 kHz round
trip, GSM, Vorbis, MP3, Opus, G.722), additive noise, level change, trimming margins, loudness
normalisation and noise floor, and train/dev clips get views (:mod:`melcnn.training.augment`). All
randomness derives from (seed, clip id): the same arguments give the same plan, and each spec's
``spec_hash`` lets a rerun recognise the clips already made.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import generators as G
from . import protocol as P
from . import sources as S

RESYNTH_SHARE = 0.5  # share of bona fide utterances whose spoof partner is their own resynthesis
# relative share of each resynthesis generator within its split (the neural vocoders and Griffin-Lim cost
# 0.7-2 CPU seconds per audio second, the rest a tenth of that)
GENERATOR_WEIGHT = {"hifigan_lj": 0.35, "hifigan_universal": 0.35, "hifigan_16k": 0.35, "griffinlim_linear": 0.5}
REVOCODED_SHARE = 0.12  # the share measured in docs/training.md (`melcnn data build --revocoded-share`)
TRANSFORM_SHARE = 0.5  # the share measured in docs/training.md (`melcnn data build --transform-share`)
# each candidate transform's share (`--candidate-transforms`): a third of TRANSFORM_SHARE, what each of the
# rotation's three transforms gets
CANDIDATE_SHARE = TRANSFORM_SHARE / 3
VIEW_SPLITS = ("train", "dev")  # splits whose clips get channel-augmented views (eval: the invariance report)
MIN_BONAFIDE = {"train": 4, "dev": 4, "eval": 6}  # per split, even for a tiny --minutes (eval: 1 per generator)
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
    revocoded_share: float = 0.0,
    transform_share: float = 0.0,
    candidate_transforms: tuple[str, ...] = (),
    candidate_share: float = CANDIDATE_SHARE,
    view_denoise: float = 0.0,
    view_opus_ml: float = 0.0,
) -> list[dict]:
    """Every clip to make: bona fide utterances, one spoof partner each (same split), ``revocoded_share`` of
    them an extra re-vocoded TTS spoof (0: none), ``transform_share`` of the train split's an extra spoof
    made by a signal-processing transform of the utterance itself (0: none), for each of
    ``candidate_transforms`` (:data:`~melcnn.training.protocol.CANDIDATE_TRANSFORMS`) ``candidate_share``
    of them one more, drawn on its own, and ``views`` channel-augmented views of each train/dev clip, a share
    ``view_denoise`` of them also noise-suppressed and ``view_opus_ml`` of them passed through a VoIP leg
    (Opus 1.5 with or without its neural post-filters)."""
    unknown = set(candidate_transforms) - set(P.CANDIDATE_TRANSFORMS)
    if unknown:
        raise ValueError(f"unknown candidate transforms {sorted(unknown)}; known: {', '.join(P.CANDIDATE_TRANSFORMS)}")
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
            base = _spoof_base(u, split)
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
            voice = voices[voice_counter[g] % len(voices)]
            voice_counter[g] += 1
            specs.append(_tts_spec(base, u, g, voice, pools[split], seed))
        if revocoded_share > 0:
            specs += _revocoded_specs(us, split, avail, fest_installed, pools[split], seed, revocoded_share)
        if transform_share > 0:
            specs += _transform_specs(us, split, avail, seed, transform_share)
        for g in candidate_transforms:
            specs += _candidate_specs(us, split, avail, seed, candidate_share, g)
    _ensure_generators(specs, avail, fest_installed, pools, seed)
    # laundering of the base clips: the same stratified shares in every (split, label) group (each kind of
    # extra spoof in a group of its own, drawn from the same shares)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for s in specs:
        groups[(s["split"], s["label"], _extra_tag(s))].append(s)
    for (split, label, extra), ss in sorted(groups.items()):
        ss.sort(key=lambda s: s["clip_id"])
        rng = stable_rng("aug", seed, split, label, *([extra] if extra else []))
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
    specs += _view_specs(specs, views, seed, noise_files, view_denoise, view_opus_ml)
    for s in specs:
        s["spec_hash"] = hashlib.sha1(
            json.dumps({k: v for k, v in s.items() if k != "spec_hash"}, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
    return sorted(specs, key=lambda s: s["clip_id"])


def _view_specs(
    specs: list[dict], views: int, seed: int, noise_files: int, denoise_p: float = 0.0, opus_ml_p: float = 0.0
) -> list[dict]:
    """``views`` augmented views of every train and dev clip; channels stratified per (split, label); each
    noise-suppressed with probability ``denoise_p`` and passed through a VoIP leg with ``opus_ml_p``."""
    from . import augment as V

    out = []
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for s in specs:
        if s["split"] in VIEW_SPLITS:
            groups[(s["split"], s["label"], _extra_tag(s))].append(s)
    for (split, label, extra), ss in sorted(groups.items()):
        ss = sorted(ss, key=lambda s: s["clip_id"])
        rng = stable_rng("views", seed, split, label, *([extra] if extra else []))
        chans = _stratified(len(ss) * views, list(V.VIEW_CHANNELS), rng)
        for i, (s, k) in enumerate((s, k) for s in ss for k in range(1, views + 1)):
            cid = f"{s['clip_id']}~v{k}"
            v = {key: s[key] for key in s if key not in ("aug", "path", "clip_id", "spec_hash")}
            v.update(
                {
                    "clip_id": cid,
                    "view_of": s["clip_id"],
                    "view": V.draw_view(chans[i], stable_rng("view", seed, cid), noise_files, denoise_p, opus_ml_p),
                    "path": f"clips/{split}/{label}/views/{cid}.flac",
                }
            )
            out.append(v)
    return out


def _revocoded_specs(
    us: list[S.Utterance],
    split: str,
    avail: dict[str, bool],
    fest_installed: set[str],
    sentences,
    seed: int,
    share: float,
) -> list[dict]:
    """Extra spoofs of ``split``: ``share`` of its utterances (at least one), each read by a voice
    of the split's re-vocoded generator(s) in its language where one reads it (else in the voice's own), like
    a TTS partner (same text rule, channel and length), marked ``extra``."""
    gens = [g for g in G.REVOCODED if P.GENERATOR_SPLITS.get(g) == split and avail.get(g)]
    if not us or not gens:
        return []
    out = []
    counter: Counter = Counter()
    for k, u in enumerate(_extra_draw(us, share, "revocoded", seed, split)):
        g = gens[k % len(gens)]
        voices = _tts_voices(g, u.language, fest_installed) or [
            v for vs in G.voices_by_language(g, fest_installed).values() for v in vs
        ]
        if not voices:
            continue
        voice = voices[counter[g] % len(voices)]
        counter[g] += 1
        out.append({**_tts_spec(_spoof_base(u, split), u, g, voice, sentences, seed), "extra": True})
    return out


def _spoof_base(u: S.Utterance, split: str) -> dict:
    """The fields every spoof spec of utterance ``u`` shares (its partner, extras): split, language, channel."""
    return {
        "label": "spoof",
        "split": split,
        "language": u.language,
        "parent": u.uid,
        "channel": u.channel,
        "utt": asdict(u),
    }


def _extra_draw(us: list[S.Utterance], share: float, kind: str, seed: int, split: str) -> list[S.Utterance]:
    """The ``share`` of ``us`` (at least one) that get an extra spoof of ``kind``, drawn per (kind, seed, split),
    in their order in ``us``."""
    n = max(1, int(round(share * len(us))))
    return [us[int(i)] for i in sorted(stable_rng(kind, seed, split).permutation(len(us))[:n])]


def _extra_tag(spec: dict) -> str:
    """The laundering and view group of a spec within its (split, label): '' for the base clips, 'extra'
    for re-vocoded extras (``extra: True``), else the extra's kind (e.g. 'transform')."""
    extra = spec.get("extra")
    return "extra" if extra is True else str(extra or "")


def _transform_specs(us: list[S.Utterance], split: str, avail: dict[str, bool], seed: int, share: float) -> list[dict]:
    """Extra spoofs of ``split``: ``share`` of its utterances (at least one) transformed by the split's
    signal-processing transforms in turn (same speaker, text and channel), marked ``extra: 'transform'``."""
    gens = [
        g
        for g in G.TRANSFORMS
        if g not in P.CANDIDATE_TRANSFORMS and P.GENERATOR_SPLITS.get(g) == split and avail.get(g)
    ]
    if not us or not gens:
        return []
    draw = _extra_draw(us, share, "transform", seed, split)
    return [
        {**_resynthesis_spec(_spoof_base(u, split), u, gens[k % len(gens)]), "extra": "transform"}
        for k, u in enumerate(draw)
    ]


def _candidate_specs(
    us: list[S.Utterance], split: str, avail: dict[str, bool], seed: int, share: float, g: str
) -> list[dict]:
    """Extra spoofs of ``split`` by the candidate transform ``g``: ``share`` of its utterances (at least one),
    drawn for ``g`` alone (so adding or dropping another candidate changes none of these), marked
    ``extra: 'transform:<g>'`` (laundered and viewed as a group of their own)."""
    if not us or P.GENERATOR_SPLITS.get(g) != split or not avail.get(g):
        return []
    return [
        {**_resynthesis_spec(_spoof_base(u, split), u, g), "extra": f"transform:{g}"}
        for u in _extra_draw(us, share, f"transform:{g}", seed, split)
    ]


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
    used generator is given to it; re-vocoded generators and transforms come only as extras,
    :func:`_revocoded_specs` and :func:`_transform_specs`)."""
    kinds = {g: v[0] for g, v in G.GENERATORS.items()}
    for g, split in P.GENERATOR_SPLITS.items():
        present = any(s["generator"] == g for s in specs if s["split"] == split)
        if kinds[g] in ("revocoded", "transform") or not avail.get(g) or present:
            continue
        ss = [s for s in specs if s["split"] == split and s["label"] == "spoof" and not s.get("extra")]
        if not ss:
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
