"""Recorded speech of two Debian game packages, extracted from their archives into ordinary audio files.

Both packages install their data under ``usr/share/scummvm/<game>/``; ``pkg_root`` below is the folder
``dpkg-deb -x`` unpacked the package into.

Flight of the Amazon Queen (package ``flight-of-the-amazon-queen``, the 1995 CD talkie, ScummVM's
compressed re-release): one archive ``queen.1c``. Header: ``QTBL``, a 6-byte version string (``CEM10``
NUL-padded), 2 bytes, a compression byte (1 = MP3) and a big-endian uint16 entry count; then 21-byte
entries: 12-byte NUL-padded name, 1-byte bundle, big-endian uint32 offset and size. The entries named
``*.SB`` are the speech (6,745 of 7,671), MPEG-2.5 layer III at 16 kbit/s, 11,025 Hz mono.

Beneath a Steel Sky (package ``beneath-a-steel-sky``, the 1994 CD version v0.0372): ``sky.dnr`` is a
little-endian uint32 count and then 8-byte entries indexing ``sky.dsk``: uint16 file number, 3-byte
offset (bit 23 set: the low 23 bits count 16-byte units), 3-byte size (low 22 bits) with two flags (bit
23: stored uncompressed; bit 22: the engine drops the file's header). The files start with a 22-byte
header of eleven little-endian uint16 (``flag``: bit 7 = RNC-packed, high byte = bits 16-23 of the
unpacked size; ``s_tot_size`` at byte 12 = the size's low 16 bits, header included). A packed file's
header is stored as is, in front of the RNC stream, which unpacks to the body alone (checked on all 3,491
speech files: header flag 0x0081, ``s_tot_size`` = 22 + the RNC unpacked size, dnr flags clear, offsets in
16-byte units). Files 50000-55299 are speech: the body is 8-bit unsigned PCM, 11,025 Hz mono.

RNC ProPack method 1: header ``RNC\\x01``, big-endian uint32 unpacked and packed sizes, uint16 CRCs of
the unpacked and packed data (CRC-16/ARC), 1 byte leeway, 1 byte chunk count; then, per chunk, three
Huffman tables (literal-run lengths, match offsets, match lengths) and a 16-bit token count, LZ77 tokens
read LSB-first from 16-bit little-endian words, with literal runs stored as plain bytes between words
(right after the word being read). The packer cuts the stream's last word to one byte when its high byte
holds no bits (1,499 of the 3,491 speech files end so).
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FOTAQ_ARCHIVE = "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
BASS_DIR = "usr/share/scummvm/beneath-a-steel-sky"

BASS_SR = 11025
BASS_SPEECH = range(50000, 55300)
MIN_SPEECH_S = 0.2
SKY_HEADER = 22  # sizeof(dataFileHeader): eleven uint16

# ---------------------------------------------------------------------------------------------- FOTAQ


@dataclass(frozen=True)
class QueenEntry:
    """One file in ``queen.1c``."""

    name: str
    bundle: int
    offset: int
    size: int


def read_queen_table(data: bytes) -> list[QueenEntry]:
    """Parse the table of a ``queen.1c`` archive; ValueError if it is not one or an entry lies outside it."""
    if len(data) < 15 or data[:4] != b"QTBL":
        raise ValueError("not a queen.1c archive (no QTBL header)")
    (count,) = struct.unpack_from(">H", data, 13)
    end = 15 + 21 * count
    if end > len(data):
        raise ValueError(f"table of {count} entries runs past the end of the archive")
    out = []
    for i in range(count):
        raw, bundle, offset, size = struct.unpack_from(">12sBII", data, 15 + 21 * i)
        name = raw.split(b"\0", 1)[0].decode("ascii")
        if offset < end or offset + size > len(data):
            raise ValueError(f"entry {name} ({offset}+{size}) lies outside the archive's data")
        out.append(QueenEntry(name, bundle, offset, size))
    return out


def _mp3_start(blob: bytes, search: int = 512) -> int:
    """Offset of the first MPEG audio frame sync (11 set bits) in the first ``search`` bytes."""
    for i in range(min(search, len(blob) - 1)):
        if blob[i] == 0xFF and blob[i + 1] & 0xE0 == 0xE0:
            return i
    raise ValueError("no MPEG frame sync")


def _write_atomic(dest: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``dest``, then rename it to ``dest``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_fotaq(pkg_root: Path, out_dir: Path, limit: int | None = None) -> list[Path]:
    """Write each speech entry (``*.SB``) of ``queen.1c`` as ``out_dir/<NAME>.mp3``; sorted paths written or present.

    ``limit``: only the first so many speech entries (tests). Resumable: files already present are kept.

    Checked on the Debian package's archive: every ``.SB`` entry is a bare run of MPEG frames, none carries
    the header of the original CD's raw ``.SB`` files (all 6,745 start with the frame sync ``ff e3``, all
    parse as whole 16 kbit/s frames up to the entry's last byte, no ID3 tag, all decode with libsndfile).
    A leading non-MP3 header, should another build of the archive have one, is dropped all the same.
    """
    pkg_root, out_dir = Path(pkg_root), Path(out_dir)
    archive = pkg_root / FOTAQ_ARCHIVE
    if not archive.is_file():
        archive = next(iter(sorted(pkg_root.rglob("queen.1c"))), archive)
    data = archive.read_bytes()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    speech = [e for e in read_queen_table(data) if e.name.upper().endswith(".SB")]
    for e in speech[:limit]:
        dest = out_dir / f"{e.name[:-3]}.mp3"
        if not dest.exists():
            blob = data[e.offset : e.offset + e.size]
            blob = blob[_mp3_start(blob) :]
            _write_atomic(dest, lambda p, b=blob: p.write_bytes(b))
        paths.append(dest)
    return sorted(paths)


# ------------------------------------------------------------------------------------------------ RNC


def _crc_tables() -> tuple[list[int], list[int]]:
    one = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        one.append(c)
    # two steps at once: after xoring a 16-bit word into the register, two zero-byte steps
    two = [0] * 65536
    for x in range(65536):
        c = one[x & 0xFF] ^ (x >> 8)
        two[x] = one[c & 0xFF] ^ (c >> 8)
    return one, two


_CRC8, _CRC16 = _crc_tables()


def crc16_arc(data: bytes | bytearray) -> int:
    """CRC-16/ARC (reflected polynomial 0xA001, initial value 0), the checksum RNC ProPack uses."""
    mv = memoryview(data)
    n2 = len(mv) & ~1
    words = array("H", mv[:n2].tobytes())
    if sys.byteorder == "big":
        words.byteswap()
    crc = 0
    tab = _CRC16
    for w in words:
        crc = tab[crc ^ w]
    if n2 < len(mv):
        crc = _CRC8[(crc ^ mv[n2]) & 0xFF] ^ (crc >> 8)
    return crc


def rnc_unpack(data: bytes) -> bytes:
    """Unpack one RNC ProPack method-1 stream (from its ``RNC\\x01`` header); ValueError if corrupt or truncated.

    Both CRCs are checked: the packed data's before decoding, the unpacked data's after.
    """
    data = bytes(data)
    if len(data) < 18 or data[:4] != b"RNC\x01":
        raise ValueError("not an RNC method-1 stream")
    unpacked_len, packed_len, crc_unpacked, crc_packed = struct.unpack_from(">IIHH", data, 4)
    chunks = data[17]
    if len(data) < 18 + packed_len:
        raise ValueError(f"truncated RNC stream: {len(data) - 18} of {packed_len} packed bytes")
    src = data[18 : 18 + packed_len]
    if crc16_arc(src) != crc_packed:
        raise ValueError("RNC packed-data CRC mismatch")
    end = packed_len
    padded = src + b"\0" * 4  # so that a peek past the last word never indexes past the end

    # Bit reader: ``buf`` holds ``n`` unread bits (0 <= n < 16 between reads) of the word being read;
    # ``pos`` is the next byte of the stream, where the next word, or a literal run, starts.
    buf = n = pos = 0

    def bits(k: int) -> int:
        nonlocal buf, n, pos
        if k > n:
            if pos >= end:  # the packer drops the last word's high byte when its bits are not needed
                raise ValueError("truncated RNC stream (bit reader ran past the end)")
            buf |= (padded[pos] | padded[pos + 1] << 8) << n
            pos += 2
            n += 16
        v = buf & ((1 << k) - 1)
        buf >>= k
        n -= k
        return v

    def table() -> list[int] | None:
        count = bits(5)
        if count == 0:
            return None  # the previous chunk's table stays (as in the original decoder)
        if count > 16:
            raise ValueError(f"RNC Huffman table of {count} symbols (16 at most)")
        lengths = [bits(4) for _ in range(count)]
        width = max(lengths)
        if width == 0:
            raise ValueError("RNC Huffman table without codes")
        lut = [-1] * (1 << width)
        code = 0  # canonical, MSB-first in a 16-bit register; the stream holds each code bit-reversed
        for length in range(1, 17):
            for sym, ln in enumerate(lengths):
                if ln != length:
                    continue
                if code >> 16:
                    raise ValueError("RNC Huffman table over-subscribed")
                rev = int(f"{code >> (16 - length):0{length}b}"[::-1], 2)
                lut[rev :: 1 << length] = [length << 8 | sym] * (1 << (width - length))
                code += 1 << (16 - length)
        return [width, *lut]

    def value(t: list[int]) -> int:
        nonlocal buf, n, pos
        width = t[0]
        peek = buf
        if n < width:
            peek |= (padded[pos] | padded[pos + 1] << 8) << n
        e = t[1 + (peek & ((1 << width) - 1))]
        if e < 0:
            raise ValueError("invalid RNC Huffman code")
        bits(e >> 8)
        sym = e & 0xFF
        if sym < 2:
            return sym
        return bits(sym - 1) | 1 << (sym - 1)

    bits(2)  # lock / key flags
    out = bytearray()
    raw_t = off_t = len_t = None
    for _ in range(chunks):
        raw_t = table() or raw_t
        off_t = table() or off_t
        len_t = table() or len_t
        if raw_t is None or off_t is None or len_t is None:
            raise ValueError("RNC chunk without Huffman tables")
        counts = bits(16)
        for i in range(counts, 0, -1):
            run = value(raw_t)
            if run:
                if pos + run > end:
                    raise ValueError("truncated RNC stream (literal run past the end)")
                out += src[pos : pos + run]
                pos += run
            if i > 1:
                dist = value(off_t) + 1
                length = value(len_t) + 2
                start = len(out) - dist
                if start < 0:
                    raise ValueError("RNC match reaches before the start of the output")
                if length <= dist:
                    out += out[start : start + length]
                else:
                    pat = out[start:]
                    out += (pat * (length // dist + 1))[:length]
            if len(out) > unpacked_len:
                raise ValueError("RNC stream unpacks past its stated size")
    if len(out) != unpacked_len:
        raise ValueError(f"RNC stream unpacked to {len(out)} bytes, header says {unpacked_len}")
    if crc16_arc(out) != crc_unpacked:
        raise ValueError("RNC unpacked-data CRC mismatch")
    return bytes(out)


# ----------------------------------------------------------------------------------------------- BASS


@dataclass(frozen=True)
class SkyEntry:
    """One file of ``sky.dsk`` as ``sky.dnr`` lists it."""

    number: int
    offset: int  # bytes into sky.dsk
    size: int  # bytes stored
    stored_plain: bool  # dnr flag: stored uncompressed
    drop_header: bool  # dnr flag: the engine hands out the file without its 22-byte header


def read_dnr(data: bytes) -> list[SkyEntry]:
    """Parse ``sky.dnr``: a little-endian uint32 count, then one 8-byte entry per file."""
    if len(data) < 4:
        raise ValueError("sky.dnr too short")
    (count,) = struct.unpack_from("<I", data, 0)
    if len(data) < 4 + 8 * count:
        raise ValueError(f"sky.dnr holds fewer than its {count} entries")
    out = []
    for i in range(count):
        e = data[4 + 8 * i : 12 + 8 * i]
        number = e[0] | e[1] << 8
        off = int.from_bytes(e[2:5], "little")
        flags = int.from_bytes(e[5:8], "little")
        offset = (off & 0x7FFFFF) << 4 if off >> 23 else off
        out.append(SkyEntry(number, offset, flags & 0x3FFFFF, bool(flags >> 23 & 1), bool(flags >> 22 & 1)))
    return out


def sky_body(raw: bytes, stored_plain: bool = False) -> bytes:
    """The body of one ``sky.dsk`` file as stored: 22-byte header, then data, RNC-packed if the header says so.

    ``stored_plain`` (the dnr flag) overrides the header's packed bit, as in the engine. The size the header
    states (header included) is checked against the body's; ValueError on mismatch.
    """
    if len(raw) < SKY_HEADER:
        raise ValueError("sky file shorter than its header")
    flag, tot = struct.unpack_from("<H10xH", raw, 0)
    stated = (flag & 0xFF00) << 8 | tot
    body = rnc_unpack(raw[SKY_HEADER:]) if flag & 0x80 and not stored_plain else raw[SKY_HEADER:]
    if len(body) != stated - SKY_HEADER:
        raise ValueError(f"sky file body of {len(body)} bytes, header says {stated - SKY_HEADER}")
    return body


def _write_wav(path: Path, pcm_u8: np.ndarray) -> None:
    import soundfile as sf

    y = (pcm_u8.astype(np.float32) - 128.0) / 128.0
    sf.write(str(path), y, BASS_SR, format="WAV", subtype="PCM_16")


@dataclass
class BassReport:
    """What one :func:`extract_bass` run did."""

    written: int = 0
    present: int = 0
    failed: int = 0  # did not decode (RNC or size check)
    short: int = 0  # decoded, but under MIN_SPEECH_S
    errors: dict[int, str] = field(default_factory=dict)  # file number -> why it failed


def extract_bass(
    pkg_root: Path, out_dir: Path, report: BassReport | None = None, limit: int | None = None
) -> list[Path]:
    """Write each speech file (numbers 50000-55299) of ``sky.dsk`` as ``out_dir/<number>.wav``; sorted paths.

    16-bit PCM WAV at 11,025 Hz. ``limit``: only the first so many speech files (tests). Resumable: files
    already present are kept. A file that fails to decode is skipped and counted (in ``report`` when
    given), as is one of ``MIN_SPEECH_S`` or less.
    """
    pkg_root, out_dir = Path(pkg_root), Path(out_dir)
    folder = pkg_root / BASS_DIR
    if not (folder / "sky.dnr").is_file():
        hits = sorted(pkg_root.rglob("sky.dnr"))
        folder = hits[0].parent if hits else folder
    entries = [e for e in read_dnr((folder / "sky.dnr").read_bytes()) if e.number in BASS_SPEECH]
    report = report if report is not None else BassReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with open(folder / "sky.dsk", "rb") as dsk:
        for e in sorted(entries, key=lambda e: e.number)[:limit]:
            dest = out_dir / f"{e.number}.wav"
            if dest.exists():
                report.present += 1
                paths.append(dest)
                continue
            try:
                dsk.seek(e.offset)
                raw = dsk.read(e.size)
                if len(raw) != e.size:
                    raise ValueError("sky.dsk ends inside the file")
                pcm = np.frombuffer(sky_body(raw, e.stored_plain), dtype=np.uint8)
            except ValueError as exc:
                report.failed += 1
                report.errors[e.number] = str(exc)
                continue
            if len(pcm) <= MIN_SPEECH_S * BASS_SR:
                report.short += 1
                continue
            _write_atomic(dest, lambda p, x=pcm: _write_wav(p, x))
            report.written += 1
            paths.append(dest)
    return sorted(paths)
