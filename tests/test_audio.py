"""Tests of melcnn.audio: decoding real files of every supported kind, and refusing bad ones.

Every file is encoded at test time by ``media_factory`` (no audio is committed). Files are made
once per session, on first use.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soxr
from media_factory import KINDS, VALID_KINDS, make_media, source_signal, speech_like

from melcnn.audio import SILENCE_PEAK, DecodedAudio, load_audio, validate_audio
from melcnn.errors import (
    EmptyMediaError,
    MediaNotFoundError,
    MediaProcessingError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UndecodableMediaError,
)

logger = logging.getLogger(__name__)

SR = 16000
LOSSY_DURATION_TOL_S = 0.03  # AAC keeps up to one frame (1024 samples) of end padding


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``media(kind, **kwargs)``: the path of a test file, written once per session and arguments."""
    root = tmp_path_factory.mktemp("media")
    cache: dict[tuple, Path] = {}

    def get(kind: str, **kwargs) -> Path:
        key = (kind, tuple(sorted(kwargs.items())))
        if key not in cache:
            sub = root / f"{kind}_{len(cache)}"
            cache[key] = make_media(kind, sub, **kwargs)
        return cache[key]

    return get


def reference(kind: str, sr_out: int = SR, **kwargs) -> np.ndarray:
    """The source signal of ``kind``, mixed to mono (mean) and resampled to ``sr_out``."""
    src = source_signal(kind, **kwargs)
    rate = kwargs.get("sr") or KINDS[kind].sample_rate
    return soxr.resample(src.mean(axis=1), rate, sr_out, quality="HQ").astype(np.float32)


def best_correlation(x: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Highest normalised correlation of ``x`` and ``ref`` over lags in ``[-max_lag, max_lag]``.

    The lag is found from the FFT cross-correlation; the correlation is then computed exactly on
    the overlapping parts at that lag. A positive lag means ``x`` is late.
    """
    x, ref = x.astype(np.float64), ref.astype(np.float64)
    n = min(x.size, ref.size)
    x, ref = x[:n], ref[:n]
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    lag = int(lags[np.argmax(xc[lags % size])])
    a, b = (x[lag:], ref[: n - lag]) if lag >= 0 else (x[: n + lag], ref[-lag:])
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))), lag


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / sr)[np.argmax(spectrum)])


# ------------------------------------------------------------------------------ every format decodes
@pytest.mark.parametrize("kind", VALID_KINDS)
def test_every_format_decodes_to_mono_float32_16k(kind: str, media) -> None:
    info = KINDS[kind]
    audio = load_audio(media(kind))

    assert isinstance(audio, DecodedAudio)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.samples.flags["C_CONTIGUOUS"]
    assert audio.sample_rate == SR
    assert audio.format == info.format, "format must be detected from the content"
    assert audio.original_sample_rate == info.sample_rate
    assert audio.channels == info.channels
    assert audio.warnings == ()
    assert audio.duration_s == pytest.approx(audio.samples.size / SR)

    ref = reference(kind)
    if info.lossy:
        assert abs(audio.duration_s - ref.size / SR) <= LOSSY_DURATION_TOL_S
    else:
        assert abs(audio.samples.size - ref.size) <= 1
    corr, lag = best_correlation(audio.samples, ref, max_lag=160)
    assert abs(lag) <= 2, f"decoded audio is shifted by {lag} samples"
    if not info.lossy:
        min_corr = 0.998 if kind == "wav_u8" else 0.99999
    else:
        min_corr = 0.99
    assert corr >= min_corr, f"{kind}: correlation with the source {corr:.5f} < {min_corr}"


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("mp3_as_wav", ".wav"), ("flac_as_ogg", ".ogg"), ("m4a_as_mp3", ".mp3"), ("wav_as_flac", ".flac")],
)
def test_format_is_detected_by_content_not_extension(kind: str, suffix: str, media, tmp_path: Path) -> None:
    path = media(kind)
    assert path.suffix == suffix
    expected = KINDS[kind].format
    assert load_audio(path).format == expected
    # no extension at all, and a misleading text extension, give the same answer
    for name in ("noext", "notes.txt"):
        other = tmp_path / name
        other.write_bytes(path.read_bytes())
        assert load_audio(other).format == expected


def _id3v24(title: str, padding: int = 0) -> bytes:
    body = b"\x03" + title.encode()
    frame = b"TIT2" + len(body).to_bytes(4, "big") + b"\x00\x00" + body  # sizes < 128: syncsafe as is
    tag = frame + b"\x00" * padding
    size = len(tag)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x04\x00\x00" + syncsafe + tag


def test_id3_tagged_mp3_and_a_bare_tag(media) -> None:
    mp3 = media("mp3").read_bytes()
    tagged = load_audio(_id3v24("a title", padding=5000) + mp3)
    assert tagged.format == "mp3" and tagged.duration_s == pytest.approx(3.0, abs=0.03)
    _raises(UndecodableMediaError, _id3v24("only a tag") + b"\x00" * 200, "looks like MP3 but")


def test_multichannel_is_mixed_by_mean_of_channels(media) -> None:
    audio = load_audio(media("wav_8ch"))
    assert (audio.original_sample_rate, audio.channels) == (48000, 8)
    src = source_signal("wav_8ch")
    mean_ref = soxr.resample(src.mean(axis=1), 48000, SR, quality="HQ")
    first_ref = soxr.resample(src[:, 0], 48000, SR, quality="HQ")
    err_mean = np.abs(audio.samples - mean_ref).max()
    err_first = np.abs(audio.samples - first_ref).max()
    assert err_mean < 1e-4  # 16-bit quantisation only
    assert err_first > 100 * err_mean


def test_first_audio_stream_of_a_video_is_used(media) -> None:
    """mp4_two_audio holds video, then a 440 Hz track, then a 1250 Hz track."""
    audio = load_audio(media("mp4_two_audio"))
    assert dominant_hz(audio.samples, SR) == pytest.approx(440.0, abs=3.0)


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_other_target_sample_rates(rate: int, media) -> None:
    audio = load_audio(media("flac"), sample_rate=rate)
    assert audio.sample_rate == rate
    assert abs(audio.samples.size - 3 * rate) <= 1
    corr, lag = best_correlation(audio.samples, reference("flac", sr_out=rate), max_lag=4)
    assert corr > 0.9999 and lag == 0


def test_native_rate_needs_no_resampling(media) -> None:
    path = media("wav_f32")
    audio = load_audio(path)
    np.testing.assert_array_equal(audio.samples, source_signal("wav_f32")[:, 0])


# ------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("kind", ["wav_s16", "mp3", "m4a_aac", "ogg_vorbis", "flac"])
def test_bytes_and_file_objects_give_the_same_result(kind: str, media) -> None:
    path = media(kind)
    data = path.read_bytes()
    from_path = load_audio(path)
    from_bytes = load_audio(data)
    np.testing.assert_array_equal(from_bytes.samples, from_path.samples)
    assert from_bytes.format == from_path.format
    np.testing.assert_array_equal(load_audio(bytearray(data)).samples, from_path.samples)
    np.testing.assert_array_equal(load_audio(memoryview(data)).samples, from_path.samples)
    with open(path, "rb") as fh:
        fh.seek(0, io.SEEK_END)  # e.g. an upload just written: it is read from the start
        np.testing.assert_array_equal(load_audio(fh).samples, from_path.samples)
        assert not fh.closed, "the caller's file object is left open"
    np.testing.assert_array_equal(load_audio(io.BytesIO(data)).samples, from_path.samples)


class _NonSeekable(io.RawIOBase):
    """A pipe-like binary stream: read only, no seek."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._buf.readinto(b)


def test_non_seekable_stream(media) -> None:
    path = media("mp3")
    audio = load_audio(_NonSeekable(path.read_bytes()))
    assert audio.format == "mp3" and audio.duration_s == pytest.approx(3.0, abs=0.01)


def test_path_like_and_str(media) -> None:
    path = media("wav_s16")
    assert load_audio(str(path)).duration_s == load_audio(path).duration_s == pytest.approx(3.0)


# ------------------------------------------------------------------------------------------- errors
def _raises(exc: type[MediaProcessingError], source, match: str, **kwargs) -> MediaProcessingError:
    with pytest.raises(exc, match=match) as info:
        load_audio(source, **kwargs)
    err = info.value
    assert isinstance(err, MediaProcessingError) and isinstance(err, ValueError)
    assert type(err) is exc, f"expected exactly {exc.__name__}, got {type(err).__name__}: {err}"
    return err


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    err = _raises(MediaNotFoundError, missing, "no such file")
    assert str(missing) in str(err)
    assert isinstance(err, FileNotFoundError)
    _raises(MediaNotFoundError, tmp_path, "not a regular file")


def test_empty_inputs(media) -> None:
    err = _raises(EmptyMediaError, media("empty"), r"empty \(0 bytes\)")
    assert "empty.wav" in str(err)
    _raises(EmptyMediaError, b"", "empty")
    _raises(EmptyMediaError, io.BytesIO(b""), "empty")


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("text_as_wav", "text file, not audio"),
        ("random_bytes", "not an audio or video file"),
        ("video_only_mp4", "no audio track .*video"),
    ],
)
def test_not_audio(kind: str, match: str, media) -> None:
    err = _raises(NotAudioError, media(kind), match)
    assert err.code == "not_audio"
    assert "required" in str(err)


def test_random_bytes_of_many_seeds_are_not_audio(media) -> None:
    for seed in range(8):
        with pytest.raises(NotAudioError):
            load_audio(np.random.default_rng(seed).integers(0, 256, 20000, dtype=np.uint8).tobytes())


@pytest.mark.parametrize(
    ("kind", "match"),
    [("riff_garbage", "looks like WAV but cannot be decoded"), ("m4a_no_moov", "looks like MP4 but cannot")],
)
def test_recognised_but_undecodable(kind: str, match: str, media) -> None:
    err = _raises(UndecodableMediaError, media(kind), match)
    assert err.__cause__ is not None, "the library error is chained"
    assert "<_io." not in str(err)


@pytest.mark.parametrize("kind", ["wav_nan", "wav_inf"])
def test_non_finite_samples(kind: str, media) -> None:
    _raises(NonFiniteAudioError, media(kind), r"NaN or infinity\), the first at 1\.50 s")


def test_digital_silence(media) -> None:
    err = _raises(SilentAudioError, media("wav_silent"), "nothing to judge")
    assert "exactly zero" in str(err)


def test_too_short(media) -> None:
    err = _raises(TooShortError, media("clip_1s"), r"lasts 1\.00 s; at least 3\.00 s", min_duration_s=3.0)
    assert err.duration_s == pytest.approx(1.0)
    assert err.minimum_s == 3.0
    assert load_audio(media("clip_1s"), min_duration_s=1.0).duration_s == pytest.approx(1.0)


def test_errors_do_not_print_ffmpeg_or_mpg123_noise(media, capfd) -> None:
    for kind in ("random_bytes", "truncated_mp3", "m4a_no_moov", "truncated_m4a", "mp3_as_wav"):
        try:
            load_audio(media(kind))
        except MediaProcessingError:
            pass
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---------------------------------------------------------------------------- damaged but decodable
@pytest.mark.parametrize(
    ("kind", "lo_s", "hi_s"),
    [("truncated_mp3", 0.6, 2.0), ("truncated_flac", 0.6, 2.5), ("truncated_m4a", 0.6, 2.5)],
)
def test_truncated_files_decode_what_survives(kind: str, lo_s: float, hi_s: float, media) -> None:
    audio = load_audio(media(kind))
    assert lo_s < audio.duration_s < hi_s
    assert len(audio.warnings) == 1
    assert "the file ends early" in audio.warnings[0] and "announced 3.0 s" in audio.warnings[0]
    ref = reference(kind)[: audio.samples.size]
    n = audio.samples.size - int(0.1 * SR)  # the last decoded frame may be partial
    corr, lag = best_correlation(audio.samples[:n], ref[:n], max_lag=8)
    assert lag == 0 and corr > (0.99 if KINDS[kind].lossy else 0.9999)


def test_truncated_file_shorter_than_minimum_is_too_short(media) -> None:
    err = _raises(TooShortError, media("truncated_mp3"), "at least 2.00 s", min_duration_s=2.0)
    assert "the file ends early" in str(err)
    assert err.duration_s is not None and err.duration_s < 2.0


def test_wav_header_claiming_more_data_than_exists(media) -> None:
    audio = load_audio(media("wav_overclaim"))
    assert audio.samples.size == 3 * SR
    assert audio.warnings == ("the file ends early: decoded 3.0 s of audio; the header announced 7.5 s",)
    np.testing.assert_allclose(audio.samples, source_signal("wav_overclaim")[:, 0], atol=1e-4)


def test_huge_header_claim_does_not_allocate_by_header(media) -> None:
    """The header announces 2**31 frames (about 37 hours); the file holds 1 s."""
    path = media("wav_huge_header")
    tracemalloc.start()
    try:
        audio = load_audio(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"peak Python/numpy allocation {peak / 2**20:.0f} MiB for 1 s of audio"
    assert audio.duration_s == pytest.approx(1.0)
    assert "announced 134217.7 s (37.3 h)" in audio.warnings[0]


@pytest.mark.parametrize("kind", ["mp3", "flac", "m4a_aac"])
def test_damage_in_the_middle_is_skipped_with_a_warning(kind: str, media) -> None:
    raw = bytearray(media(kind).read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 2000] = np.random.default_rng(3).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    audio = load_audio(bytes(raw))
    assert 2.5 < audio.duration_s <= 3.05
    assert audio.warnings, "lost audio must be reported"
    assert any("damaged" in w or "parts of the audio could not be decoded" in w for w in audio.warnings)
    assert not any("ends early" in w for w in audio.warnings)
    ref = reference(kind)
    corr, lag = best_correlation(audio.samples[:SR], ref[:SR], max_lag=8)  # the intact first second
    assert lag == 0 and corr > 0.99


class _FailingReader(io.BytesIO):
    """BytesIO whose reads fail with EIO once past ``limit`` bytes (a dying disk or network mount)."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self.limit = limit

    def read(self, n: int | None = -1) -> bytes:
        if self.tell() > self.limit:
            raise OSError(5, "Input/output error")
        return super().read(n)

    def readinto(self, b) -> int:
        if self.tell() > self.limit:
            raise OSError(5, "Input/output error")
        return super().readinto(b)


@pytest.mark.parametrize("kind", ["wav_s16", "ogg_vorbis", "mp3", "flac"])
def test_read_errors_become_media_errors_without_noise(kind: str, media, capfd) -> None:
    raw = media(kind).read_bytes()
    with pytest.raises(UndecodableMediaError, match="reading the uploaded file failed: .*Input/output"):
        load_audio(_FailingReader(raw, len(raw) // 2))
    with pytest.raises(UndecodableMediaError):
        load_audio(_FailingReader(raw, 5))
    assert capfd.readouterr().err == ""


def test_lying_headers_decode_under_a_1_gib_address_space_limit(media) -> None:
    """In a child process limited to 1 GiB of virtual memory, headers announcing 2**31 (WAV) and
    2**35 (FLAC) frames with 1 s of data decode fine: nothing is sized from the header."""
    paths = [str(media("wav_huge_header")), str(media("flac_huge_header"))]
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
        "from melcnn.audio import load_audio\n"
        "for p in sys.argv[1:]:\n"
        "    a = load_audio(p)\n"
        "    print(round(a.duration_s, 3), len(a.warnings))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.0", "1", "1.0", "1"]


# ----------------------------------------------------------------------------------- max duration
class _CountingReader(io.BytesIO):
    """BytesIO that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1) -> bytes:
        chunk = super().read(n)
        self.bytes_read += len(chunk)
        return chunk

    def readinto(self, b) -> int:
        n = super().readinto(b)
        self.bytes_read += n
        return n


@pytest.mark.parametrize("kind", ["wav_s16", "mp3", "flac", "ogg_vorbis", "m4a_aac"])
def test_max_duration_is_enforced(kind: str, media) -> None:
    err = _raises(TooLongError, media(kind, seconds=5.0), r"limit of 1\.0 s", max_duration_s=1.0)
    assert "max_duration_s" in str(err)
    assert load_audio(media(kind, seconds=5.0), max_duration_s=6.0).duration_s == pytest.approx(5.0, abs=0.03)


@pytest.mark.parametrize("kind", ["wav_u8", "mp3"])
def test_max_duration_stops_decoding_early(kind: str, media) -> None:
    """A 60 s file with a 5 s limit: only the first part of the file is ever read."""
    one = media(kind).read_bytes()
    if kind == "mp3":
        data = one * 20  # MP3 frames concatenate: 20 x 3 s
    else:
        long = np.tile(source_signal(kind)[:, 0], 20)
        buf = io.BytesIO()
        import soundfile as sf

        sf.write(buf, long, 16000, format="WAV", subtype="PCM_U8")
        data = buf.getvalue()
    assert load_audio(data).duration_s > 59.0
    reader = _CountingReader(data)
    with pytest.raises(TooLongError):
        load_audio(reader, max_duration_s=5.0)
    assert reader.bytes_read < 0.3 * len(data), f"read {reader.bytes_read} of {len(data)} bytes"


# ------------------------------------------------------------------------------------- validation
def test_validate_audio_accepts_a_normal_signal() -> None:
    validate_audio(speech_like(1.0, SR), sample_rate=SR, min_duration_s=1.0)


@pytest.mark.parametrize(
    ("samples", "exc", "match"),
    [
        (np.array([0.1, np.nan, 0.2] * 8000, np.float32), NonFiniteAudioError, "8000 invalid samples"),
        (np.array([0.1, np.inf] * 8000, np.float32), NonFiniteAudioError, "first at 0.00 s"),
        (np.zeros(SR * 4, np.float32), SilentAudioError, "exactly zero"),
        (np.full(SR * 4, SILENCE_PEAK / 2, np.float32), SilentAudioError, "peak amplitude is 5.0e-08"),
        (np.zeros(0, np.float32), TooShortError, "no audio samples"),
        (np.full(SR, 0.1, np.float32), TooShortError, r"lasts 1\.00 s; at least 3\.00 s"),
    ],
)
def test_validate_audio_refuses(samples: np.ndarray, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        validate_audio(samples, sample_rate=SR, min_duration_s=3.0)


def test_quiet_but_not_silent_is_accepted() -> None:
    x = speech_like(4.0, SR) * np.float32(2 * SILENCE_PEAK / 0.5)  # peak 2e-7
    validate_audio(x, sample_rate=SR, min_duration_s=3.0)


def test_sample_rate_change_mid_stream_is_resampled_piecewise() -> None:
    """Some streams (HE-AAC, concatenated MP3) change rate; each part is resampled on its own."""
    from melcnn._audio_sink import MonoSink

    sink = MonoSink(SR, max_duration_s=10.0)
    sink.set_rate(44100)
    sink.push([speech_like(1.0, 44100, seed=1)])
    sink.set_rate(22050)
    sink.push([speech_like(0.5, 22050, seed=2), speech_like(0.5, 22050, seed=2)])
    sink.close()
    out = np.concatenate(sink.take())
    assert sink.seconds_in == pytest.approx(1.5)
    assert abs(out.size - int(1.5 * SR)) <= 2
    second = soxr.resample(speech_like(0.5, 22050, seed=2), 22050, SR, quality="HQ")
    corr, lag = best_correlation(out[SR:], second, max_lag=4)
    assert lag == 0 and corr > 0.999


# ------------------------------------------------------------------------------------- robustness
def test_corrupted_inputs_end_in_media_errors_only(media) -> None:
    """Cuts and overwritten bytes anywhere: a DecodedAudio or a MediaProcessingError, nothing else."""
    rng = np.random.default_rng(7)
    outcomes: dict[str, int] = {}
    for kind in ("wav_s16", "flac", "mp3", "m4a_aac", "ogg_vorbis", "ogg_opus", "mkv_video", "aiff"):
        raw = media(kind).read_bytes()
        variants = [raw[: int(len(raw) * f)] for f in (0.001, 0.01, 0.3, 0.9)]
        for _ in range(4):
            b = bytearray(raw)
            start = int(rng.integers(0, len(b) - 64))
            b[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            variants.append(bytes(b))
        for data in variants:
            try:
                audio = load_audio(data)
                assert audio.samples.dtype == np.float32
                outcomes["decoded"] = outcomes.get("decoded", 0) + 1
            except MediaProcessingError as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    logger.info("corrupted inputs: %s", outcomes)
    assert outcomes.get("decoded", 0) > 0


def test_bad_arguments_are_plain_errors(media) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(media("wav_s16"), sample_rate=0)
    with pytest.raises(TypeError):
        load_audio(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- import cost
def test_import_is_light() -> None:
    code = (
        "import sys, melcnn.audio; "
        "print(','.join(m for m in ('av', 'soundfile', 'soxr', 'scipy.signal', 'librosa') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
