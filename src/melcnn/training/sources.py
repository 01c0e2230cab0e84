"""Bona fide sources: the Debian packages the bona fide speech comes from (:data:`PACKAGES`), the usable
files each holds (:func:`inventory`) and the utterances they give (:func:`build_utterances`).

Fetching and unpacking the packages lives in :mod:`melcnn.training.fetch`, decoding and rendering an
utterance in :mod:`melcnn.training.source_audio`; their public functions are re-exported here, so
``from . import sources as S`` reaches them. ``docs/training.md`` describes each package.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio as A
from .fetch import extracted_speech, fetch_packages
from .source_audio import background_db, decode, load_piece, render_utterance

__all__ = [
    "ASTERISK_SPEAKERS",
    "HEDGEWARS_DROP",
    "HEDGEWARS_LANG",
    "LONG_S",
    "PACKAGES",
    "PACK_GAP_S",
    "PACK_TARGET_S",
    "SHORT_S",
    "TUXPAINT_LANGS",
    "RawFile",
    "Utterance",
    "background_db",
    "build_utterances",
    "decode",
    "extracted_speech",
    "fetch_packages",
    "inventory",
    "load_piece",
    "noise_files",
    "read_festvox_texts",
    "render_utterance",
    "tuxpaint_text",
]

# package -> short name used in ids
PACKAGES: dict[str, str] = {
    "asterisk-core-sounds-en-g722": "ast-en",
    "asterisk-core-sounds-es-g722": "ast-es",
    "asterisk-core-sounds-fr-g722": "ast-fr",
    "asterisk-core-sounds-it-g722": "ast-it",
    "asterisk-core-sounds-ru-g722": "ast-ru",
    "festvox-ru": "festvox-ru",
    "fillets-ng-data-cs": "fillets",
    "asterisk-prompt-fr-armelle": "armelle",
    "asterisk-prompt-es-co": "esco",
    "klettres-data": "klettres",
    "ktuberling-data": "ktuberling",
    "gcin-voice": "gcin",
    "codec2-examples": "codec2",
    "alsa-utils": "alsa",
    "tuxpaint-stamps-default": "tuxpaint",
    "flight-of-the-amazon-queen": "fotaq",
    "beneath-a-steel-sky": "bass",
    "hedgewars-data": "hedgewars",
    "megaglest-data": "megaglest",
    "warzone2100-data": "warzone",
}

# Hedgewars voice packs -> language ('Robot' is pitch-shifted: not bona fide speech, dropped)
HEDGEWARS_LANG = {
    "Default_es": "es",
    "Default_pl": "pl",
    "Default_ru": "ru",
    "Default_uk": "uk",
    "Russian_pl": "pl",
    "Russian": "ru",
}
HEDGEWARS_DROP = {"Robot"}
TUXPAINT_LANGS = ("be", "bg", "ca", "da", "el", "es", "fr", "lt", "ml", "nl", "ro", "ru")

# The asterisk voices: the en and es packages are the same woman (Allison), one speaker id.
ASTERISK_SPEAKERS = {
    "en_US_f_Allison": "asterisk_allison",
    "es_MX_f_Allison": "asterisk_allison",
    "fr_CA_f_June": "asterisk_june",
    "it_IT_m_Carlo": "asterisk_carlo",
    "ru_RU_f_IvrvoiceRU": "asterisk_ivr_ru",
}

SHORT_S = 4.5  # files shorter than this (raw) are packed with others of the same speaker, so that
# trimmed clips last at least one 3 s chunk (at 2.5 s, 12 % of the clips of the first build gave no chunk)
LONG_S = 12.0  # files longer than this are cut into 4-8 s segments
PACK_TARGET_S = (3.5, 7.5)  # seconds of trimmed speech (plus gaps) per packed utterance
PACK_GAP_S = 0.3  # mean gap between packed files


@dataclass
class RawFile:
    path: str  # relative to DATA_DIR/sources
    package: str
    speaker: str
    language: str
    channel: str  # native channel 'CODEC@RATE'
    duration_s: float  # from the header (before trimming)
    text: str = ""  # words spoken, where the package says (file names of letters/words, transcripts)
    kind: str = "sf"  # decoder: sf | g722 | gsm
    speech_s: float = -1.0  # seconds after tight trimming (measured for short files only)


@dataclass
class Utterance:
    """One bona fide clip: a single file, a segment of a long file, or several short files packed."""

    uid: str
    speaker: str
    language: str
    package: str
    channel: str
    pieces: list[tuple[str, str, float, float]]  # (path, decoder kind, start_s, end_s or -1)
    est_s: float
    text: str = ""
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- inventory


def _sf_info(p: Path) -> tuple[float, int, str]:
    import soundfile as sf

    info = sf.info(str(p))
    return float(info.duration), int(info.samplerate), str(info.subtype)


def _channel_from_info(sr: int, subtype: str) -> str:
    st = subtype.upper()
    codec = "vorbis" if st == "VORBIS" else "opus" if st == "OPUS" else "mp3" if "MPEG" in st else "pcm"
    return f"{codec}@{sr}"


def _words_from_stem(stem: str) -> str:
    return re.sub(r"[-_]+", " ", stem).strip()


def inventory(sources_dir: Path, status: dict[str, str]) -> list[RawFile]:
    """Every usable bona fide file, deduplicated by content, sorted by path."""
    out: list[RawFile] = []
    ok = {p for p, s in status.items() if s == "ok"}

    def rel(p: Path) -> str:
        return str(p.relative_to(sources_dir))

    for pkg in sorted(ok):
        root = sources_dir / pkg
        if pkg.startswith("asterisk-core-sounds-"):
            lang = pkg.split("-")[3]
            for voice_dir in sorted((root / "usr/share/asterisk/sounds").glob("*")):
                spk = ASTERISK_SPEAKERS.get(voice_dir.name, "asterisk_" + voice_dir.name.lower())
                for f in sorted(voice_dir.rglob("*.g722")):
                    if "silence" in f.parts or f.stem.startswith("beep"):
                        continue
                    out.append(RawFile(rel(f), pkg, spk, lang, "g722@16000", f.stat().st_size / 8000.0, kind="g722"))
        elif pkg.startswith("asterisk-prompt-"):
            spk, lang = ("armelle", "fr") if pkg.endswith("armelle") else ("esco", "es")
            for f in sorted((root / "usr/share/asterisk/sounds").rglob("*.gsm")):
                if f.stem.startswith("beep"):
                    continue
                out.append(RawFile(rel(f), pkg, spk, lang, "gsm@8000", f.stat().st_size / 1650.0, kind="gsm"))
        elif pkg == "festvox-ru":
            vdir = root / "usr/share/festival/voices/russian/msu_ru_nsh_clunits"
            texts = read_festvox_texts(vdir / "etc/txt.done.data")
            for f in sorted((vdir / "wav").glob("*.wav")):
                d, sr, st = _sf_info(f)
                out.append(
                    RawFile(rel(f), pkg, "festvox_nsh", "ru", _channel_from_info(sr, st), d, texts.get(f.stem, ""))
                )
        elif pkg == "fillets-ng-data-cs":
            for f in sorted((root / "usr/share/games/fillets-ng/sound").rglob("*.ogg")):
                tok = f.stem.split("-")
                spk = f"fillets_{tok[1]}" if len(tok) >= 3 and tok[1] in ("m", "v") else "fillets_minor"
                d, sr, st = _sf_info(f)
                out.append(RawFile(rel(f), pkg, spk, "cs", _channel_from_info(sr, st), d))
        elif pkg == "klettres-data":
            for ldir in sorted((root / "usr/share/klettres").iterdir()):
                if not ldir.is_dir() or ldir.name in ("icons", "pics"):
                    continue
                lang = ldir.name.split("_")[0]
                for f in sorted(ldir.rglob("*.ogg")):
                    d, sr, st = _sf_info(f)
                    out.append(
                        RawFile(rel(f), pkg, f"klettres_{ldir.name}", lang, _channel_from_info(sr, st), d, f.stem)
                    )
        elif pkg == "ktuberling-data":
            for ldir in sorted((root / "usr/share/ktuberling/sounds").iterdir()):
                if not ldir.is_dir():
                    continue
                lang = ldir.name.split("@")[0].split("_")[0]
                for f in sorted(ldir.iterdir()):
                    if f.suffix.lower() not in (".ogg", ".wav", ".opus"):
                        continue
                    d, sr, st = _sf_info(f)
                    out.append(
                        RawFile(
                            rel(f),
                            pkg,
                            f"ktuberling_{ldir.name}",
                            lang,
                            _channel_from_info(sr, st),
                            d,
                            _words_from_stem(f.stem),
                        )
                    )
        elif pkg == "gcin-voice":
            for f in sorted((root / "usr/share/gcin-voice/ogg").rglob("*.ogg")):
                d, sr, st = _sf_info(f)
                out.append(RawFile(rel(f), pkg, f"gcin_{f.stem}", "zh", _channel_from_info(sr, st), d))
        elif pkg == "codec2-examples":
            base = root / "usr/share/codec2"
            files = sorted((base / "wav").glob("*.wav")) + sorted((base / "raw").glob("*.wav"))
            for f in files:
                s = f.stem
                # sine*/test_* are not speech; m2400/f2400 may be codec output; all.wav repeats the others
                if s.startswith(("sine", "test")) or s in ("m2400", "f2400", "all"):
                    continue
                d, sr, st = _sf_info(f)
                spk = "codec2_" + re.sub(r"(_?16k(hz)?|_orig.*|_\d+)$", "", s.lower())
                out.append(RawFile(rel(f), pkg, spk, "en", _channel_from_info(sr, st), d))
        elif pkg == "alsa-utils":
            for f in sorted((root / "usr/share/sounds/alsa").glob("*.wav")):
                if "noise" in f.stem.lower():
                    continue
                d, sr, st = _sf_info(f)
                out.append(RawFile(rel(f), pkg, "alsa", "en", _channel_from_info(sr, st), d, _words_from_stem(f.stem)))
        elif pkg == "tuxpaint-stamps-default":
            out += _tuxpaint_files(root, pkg, rel)
        elif pkg in ("flight-of-the-amazon-queen", "beneath-a-steel-sky", "warzone2100-data"):
            spk = PACKAGES[pkg]
            for f in extracted_speech(root, pkg):
                d, sr, st = _sf_info(f)
                channel = {"beneath-a-steel-sky": "u8@11025", "flight-of-the-amazon-queen": "mp3@11025"}.get(
                    pkg, _channel_from_info(sr, st)
                )
                out.append(RawFile(rel(f), pkg, spk, "en", channel, d))
        elif pkg == "hedgewars-data":
            for vdir in sorted((root / "usr/share/games/hedgewars/Data/Sounds/voices").iterdir()):
                if not vdir.is_dir() or vdir.name in HEDGEWARS_DROP:
                    continue
                lang = HEDGEWARS_LANG.get(vdir.name, "en")
                for f in sorted(vdir.glob("*.ogg")):
                    d, sr, st = _sf_info(f)
                    text = _words_from_stem(f.stem)
                    out.append(
                        RawFile(rel(f), pkg, f"hedgewars_{vdir.name}", lang, _channel_from_info(sr, st), d, text)
                    )
        elif pkg == "megaglest-data":
            for f in sorted((root / "usr/share/games/megaglest/techs").rglob("*.wav")):
                stem = f.stem.lower()
                if "units" not in f.parts or "attack" in stem or not ("_ack" in stem or "select" in stem):
                    continue
                faction = f.parts[f.parts.index("factions") + 1] if "factions" in f.parts else "misc"
                d, sr, st = _sf_info(f)
                out.append(RawFile(rel(f), pkg, f"megaglest_{faction}", "en", _channel_from_info(sr, st), d))
    # drop exact duplicates (e.g. ktuberling's four Serbian folders share recordings)
    seen: set[str] = set()
    uniq = []
    for r in sorted(out, key=lambda r: r.path):
        h = hashlib.sha1((sources_dir / r.path).read_bytes()).hexdigest()
        if h in seen or r.duration_s < 0.2:
            continue
        seen.add(h)
        if r.duration_s < SHORT_S:
            try:
                r.speech_s = len(A.trim_tight(load_piece(sources_dir, r.path, r.kind, 0.0, -1.0))) / A.SR
            except Exception:
                continue  # undecodable: not a usable source file
        uniq.append(r)
    return uniq


def _tuxpaint_files(root: Path, pkg: str, rel) -> list[RawFile]:
    """Tux Paint's spoken stamp descriptions (``NAME_desc_LANG.ogg``; English ``NAME_desc.ogg``), with their
    text from the stamp's ``NAME.txt`` (first line English, then ``LANG.utf8=...`` lines)."""
    out = []
    for f in sorted((root / "usr/share/tuxpaint/stamps").rglob("*_desc*.ogg")):
        name, _, tail = f.name.partition("_desc")
        lang = tail.removeprefix("_").split(".")[0] or "en"
        if lang != "en" and lang not in TUXPAINT_LANGS:
            continue
        text = tuxpaint_text(f.with_name(name + ".txt"), lang)
        try:
            d, sr, st = _sf_info(f)
        except Exception:
            continue
        out.append(RawFile(rel(f), pkg, f"tuxpaint_{lang}", lang, _channel_from_info(sr, st), d, text))
    return out


def noise_files(sources_dir: Path, status: dict[str, str]) -> list[str]:
    """Real non-speech sounds for the noise augmentation: Tux Paint's stamp sound effects (animals, vehicles,
    instruments), a train source's files. Spoken stamp names (``NAME_LANG.ogg``) and descriptions are left out.
    Paths relative to ``sources_dir``, sorted."""
    if status.get("tuxpaint-stamps-default") != "ok":
        return []
    root = sources_dir / "tuxpaint-stamps-default" / "usr/share/tuxpaint/stamps"
    spoken = re.compile(r"(_desc.*|_[a-z]{2,3}(_[A-Z]{2})?)$")
    keep = (
        f
        for f in root.rglob("*.ogg")
        if not spoken.search(f.stem) and not {"symbols", "military", "flags", "roadsigns"} & set(f.parts)
    )  # symbols: spoken letters, digits and faces; final-roll-call, flags, road signs: may be spoken
    return sorted(str(f.relative_to(sources_dir)) for f in keep)


def tuxpaint_text(path: Path, lang: str) -> str:
    """The description of a Tux Paint stamp in ``lang`` ('' where the file has none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    if lang == "en":
        return lines[0].strip() if lines else ""
    for line in lines:
        key, eq, value = line.partition("=")
        if eq and key.strip() == f"{lang}.utf8":
            return value.strip()
    return ""


def read_festvox_texts(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r'\(\s*(\S+)\s+"(.*)"\s*\)', line)
        if m:
            out[m.group(1)] = m.group(2).replace("+", "")
    return out


# --------------------------------------------------------------------------------------------- pack


def _stable_rng(*parts) -> np.random.Generator:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def build_utterances(files: list[RawFile], seed: int) -> list[Utterance]:
    """Group files into utterances per speaker (deterministic for a given seed)."""
    by_spk: dict[str, list[RawFile]] = {}
    for r in files:
        by_spk.setdefault(r.speaker, []).append(r)
    utts: list[Utterance] = []
    for spk in sorted(by_spk):
        rs = sorted(by_spk[spk], key=lambda r: r.path)
        rng = _stable_rng("pack", seed, spk)
        n = 0
        shorts = [r for r in rs if r.duration_s < SHORT_S]
        for r in rs:
            if r.duration_s < SHORT_S:
                continue
            short = PACKAGES[r.package]
            if r.duration_s > LONG_S:
                t = 0.0
                while r.duration_s - t > SHORT_S:
                    seg = float(rng.uniform(4.0, 8.0))
                    end = t + seg if r.duration_s - (t + seg) > SHORT_S else -1.0
                    e_s = (end if end >= 0 else r.duration_s) - t
                    utts.append(
                        Utterance(
                            f"{short}.{spk}.{n:05d}",
                            spk,
                            r.language,
                            r.package,
                            r.channel,
                            [(r.path, r.kind, t, end)],
                            e_s,
                            "",
                            {"segment": True},
                        )
                    )
                    n += 1
                    if end < 0:
                        break
                    t = end
            else:
                utts.append(
                    Utterance(
                        f"{short}.{spk}.{n:05d}",
                        spk,
                        r.language,
                        r.package,
                        r.channel,
                        [(r.path, r.kind, 0.0, -1.0)],
                        r.duration_s,
                        r.text,
                    )
                )
                n += 1
        # pack the short files, in a seeded order, up to a drawn target each; by language (ktuberling/klettres
        # folders are one language each; asterisk Allison speaks two)
        by_lang: dict[str, list[RawFile]] = {}
        for r in shorts:
            by_lang.setdefault(r.language, []).append(r)
        for lang in sorted(by_lang):
            group = by_lang[lang]
            order = rng.permutation(len(group))
            cur: list[RawFile] = []
            tot = 0.0
            target = float(rng.uniform(*PACK_TARGET_S))
            for k in order:
                r = group[int(k)]
                cur.append(r)
                tot += (r.speech_s if r.speech_s >= 0 else r.duration_s) + (PACK_GAP_S if len(cur) > 1 else 0.0)
                if tot >= target:
                    utts.append(_packed(cur, spk, n, tot))
                    n += 1
                    cur, tot = [], 0.0
                    target = float(rng.uniform(*PACK_TARGET_S))
            mergeable = (
                bool(utts) and utts[-1].speaker == spk and utts[-1].language == lang and ("packed" in utts[-1].meta)
            )
            if cur and (tot >= 1.5 or not mergeable):
                utts.append(_packed(cur, spk, n, tot))
                n += 1
            elif cur:  # too little left over: add to the previous packed utterance of this speaker
                prev = utts[-1]
                prev.pieces += [(r.path, r.kind, 0.0, -1.0) for r in cur]
                prev.est_s += tot
                prev.text = ". ".join(t for t in [prev.text] + [r.text for r in cur] if t)
    return utts


def _packed(rs: list[RawFile], spk: str, n: int, tot: float) -> Utterance:
    r0 = rs[0]
    text = ". ".join(r.text for r in rs if r.text)  # sentence breaks: TTS pauses like the packed gaps
    return Utterance(
        f"{PACKAGES[r0.package]}.{spk}.{n:05d}",
        spk,
        r0.language,
        r0.package,
        r0.channel,
        [(r.path, r.kind, 0.0, -1.0) for r in rs],
        tot,
        text,
        {"packed": len(rs)},
    )
