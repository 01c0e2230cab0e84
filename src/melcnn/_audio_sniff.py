"""Content sniffing for :mod:`melcnn.audio`: which container a file is, from its first bytes, and how
many frames a WAV or AIFF header announces.

The container is identified by its content (magic bytes; what they do not settle is left to FFmpeg's
prober), never by the file name. Text files are recognised here, so that they are refused before
FFmpeg's prober sees them.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import IO

_SNIFF_BYTES = 4096


# ---------------------------------------------------------------------------------------- sniffing
@dataclass(frozen=True)
class Probe:
    """What the first bytes say: which decoder gets the file, and as which container."""

    decoder: str  # "sf" (libsndfile), "av" (FFmpeg with av_format), "probe" (let FFmpeg guess)
    container: str  # our label of the container ("wav", "aiff", "flac", "ogg", "mp3", "mp4", ...)
    av_format: str | None = None  # FFmpeg demuxer to force
    detail: str = ""  # what the magic said, for messages


_MPEG_BITRATES = {  # kbit/s by (version is MPEG-1, layer) ; index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_len(h: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is ``h``, or None if invalid."""
    if len(h) < 4 or h[0] != 0xFF or (h[1] & 0xE0) != 0xE0:
        return None
    version = (h[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - ((h[1] >> 1) & 3)  # 1..3; 4 means reserved
    br_idx, sr_idx, pad = h[2] >> 4, (h[2] >> 2) & 3, (h[2] >> 1) & 1
    if version == 1 or layer == 4 or br_idx in (0, 15) or sr_idx == 3:
        return None
    mpeg1 = version == 3
    bitrate = _MPEG_BITRATES[(mpeg1, 1 if layer == 1 else (layer if mpeg1 else 2))][br_idx - 1] * 1000
    rate = _MPEG_RATES[version][sr_idx]
    if layer == 1:
        return (12 * bitrate // rate + pad) * 4
    return (144 if (layer == 2 or mpeg1) else 72) * bitrate // rate + pad


def _is_adts(h: bytes) -> bool:
    return len(h) >= 7 and h[0] == 0xFF and (h[1] & 0xF6) == 0xF0 and ((h[2] >> 2) & 0xF) < 13


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only tolerate a character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    if not text:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


def sniff(fh: IO[bytes]) -> Probe:
    """Identify the container from the first bytes of ``fh`` (which is left at position 0)."""
    fh.seek(0)
    head = fh.read(_SNIFF_BYTES)
    fh.seek(0)
    four, form = head[:4], head[8:12]
    if four in (b"RIFF", b"RIFX") and form == b"WAVE":
        return Probe("sf", "wav", "wav", "big-endian" if four == b"RIFX" else "")
    if four in (b"RF64", b"BW64") and form == b"WAVE":
        return Probe("sf", "rf64", "wav")
    if head[:16] == b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00":
        return Probe("sf", "w64", "w64")
    if four == b"FORM" and form in (b"AIFF", b"AIFC"):
        sowt = form == b"AIFC" and b"sowt" in head[12:128]  # little-endian AIFF-C
        return Probe("sf", "aiff", "aiff", "" if sowt else "big-endian")
    if four == b"fLaC":  # FFmpeg's FLAC decoder is faster than libsndfile's and stops cleanly at a cut
        return Probe("av", "flac", "flac")
    if four == b"OggS":
        return _sniff_ogg(head)
    if four == b"caff":
        return Probe("sf", "caf", "caf")
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        container = "mov" if brand == b"qt  " or head[4:8] in (b"wide", b"pnot") else "mp4"
        if brand.startswith(b"3g"):
            container = "3gp"
        return Probe("av", container, "mov", brand.decode("latin-1").strip())
    if four == b"\x1a\x45\xdf\xa3":
        doctype = _ebml_doctype(head)
        return Probe("av", "webm" if doctype == "webm" else "matroska", "matroska", doctype)
    if head[:3] == b"ID3" and len(head) >= 10:
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        fh.seek(10 + size + (10 if head[5] & 0x10 else 0))
        after = fh.read(16)
        fh.seek(0)
        if after[:4] == b"fLaC":
            return Probe("av", "flac", "flac", "ID3 tag")
        if _is_adts(after):
            return Probe("av", "aac", "aac", "ID3 tag")
        return Probe("av", "mp3", "mp3", "ID3 tag")
    if _is_adts(head):
        return Probe("av", "aac", "aac")
    n = _mpeg_frame_len(head)
    if n is not None and _mpeg_frame_len(head[n : n + 4]) is not None:
        return Probe("av", "mp3", "mp3")
    if four == b".snd":
        return Probe("sf", "au", "au")
    if head[:5] == b"#!AMR":
        return Probe("av", "amr", "amr")
    if _looks_like_text(head):
        return Probe("text", "text")
    return Probe("probe", "unknown")


def _sniff_ogg(head: bytes) -> Probe:
    """Name the codec of the first logical stream of an OGG file from its first packet."""
    packet = b""
    if len(head) >= 27:
        nseg = head[26]
        packet = head[27 + nseg : 27 + nseg + 16]
    if packet.startswith(b"\x01vorbis"):
        return Probe("sf", "ogg", "ogg", "vorbis")
    if packet.startswith(b"\x7fFLAC"):
        return Probe("sf", "ogg", "ogg", "flac")
    if packet.startswith(b"OpusHead"):
        return Probe("av", "ogg", "ogg", "opus")
    return Probe("av", "ogg", "ogg", "")


def _ebml_doctype(head: bytes) -> str:
    """The EBML DocType string ("webm", "matroska") of a Matroska header, or ""."""
    pos = head.find(b"\x42\x82", 4, 64)
    if pos < 0 or pos + 3 > len(head):
        return ""
    size_byte = head[pos + 2]
    if not size_byte & 0x80:  # only the 1-byte size form occurs in practice
        return ""
    size = size_byte & 0x7F
    return head[pos + 3 : pos + 3 + size].decode("ascii", "replace").strip("\x00")


# ------------------------------------------------------------------------------- header durations
def announced_frames_wav(fh: IO[bytes]) -> int | None:
    """Frames a RIFF/WAVE header announces in its ``data`` chunk (None if unknown)."""
    try:
        fh.seek(0)
        head = fh.read(12)
        if head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        block_align = 0
        for _ in range(1000):
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack(endian + "I", hdr[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(min(size, 16))
                if len(fmt) >= 14:
                    block_align = struct.unpack(endian + "H", fmt[12:14])[0]
                fh.seek(size + (size & 1) - len(fmt), io.SEEK_CUR)
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                fh.seek(size + (size & 1), io.SEEK_CUR)
    except (OSError, struct.error, ValueError):
        return None
    finally:
        fh.seek(0)
    return None


def announced_frames_aiff(fh: IO[bytes]) -> int | None:
    """Frames an AIFF ``COMM`` chunk announces (None if unknown)."""
    try:
        fh.seek(12)
        for _ in range(1000):
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack(">I", hdr[4:])[0]
            if cid == b"COMM":
                comm = fh.read(6)
                return struct.unpack(">I", comm[2:6])[0] if len(comm) == 6 else None
            fh.seek(size + (size & 1), io.SEEK_CUR)
    except (OSError, struct.error, ValueError):
        return None
    finally:
        fh.seek(0)
    return None
