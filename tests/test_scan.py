"""``melcnn scan`` and :func:`melcnn.scan`: real files in mixed formats, bad inputs, a worker killed from outside,
an interrupted (kill -9) and resumed CLI scan, the output formats, and the HTML report in headless
Chromium. The shipped V2 weights score the files (loading them takes a fraction of a second).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from media_factory import hanging_mp3, make_media
from server import conftest as server_conftest

import melcnn
from melcnn.scanning import COLUMN_NAMES, Output, ScanStats, _row, _Target, discover, read_rows

browser = server_conftest.browser  # headless Chromium (Debian's, through Playwright), as the web page test
SRC = Path(melcnn.__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

#: the media files of the archive: name -> (kind, seconds, seed)
MEDIA = {
    "speech.wav": ("wav_s16", 5.0, 1),
    "talk.mp3": ("mp3", 7.0, 2),
    "sub/voice.m4a": ("m4a_aac", 4.0, 3),
    "sub/deep/long.flac": ("flac", 10.0, 4),
    "sub/clip.ogg": ("ogg_vorbis", 4.0, 5),
    "named_like.wav/inside.opus": ("ogg_opus", 4.0, 6),  # a folder named like media is walked
}


@pytest.fixture(scope="module")
def detector():
    return melcnn.load_model("v2")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Mixed formats in nested folders, with non-media files, bad media and a symlink loop."""
    root = tmp_path_factory.mktemp("archive")
    for rel, (kind, seconds, seed) in MEDIA.items():
        p = root / rel
        make_media(kind, p.parent, seconds=seconds, seed=seed, name=p.name)
    make_media("text_as_wav", root, name="readme_as.wav")  # non-media by content, whatever its name
    (root / "notes.txt").write_text("not audio\n")
    make_media("empty", root, name="zero.wav")
    make_media("clip_1s", root, name="short.wav")
    make_media("video_only_mp4", root, seconds=3.0, name="silent_film.mp4")
    os.symlink("..", root / "sub" / "loop")
    return root


def _scores(rows) -> dict[str, float | None]:
    return {Path(r["path"]).name: r["fake_score"] for r in rows}


def test_scan_api_mixed_formats_match_analyze(archive, detector):
    s = melcnn.scan(archive, model=detector, workers=2)
    rows = list(s)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == len(by_name) == len(MEDIA) + 3  # + zero.wav, short.wav, silent_film.mp4
    for r in rows:
        assert tuple(r) == COLUMN_NAMES
    assert s.stats.non_media == 2 and s.stats.symlink_loops >= 1
    assert by_name["zero.wav"]["error_code"] == "empty_file"
    assert by_name["short.wav"]["error_code"] == "too_short"
    assert by_name["silent_film.mp4"]["error_code"] == "not_audio"
    for rel in MEDIA:
        r = by_name[Path(rel).name]
        report = detector.analyze(archive / rel)
        assert r["error_code"] is None, r
        assert r["fake_score"] == pytest.approx(report["fake_score"], abs=2e-4)
        assert r["prediction"] == report["prediction"]
        assert r["format"] == report["properties"]["format"]
        assert r["duration_s"] == report["properties"]["duration_seconds"]
        assert [c["fake_score"] for c in r["chunks"]] == pytest.approx(
            [c["fake_score"] for c in report["chunks"]], abs=2e-4
        )
        spans = [(c["start_s"], c["end_s"]) for c in report["chunks"]]
        assert [(c["start_s"], c["end_s"]) for c in r["chunks"]] == spans
        assert r["mean_pitch_hz"] == pytest.approx(report["pitch"]["mean_pitch_hz"], rel=1e-6)
        assert r["silence_ratio"] == pytest.approx(report["energy"]["silence_ratio"], abs=1e-9)
        assert r["warnings"] == report["warnings"]
        assert r["model"] == detector.name and r["weights_sha256"] == detector.checkpoint.sha256
        assert r["size"] == (archive / rel).stat().st_size and r["processing_time_s"] > 0
    importlib.import_module("melcnn.scanning")
    assert callable(melcnn.scan)  # the function, not the module, even after the module is imported


def test_scan_on_the_torch_engine_matches_the_cpu_scan(tmp_path, detector):
    """``device`` plumbing: ``scan(device="cpu-torch")`` scores with the GPU's batched torch engine (on the CPU
    here, as CI has no GPU), batching as the scattering does, and its rows equal the CPU engine's."""
    torch = pytest.importorskip("torch")
    from melcnn.scanning import _Engine

    make_media("wav_s16", tmp_path, seconds=7.0, seed=11, name="a.wav")
    make_media("flac", tmp_path / "sub", seconds=10.0, seed=12, name="b.flac")
    want = {Path(r["path"]).name: r for r in melcnn.scan(tmp_path, model=detector, workers=1)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP spin-waits crawl on a busy 2-core machine
    try:
        s = melcnn.scan(tmp_path, model=detector, workers=1, device="cpu-torch")
        assert s.detector.device == "cpu-torch" and s.detector.checkpoint is detector.checkpoint
        got = {Path(r["path"]).name: r for r in s}
    finally:
        torch.set_num_threads(threads)
    assert sorted(got) == sorted(want) == ["a.wav", "b.flac"]
    for name, r in got.items():
        assert r["error_code"] is None and r["n_chunks"] == want[name]["n_chunks"] >= 2
        # rows hold scores rounded to 4 decimals: equal up to one rounding step
        assert r["fake_score"] == pytest.approx(want[name]["fake_score"], abs=1e-4)
        assert [c["fake_score"] for c in r["chunks"]] == pytest.approx(
            [c["fake_score"] for c in want[name]["chunks"]], abs=1e-4
        )
    assert s.stats.engine_chunks == sum(r["n_chunks"] for r in got.values())
    assert _Engine(detector).batch_images == 16 and _Engine(s.detector).batch_images == 16  # cpu-torch's batch


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(_cuda_available(), reason="a GPU is available here")
def test_cli_device_cuda_without_a_gpu_says_so(tmp_path):
    make_media("wav_s16", tmp_path, seconds=4.0, seed=13, name="a.wav")
    proc = _cli(str(tmp_path), "--out", str(tmp_path / "r.jsonl"), "--device", "cuda")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 4, stderr
    assert "CUDA is not available" in stderr or "needs PyTorch" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "r.jsonl").exists()


def test_bad_inputs_each_become_one_row(tmp_path, detector, monkeypatch):
    good = make_media("wav_s16", tmp_path, seconds=4.0, seed=9, name="good.wav")
    victim = make_media("wav_s16", tmp_path, seconds=4.0, seed=10, name="vanishes.wav")
    six = make_media("flac", tmp_path, seconds=6.0, seed=11, name="six_seconds.flac")
    damaged = make_media("riff_garbage", tmp_path, name="damaged.wav")
    zero = make_media("empty", tmp_path, name="zero.wav")
    folder = tmp_path / "folder.mp3"
    folder.mkdir()
    listing = "\n".join(str(p) for p in (good, victim, six, damaged, zero, folder, tmp_path / "missing.wav"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(listing + "\n"))
    s = melcnn.scan(["-"], model=detector, workers=1, measurements=False, max_duration_s=5.0)
    # the file vanishes between discovery and decoding: the first progress call comes in between
    s.on_progress = lambda scan, done: victim.unlink(missing_ok=True)
    rows = {Path(r["path"]).name: r for r in s}
    assert len(rows) == 7
    assert rows["good.wav"]["error_code"] is None and rows["good.wav"]["mean_pitch_hz"] is None
    assert rows["vanishes.wav"]["error_code"] == "not_found"
    assert rows["six_seconds.flac"]["error_code"] == "too_long"
    assert rows["damaged.wav"]["error_code"] in ("undecodable", "not_audio")
    assert rows["zero.wav"]["error_code"] == "empty_file"
    assert rows["folder.mp3"]["error_code"] == "not_found" and "folder" in rows["folder.mp3"]["error_message"]
    assert rows["missing.wav"]["error_code"] == "not_found"
    for r in rows.values():
        assert (r["error_code"] is None) == (r["error_message"] is None)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc: the kernel may lack /proc/PID/task/*/children)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _has_open(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
    return False


def _kill_the_worker_reading(path: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the child process of this one that has ``path`` open (a worker decoding it), once."""
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        for pid in _children(os.getpid()):
            if _has_open(pid, str(path)):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.002)


def test_killed_worker_is_replaced_and_its_file_recorded(tmp_path, detector):
    import numpy as np
    import soundfile as sf

    names = [f"f{i}.wav" for i in range(5)]
    names[2] = "f2.flac"  # four minutes of FLAC: about a second to decode, the worker killed meanwhile
    for i, n in enumerate(names):
        if i != 2:
            make_media("wav_s16", tmp_path, seconds=4.0, seed=20 + i, name=n)
    sr, n = 44100, 240 * 44100
    y = 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / sr) + 0.01 * np.random.default_rng(22).standard_normal(n)
    sf.write(tmp_path / "f2.flac", y.astype(np.float32), sr, subtype="PCM_16")
    out = tmp_path / "out" / "rows.jsonl"
    s = melcnn.scan(tmp_path, model=detector, workers=2, measurements=False, out=out)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_worker_reading, args=(tmp_path / "f2.flac", killed, stop))
    killer.start()
    try:
        rows = {Path(r["path"]).name: r for r in s}
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no worker was seen decoding f2.flac"
    assert sorted(rows) == sorted(names)
    assert rows["f2.flac"]["error_code"] == "worker_died"
    assert "signal 9" in rows["f2.flac"]["error_message"]
    assert all(rows[n]["error_code"] is None for n in names if n != "f2.flac")
    assert s.stats.workers_replaced == 1
    # a rerun retries that file (the fault was not the file's) and replaces its row
    s = melcnn.scan(tmp_path, model=detector, workers=1, measurements=False, out=out)
    assert [Path(r["path"]).name for r in s] == ["f2.flac"] and s.stats.already_done == 4
    saved = {Path(r["path"]).name: r for r in read_rows(out)}
    assert len(read_rows(out)) == 5 and saved["f2.flac"]["error_code"] is None


def _two_hour_mp3(path: Path) -> Path:
    """A 2-hour MP3 made in about a second: 10 s of 16 kHz mono speech at 24 kbit/s, its frames repeated
    720 times (MP3 frames concatenate; 21 MB)."""
    from media_factory import _write_av, speech_like

    ten = path.with_name("ten_seconds.mp3")
    _write_av(ten, "mp3", [("libmp3lame", speech_like(10.0, 16000, seed=70)[:, None], 16000, {"bit_rate": 24000})])
    path.write_bytes(ten.read_bytes() * 720)
    ten.unlink()
    return path


def test_two_hour_file_is_one_row(tmp_path, detector):
    """A 2-hour file decodes in bounded memory (benchmarks/bench_memory.py scans one to the end: a row
    with a result); here the duration policy stops it after a minute: one row with a clear code."""
    long = _two_hour_mp3(tmp_path / "two_hours.mp3")
    make_media("wav_s16", tmp_path, seconds=4.0, seed=71, name="short_talk.wav")
    s = melcnn.scan(tmp_path, model=detector, workers=1, measurements=False, max_duration_s=60.0)
    rows = {Path(r["path"]).name: r for r in s}
    assert sorted(rows) == ["short_talk.wav", "two_hours.mp3"]
    assert rows["two_hours.mp3"]["error_code"] == "too_long"
    assert "limit of 60.0 s" in rows["two_hours.mp3"]["error_message"]
    assert rows["two_hours.mp3"]["size"] == long.stat().st_size
    assert rows["short_talk.wav"]["error_code"] is None and s.stats.workers_replaced == 0


def test_hanging_file_is_stopped_and_recorded(tmp_path, detector):
    hang = hanging_mp3(tmp_path / "a_hangs.mp3")
    make_media("wav_s16", tmp_path, seconds=4.0, seed=73, name="b_fine.wav")
    out = tmp_path / "out" / "rows.jsonl"
    s = melcnn.scan(tmp_path, model=detector, workers=1, measurements=False, out=out, file_timeout_s=10.0)
    rows = {Path(r["path"]).name: r for r in s}
    assert sorted(rows) == ["a_hangs.mp3", "b_fine.wav"]
    assert rows["a_hangs.mp3"]["error_code"] == "timeout", rows["a_hangs.mp3"]
    assert "no progress" in rows["a_hangs.mp3"]["error_message"]
    assert "--file-timeout 10 s" in rows["a_hangs.mp3"]["error_message"]
    assert rows["b_fine.wav"]["error_code"] is None  # queued behind it, decoded by the replacement worker
    assert s.stats.workers_replaced == 1 and s.stats.errors == {"timeout": 1}
    # the file's own fault: a rerun does not try it again
    again = melcnn.scan(tmp_path, model=detector, workers=1, measurements=False, out=out, file_timeout_s=10.0)
    assert list(again) == [] and again.stats.already_done == 2 and hang.exists()


def test_cli_file_timeout_option(tmp_path):
    proc = _cli(str(tmp_path), "--out", str(tmp_path / "r.jsonl"), "--file-timeout", "-1")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--file-timeout" in stderr
    from melcnn.cli import build_parser

    args = build_parser().parse_args(["scan", "x", "--file-timeout", "0"])
    assert args.file_timeout == 0  # no limit
    assert build_parser().parse_args(["scan", "x"]).file_timeout == melcnn.scanning.FILE_TIMEOUT_S == 120


def test_discovery_globs_include_exclude_and_special_files(tmp_path):
    for rel in ("a/x.wav", "a/y.flac", "b/z.wav", "b/skip_me.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"RIFF")
    os.mkfifo(tmp_path / "a" / "pipe.wav")
    found = [Path(t.path).relative_to(tmp_path).as_posix() for t in discover([tmp_path], include=["*.wav"])]
    assert found == ["a/x.wav", "b/skip_me.wav", "b/z.wav"]  # the FIFO is skipped, never opened
    found = [Path(t.path).name for t in discover([str(tmp_path / "*" / "*.wav")], exclude=["skip_*"])]
    assert found == ["x.wav", "z.wav"]
    # the same file reached twice is listed once; a glob without a match is reported
    stats = ScanStats()
    found = list(discover([tmp_path / "a", tmp_path / "a" / "x.wav", str(tmp_path / "nope*.wav")], stats=stats))
    assert [Path(t.path).name for t in found] == ["x.wav", "y.flac"]
    assert stats.no_match == [str(tmp_path / "nope*.wav")] and stats.special == 1


def test_output_journal_torn_line_is_dropped_and_parquet_written_atomically(tmp_path):
    model = {"name": "m", "weights_sha256": "0" * 64}
    out = tmp_path / "r.parquet"
    o = Output(out)
    rows = []
    for i in range(3):
        t = _Target(str(tmp_path / f"{i}.wav"), 10 + i, 1.5 + i)
        chunks = [{"start_s": 0.0, "end_s": 3.0, "fake_score": 0.1}]
        rows.append(_row(t.path, t.size, t.mtime, model, fake_score=0.1 * i, chunks=chunks))
        o.append(rows[-1])
    os.close(o._fd)  # as a kill -9 would leave it: journal only, no table yet
    o._fd = -1
    assert not out.exists()
    journal = tmp_path / "r.parquet.journal.jsonl"
    with open(journal, "ab") as fh:
        fh.write(b'{"path": "cut in the mid')  # a torn last line
    o2 = Output(out)
    assert sorted(o2.rows) == sorted(r["path"] for r in rows)
    assert o2.current(_Target(rows[1]["path"], 11, 2.5), model)
    assert not o2.current(_Target(rows[1]["path"], 11, 2.6), model)  # modified since: scanned again
    o2.close()
    assert not journal.exists()
    back = read_rows(out)
    assert [r["path"] for r in back] == [r["path"] for r in rows]
    assert back[2]["chunks"] == rows[2]["chunks"] and back[2]["fake_score"] == pytest.approx(0.2)


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen(
        [sys.executable, "-m", "melcnn", "scan", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def _journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_cli_kill9_mid_scan_then_resume(tmp_path, suffix):
    media = tmp_path / "media"
    for i in range(8):
        kind, ext = ("flac", "flac") if i % 2 else ("wav_s16", "wav")
        make_media(kind, media, seconds=12.0, seed=40 + i, name=f"clip{i}.{ext}")
    out = tmp_path / f"results{suffix}"
    journal = out if suffix == ".jsonl" else tmp_path / f"results{suffix}.journal.jsonl"
    proc = _cli(str(media), "--out", str(out), "--workers", "1", "--no-measurements")
    deadline = time.monotonic() + 120
    while _journal_lines(journal) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the scan finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    done_before = _journal_lines(journal)
    assert 2 <= done_before < 8
    if suffix == ".parquet":
        assert not out.exists()  # the table is written only at the end; the journal holds the rows
    else:
        assert len(read_rows(out)) == done_before  # readable as it is

    proc = _cli(str(media), "--out", str(out), "--workers", "1", "--no-measurements")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{done_before} already in the output" in stdout
    assert f"scan: {8 - done_before}/{8 - done_before} files" in stderr  # plain progress lines (not a TTY)
    rows = read_rows(out)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in media.iterdir())  # each once
    assert not (tmp_path / f"results{suffix}.journal.jsonl").exists() or suffix == ".jsonl"
    fresh = list(melcnn.scan(media, model="v2", workers=2, measurements=False))
    assert _scores(rows) == pytest.approx(_scores(fresh), abs=2e-4)

    # a third run has nothing to do
    proc = _cli(str(media), "--out", str(out), "--workers", "1")
    stdout, _ = proc.communicate(timeout=120)
    assert "scanned 0 files" in stdout and "8 already in the output" in stdout
    assert len(read_rows(out)) == 8


def test_cli_csv_report_in_headless_chromium(archive, tmp_path, browser):
    out, html = tmp_path / "scan.csv", tmp_path / "scan.html"
    proc = _cli(str(archive), "--out", str(out), "--report", str(html), "--workers", "2")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "verdicts (9 files)" in stdout and "errors: " in stdout and "most suspicious:" in stdout
    rows = read_rows(out)
    assert len(rows) == 9 and all(isinstance(r["chunks"], list) for r in rows)
    n_ok = sum(r["error_code"] is None for r in rows)

    page = browser.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(html.as_uri())
    page.wait_for_selector("#files tbody tr")
    assert page.locator("#files tbody tr").count() == 9
    assert "verdicts (9 files)" in page.inner_text("#summary")
    assert page.locator("#files tbody tr svg.timeline rect").count() == sum(len(r["chunks"]) for r in rows)

    def column(i: int) -> list[str]:
        return page.locator(f"#files tbody tr td:nth-child({i})").all_inner_texts()

    # sort by fake score: descending by default, then ascending on a click; errors (no score) last
    scores = [float(x) for x in column(3) if x]
    assert scores == sorted(scores, reverse=True) and len(scores) == n_ok
    page.click("th[data-key=fake_score]")
    scores = [float(x) for x in column(3) if x]
    assert scores == sorted(scores)
    assert page.get_attribute("th[data-key=fake_score]", "aria-sort") == "ascending"
    page.click("th[data-key=path]")
    assert column(1) == sorted(column(1))
    # filter: by text and by verdict
    page.fill("#filter", "flac")
    assert column(1) == [str(archive / "sub/deep/long.flac")]
    page.fill("#filter", "")
    page.select_option("#verdict", "error")
    assert sorted(Path(p).name for p in column(1)) == ["short.wav", "silent_film.mp4", "zero.wav"]
    assert "3 of 9 files" in page.inner_text("#count")
    page.select_option("#verdict", "")
    # click a row: its full detail with a chunk table
    page.locator("#files tbody tr", has_text="long.flac").click()
    assert page.is_visible("#detail")
    assert str(archive / "sub/deep/long.flac") in page.inner_text("#detail h2")
    assert page.locator("#detail-chunks tr").count() == 1 + 3  # header + 3 chunks of 3 s in 10 s
    assert "weights_sha256" in page.inner_text("#detail-fields")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "scan_report.png"), full_page=True)
    page.close()
    assert errors == [] and requests == []
    assert not any(p.name.startswith(".scan.html.tmp") for p in tmp_path.iterdir())


def test_workers_that_cannot_start_stop_the_scan_with_a_clear_error(tmp_path, detector, monkeypatch):
    import melcnn.scanning.workers as workers

    make_media("wav_s16", tmp_path, seconds=4.0, seed=60, name="a.wav")
    monkeypatch.setattr(workers, "_WORKER_COMMAND", "import sys; sys.exit(3)")
    with pytest.raises(melcnn.MelcnnError, match="exit while starting"):
        list(melcnn.scan(tmp_path, model=detector, workers=1))


def test_unreadable_folder_is_counted_and_passed_over(tmp_path, monkeypatch):
    for rel in ("ok/a.wav", "locked/b.wav", "z.wav"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"RIFF")
    real_scandir = os.scandir

    def scandir(path="."):  # root reads any folder, so refuse this one the way the kernel would
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    stats = ScanStats()
    found = [Path(t.path).name for t in discover([tmp_path], stats=stats)]
    assert sorted(found) == ["a.wav", "z.wav"] and stats.unreadable_dirs == 1


def test_cli_usage_errors(tmp_path):
    proc = _cli(str(tmp_path), "--out", str(tmp_path / "results.txt"))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and ".parquet, .jsonl or .csv" in stderr
    proc = _cli(str(tmp_path), "--out", str(tmp_path / "r.jsonl"), "--model", str(tmp_path / "no-such-checkpoint"))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4 and "cannot load model" in stderr
