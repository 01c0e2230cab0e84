"""Bona fide sources: Debian packages fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``.

Needs: ``apt-get`` and ``dpkg-deb`` (no root for these two steps; the apt lists must be current:
``apt-get update`` once, as root), soundfile, soxr and the PyPI package ``g722``.
The packages are listed in :data:`PACKAGES` (``docs/training.md`` describes each).

Each package is unpacked into ``DATA_DIR/sources/PKG`` through a temporary folder that is renamed
when complete, so an interrupted fetch is redone and a finished one skipped. If the environment
variable ``MELCNN_DEB_CACHE`` names a folder, downloaded .deb files are kept there and reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import audio as A

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


# --------------------------------------------------------------------------------------------- fetch


def fetch_packages(sources_dir: Path, progress=None, packages: list[str] | None = None) -> dict[str, str]:
    """Download and unpack every package (or those of ``packages``); returns {package: 'ok' | 'error: ...'}."""
    debs = sources_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    cache = os.environ.get("MELCNN_DEB_CACHE")
    status: dict[str, str] = {}
    pkgs = sorted(PACKAGES if packages is None else set(packages) & set(PACKAGES))
    for i, pkg in enumerate(pkgs):
        if progress:
            progress("fetch", i, len(pkgs))
        dest = sources_dir / pkg
        if dest.is_dir():
            status[pkg] = "ok"
            continue
        try:
            deb = _download(pkg, debs, Path(cache) if cache else None)
            tmp = Path(tempfile.mkdtemp(prefix=f".{pkg}-", dir=sources_dir))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
            os.replace(tmp, dest)
            status[pkg] = "ok"
        except Exception as e:  # a missing package only removes that source
            status[pkg] = f"error: {e}"
    if progress:
        progress("fetch", len(pkgs), len(pkgs))
    return status


def _find_deb(pkg: str, folder: Path) -> Path | None:
    hits = sorted(folder.glob(f"{pkg}_*.deb"))
    return hits[-1] if hits else None


def _download(pkg: str, debs: Path, cache: Path | None) -> Path:
    deb = _find_deb(pkg, debs)
    if deb:
        return deb
    if cache:
        cached = _find_deb(pkg, cache)
        if cached:
            shutil.copy2(cached, debs / cached.name)
            return debs / cached.name
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=debs))
    try:
        r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True)
        got = _find_deb(pkg, tmp)
        if r.returncode != 0 or got is None:
            raise RuntimeError(f"apt-get download {pkg} failed: {r.stderr.strip()[-300:]}")
        os.replace(got, debs / got.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    deb = debs / got.name
    if cache:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copy2(deb, cache / deb.name)
        except OSError:
            pass
    return deb


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


def extracted_speech(root: Path, pkg: str) -> list[Path]:
    """Speech files that live inside a game's archives, extracted once into ``root/extracted`` (resumable)."""
    out_dir = root / "extracted"
    done = out_dir / ".done"
    if done.exists():
        return sorted(p for p in out_dir.iterdir() if p.suffix in (".mp3", ".wav", ".ogg"))
    from . import games

    if pkg == "flight-of-the-amazon-queen":
        files = games.extract_fotaq(root, out_dir)
    elif pkg == "beneath-a-steel-sky":
        files = games.extract_bass(root, out_dir)
    elif pkg == "warzone2100-data":
        files = _extract_warzone(root, out_dir)
    else:
        raise ValueError(pkg)
    done.write_text(str(len(files)))
    return sorted(files)


def _extract_warzone(root: Path, out_dir: Path) -> list[Path]:
    """Warzone 2100's spoken messages and taunts from ``base.wz`` (a zip archive)."""
    import zipfile

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    with zipfile.ZipFile(root / "usr/share/games/warzone2100/base.wz") as z:
        for name in sorted(z.namelist()):
            if not name.startswith(("audio/memressp/", "audio/taunts/")) or not name.endswith(".ogg"):
                continue
            dest = out_dir / name.replace("/", "_")
            if not dest.exists():
                tmp = dest.with_suffix(".tmp")
                tmp.write_bytes(z.read(name))
                os.replace(tmp, dest)
            files.append(dest)
    return files


def read_festvox_texts(path: Path) -> dict[str, str]:
    out = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r'\(\s*(\S+)\s+"(.*)"\s*\)', line)
        if m:
            out[m.group(1)] = m.group(2).replace("+", "")
    return out


# -------------------------------------------------------------------------------------------- decode


def decode(path: Path, kind: str) -> tuple[np.ndarray, int]:
    """Float64 mono samples and rate of one source file."""
    import soundfile as sf

    if kind == "g722":
        import G722

        y = np.asarray(G722.G722(16000, 64000).decode(path.read_bytes()), dtype=np.float64) / 32768.0
        return y, 16000
    if kind == "gsm":
        y, sr = sf.read(str(path), format="RAW", subtype="GSM610", samplerate=8000, channels=1, dtype="float64")
        return A.to_mono(y), sr
    y, sr = sf.read(str(path), dtype="float64", always_2d=False)
    return A.to_mono(y), int(sr)


def load_piece(sources_dir: Path, path: str, kind: str, start_s: float, end_s: float) -> np.ndarray:
    y, sr = decode(sources_dir / path, kind)
    y = A.resample(y, sr, A.SR)
    if start_s > 0 or end_s >= 0:
        a = int(start_s * A.SR)
        b = len(y) if end_s < 0 else int(end_s * A.SR)
        y = y[a:b]
    return y


def _quiet_cut(y: np.ndarray, t: float, search_s: float = 0.6) -> float:
    """Move a cut point to the quietest 10 ms frame within +-search_s."""
    f = A.frame_rms_db(y)
    c = int(t * A.SR / A.HOP)
    w = int(search_s * A.SR / A.HOP)
    lo, hi = max(0, c - w), min(len(f), c + w + 1)
    if hi <= lo:
        return t
    return float((lo + int(np.argmin(f[lo:hi]))) * A.HOP / A.SR)


def background_db(y: np.ndarray) -> float:
    """Level of the recording's own background: the 10th percentile of frame levels."""
    f = A.frame_rms_db(y)
    return float(np.percentile(f, 10))


def render_utterance(sources_dir: Path, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """The 16 kHz samples of a bona fide utterance, before trimming and normalisation.

    Packed short files are trimmed tightly and joined with 0.15-0.45 s gaps of noise at the
    speakers' own background level (never digital zeros).
    """
    if len(utt.pieces) == 1:
        p, kind, a, b = utt.pieces[0]
        y = load_piece(sources_dir, p, kind, 0.0, -1.0)
        if a > 0 or b >= 0:
            # segment of a long file: move the cuts to nearby pauses
            a2 = _quiet_cut(y, a) if a > 0 else 0.0
            b2 = _quiet_cut(y, b) if 0 <= b < len(y) / A.SR - 0.5 else len(y) / A.SR
            y = y[int(a2 * A.SR) : int(b2 * A.SR)]
        return y
    parts = [load_piece(sources_dir, p, kind, a, b) for p, kind, a, b in utt.pieces]
    bg = np.median([background_db(p) for p in parts])
    bg = float(np.clip(bg, -75.0, -35.0))
    out = []
    for i, p in enumerate(parts):
        if i:
            n = int(rng.uniform(0.15, 0.45) * A.SR)
            out.append(A.coloured_noise(n, "pink", rng) * 10.0 ** (bg / 20.0))
        out.append(A.trim_tight(p))
    return np.concatenate(out)


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
