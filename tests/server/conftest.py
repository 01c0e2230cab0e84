"""Fixtures for the HTTP service tests: real ``melcnn serve`` processes on free loopback ports.

``server`` (session) serves the tiny V2 and V3 checkpoints of ``tiny_checkpoints`` with small limits
(2 MiB uploads, 30 s of audio, 2 workers). ``media`` (session) holds real encoded clips made by
``media_factory``. The servers' temporary folders live in test directories, so the tests can check
that no upload is left behind. ``browser`` (module) is real headless Chromium: Debian's /usr/bin/chromium
driven by Playwright (``playwright install`` is never used); tests that need it skip without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from media_factory import make_media

from .serverutil import MAX_DURATION_S, MAX_UPLOAD_MB, ServerProcess, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (skips the test when /usr/bin/chromium or Playwright is missing)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (run scripts/install_test_deps.sh)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Real encoded clips by name; each name is unique so responses can be matched to uploads."""
    d = tmp_path_factory.mktemp("server-media")
    out = {
        "wav": make_media("wav_s16", d, seconds=5.0, seed=1),
        "mp3": make_media("mp3", d, seconds=5.0, seed=2),
        "m4a": make_media("m4a_aac", d, seconds=5.0, seed=3),
        "ogg": make_media("ogg_vorbis", d, seconds=5.0, seed=4),
        "opus": make_media("ogg_opus", d, seconds=5.0, seed=5),
        "v3clip": make_media("flac", d, seconds=9.0, seed=6, name="speech_9s.flac"),
        "long": make_media("wav_u8", d, seconds=40.0, seed=7, name="long_40s.wav"),
    }
    for kind in ("text_as_wav", "video_only_mp4", "empty", "clip_1s", "wav_silent", "wav_nan", "random_bytes"):
        out[kind] = make_media(kind, d, seconds=4.0, seed=8)
    out["riff_garbage"] = make_media("riff_garbage", d, seconds=4.0)
    return out


@pytest.fixture(scope="session")
def server(tiny_checkpoints, tmp_path_factory) -> ServerProcess:
    """The main server: tiny V2 (default) and V3, 2 workers, 2 MiB uploads, 30 s audio."""
    root = tmp_path_factory.mktemp("server-main")
    args = ["--model", str(tiny_checkpoints["v2"]), "--model", str(tiny_checkpoints["v3"])]
    args += ["--workers", "2", "--queue-size", "24", "--max-upload-mb", str(MAX_UPLOAD_MB)]
    args += ["--max-duration-s", str(MAX_DURATION_S), "--timeout-s", "120", "--artifact-ttl-s", "600"]
    srv = start_server(args, root / "tmp", root / "server.log")
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_path.read_text()[-3000:]
    assert srv.work_dirs() == [], "the server's work folder must be removed at shutdown"
