"""``melcnn serve`` over real HTTP: reports, every error code, the streaming size limit, concurrency, cleanup."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import jsonschema
import pytest
import requests

from melcnn.errors import InvalidParameterError
from melcnn.registry import MODELS

from .serverutil import MAX_UPLOAD_MB

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def report_schema() -> dict:
    return json.loads((resources.files("melcnn") / "report.schema.json").read_text())


def post(server, path, data=None, timeout=120, **fields) -> requests.Response:
    """POST /v1/analyze with ``path`` as the media part and ``fields`` as form fields."""
    files = {"media": (path.name, path.read_bytes(), "application/octet-stream")} if path is not None else None
    return requests.post(server.url + "/v1/analyze", files=files, data=fields or data, timeout=timeout)


def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert ".upload" not in body["error"]["message"], "the server's temporary file name must not leak"
    return body["error"]


# --------------------------------------------------------------------------------------------- happy paths
def test_healthz_and_models(server):
    health = requests.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["models"] == ["v2", "v3"]
    assert health.headers["x-request-id"]
    models = requests.get(server.url + "/v1/models", timeout=10).json()
    assert models["default"] == "v2"
    assert [m["variant"] for m in models["models"]] == ["v2", "v3"]
    assert all("checkpoint" not in m for m in models["models"]), "no server paths in the API"
    assert models["models"][0]["threshold"] == pytest.approx(0.5)
    assert models["limits"]["max_upload_bytes"] == MAX_UPLOAD_MB * MiB
    for m in models["models"]:  # each model's spec, for the page: overlap range, sections, picture
        assert m["spec"] == MODELS[m["variant"]].to_dict()
    assert models["limits"]["max_overlap_s"] == models["models"][0]["spec"]["max_overlap_s"] == 2.5


@pytest.mark.parametrize(
    "name, fmt",
    [("wav", "wav/pcm_s16le"), ("mp3", "mp3"), ("m4a", "mp4/aac"), ("ogg", "ogg/vorbis"), ("opus", "ogg/opus")],
)
def test_analyze_formats(server, media, report_schema, name, fmt):
    resp = post(server, media[name])
    assert resp.status_code == 200, resp.text
    report = resp.json()
    jsonschema.validate(report, report_schema)
    assert report["file"] == media[name].name
    assert report["model"]["variant"] == "v2"  # the first --model is the default
    assert report["properties"]["format"] == fmt
    assert report["properties"]["duration_seconds"] == pytest.approx(5.0, abs=0.1)
    assert report["visualization"]["spectrogram_url"] is None  # no plots unless asked
    assert [c["start_s"] for c in report["chunks"]] == [0.0]


def test_analyze_v3_with_picture(server, media, report_schema):
    resp = post(server, media["v3clip"], model="v3", plots="true")
    assert resp.status_code == 200, resp.text
    report = resp.json()
    jsonschema.validate(report, report_schema)
    assert report["model"]["variant"] == "v3"
    assert [c["start_s"] for c in report["chunks"]] == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert report["metrics"]["num_chunks"] == 5
    url = report["visualization"]["spectrogram_url"]
    assert url.startswith("/v1/artifacts/") and len(url.rsplit("/", 1)[1]) == 32
    pic = requests.get(server.url + url, timeout=10)
    assert pic.status_code == 200 and pic.headers["content-type"] == "image/png"
    assert pic.content[:8] == b"\x89PNG\r\n\x1a\n"
    import io

    import matplotlib.image

    assert matplotlib.image.imread(io.BytesIO(pic.content), format="png").shape[:2] == (500, 1000)
    assert report["prediction"] == ("FAKE" if report["fake_score"] >= report["threshold"] else "REAL")


def test_overlap_and_model_names(server, media):
    r = post(server, media["v3clip"], model="MEL-Spectrogram-CNN-V3", overlap="0").json()
    assert r["model"]["variant"] == "v3"
    assert [c["start_s"] for c in r["chunks"]] == [0.0, 3.0, 6.0]
    r = post(server, media["v3clip"], model="v2", overlap="2.0", plots="false").json()
    assert [c["start_s"] for c in r["chunks"]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    r = post(server, media["v3clip"], model="v3", overlap="2.5").json()  # the largest overlap the rule allows
    assert r["metrics"]["chunk_overlap_s"] == 2.5 and len(r["chunks"]) == 13


# ------------------------------------------------------------------------------------------- media errors
@pytest.mark.parametrize(
    "name, status, code",
    [
        ("text_as_wav", 415, "not_audio"),
        ("random_bytes", 415, "not_audio"),
        ("video_only_mp4", 415, "not_audio"),
        ("empty", 400, "empty_file"),
        ("riff_garbage", 422, "undecodable"),
        ("clip_1s", 422, "too_short"),
        ("wav_silent", 422, "silent"),
        ("wav_nan", 422, "non_finite"),
        ("long", 422, "too_long"),
    ],
)
def test_media_errors(server, media, name, status, code):
    err = assert_error(post(server, media[name]), status, code)
    if name in ("text_as_wav", "random_bytes", "video_only_mp4", "riff_garbage"):
        assert media[name].name in err["message"]  # the client's own file name


# ----------------------------------------------------------------------------------------- request errors
def test_request_errors(server, media):
    url = server.url + "/v1/analyze"
    wav = media["wav"]
    assert_error(requests.post(url, data={"model": "v2"}, files={"x": ("a", b"b")}, timeout=10), 400, "bad_request")
    assert_error(requests.post(url, json={"media": "x"}, timeout=10), 415, "unsupported_content_type")
    assert_error(requests.post(url, timeout=10), 415, "unsupported_content_type")
    bad = {"Content-Type": "multipart/form-data; boundary=zz"}
    assert_error(requests.post(url, data=b"--zz\r\nnot a header line", headers=bad, timeout=10), 400, "bad_request")
    assert_error(requests.post(url, data=b"no boundary here", headers=bad, timeout=10), 400, "bad_request")
    two = [("media", ("a.wav", wav.read_bytes())), ("media", ("b.wav", wav.read_bytes()))]
    assert_error(requests.post(url, files=two, timeout=10), 400, "bad_request")
    assert_error(post(server, wav, model="v9"), 422, "invalid_parameter")
    assert_error(post(server, wav, overlap="abc"), 422, "invalid_parameter")
    too_much = assert_error(post(server, wav, overlap="2.9"), 422, "invalid_parameter")
    with pytest.raises(InvalidParameterError) as api:  # the Python API's words for the same value
        MODELS["v2"].validate_overlap(2.9)
    assert too_much["message"] == str(api.value)
    assert_error(post(server, wav, overlap="-1"), 422, "invalid_parameter")
    assert_error(post(server, wav, plots="maybe"), 422, "invalid_parameter")
    assert_error(requests.get(url, timeout=10), 405, "method_not_allowed")
    assert_error(requests.get(server.url + "/v2/nothing", timeout=10), 404, "not_found")
    for art in ("x" * 32, "..%2F..%2Fetc%2Fpasswd", "..", "%00"):
        assert_error(requests.get(server.url + "/v1/artifacts/" + art, timeout=10), 404, "not_found")


# ------------------------------------------------------------------------------------------- size limit
def _raw_upload(server, total_bytes: int, *, chunked: bool) -> tuple[int, bytes]:
    """Send a multipart body of ``total_bytes`` as fast as the server takes it; stop when it answers.

    Returns (bytes sent before the answer arrived, the answer's bytes).
    """
    head = b'--BB\r\nContent-Disposition: form-data; name="media"; filename="big.wav"\r\n\r\n'
    req = b"POST /v1/analyze HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=BB\r\n"
    req += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % total_bytes

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    block = b"\x00" * 65536
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(req + frame(head))
        sent = len(head)
        try:
            while sent < total_bytes:
                readable, writable, _ = select.select([s], [s], [], 10)
                if readable:
                    break
                if writable:
                    s.sendall(frame(block))
                    sent += len(block)
        except OSError:
            pass  # the server may close once it has answered
        s.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return sent, answer


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_size_limit_enforced_while_streaming(server, chunked):
    total = 64 * MiB  # 32x the limit
    sent, answer = _raw_upload(server, total, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "too_large"
    # the answer came long before the body was sent (the rest is kernel socket buffers)
    assert sent < 24 * MiB, f"413 arrived only after {sent / MiB:.1f} MiB of {total / MiB:.0f}"
    server.wait_idle()
    assert server.leftover_uploads() == []


def test_size_limit_with_ordinary_client(server):
    big = b"RIFF" + b"\x00" * (MAX_UPLOAD_MB * MiB + 1)
    resp = requests.post(server.url + "/v1/analyze", files={"media": ("big.wav", big)}, timeout=60)
    assert_error(resp, 413, "too_large")


# ------------------------------------------------------------------------------------------- concurrency
def test_16_simultaneous_uploads_and_healthz(server, media):
    names = ["wav", "mp3", "m4a", "ogg"]
    jobs = [(media[names[i % 4]], "v3" if i % 2 else "v2") for i in range(16)]
    health_times: list[float] = []
    busy_seen = threading.Event()
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            r = requests.get(server.url + "/healthz", timeout=10)
            health_times.append(time.perf_counter() - t0)
            assert r.status_code == 200
            if r.json()["admitted"] > 0:
                busy_seen.set()
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(lambda job: (job, post(server, job[0], model=job[1])), jobs))
    finally:
        done.set()
        poller.join()
    for (path, model), resp in results:
        assert resp.status_code == 200, resp.text
        r = resp.json()
        assert r["file"] == path.name and r["model"]["variant"] == model
        assert len(r["chunks"]) == (2 if model == "v3" else 1)
    assert busy_seen.is_set(), "/healthz should answer while analyses run"
    assert max(health_times) < 3.0, f"/healthz stalled: {max(health_times):.2f} s"
    server.wait_idle()
    assert server.leftover_uploads() == []


def test_abandoned_upload_is_cleaned_up(server):
    head = b'--BB\r\nContent-Disposition: form-data; name="media"; filename="gone.wav"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(
            b"POST /v1/analyze HTTP/1.1\r\nHost: t\r\nX-Request-ID: abandoned-upload-1\r\n"
            b"Content-Type: multipart/form-data; boundary=BB\r\nContent-Length: 1000000\r\n\r\n" + head + b"x" * 5000
        )
        time.sleep(0.5)
    server.wait_idle()
    assert server.leftover_uploads() == []
    time.sleep(0.3)
    (line,) = [r for r in server.log_records() if r.get("request_id") == "abandoned-upload-1"]
    assert line["status"] == 400 and line["error"] == "client_disconnected"


# ----------------------------------------------------------------------------------------------- logging
def test_request_log_lines(server, media):
    resp = post(server, media["wav"])
    rid = resp.headers["x-request-id"]
    time.sleep(0.3)
    records = [r for r in server.log_records() if r.get("request_id") == rid]
    assert len(records) == 1, records
    line = records[0]
    assert line["path"] == "/v1/analyze" and line["status"] == 200
    assert line["model"] == "v2" and line["verdict"] == resp.json()["prediction"]
    assert line["media_bytes"] == media["wav"].stat().st_size and line["bytes_in"] > line["media_bytes"]
    assert line["duration_s"] > 0 and line["time"]
    text = server.log_path.read_text(errors="replace")
    assert "RIFF" not in text and "Traceback" not in text


def test_no_temporary_files_left(server):
    server.wait_idle()
    assert server.leftover_uploads() == []
    (work,) = server.work_dirs()
    assert (work.stat().st_mode & 0o777) == 0o700
    assert ((work / "uploads").stat().st_mode & 0o777) == 0o700
