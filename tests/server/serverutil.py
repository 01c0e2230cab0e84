"""Helpers for the server tests: start a real ``melcnn serve`` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

#: the main server's limits (tests rely on them)
MAX_UPLOAD_MB = 2
MAX_DURATION_S = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``melcnn serve`` subprocess."""

    proc: subprocess.Popen
    url: str
    port: int
    tmp_dir: Path
    log_path: Path

    def work_dirs(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("melcnn-serve-*"))

    def leftover_uploads(self) -> list[Path]:
        """Files in the upload and plot folders (must be empty when no request is in flight)."""
        out: list[Path] = []
        for work in self.work_dirs():
            for sub in ("uploads", "plots"):
                out += list((work / sub).rglob("*"))
        return out

    def log_records(self) -> list[dict]:
        records = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def wait_idle(self, timeout_s: float = 60.0, headers: dict | None = None) -> None:
        """Wait until no analysis request is admitted (running threads included)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if requests.get(self.url + "/healthz", timeout=5).json()["admitted"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError("server did not become idle")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_server(args: list[str], tmp_dir: Path, log_path: Path, timeout_s: float = 120.0) -> ServerProcess:
    """Start ``python -m melcnn serve ARGS --port P --tmp-dir T`` and wait until /healthz answers."""
    port = free_port()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "melcnn", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--tmp-dir", str(tmp_dir)]
    log = open(log_path, "wb")  # noqa: SIM115 - the process keeps writing to it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    server = ServerProcess(proc=proc, url=f"http://127.0.0.1:{port}", port=port, tmp_dir=tmp_dir, log_path=log_path)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server did not start within {timeout_s} s:\n{log_path.read_text()[-3000:]}")
