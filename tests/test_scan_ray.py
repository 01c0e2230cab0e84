"""``melcnn scan --engine ray``: real files in mixed formats scanned on a local Ray (2 CPUs) give the local
engine's rows; a rerun resumes; an actor's decoding process killed while it decodes a file leaves a
``worker_died`` row and the scan goes on; a file that hangs is stopped after ``file_timeout_s`` and gets
``timeout``; the command line's exit status and output. Each Ray scan starts (and stops) its own local Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_factory import hanging_mp3, make_media

import melcnn
from melcnn.cli import main
from melcnn.errors import MelcnnError
from melcnn.scanning import read_rows
from melcnn.scanning.workers import _FileWorker

try:
    import ray
    import ray.data  # noqa: F401
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason="Ray Data is not installed (pip install 'melcnn[ray]'; scripts/test.sh installs it)"
)

SRC = Path(melcnn.__file__).resolve().parent.parent
#: the media files: name -> (kind, seconds, seed)
MEDIA = {
    "speech.wav": ("wav_s16", 6.0, 1),
    "talk.flac": ("flac", 7.0, 2),
    "sub/voice.mp3": ("mp3", 6.0, 3),
    "sub/clip.ogg": ("ogg_vorbis", 5.0, 4),
}
#: its decoding process is killed while it decodes: four minutes of FLAC take about a second to decode
#: (excluded from the comparisons)
VICTIM = "long.flac"
#: columns that differ between any two runs
TIMING = ("processing_time_s", "scanned_at")


@pytest.fixture(scope="module")
def detector():
    return melcnn.load_model("v2")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Four formats in nested folders, a damaged WAV, a text file, and the long FLAC."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("archive")
    for rel, (kind, seconds, seed) in MEDIA.items():
        p = root / rel
        make_media(kind, p.parent, seconds=seconds, seed=seed, name=p.name)
    make_media("riff_garbage", root, name="damaged.wav")
    (root / "notes.txt").write_text("not audio\n")
    sr, n = 44100, 240 * 44100
    y = 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / sr) + 0.01 * np.random.default_rng(5).standard_normal(n)
    sf.write(root / VICTIM, y.astype(np.float32), sr, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def local_rows(archive, detector) -> dict[str, dict[str, Any]]:
    """The local engine's rows (name -> row), the reference for the Ray engine's."""
    s = melcnn.scan(archive, model=detector, workers=1, exclude=[VICTIM])
    rows = {Path(r["path"]).name: r for r in s}
    assert sorted(rows) == sorted([Path(m).name for m in MEDIA] + ["damaged.wav"]) and s.stats.non_media == 1
    assert rows["damaged.wav"]["error_code"] in ("undecodable", "not_audio")
    return rows


def _close(a: float, b: float) -> bool:
    """Equal to 1e-6, or one step apart in the rows' 4th decimal. The head's matrix product changes by about
    1e-8 with the number of chunks scored together, and the local engine batches chunks of several files as
    they arrive, so a score on a rounding boundary may round either way."""
    d = abs(a - b)
    return d <= 1e-6 or abs(d - 1e-4) <= 1e-6


def _assert_same_rows(rows: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]]) -> None:
    assert sorted(rows) == sorted(reference)
    for name, ref in reference.items():
        row = rows[name]
        assert list(row) == list(ref), name
        for col in ref:
            if col in TIMING:
                continue
            if col == "fake_score" and ref[col] is not None:
                assert _close(row[col], ref[col]), (name, row[col], ref[col])
            elif col == "chunks":
                assert [(c["start_s"], c["end_s"]) for c in row[col]] == [(c["start_s"], c["end_s"]) for c in ref[col]]
                pairs = zip(row[col], ref[col], strict=True)
                assert all(_close(c["fake_score"], r["fake_score"]) for c, r in pairs), (name, row[col], ref[col])
            else:
                assert row[col] == ref[col], (name, col, row[col], ref[col])


def _kill_the_process_reading(path: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the process (a Ray actor's decoding process) that has ``path`` open, once."""
    me = os.getpid()
    deadline = time.monotonic() + 180
    while not stop.is_set() and time.monotonic() < deadline:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                fds = os.listdir(f"/proc/{entry.name}/fd")
            except OSError:
                continue
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry.name}/fd/{fd}") == str(path):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed.append(int(entry.name))
                        return
        time.sleep(0.002)


@needs_ray
def test_ray_rows_equal_the_local_engines_then_resume_with_an_actor_killed(archive, local_rows, detector, tmp_path):
    out = tmp_path / "rows.parquet"
    s = melcnn.scan(archive, model=detector, engine="ray", workers=2, out=out, exclude=["*.flac"])
    first = {Path(r["path"]).name: r for r in s}
    assert sorted(first) == ["clip.ogg", "damaged.wav", "speech.wav", "voice.mp3"]
    assert s.stats.non_media == 1 and s.stats.scanned == 4 and s.stats.engine_chunks > 0
    assert not ray.is_initialized()  # the local Ray it started is shut down
    assert sorted(Path(r["path"]).name for r in read_rows(out)) == sorted(first)

    # the rerun scans only the FLAC files; the process decoding the long one is killed meanwhile
    s = melcnn.scan(archive, model=detector, engine="ray", workers=2, out=out)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_process_reading, args=(archive / VICTIM, killed, stop))
    killer.start()
    try:
        second = {Path(r["path"]).name: r for r in s}
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, f"no process was seen decoding {VICTIM}"
    assert sorted(second) == [VICTIM, "talk.flac"] and s.stats.already_done == 4
    assert second[VICTIM]["error_code"] == "worker_died" and second["talk.flac"]["error_code"] is None

    rows = {Path(r["path"]).name: r for r in read_rows(out)}
    assert rows.pop(VICTIM)["error_code"] == "worker_died"
    _assert_same_rows(rows, local_rows)


#: --file-timeout of the hang tests: short, yet far above the decoding of a few seconds of audio on a busy machine
HANG_TIMEOUT_S = 8.0


@needs_ray
def test_a_hanging_file_is_stopped_and_recorded_the_others_scored(archive, local_rows, detector, tmp_path):
    hang = hanging_mp3(tmp_path / "hangs.mp3")
    files = [hang, archive / "speech.wav", archive / "sub" / "voice.mp3"]
    s = melcnn.scan(files, model=detector, engine="ray", workers=2, file_timeout_s=HANG_TIMEOUT_S)
    rows = {Path(r["path"]).name: r for r in s}
    assert sorted(rows) == ["hangs.mp3", "speech.wav", "voice.mp3"]
    row = rows.pop("hangs.mp3")
    assert row["error_code"] == "timeout" and row["size"] == hang.stat().st_size, row
    assert "decoding this file was stopped: it made no progress" in row["error_message"]
    assert "the limit is --file-timeout 8 s" in row["error_message"]
    assert row["fake_score"] is None and row["processing_time_s"] >= HANG_TIMEOUT_S
    assert s.stats.errors == {"timeout": 1} and s.stats.workers_replaced == 1
    _assert_same_rows(rows, {name: local_rows[name] for name in rows})


def test_file_worker_stops_a_hang_and_goes_on_with_a_fresh_process(archive, detector, tmp_path):
    """The actors' decoding process without Ray: the hanging file gets ``timeout``, the next file is decoded
    by the replacement; with no limit it waits (here: for a file that decodes)."""
    hang = hanging_mp3(tmp_path / "hangs.mp3")
    settings = {
        "features": detector.config.to_dict(),
        "overlap_s": detector.default_overlap_s,
        "max_duration_s": 7200.0,
        "measurements": False,
    }
    worker = _FileWorker(settings, file_timeout_s=HANG_TIMEOUT_S)
    try:
        first = worker.proc.pid
        t0 = time.monotonic()
        outcome = worker.run(1, str(hang), lambda msg: None)
        assert outcome[:3] == ("error", 1, "timeout") and "no progress" in outcome[3], outcome
        assert HANG_TIMEOUT_S <= time.monotonic() - t0 < HANG_TIMEOUT_S + 30
        assert worker.replaced == 1 and worker.proc.pid != first
        with pytest.raises(ProcessLookupError):
            os.kill(first, 0)  # killed and reaped
        images: list[int] = []
        outcome = worker.run(2, str(archive / "speech.wav"), lambda msg: images.append(len(msg[2])))
        assert outcome[:2] == ("done", 2) and sum(images) == len(outcome[2]["starts"]) > 0
        worker.file_timeout_s = None
        assert worker.run(3, str(archive / "sub" / "voice.mp3"), lambda msg: None)[0] == "done"
        assert worker.replaced == 1
    finally:
        worker.close()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(
        [sys.executable, "-m", "melcnn", "scan", *args], capture_output=True, text=True, env=env, timeout=300
    )


@needs_ray
def test_cli_engine_ray_exit_status_output_and_rerun(archive, local_rows, tmp_path):
    out = tmp_path / "rows.jsonl"
    args = (str(archive), "--engine", "ray", "--workers", "2", "--exclude", VICTIM, "--out", str(out))
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "scanned 5 files" in proc.stdout and "skipped: 1 non-media files" in proc.stdout
    assert "scan: 6/6 files" in proc.stderr  # melcnn's progress line, as with the local engine
    _assert_same_rows({Path(r["path"]).name: r for r in read_rows(out)}, local_rows)

    proc = _cli(*args, "--exclude", "notes.txt")  # nothing left to decode: Ray is not started
    assert proc.returncode == 0, proc.stderr
    assert "scanned 0 files" in proc.stdout and "5 already in the output" in proc.stdout
    assert len(read_rows(out)) == 5


def test_engine_options_errors_and_missing_ray(archive, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "rows.jsonl")
    assert main(["scan", str(archive), "--out", out, "--ray-address", "auto"]) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err
    with pytest.raises(MelcnnError, match="engine must be one of local, ray"):
        melcnn.scan(archive, engine="spark")
    with pytest.raises(MelcnnError, match="needs engine='ray'"):
        melcnn.scan(archive, ray_address="auto")

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["scan", str(archive), "--out", out, "--engine", "ray"]) == 2
    assert "pip install 'melcnn[ray]'" in capsys.readouterr().err
    with pytest.raises(MelcnnError, match=r"pip install 'melcnn\[ray\]'"):
        list(melcnn.scan(archive, engine="ray", out=out))
    assert not Path(out).exists() or read_rows(out) == []


def test_the_scan_package_does_not_import_ray():
    code = "import sys, melcnn, melcnn.scanning, melcnn.scanning.cli; print('ray' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
