"""A VoIP leg through Opus 1.5's decoder and its neural speech-enhancement post-filters (LACE, NoLACE).

Real calls reach users through such decoders (libopus 1.5 and later, WebRTC), so they are a channel
condition of both classes, never a spoof: a build can pass a share of its views through one
(``--view-opus-ml``), and the evaluation's re-encoding report adds the conditions when the decoder is
installed. libopus's *encoder* comes from FFmpeg through PyAV (``application=voip``, 16 kHz); the
*decoder* with the post-filters is the npm package ``@wasm-audio-decoders/opus-ml`` (MIT; libopus compiled
to WebAssembly with its weights inside), run by Node.js as one long-lived helper process per Python
process (``opus_ml_decode.mjs``). ``scripts/install_training_deps.sh`` installs it into
:data:`OPUS_ML_DIR`. Training only: analysis never needs it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np

from . import audio as A

#: where ``npm install`` put the decoder (``$MELCNN_OPUS_ML_DIR``, else ``~/.cache/melcnn/opus-ml``)
OPUS_ML_DIR = Path(os.environ.get("MELCNN_OPUS_ML_DIR", Path.home() / ".cache" / "melcnn" / "opus-ml"))
PACKAGE = "@wasm-audio-decoders/opus-ml"
MODES = ("none", "lace", "nolace")
RATE = 16000  # the encoder's and decoder's rate (wideband; SILK at VoIP bit rates)
_SCRIPT = Path(__file__).with_name("opus_ml_decode.mjs")


class OpusMLError(RuntimeError):
    """The Opus ML decoder is missing or failed."""


def available() -> bool:
    """Whether Node.js and the npm package are installed (``scripts/install_training_deps.sh``)."""
    return shutil.which("node") is not None and (OPUS_ML_DIR / "node_modules" / PACKAGE / "package.json").is_file()


def require() -> None:
    """Raise :class:`OpusMLError`, saying what to install, unless :func:`available`."""
    if not available():
        raise OpusMLError(
            f"the Opus ML decoder is not installed (needs node and `npm install {PACKAGE}` in {OPUS_ML_DIR}: "
            "run scripts/install_training_deps.sh)"
        )


def encode(x: np.ndarray, bitrate: int, sr: int = A.SR) -> tuple[list[bytes], int]:
    """Opus packets of ``x`` (at ``sr``) from libopus at ``bitrate`` bit/s in VoIP mode, 16 kHz mono, 20 ms
    frames; and the stream's pre-skip (48 kHz samples, as the OpusHead carries it)."""
    import av

    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate, cc.layout, cc.format, cc.bit_rate = RATE, "mono", "s16", int(bitrate)
    cc.options = {"application": "voip"}
    cc.open()
    head = bytes(cc.extradata or b"")
    pre_skip = int.from_bytes(head[10:12], "little") if head[:8] == b"OpusHead" else 312
    step = cc.frame_size
    pcm = A.to_int16(np.clip(A.resample(x, sr, RATE), -1.0, 1.0))
    pcm = np.pad(pcm, (0, -len(pcm) % step))
    packets: list[bytes] = []
    for i in range(0, len(pcm), step):
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None, i : i + step]), format="s16", layout="mono")
        fr.sample_rate, fr.pts = RATE, i
        packets += [bytes(p) for p in cc.encode(fr)]
    packets += [bytes(p) for p in cc.encode(None)]
    return packets, pre_skip


class Decoder:
    """One Node.js process running ``opus_ml_decode.mjs``; :meth:`decode` sends it a stream's packets."""

    def __init__(self) -> None:
        require()
        env = {**os.environ, "MELCNN_OPUS_ML_DIR": str(OPUS_ML_DIR)}
        self._proc = subprocess.Popen(
            ["node", str(_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self._lock = threading.Lock()

    def decode(self, packets: list[bytes], pre_skip: int, mode: str) -> np.ndarray:
        """16 kHz float32 samples of the packets, decoded with the post-filter ``mode`` (none|lace|nolace)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        body = b"".join(struct.pack("<H", len(p)) + p for p in packets)
        payload = struct.pack("<BHI", MODES.index(mode), pre_skip, len(packets)) + body
        with self._lock:
            p = self._proc
            if p.stdin is None or p.stdout is None or p.poll() is not None:
                raise OpusMLError(f"the Opus ML decoder process has exited ({self._stderr()})")
            try:
                p.stdin.write(struct.pack("<I", len(payload)) + payload)
                p.stdin.flush()
                (n,) = struct.unpack("<I", self._read(4))
                if n == 0xFFFFFFFF:
                    (m,) = struct.unpack("<I", self._read(4))
                    raise OpusMLError(f"the Opus ML decoder failed: {self._read(m).decode(errors='replace')}")
                return np.frombuffer(self._read(4 * n), dtype="<f4").copy()
            except (BrokenPipeError, EOFError) as e:
                raise OpusMLError(f"the Opus ML decoder process died ({self._stderr()})") from e

    def _read(self, n: int) -> bytes:
        assert self._proc.stdout is not None
        out = bytearray()
        while len(out) < n:
            b = self._proc.stdout.read(n - len(out))
            if not b:
                raise EOFError
            out += b
        return bytes(out)

    def _stderr(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return "still running"
        err = self._proc.stderr.read().decode(errors="replace").strip()[-500:]
        return err or f"exit status {self._proc.returncode}"

    def close(self) -> None:
        """End the helper process."""
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


_shared: dict[int, Decoder] = {}


def _decoder() -> Decoder:
    """This process's decoder (a forked worker starts its own)."""
    d = _shared.get(os.getpid())
    if d is None:
        d = _shared[os.getpid()] = Decoder()
        atexit.register(d.close)
    return d


def roundtrip(x: np.ndarray, bitrate: int, mode: str, sr: int = A.SR) -> np.ndarray:
    """``x`` (at ``sr``) through a VoIP leg: libopus at ``bitrate`` bit/s (16 kHz, VoIP mode), decoded by
    libopus 1.5 with the post-filter ``mode`` ('none', 'lace' or 'nolace'); back at ``sr``, aligned to ``x``
    and of its length."""
    packets, pre_skip = encode(x, bitrate, sr)
    y = _decoder().decode(packets, pre_skip, mode).astype(np.float64)
    return A._align(x, A.resample(y, RATE, sr))
