"""A scan's output file (:class:`Output`): JSON Lines, Parquet and CSV written resumably (a journal,
fsync, atomic rename) and read back (:func:`read_rows`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import MelcnnError
from .discovery import _Target
from .rows import COLUMN_NAMES, COLUMNS, RETRIED_CODES, row_key

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise MelcnnError(f"output {os.fspath(path)!r}: use a name ending in .parquet, .jsonl or .csv")
    return FORMATS[suffix]


def _parquet_schema():
    import pyarrow as pa

    chunk = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("fake_score", pa.float64())])
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "list<string>": pa.list_(pa.string())}
    return pa.schema([(n, pa.list_(chunk) if n == "chunks" else types[t]) for n, t in COLUMNS])


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, bool]:
    """Rows of a JSON Lines file, the byte length of its good part, and whether a torn tail was found."""
    rows: list[dict[str, Any]] = []
    good = 0
    torn = False
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        nxt = len(data) if end < 0 else end + 1
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                torn = True
                if end < 0:  # the last line was cut by a kill: the good part ends before it
                    break
                pos = nxt
                continue
            if end < 0:
                torn = True  # complete JSON but no newline: rewrite it whole
                break
        good = nxt
        pos = nxt
    return rows, good, torn


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a scan output (Parquet, JSON Lines or CSV), in file order."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "jsonl":
        return _read_jsonl(path)[0]
    if fmt == "csv":
        import csv

        with open(path, newline="", encoding="utf-8") as fh:
            return [_from_csv(r) for r in csv.DictReader(fh)]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


_FLOAT_COLS = {n for n, t in COLUMNS if t == "float64"}
_INT_COLS = {n for n, t in COLUMNS if t == "int64"}
_LIST_COLS = {n for n, t in COLUMNS if t.startswith("list")}


def _to_csv(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (json.dumps(v) if k in _LIST_COLS else "" if v is None else repr(v) if isinstance(v, float) else v)
        for k, v in row.items()
    }


def _from_csv(rec: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if k in _LIST_COLS:
            out[k] = json.loads(v) if v else []
        elif v == "":
            out[k] = None
        elif k in _FLOAT_COLS:
            out[k] = float(v)
        elif k in _INT_COLS:
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Output:
    """A scan's output file, resumable and never left unreadable.

    JSON Lines: rows are appended (one ``write`` per row, ``fsync`` at least every
    :attr:`fsync_every_s`); a line cut by a kill is dropped on the next run. Parquet and CSV: rows go
    to a JSON Lines journal beside the output (``OUT.journal.jsonl``) and the table is written at the
    end to a temporary file and renamed over the output, so it is always the previous or the new
    complete table. Either way a rerun finds every finished row.
    """

    fsync_every_s = 1.0

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = output_format(self.path)
        if self.format == "parquet":
            import pyarrow  # noqa: F401  (fail now, not after hours of scanning)
        self.journal = self.path if self.format == "jsonl" else self.path.with_name(self.path.name + ".journal.jsonl")
        self.rows: dict[str, dict[str, Any]] = {}  # path -> latest row (previous runs and this one)
        self.dirty = False
        if self.format != "jsonl" and self.path.exists():
            for r in read_rows(self.path):
                self.rows[r["path"]] = r
        if self.journal.exists():
            rows, good, torn = _read_jsonl(self.journal)
            n_before = len(self.rows)
            for r in rows:
                if r.get("path") in self.rows:
                    self.dirty = True
                self.rows[r["path"]] = r
            if torn:
                with open(self.journal, "r+b") as fh:
                    fh.truncate(good)
                    fh.flush()
                    os.fsync(fh.fileno())
            if self.format != "jsonl":
                self.dirty = self.dirty or len(self.rows) != n_before or bool(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._last_sync = time.monotonic()

    def current(self, target: _Target, model: dict[str, str]) -> bool:
        row = self.rows.get(target.path)
        return (
            row is not None
            and row.get("error_code") not in RETRIED_CODES
            and row_key(row) == (target.path, target.size, target.mtime, model["name"], model["weights_sha256"])
        )

    def append(self, row: dict[str, Any]) -> None:
        if row["path"] in self.rows:
            self.dirty = True
        self.rows[row["path"]] = row
        os.write(self._fd, (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode())
        if self.format != "jsonl":
            self.dirty = True
        if time.monotonic() - self._last_sync >= self.fsync_every_s:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Flush; write the table (Parquet/CSV) or drop superseded lines (JSON Lines) atomically."""
        if self._fd < 0:
            return
        self.sync()
        os.close(self._fd)
        self._fd = -1
        if not self.dirty:
            if self.format != "jsonl" and self.journal.exists() and self.path.exists():
                self.journal.unlink()
            return
        rows = list(self.rows.values())
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            if self.format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                records = [{k: r.get(k) for k in COLUMN_NAMES} for r in rows]
                table = pa.Table.from_pylist(records, schema=_parquet_schema())
                pq.write_table(table, tmp)
            elif self.format == "csv":
                import csv

                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    w = csv.DictWriter(fh, fieldnames=COLUMN_NAMES, extrasaction="ignore")
                    w.writeheader()
                    for r in rows:
                        w.writerow(_to_csv({k: r.get(k) for k in COLUMN_NAMES}))
            else:
                with open(tmp, "w", encoding="utf-8") as fh:
                    for r in rows:
                        fh.write(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if self.format != "jsonl":
            self.journal.unlink(missing_ok=True)
