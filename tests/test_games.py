"""Tests of melcnn.training.games: the queen.1c table, the RNC ProPack decoder, the sky.dnr/sky.dsk reader.

The unit tests build their archives and RNC streams here (a small method-1 packer that emits literal runs
and matches with fixed 4-bit Huffman codes). The tests on the real Debian packages look for the .deb
files in $MELCNN_DEB_CACHE, /work/cache/debs or ~/.cache/melcnn/debs, and are skipped when absent.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from melcnn.training import games as G

# ------------------------------------------------------------------------------------ helpers: packing


def _crc_bitwise(data: bytes) -> int:
    """CRC-16/ARC, bit by bit (a reference independent of the module's tables)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class _BitWriter:
    """RNC bit stream: bits LSB-first in 16-bit little-endian words, literal bytes between the words.

    A word's place is reserved when its first bit is written, so literal bytes written meanwhile follow it,
    which is where the decoder, fetching words only when it needs their bits, looks for them.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.word = 0
        self.used = 16

    def bits(self, value: int, k: int) -> None:
        for i in range(k):
            if self.used == 16:
                self.word, self.used = len(self.out), 0
                self.out += b"\0\0"
            if value >> i & 1:
                self.out[self.word + self.used // 8] |= 1 << (self.used % 8)
            self.used += 1

    def value(self, v: int) -> None:
        """A number through a table where all 16 symbols have 4-bit codes (symbol = bit length of v)."""
        sym = v.bit_length()
        self.bits(int(f"{sym:04b}"[::-1], 2), 4)  # canonical code = sym, sent MSB first
        if sym >= 2:
            self.bits(v - (1 << (sym - 1)), sym - 1)

    def tables(self, reuse: bool = False) -> None:
        for _ in range(3):
            if reuse:
                self.bits(0, 5)  # no table: the previous chunk's stays
            else:
                self.bits(16, 5)
                for _ in range(16):
                    self.bits(4, 4)


def rnc_pack(
    chunks: list[list[tuple[bytes, tuple[int, int] | None]]], reuse_tables: bool = False, trim: bool = False
) -> bytes:
    """An RNC method-1 stream from chunks of tokens (literal run, (distance, length) or None).

    ``trim``: leave out the last word's high byte when the stream ends on it and its bits are not used
    (as the original packer does: many of the game's files end on an odd byte).
    """
    w = _BitWriter()
    w.bits(0, 2)
    out = bytearray()
    for c, tokens in enumerate(chunks):
        assert tokens[-1][1] is None, "a chunk's last token has no match"
        w.tables(reuse=reuse_tables and c > 0)
        w.bits(len(tokens), 16)
        for lit, match in tokens:
            w.value(len(lit))
            w.out += lit
            out += lit
            if match:
                dist, length = match
                w.value(dist - 1)
                w.value(length - 2)
                for _ in range(length):
                    out.append(out[-dist])
    if trim and w.word == len(w.out) - 2 and w.used <= 8:
        del w.out[-1]
    packed = bytes(w.out)
    head = b"RNC\x01" + struct.pack(">IIHH", len(out), len(packed), _crc_bitwise(out), _crc_bitwise(packed))
    return head + bytes([0, len(chunks)]) + packed


# ------------------------------------------------------------------------------------------ RNC tests


def test_crc16_arc_check_value():
    assert G.crc16_arc(b"123456789") == 0xBB3D  # the catalogued check value of CRC-16/ARC
    for data in (b"", b"x", b"odd length!", bytes(range(256)) * 3):
        assert G.crc16_arc(data) == _crc_bitwise(data)


def test_rnc_literal_only():
    stream = rnc_pack([[(b"hello, world", None)]])
    assert G.rnc_unpack(stream) == b"hello, world"


def test_rnc_last_word_cut_to_one_byte():
    tokens = [[(b"abc", (3, 6)), (b"", None)]]
    stream = rnc_pack(tokens, trim=True)
    assert len(stream) == len(rnc_pack(tokens)) - 1  # the stream ends on a lone byte
    assert G.rnc_unpack(stream) == b"abcabcabc"


def test_rnc_matches_and_chunks():
    chunks = [
        [(b"abc", (3, 7)), (b"", (1, 4)), (b"xyz", None)],  # overlapping copies: abcabcabca aaaa xyz
        [(b"", (17, 17)), (bytes(range(200)), (200, 300)), (b"!", None)],
    ]
    first = b"abcabcabca" + b"aaaa" + b"xyz"
    want = first + first + bytes(range(200)) + bytes(range(200)) + bytes(range(100)) + b"!"
    assert G.rnc_unpack(rnc_pack(chunks)) == want
    assert G.rnc_unpack(rnc_pack(chunks, reuse_tables=True)) == want  # second chunk keeps the tables


def test_rnc_rejects_corrupt_input():
    text = b"the quick brown fox jumps over the lazy dog"
    good = rnc_pack([[(text, (10, 20)), (b"end", None)]])
    assert G.rnc_unpack(good) == text + text[-10:] * 2 + b"end"

    bad_crc = bytearray(good)
    bad_crc[12] ^= 0x01  # the stated CRC of the unpacked data
    with pytest.raises(ValueError, match="unpacked-data CRC"):
        G.rnc_unpack(bytes(bad_crc))

    flipped = bytearray(good)
    flipped[good.index(b"quick")] ^= 0x20  # a literal byte: the packed CRC catches it ...
    with pytest.raises(ValueError, match="packed-data CRC"):
        G.rnc_unpack(bytes(flipped))
    packed = bytes(flipped[18:])  # ... and with that CRC made to match, the unpacked CRC does
    flipped[14:16] = struct.pack(">H", _crc_bitwise(packed))
    with pytest.raises(ValueError, match="unpacked-data CRC"):
        G.rnc_unpack(bytes(flipped))

    with pytest.raises(ValueError, match="truncated"):
        G.rnc_unpack(good[:-4])
    short = bytearray(good[:-4])  # shortened, with sizes and CRC rewritten to match: the decoder runs dry
    short[8:12] = struct.pack(">I", len(short) - 18)
    short[14:16] = struct.pack(">H", _crc_bitwise(bytes(short[18:])))
    with pytest.raises(ValueError):
        G.rnc_unpack(bytes(short))
    with pytest.raises(ValueError, match="not an RNC"):
        G.rnc_unpack(b"RNC\x02" + good[4:])


# ----------------------------------------------------------------------------------- synthetic archives


def _queen_archive(files: list[tuple[str, bytes]]) -> bytes:
    head = b"QTBL" + b"CEM10\0" + b"\0\0" + bytes([1]) + struct.pack(">H", len(files))
    offset = len(head) + 21 * len(files)
    table, blobs = b"", b""
    for name, blob in files:
        table += struct.pack(">12sBII", name.encode(), 1, offset + len(blobs), len(blob))
        blobs += blob
    return head + table + blobs


def test_queen_table_and_extract(tmp_path):
    frames = b"\xff\xe3\x20\xc4" + bytes(range(100))
    files = [("B.SB", frames), ("A.SB", b"SBhdr\0\x01" + frames), ("C.SAM", b"\x80" * 50), ("AB12.SB", frames * 2)]
    data = _queen_archive(files)
    table = G.read_queen_table(data)
    assert [(e.name, e.bundle, e.size) for e in table] == [(n, 1, len(b)) for n, b in files]
    assert all(data[e.offset : e.offset + e.size] == b for e, (_, b) in zip(table, files, strict=True))

    arch = tmp_path / "pkg" / G.FOTAQ_ARCHIVE
    arch.parent.mkdir(parents=True)
    arch.write_bytes(data)
    out = tmp_path / "out"
    paths = G.extract_fotaq(tmp_path / "pkg", out)
    assert [p.name for p in paths] == ["A.mp3", "AB12.mp3", "B.mp3"]
    assert (out / "A.mp3").read_bytes() == frames  # the non-MP3 header is dropped
    assert (out / "AB12.mp3").read_bytes() == frames * 2
    assert sorted(p.name for p in out.iterdir()) == ["A.mp3", "AB12.mp3", "B.mp3"]  # no temporary left

    (out / "B.mp3").write_bytes(b"kept")  # present files are not rewritten
    assert G.extract_fotaq(tmp_path / "pkg", out) == paths
    assert (out / "B.mp3").read_bytes() == b"kept"

    with pytest.raises(ValueError, match="outside"):
        G.read_queen_table(data[:-10])
    with pytest.raises(ValueError, match="QTBL"):
        G.read_queen_table(b"QTBX" + data[4:])


def _sky_file(pcm: bytes, pack: bool = True) -> bytes:
    tot = len(pcm) + G.SKY_HEADER
    header = struct.pack("<H10xH8x", (0x80 if pack else 0) | (tot >> 16) << 8, tot & 0xFFFF)
    if not pack:
        return header + pcm
    if len(pcm) < 4000:
        return header + rnc_pack([[(pcm, None)]])
    return header + rnc_pack([[(pcm[:3000], (3000, 1000)), (pcm[4000:], None)]])  # pcm[3000:4000] == pcm[:1000]


def test_bass_extract_synthetic(tmp_path):
    t = np.arange(int(0.5 * G.BASS_SR)) / G.BASS_SR
    tone = np.round(128 + 100 * np.sin(2 * np.pi * 220 * t)).astype(np.uint8)
    tone[3000:4000] = tone[0:1000]  # what the match token copies
    corrupt = bytearray(_sky_file(tone.tobytes()))
    corrupt[-100] ^= 0xFF
    files = {  # number -> (stored bytes, offset in 16-byte units, dnr "stored uncompressed" flag)
        50001: (_sky_file(tone.tobytes()), True, False),
        50002: (_sky_file(tone[:1000].tobytes()), False, False),  # 0.09 s: too short
        50003: (bytes(corrupt), True, False),
        50004: (_sky_file(tone[::-1].tobytes(), pack=False), False, True),
        60000: (_sky_file(tone.tobytes()), True, False),  # not speech
    }
    dsk, dnr = bytearray(), struct.pack("<I", len(files))
    for num, (blob, units, plain) in files.items():
        dsk += b"\0" * (-len(dsk) % 16)
        off = (len(dsk) >> 4 | 1 << 23) if units else len(dsk)
        flags = len(blob) | (1 << 23 if plain else 0)
        dnr += struct.pack("<H", num) + off.to_bytes(3, "little") + flags.to_bytes(3, "little")
        dsk += blob
    entries = G.read_dnr(dnr)
    assert [(e.number, e.size, e.stored_plain) for e in entries] == [(n, len(b), p) for n, (b, _, p) in files.items()]
    folder = tmp_path / "pkg" / G.BASS_DIR
    folder.mkdir(parents=True)
    (folder / "sky.dnr").write_bytes(dnr)
    (folder / "sky.dsk").write_bytes(bytes(dsk))

    report = G.BassReport()
    paths = G.extract_bass(tmp_path / "pkg", tmp_path / "out", report)
    assert [p.name for p in paths] == ["50001.wav", "50004.wav"]
    assert (report.written, report.present, report.failed, report.short) == (2, 0, 1, 1)
    assert set(report.errors) == {50003}
    for path, want in zip(paths, (tone, tone[::-1]), strict=True):
        y, sr = sf.read(str(path), dtype="float32")
        assert sr == G.BASS_SR and sf.info(str(path)).subtype == "PCM_16"
        np.testing.assert_allclose(y, (want.astype(np.float32) - 128) / 128, atol=1 / 32768)

    report = G.BassReport()
    assert G.extract_bass(tmp_path / "pkg", tmp_path / "out", report) == paths
    assert (report.written, report.present) == (0, 2)


# --------------------------------------------------------------------------------- the real packages


def _find_deb(pkg: str) -> Path | None:
    for folder in (os.environ.get("MELCNN_DEB_CACHE"), "/work/cache/debs", Path.home() / ".cache/melcnn/debs"):
        if folder:
            hits = sorted(Path(folder).glob(f"{pkg}_*.deb"))
            if hits:
                return hits[-1]
    return None


def _unpacked(pkg: str, factory) -> Path:
    deb = _find_deb(pkg)
    if deb is None or shutil.which("dpkg-deb") is None:
        pytest.skip(f"{pkg}: no .deb in the cache folders, or no dpkg-deb")
    root = factory.mktemp(pkg)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def bass_root(tmp_path_factory) -> Path:
    return _unpacked("beneath-a-steel-sky", tmp_path_factory)


@pytest.fixture(scope="module")
def fotaq_root(tmp_path_factory) -> Path:
    return _unpacked("flight-of-the-amazon-queen", tmp_path_factory)


def _assert_speech_like(y: np.ndarray, sr: int) -> None:
    """Loud enough, far from white noise, and with the level swings of words and pauses."""
    rms_db = 20 * np.log10(np.sqrt(np.mean(y**2)) + 1e-12)
    _, p = welch(y, fs=sr, nperseg=512)
    p = p[1:] + 1e-20
    flatness = np.exp(np.mean(np.log(p))) / np.mean(p)  # white noise: about 1
    frames = y[: len(y) // 256 * 256].reshape(-1, 256)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    assert rms_db > -50, rms_db
    assert flatness < 0.5, flatness
    assert np.percentile(level, 90) - np.percentile(level, 10) > 10


def test_bass_real_package(bass_root, tmp_path):
    entries = G.read_dnr((bass_root / G.BASS_DIR / "sky.dnr").read_bytes())
    assert len(entries) == 5097  # the CD version v0.0372
    assert sum(e.number in G.BASS_SPEECH for e in entries) == 3491
    report = G.BassReport()
    paths = G.extract_bass(bass_root, tmp_path, report, limit=6)
    assert len(paths) == 6 and report.failed == 0 and report.short == 0
    for p in paths:
        y, sr = sf.read(str(p), dtype="float32")
        assert sr == 11025 and y.ndim == 1 and sf.info(str(p)).subtype == "PCM_16"
        assert 0.2 < len(y) / sr < 30
        _assert_speech_like(y, sr)


def test_fotaq_real_package(fotaq_root, tmp_path):
    table = G.read_queen_table((fotaq_root / G.FOTAQ_ARCHIVE).read_bytes())
    assert sum(e.name.endswith(".SB") for e in table) == 6745
    paths = G.extract_fotaq(fotaq_root, tmp_path, limit=6)
    assert len(paths) == 6
    for p in paths:
        assert p.read_bytes()[:2] == b"\xff\xe3"  # MPEG-2.5 layer III frame sync
        y, sr = sf.read(str(p), dtype="float32")
        assert sr == 11025 and y.ndim == 1
        assert 0.2 < len(y) / sr < 30
        _assert_speech_like(y, sr)
