"""A strict server: API key, one worker and one queue place, 6 s time limit, pictures that expire in 2 s.

Covers 401, 503 (queue full), 408 (upload too slow), 504 (analysis too slow) and picture expiry,
with slots held deterministically by uploads that are left half-sent on raw sockets.
"""

from __future__ import annotations

import json
import select
import socket
import time

import numpy as np
import pytest
import requests
from media_factory import speech_like

from .serverutil import ServerProcess, start_server

KEY = "s3cret-key-for-tests"
TIMEOUT_S = 15.0  # generous: an analysis with pictures on a loaded 2-core machine must not hit it
TTL_S = 4.0


@pytest.fixture(scope="module")
def strict(tiny_checkpoints, tmp_path_factory) -> ServerProcess:
    root = tmp_path_factory.mktemp("server-strict")
    key_file = root / "key.txt"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    args = ["--model", str(tiny_checkpoints["v3"]), "--workers", "1", "--queue-size", "1"]
    args += ["--timeout-s", str(TIMEOUT_S), "--artifact-ttl-s", str(TTL_S), "--api-key-file", str(key_file)]
    args += ["--max-upload-mb", "16"]
    srv = start_server(args, root / "tmp", root / "server.log")
    yield srv
    assert srv.stop() == 0
    assert srv.work_dirs() == []


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> bytes:
    """120 s of 16 kHz 16-bit speech-like audio as WAV bytes (3.8 MB): seconds to analyse."""
    import io

    import soundfile as sf

    y = np.tile(speech_like(10.0, 16000, seed=3), 12)
    buf = io.BytesIO()
    sf.write(buf, y, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


AUTH = {"X-API-Key": KEY}


def analyze(srv, media, headers=None, **fields) -> requests.Response:
    files = {"media": (media.name, media.read_bytes())}
    return requests.post(srv.url + "/v1/analyze", files=files, data=fields, headers=headers or {}, timeout=60)


def error_code(resp: requests.Response) -> str:
    return resp.json()["error"]["code"]


def test_api_key(strict, media):
    assert requests.get(strict.url + "/healthz", timeout=10).status_code == 200  # always open
    assert requests.get(strict.url + "/", timeout=10).status_code == 200  # the page itself holds no data
    for path in ("/docs", "/docs-static/swagger-ui-bundle.js", "/openapi.json"):  # no data either
        assert requests.get(strict.url + path, timeout=30).status_code == 200, path
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + KEY}):
        resp = requests.get(strict.url + "/v1/models", headers=headers, timeout=10)
        assert resp.status_code == 401 and error_code(resp) == "unauthorized", headers
        assert resp.headers["www-authenticate"] == "Bearer"
        resp = analyze(strict, media["wav"], headers=headers)
        assert resp.status_code == 401 and error_code(resp) == "unauthorized"
    assert requests.get(strict.url + "/v1/models", headers=AUTH, timeout=10).status_code == 200
    bearer = {"Authorization": "Bearer " + KEY}
    assert requests.get(strict.url + "/v1/models", headers=bearer, timeout=10).status_code == 200
    resp = analyze(strict, media["wav"], headers=bearer)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"]["variant"] == "v3"
    doc = requests.get(strict.url + "/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_pictures_expire(strict, media):
    resp = analyze(strict, media["wav"], headers=AUTH, plots="true")
    assert resp.status_code == 200, resp.text
    url = strict.url + resp.json()["visualization"]["spectrogram_url"]
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers=AUTH, timeout=10).status_code == 200
    time.sleep(TTL_S + 0.5)
    gone = requests.get(url, headers=AUTH, timeout=10)
    assert gone.status_code == 404 and error_code(gone) == "not_found"
    # the purge loop runs every ttl/4 s; on a loaded machine a round may come late, so wait for it
    (work,) = strict.work_dirs()
    deadline = time.monotonic() + TTL_S / 4 + 30
    while list((work / "artifacts").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list((work / "artifacts").iterdir()) == []


def _start_upload(srv: ServerProcess, declared: int) -> socket.socket:
    """Open an analysis request that sends its headers and a little of its body, then stalls."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    head = b'--BB\r\nContent-Disposition: form-data; name="media"; filename="slow.wav"\r\n\r\n'
    s.sendall(
        b"POST /v1/analyze HTTP/1.1\r\nHost: t\r\nX-API-Key: " + KEY.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=BB\r\nContent-Length: %d\r\n\r\n" % declared + head
    )
    return s


def _read_response(s: socket.socket, timeout_s: float) -> tuple[int, dict]:
    s.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_queue_full_then_upload_timeout(strict, media):
    strict.wait_idle()
    t0 = time.monotonic()
    held = [_start_upload(strict, 1_000_000) for _ in range(2)]  # 1 worker + 1 queue place
    try:
        end = time.monotonic() + 5
        while requests.get(strict.url + "/healthz", timeout=5).json()["admitted"] < 2:
            assert time.monotonic() < end, "the two stalled uploads were not admitted"
            time.sleep(0.05)
        resp = analyze(strict, media["wav"], headers=AUTH)
        assert resp.status_code == 503, resp.text
        assert error_code(resp) == "busy" and resp.headers["retry-after"] == "5"
        assert requests.get(strict.url + "/healthz", timeout=5).status_code == 200
        for s in held:  # the stalled uploads run into the time limit
            status, body = _read_response(s, TIMEOUT_S + 10)
            assert status == 408 and body["error"]["code"] == "upload_timeout"
        assert time.monotonic() - t0 >= TIMEOUT_S - 0.5
    finally:
        for s in held:
            s.close()
    strict.wait_idle(timeout_s=10)
    assert strict.leftover_uploads() == []
    assert analyze(strict, media["wav"], headers=AUTH).status_code == 200  # capacity is back


def test_analysis_timeout(strict, long_wav):
    """Upload slowly until shortly before the limit: the analysis of 120 s cannot finish in time -> 504."""
    strict.wait_idle()
    body = (
        b'--BB\r\nContent-Disposition: form-data; name="media"; filename="long.wav"\r\n\r\n'
        + long_wav
        + b"\r\n--BB--\r\n"
    )
    s = socket.create_connection(("127.0.0.1", strict.port), timeout=30)
    try:
        t0 = time.monotonic()
        s.sendall(
            b"POST /v1/analyze HTTP/1.1\r\nHost: t\r\nX-API-Key: " + KEY.encode() + b"\r\n"
            b"Content-Type: multipart/form-data; boundary=BB\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        s.sendall(body[:-100])
        time.sleep(max(0.0, TIMEOUT_S - 0.6 - (time.monotonic() - t0)))
        readable, _, _ = select.select([s], [], [], 0)
        assert not readable, "the server answered before the upload was complete"
        s.sendall(body[-100:])
        status, reply = _read_response(s, TIMEOUT_S + 10)
        assert status == 504 and reply["error"]["code"] == "timeout", reply
    finally:
        s.close()
    # the worker thread finishes the abandoned analysis, then frees its slot and deletes the upload
    strict.wait_idle(timeout_s=120)
    assert strict.leftover_uploads() == []


def test_page_waits_and_retries_while_the_server_is_busy(strict, media, browser):
    """Both places taken: the page shows that it waits (Retry-After: 5), then analyses once one frees up."""
    strict.wait_idle()
    held = [_start_upload(strict, 1_000_000) for _ in range(2)]  # 1 worker + 1 queue place
    page = browser.new_page()
    try:
        end = time.monotonic() + 5
        while requests.get(strict.url + "/healthz", timeout=5).json()["admitted"] < 2:
            assert time.monotonic() < end, "the two stalled uploads were not admitted"
            time.sleep(0.05)
        page.goto(strict.url + "/")
        page.fill("#api-key", KEY)
        page.dispatch_event("#api-key", "change")
        page.set_input_files("#file", str(media["wav"]))
        page.click("#analyze")
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('busy')", timeout=20_000)
        waiting = page.inner_text("#status")
        assert "Waiting" in waiting and "trying again" in waiting and "retry 1 of" in waiting, waiting
        assert page.is_disabled("#analyze") and page.is_hidden("#result")
        for s in held:  # the stalled uploads go away: their places free up
            s.close()
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert "Done" in page.inner_text("#status") and media["wav"].name in page.inner_text("#status")
    finally:
        for s in held:
            s.close()
        page.close()
    strict.wait_idle(timeout_s=10)
