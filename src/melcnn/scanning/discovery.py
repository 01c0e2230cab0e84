"""Which files a scan reads: paths, folders and globs walked into candidate files (:func:`discover`), the
include/exclude patterns, and :func:`looks_like_media` (a non-media file is skipped, damaged media is a row).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

from .rows import NOT_FOUND, _Target
from .stats import ScanStats


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def discover(
    paths: Iterable[str | os.PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    stats: ScanStats | None = None,
    stdin: TextIO | None = None,
) -> Iterator[_Target]:
    """Candidate files under ``paths`` (files, folders walked recursively, globs, ``-``: a list on stdin).

    Symbolic links are followed; a folder reached twice (a link loop) is walked once. Unreadable
    folders are counted in ``stats`` and passed over. Paths named explicitly that are missing, and
    folders named in a stdin list, become error entries (one row each). FIFOs, sockets and devices are
    counted and skipped (reading them could block). Each file is yielded once, as an absolute path.
    """
    stats = stats if stats is not None else ScanStats()
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def candidate(path: str, explicit: bool) -> Iterator[_Target]:
        path = os.path.abspath(path)
        if path in seen_files:
            return
        if not explicit and include and not _matches(path, include):
            return
        if exclude and _matches(path, exclude):
            return
        seen_files.add(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            stats.discovered += 1
            yield _Target(path, error=(NOT_FOUND, f"cannot read {path}: {exc.strerror or exc}"))
            return
        if stat.S_ISDIR(st.st_mode):
            stats.discovered += 1
            yield _Target(path, st.st_size, st.st_mtime, error=(NOT_FOUND, f"{path} is a folder, not a media file"))
            return
        if not stat.S_ISREG(st.st_mode):
            stats.special += 1
            return
        stats.discovered += 1
        yield _Target(path, st.st_size, st.st_mtime)

    def walk(top: str) -> Iterator[_Target]:
        def onerror(exc: OSError) -> None:
            stats.unreadable_dirs += 1

        for dirpath, dirnames, filenames in os.walk(top, onerror=onerror, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                stats.unreadable_dirs += 1
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                stats.symlink_loops += 1
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames.sort()
            for name in sorted(filenames):
                yield from candidate(os.path.join(dirpath, name), explicit=False)

    def one(arg: str, from_list: bool) -> Iterator[_Target]:
        if os.path.isdir(arg) and not from_list:
            yield from walk(arg)
        elif os.path.lexists(arg) or from_list or not glob.has_magic(arg):
            if os.path.isdir(arg):  # a folder in a list of files (e.g. named like media): one error row
                yield from candidate(arg, explicit=True)
            else:
                yield from candidate(arg, explicit=not from_list)
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                stats.no_match.append(arg)
            for m in matches:
                if os.path.isdir(m):
                    yield from walk(m)
                else:
                    yield from candidate(m, explicit=False)

    for p in paths:
        arg = os.fspath(p)
        if arg == "-":
            for line in stdin if stdin is not None else sys.stdin:
                line = line.rstrip("\r\n")
                if line:
                    yield from one(line, from_list=True)
        else:
            yield from one(arg, from_list=False)
    stats.discovery_done = True


_MAGIC = (
    b"RIFF", b"RF64", b"BW64", b"riff", b"FORM", b"fLaC", b"OggS", b"ID3", b"\x1aE\xdf\xa3", b".RMF",
    b"caff", b"wvpk", b"#!AMR", b"MAC ", b"TTA1", b"0&\xb2u", b"FLV", b"\x00\x00\x01\xba", b".snd", b"ADIF",
)  # fmt: skip


def looks_like_media(head: bytes) -> bool:
    """Does the start of a file carry a media container's signature? (Used only to tell a non-media
    file, which is skipped, from a damaged media file, which gets an error row.)"""
    if head.startswith(_MAGIC) or head[4:8] == b"ftyp":
        return True
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG audio / ADTS sync
        return True
    return len(head) >= 1 and head[0] == 0x47 and (len(head) < 189 or head[188] == 0x47)  # MPEG-TS
