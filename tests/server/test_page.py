"""The web page end to end in real headless Chromium (``browser`` in conftest.py: Debian's /usr/bin/chromium
driven by Playwright).

Screenshots go to ``test-artifacts/`` at the repository root (git-ignored).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from media_factory import speech_like

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class PageWatch:
    """Collect console errors and any request that leaves the server (there must be none)."""

    def __init__(self, page, base_url: str):
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def on_request(req) -> None:
            if not req.url.startswith((base_url, "blob:", "data:")):
                self.outside.append(req.url)

        page.on("request", on_request)


def _verdict_of_score_text(page) -> str:
    """The verdict the page's own "Fake score S (threshold T)" line implies: FAKE when S >= T."""
    import re

    m = re.search(r"Fake score ([0-9.]+) \(threshold ([0-9.]+)", page.inner_text("#score-text"))
    assert m, page.inner_text("#score-text")
    return "FAKE" if float(m.group(1)) >= float(m.group(2)) else "REAL"


@pytest.fixture(scope="module")
def half_fake_clip(tmp_path_factory) -> Path:
    """12 s: 6 s of speech-like audio, then 6 s of it resynthesised with random STFT phase (what the
    tiny test models learned to call fake), so the timeline has both kinds of bars."""
    from scipy.signal import istft, stft

    sr = 16000
    real = speech_like(6.0, sr, seed=21)
    _, _, z = stft(speech_like(6.0, sr, seed=22), nperseg=512)
    phase = np.exp(2j * np.pi * np.random.default_rng(22).random(z.shape))
    fake = istft(np.abs(z) * phase, nperseg=512)[1][: len(real)]
    fake = fake / np.abs(fake).max() * np.abs(real).max()
    path = tmp_path_factory.mktemp("page") / "interview_12s.wav"
    sf.write(str(path), np.concatenate([real, fake]).astype(np.float32), sr, subtype="PCM_16")
    return path


def _wait_models_loaded(page) -> None:
    page.wait_for_function("() => document.querySelectorAll('input[name=model]:not([disabled])').length === 2")


def _player_time(page) -> float:
    return page.evaluate("() => document.getElementById('player').currentTime")


def test_page_v3_timeline_and_seek(server, half_fake_clip, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch(page, server.url)
    page.goto(server.url + "/")
    _wait_models_loaded(page)
    assert page.is_checked("input[value=v2]")  # the server's default model
    # every control has an accessible name
    for sel in ("#file", "input[value=v2]", "input[value=v3]", "#plots", "#api-key"):
        assert page.evaluate(f"() => document.querySelector('{sel}').labels.length") >= 1, sel

    page.set_input_files("#file", str(half_fake_clip))
    assert half_fake_clip.name in page.inner_text("#file-name")
    page.get_by_label("V3").check()
    page.click("#analyze")
    page.wait_for_selector("#result:not([hidden])", timeout=90_000)
    verdict = page.inner_text("#verdict")
    assert verdict == _verdict_of_score_text(page)
    assert "threshold 0.50" in page.inner_text("#score-text")
    assert "equal-error point" in page.inner_text("#explain")
    bars = page.locator("#timeline .bar")
    assert bars.count() == 7  # 12 s in 3 s chunks every 1.5 s
    assert "Chunk 3, 3.0 to 6.0 s" in bars.nth(2).get_attribute("aria-label")
    assert page.locator("#timeline .bar.fake").count() >= 1  # the resynthesised half
    assert page.locator("#timeline .bar:not(.fake)").count() >= 1  # the untouched half
    page.wait_for_selector("#picture-fig:not([hidden])", timeout=30_000)
    page.wait_for_function("() => document.getElementById('picture').naturalWidth > 0")
    assert "Mean pitch" in page.inner_text("#measurements")

    page.wait_for_function("() => document.getElementById('player').readyState >= 1", timeout=30_000)
    bars.nth(2).click()
    page.wait_for_function("() => document.getElementById('player').currentTime >= 2.95", timeout=10_000)
    assert 2.95 <= _player_time(page) < 5.0
    bars.nth(0).click()
    page.wait_for_function("() => document.getElementById('player').currentTime < 1.5", timeout=10_000)
    assert "current" in (bars.nth(0).get_attribute("class") or "")
    page.evaluate("() => document.getElementById('player').pause()")

    page.screenshot(path=str(ARTIFACTS / "server-page-desktop.png"), full_page=True)
    assert watch.outside == [], "the page must not load anything from elsewhere"
    assert watch.errors == []
    page.close()


def test_page_phone_drag_and_drop_and_errors(server, media, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    watch = PageWatch(page, server.url)
    page.goto(server.url + "/")
    _wait_models_loaded(page)

    def drop(path: Path) -> None:
        page.evaluate(
            """([b64, name]) => {
                const bin = atob(b64);
                const bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name));
                const zone = document.getElementById('drop');
                zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
                zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""",
            [base64.b64encode(path.read_bytes()).decode(), path.name],
        )

    drop(media["text_as_wav"])  # an error is shown in words, not as a crash
    page.click("#analyze")
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "not audio" in page.inner_text("#status")

    drop(media["wav"])
    assert media["wav"].name in page.inner_text("#file-name")
    page.click("#analyze")
    page.wait_for_selector("#result:not([hidden])", timeout=90_000)
    assert page.inner_text("#verdict") == _verdict_of_score_text(page)
    assert page.locator("#timeline .bar").count() == 1
    page.wait_for_selector("#picture-fig:not([hidden])", timeout=30_000)
    # nothing wider than the phone's screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "server-page-phone.png"), full_page=True)
    assert watch.outside == []
    assert [e for e in watch.errors if "status of 415" not in e] == []
    page.close()
