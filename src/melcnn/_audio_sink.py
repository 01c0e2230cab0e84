"""The mono sink of :mod:`melcnn.audio`'s decoders: decoded blocks are averaged to mono, checked,
counted against ``max_duration_s`` and resampled with :mod:`soxr` as they arrive.

Both decoders feed their blocks here incrementally and hand on what comes out (:meth:`MonoSink.take`)
at once, so the sink holds at most about ``RESAMPLE_BLOCK`` frames whatever the length of the file or
what its header claims, and ``max_duration_s`` is enforced while decoding. soxr is imported on first
use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NonFiniteAudioError, TooLongError, UndecodableMediaError

#: soxr quality recipe used for every resampling.
RESAMPLE_QUALITY = "HQ"
RESAMPLE_BLOCK = 65536  # mono samples gathered before each soxr call


class MonoSink:
    """Receives decoded blocks: mixes them to mono, checks them, counts duration, resamples them.

    Blocks arrive channel-first, as a list of 1-D float32 arrays (one per channel, all the same
    length; views are fine as long as the caller does not reuse their memory). They are gathered
    until about ``RESAMPLE_BLOCK`` frames are pending, so the per-block numpy and soxr overhead is
    paid once per batch, not once per codec frame. The resampled mono blocks wait in the sink until
    :meth:`take` hands them on; :meth:`close` flushes the resampler at the end.
    """

    def __init__(self, out_rate: int, max_duration_s: float) -> None:
        self.out_rate = out_rate
        self.max_duration_s = max_duration_s
        self.seconds_in = 0.0  # decoded duration so far
        self.in_rate = 0
        self._frames_at_rate = 0  # frames decoded at the current in_rate
        self._seconds_before = 0.0  # duration decoded at earlier rates
        self._flushed_s = 0.0  # duration already mixed and checked
        self._stream: Any = None
        self._pending: list[list[np.ndarray]] = []
        self._pending_n = 0
        self._out: list[np.ndarray] = []

    def set_rate(self, rate: int) -> None:
        """Start (or switch to) input at ``rate`` Hz; a switch flushes the previous resampler."""
        if rate == self.in_rate:
            return
        if rate <= 0:
            raise UndecodableMediaError(f"the audio stream reports an invalid sample rate ({rate} Hz)")
        if self.in_rate:
            self._flush(last=True)
            self._seconds_before += self._frames_at_rate / self.in_rate
            self._frames_at_rate = 0
        self.in_rate = rate
        if rate == self.out_rate:
            self._stream = None
        else:
            import soxr

            self._stream = soxr.ResampleStream(rate, self.out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def push(self, channels: list[np.ndarray]) -> None:
        """Add one block (a list of per-channel float32 arrays) at the current input rate."""
        n = channels[0].size
        if n == 0:
            return
        self._frames_at_rate += n
        self.seconds_in = self._seconds_before + self._frames_at_rate / self.in_rate
        if self.seconds_in > self.max_duration_s:
            raise TooLongError(
                f"the audio is longer than the limit of {fmt_duration(self.max_duration_s)} "
                f"(decoding stopped after {fmt_duration(self.seconds_in)}); shorten the recording or "
                "raise the limit ({setting}) to analyse it",  # TooLongError fills in the setting's name
                limit_s=self.max_duration_s,
            )
        self._pending.append(channels)
        self._pending_n += n
        if self._pending_n >= RESAMPLE_BLOCK:
            self._flush(last=False)

    def _mix(self) -> np.ndarray:
        """Mean of channels over all pending blocks, as one contiguous float32 array."""
        blocks = self._pending
        nch = max(len(b) for b in blocks)
        if any(len(b) != nch for b in blocks):  # the channel layout changed mid-stream
            blocks = [[_mean_of(b)] for b in blocks]
            nch = 1
        if nch == 1:
            return np.concatenate([b[0] for b in blocks]) if len(blocks) > 1 else np.array(blocks[0][0])
        return _mean_of([np.concatenate([b[c] for b in blocks]) for c in range(nch)])

    def _flush(self, last: bool) -> None:
        if self._pending_n:
            mono = self._mix()
            self._pending, self._pending_n = [], 0
            finite = np.isfinite(mono)
            if not finite.all():
                at = self._flushed_s + int(np.argmin(finite)) / self.in_rate
                raise NonFiniteAudioError(
                    f"the audio contains invalid samples (NaN or infinity), the first at {at:.2f} s; "
                    "every sample must be a finite number. The file is probably corrupt: re-export it."
                )
            self._flushed_s += mono.size / self.in_rate
        elif last and self._stream is not None:
            mono = np.zeros(0, np.float32)
        else:
            return
        out = mono if self._stream is None else self._stream.resample_chunk(mono, last=last)
        if out.size:
            self._out.append(out)

    def take(self) -> list[np.ndarray]:
        """The mono float32 blocks at ``out_rate`` resampled since the last call (each is handed out once)."""
        out, self._out = self._out, []
        return out

    def close(self) -> None:
        """End of the input: flush the resampler, so that :meth:`take` returns the rest of the signal."""
        if self.in_rate:
            self._flush(last=True)


def _mean_of(channels: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean of equally long 1-D arrays, as a new contiguous float32 array."""
    acc = np.array(channels[0], dtype=np.float32)  # copies
    for ch in channels[1:]:
        acc += ch
    if len(channels) > 1:
        acc *= np.float32(1.0 / len(channels))
    return acc


def fmt_duration(seconds: float) -> str:
    """A duration for messages, in seconds, with minutes or hours when long."""
    if seconds >= 3600:
        return f"{seconds:.1f} s ({seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{seconds:.1f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.1f} s"
