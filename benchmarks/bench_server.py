"""Load figure of `melcnn serve`: 5 s clips from 1, 4 and 16 concurrent clients on loopback.

    python benchmarks/bench_server.py [--requests 48] [--workers N] [--variant v3] [--random]

Starts the real server (uvicorn) in a subprocess with the shipped checkpoint when installed, else a
checkpoint with random weights of the shipped shape (speed does not depend on the weights). The clip
is the bundled real-speech example cut to 5 s, as a 44.1 kHz stereo MP3. Each client sends its
requests one after another on its own connection. Prints, per concurrency: requests/s, p50/p95
latency, errors, and the server's peak RSS (VmHWM) so far; then the issue's targets: no errors,
RSS < 1.5 GB, and at 16 clients p95 <= 2 x (16 / throughput), the time the queue itself needs.
Not a test: run it and paste the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from bench_analyze import make_clip, random_checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model: str, workers: int | None, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "melcnn", "serve", "--model", model, "--port", str(port), "--queue-size", "64"]
    cmd += ["--log-level", "warning", "--tmp-dir", str(tmp)]
    if workers:
        cmd += ["--workers", str(workers)]
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            if requests.get(url + "/healthz", timeout=2).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start")


def run_level(url: str, clip: bytes, clients: int, total: int) -> dict:
    per_client = max(1, total // clients)

    def client(_i: int) -> list[tuple[float, int]]:
        out = []
        with requests.Session() as s:
            for _ in range(per_client):
                t0 = time.perf_counter()
                try:
                    r = s.post(url + "/v1/analyze", files={"media": ("clip.mp3", clip)}, timeout=300)
                    status = r.status_code
                except requests.RequestException:
                    status = -1
                out.append((time.perf_counter() - t0, status))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        results = [x for chunk in ex.map(client, range(clients)) for x in chunk]
    wall = time.perf_counter() - t0
    lat = sorted(t for t, status in results if status == 200)
    errors = sum(1 for _, status in results if status != 200)
    p = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 99
    return {
        "clients": clients,
        "requests": len(results),
        "errors": errors,
        "rps": len(lat) / wall,
        "p50": p[49],
        "p95": p[94],
        "wall": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48, help="requests per concurrency level (default 48)")
    ap.add_argument("--workers", type=int, default=None, help="server --workers (default: the server's)")
    ap.add_argument("--variant", choices=("v2", "v3"), default="v3")
    ap.add_argument("--random", action="store_true", help="use random weights even if shipped ones exist")
    args = ap.parse_args()

    from melcnn.registry import available

    tmp = Path(tempfile.mkdtemp(prefix="melcnn-bench-server-"))
    clip_path = make_clip(tmp / "speech_5s.mp3", seconds=5.0)
    clip = clip_path.read_bytes()
    shipped = {e.variant for e in available()} if not args.random else set()
    model = args.variant if args.variant in shipped else str(random_checkpoint(args.variant, tmp))
    proc, url = start_server(model, args.workers, tmp)
    try:
        workers = requests.get(url + "/healthz", timeout=5).json()["capacity"] - 64  # capacity = workers + queue
        cpu = platform.processor() or platform.machine()
        print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
        print(
            f"model: {args.variant} ({'shipped' if args.variant in shipped else 'random weights'}), "
            f"server workers {workers}, clip 5.0 s MP3 44.1 kHz stereo ({len(clip) / 1024:.0f} KiB)"
        )
        for _ in range(3):  # warm-up: first picture-free analyses, caches, connections
            requests.post(url + "/v1/analyze", files={"media": ("clip.mp3", clip)}, timeout=300).raise_for_status()
        header = ("clients", 7), ("requests", 8), ("errors", 6), ("req/s", 7), ("p50 s", 7), ("p95 s", 7)
        print(" ".join(f"{name:>{width}}" for name, width in header), f"{'peak RSS MB':>11}")
        rows = []
        for clients in (1, 4, 16):
            row = run_level(url, clip, clients, max(args.requests, clients))
            row["rss"] = peak_rss_mb(proc.pid)
            rows.append(row)
            print(
                f"{row['clients']:>7} {row['requests']:>8} {row['errors']:>6} {row['rps']:>7.2f} "
                f"{row['p50']:>7.3f} {row['p95']:>7.3f} {row['rss']:>11.0f}"
            )
        last = rows[-1]
        queue_time = 16 / last["rps"] if last["rps"] > 0 else float("inf")
        ok_errors = all(r["errors"] == 0 for r in rows)
        ok_rss = max(r["rss"] for r in rows) < 1536
        ok_p95 = last["p95"] <= 2 * queue_time
        print(
            f"targets: errors 0 {'OK' if ok_errors else 'FAIL'}; peak RSS < 1.5 GB {'OK' if ok_rss else 'FAIL'}; "
            f"p95 at 16 clients {last['p95']:.2f} s <= 2 x {queue_time:.2f} s {'OK' if ok_p95 else 'FAIL'}"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
