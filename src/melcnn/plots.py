"""The report's pictures: the V2 mel spectrogram and the V3 fake-score timeline, as PNG files.

Both functions take an already computed whole-file mel spectrogram in dB (``mel_db``, shape
``(n_mels, n_frames)``, centred frames ``hop_length`` samples apart, mel bands on the Slaney mel
scale between ``fmin_hz`` and ``fmax_hz`` as librosa's ``melspectrogram``); this module computes no
features.

matplotlib is imported only inside the functions (it costs about a second to import), and only its
object-oriented API is used: each call makes its own :class:`matplotlib.figure.Figure` drawn by
``FigureCanvasAgg``; nothing touches pyplot's global state or the global backend, so calls from
several threads of a server do not interfere. Files are written atomically (a temporary file in the
same folder, then renamed), so a reader never sees a half-written PNG; their mode is 0666 less the
umask (0644 with the usual umask 022), as for any file a program creates.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import _dsp

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

DPI = 100  # pixels per inch of the PNG files
SPECTROGRAM_FIGSIZE_IN = (10.0, 4.0)  # width, height in inches: 1000 x 400 pixels
TIMELINE_FIGSIZE_IN = (10.0, 5.0)  # width, height in inches: 1000 x 500 pixels
DB_RANGE = 80.0  # dB shown below the spectrogram's maximum (the colour bar's span)
MAX_COLUMNS = 2000  # longer spectrograms are averaged down to at most this many time columns
CMAP = "magma"
FAKE_COLOUR = "tab:red"  # shading of chunks at or above the threshold
SCORE_COLOUR = "tab:blue"
_HZ_TICKS = (0, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000)  # y tick candidates


def plot_spectrogram(
    mel_db: np.ndarray,
    *,
    sample_rate: int,
    hop_length: int,
    fmax_hz: float | None,
    path: Path,
    title: str | None = None,
    fmin_hz: float = 0.0,
) -> Path:
    """Draw the whole-file mel spectrogram (the V2 picture) to a PNG.

    Parameters
    ----------
    mel_db : np.ndarray
        Mel spectrogram in dB, shape ``(n_mels, n_frames)``; frame ``t`` is centred at
        ``t * hop_length / sample_rate`` seconds.
    sample_rate : int
        Hz.
    hop_length : int
        Samples between frames.
    fmax_hz : float or None
        Upper edge of the mel filter bank in Hz; None means ``sample_rate / 2``.
    path : Path
        Output PNG file; missing parent folders are created.
    title : str, optional
        Figure title; default "Mel spectrogram".
    fmin_hz : float
        Lower edge of the mel filter bank in Hz (default 0).

    Returns
    -------
    Path
        ``path``. The PNG is ``SPECTROGRAM_FIGSIZE_IN`` x ``DPI`` = 1000 x 400 pixels: x is time in
        seconds, y frequency in Hz on a mel-spaced axis, a colour bar in dB.

    Raises
    ------
    ValueError
        If ``mel_db`` is not a non-empty 2-D array or a rate is not positive.
    """
    fig = _spectrogram_figure(
        mel_db, sample_rate=sample_rate, hop_length=hop_length, fmin_hz=fmin_hz, fmax_hz=fmax_hz, title=title
    )
    return _save(fig, path)


def plot_timeline(
    mel_db: np.ndarray,
    *,
    sample_rate: int,
    hop_length: int,
    fmax_hz: float | None,
    chunk_starts_s: np.ndarray,
    chunk_ends_s: np.ndarray,
    chunk_scores: np.ndarray,
    threshold: float,
    path: Path,
    title: str | None = None,
    fmin_hz: float = 0.0,
) -> Path:
    """Draw the chunk fake scores over time above the whole-file spectrogram (the V3 picture).

    The top panel shows each chunk's fake score (0..1) as a line with a marker at the chunk's centre,
    the threshold as a dashed line, and the time spans of chunks scoring at or above the threshold
    shaded red (overlapping spans merged); the bottom panel, sharing the time axis, is the mel
    spectrogram as in :func:`plot_spectrogram`, with the same spans outlined in red along its top.

    Parameters
    ----------
    mel_db : np.ndarray
        Mel spectrogram in dB, shape ``(n_mels, n_frames)`` (see :func:`plot_spectrogram`).
    sample_rate : int
        Hz.
    hop_length : int
        Samples between spectrogram frames.
    fmax_hz : float or None
        Upper edge of the mel filter bank in Hz; None means ``sample_rate / 2``.
    chunk_starts_s, chunk_ends_s : np.ndarray
        Start and end of each chunk in seconds, shape ``(n_chunks,)``.
    chunk_scores : np.ndarray
        Fake score of each chunk in [0, 1], shape ``(n_chunks,)``.
    threshold : float
        Score at or above which a chunk counts as fake, in [0, 1].
    path : Path
        Output PNG file; missing parent folders are created.
    title : str, optional
        Figure title (above both panels); default "Fake score per chunk".
    fmin_hz : float
        Lower edge of the mel filter bank in Hz (default 0).

    Returns
    -------
    Path
        ``path``. The PNG is ``TIMELINE_FIGSIZE_IN`` x ``DPI`` = 1000 x 500 pixels.

    Raises
    ------
    ValueError
        If the arrays' shapes disagree, a chunk ends before it starts, or a score or the threshold
        is outside [0, 1] or not finite.
    """
    fig = _timeline_figure(
        mel_db,
        sample_rate=sample_rate,
        hop_length=hop_length,
        fmin_hz=fmin_hz,
        fmax_hz=fmax_hz,
        chunk_starts_s=chunk_starts_s,
        chunk_ends_s=chunk_ends_s,
        chunk_scores=chunk_scores,
        threshold=threshold,
        title=title,
    )
    return _save(fig, path)


# --- figure builders (no file I/O; the tests inspect them) -------------------------------------------


def _spectrogram_figure(
    mel_db: np.ndarray,
    *,
    sample_rate: int,
    hop_length: int,
    fmin_hz: float,
    fmax_hz: float | None,
    title: str | None,
) -> Figure:
    mel_db = _check_mel(mel_db, sample_rate, hop_length)
    fig = _new_figure(SPECTROGRAM_FIGSIZE_IN)
    ax = fig.add_subplot()
    image = _draw_mel(ax, mel_db, sample_rate, hop_length, fmin_hz, fmax_hz)
    ax.set_xlabel("Time (s)")
    ax.set_title(title if title is not None else "Mel spectrogram")
    fig.colorbar(image, ax=ax, format="%+.0f dB", label="Level (dB)")
    return fig


def _timeline_figure(
    mel_db: np.ndarray,
    *,
    sample_rate: int,
    hop_length: int,
    fmin_hz: float,
    fmax_hz: float | None,
    chunk_starts_s: np.ndarray,
    chunk_ends_s: np.ndarray,
    chunk_scores: np.ndarray,
    threshold: float,
    title: str | None,
) -> Figure:
    mel_db = _check_mel(mel_db, sample_rate, hop_length)
    starts = np.asarray(chunk_starts_s, dtype=np.float64).reshape(-1)
    ends = np.asarray(chunk_ends_s, dtype=np.float64).reshape(-1)
    scores = np.asarray(chunk_scores, dtype=np.float64).reshape(-1)
    if not (len(starts) == len(ends) == len(scores)):
        raise ValueError(
            f"chunk_starts_s, chunk_ends_s and chunk_scores differ in length: {len(starts)}, {len(ends)}, {len(scores)}"
        )
    if not (np.all(np.isfinite(starts)) and np.all(np.isfinite(ends)) and np.all(ends >= starts)):
        raise ValueError("chunk times must be finite, with each end at or after its start")
    if not (np.all(np.isfinite(scores)) and np.all((scores >= 0.0) & (scores <= 1.0))):
        raise ValueError("chunk_scores must be finite and in [0, 1]")
    if not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")

    fig = _new_figure(TIMELINE_FIGSIZE_IN)
    ax_score, ax_mel = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    spans = _merge_spans(starts[scores >= threshold], ends[scores >= threshold])
    for i, (a, b) in enumerate(spans):
        ax_score.axvspan(a, b, color=FAKE_COLOUR, alpha=0.25, lw=0, label="score ≥ threshold" if i == 0 else None)
    centres = 0.5 * (starts + ends)
    ax_score.plot(centres, scores, "o-", color=SCORE_COLOUR, ms=4, lw=1.5, label="fake score")
    ax_score.axhline(threshold, color="0.25", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax_score.set_ylim(-0.03, 1.03)
    ax_score.set_ylabel("Fake score")
    ax_score.grid(axis="y", alpha=0.3)
    # above the panel, in one row: inside it, the legend box would hide the last points
    ax_score.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize="small", frameon=False)
    fig.suptitle(title if title is not None else "Fake score per chunk")
    ax_score.tick_params(labelbottom=False)

    image = _draw_mel(ax_mel, mel_db, sample_rate, hop_length, fmin_hz, fmax_hz)
    for a, b in spans:  # a red bar along the top of the spectrogram marks the same spans
        ax_mel.axvspan(a, b, ymin=0.97, ymax=1.0, color=FAKE_COLOUR, lw=0)
    ax_mel.set_xlabel("Time (s)")
    t_end = max(_duration_s(mel_db, sample_rate, hop_length), float(ends.max(initial=0.0)))
    ax_mel.set_xlim(0.0, t_end if t_end > 0 else 1.0)
    fig.colorbar(image, ax=[ax_score, ax_mel], format="%+.0f dB", label="Level (dB)", shrink=0.6, anchor=(0, 0))
    return fig


# --- helpers -----------------------------------------------------------------------------------------


def _new_figure(figsize_in: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize_in, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path``; its title also goes into the PNG's ``Title`` text field."""
    path = Path(path)
    titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    metadata = {"Software": "melcnn", "Title": next((t for t in titles if t), "")}
    path.parent.mkdir(parents=True, exist_ok=True)
    # mode 0666 less the umask, as any file a program creates (mkstemp would make it 0600)
    for _ in range(100):
        tmp = path.parent / f".{path.stem}-{secrets.token_hex(6)}.png"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"cannot create a temporary file in {path.parent}")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _check_mel(mel_db: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    mel_db = np.asarray(mel_db, dtype=np.float64)
    if mel_db.ndim != 2 or mel_db.shape[0] == 0 or mel_db.shape[1] == 0:
        raise ValueError(f"mel_db must be a non-empty 2-D array (n_mels, n_frames), got shape {mel_db.shape}")
    if sample_rate <= 0 or hop_length <= 0:
        raise ValueError(f"sample_rate and hop_length must be positive, got {sample_rate}, {hop_length}")
    return mel_db


def _duration_s(mel_db: np.ndarray, sample_rate: int, hop_length: int) -> float:
    """Time of the last frame's centre in seconds (the end of the signal, to within a hop)."""
    return (mel_db.shape[1] - 1) * hop_length / sample_rate


def _draw_mel(
    ax: Axes,
    mel_db: np.ndarray,
    sample_rate: int,
    hop_length: int,
    fmin_hz: float,
    fmax_hz: float | None,
) -> AxesImage:
    """Draw ``mel_db`` on ``ax``: x in seconds, y on the mel scale with tick labels in Hz."""
    n_mels, n_frames = mel_db.shape
    fmax = float(fmax_hz) if fmax_hz is not None else sample_rate / 2.0
    frame_s = hop_length / sample_rate

    # Average long spectrograms down to at most MAX_COLUMNS columns (a 2 h file has 225k frames).
    step = max(1, -(-n_frames // MAX_COLUMNS))
    if step > 1:
        n_cols = -(-n_frames // step)
        padded = np.pad(mel_db, ((0, 0), (0, n_cols * step - n_frames)), mode="edge")
        mel_db = padded.reshape(n_mels, n_cols, step).mean(axis=2)

    # As librosa.display.specshow(y_axis="mel"): the n_mels rows split [mel(fmin), mel(fmax)] evenly.
    mel_lo, mel_hi = float(_dsp.hz_to_mel(fmin_hz)), float(_dsp.hz_to_mel(fmax))
    extent = (-0.5 * frame_s, (mel_db.shape[1] * step - 0.5) * frame_s, mel_lo, mel_hi)
    finite = mel_db[np.isfinite(mel_db)]
    vmax = float(finite.max()) if finite.size else 0.0
    vmin = max(float(finite.min()) if finite.size else vmax - DB_RANGE, vmax - DB_RANGE)
    if vmin >= vmax:
        vmin = vmax - 1.0
    image = ax.imshow(
        mel_db,
        origin="lower",
        aspect="auto",
        extent=extent,
        cmap=CMAP,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest" if step == 1 and n_frames <= MAX_COLUMNS else "antialiased",
    )
    ticks_hz = [f for f in _HZ_TICKS if fmin_hz <= f <= fmax]
    ax.set_yticks(_dsp.hz_to_mel(np.array(ticks_hz, dtype=np.float64)))
    ax.set_yticklabels([f"{f:g}" for f in ticks_hz])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlim(0.0, max((n_frames - 1) * frame_s, frame_s))
    ax.set_ylabel("Frequency (Hz)")
    return image


def _merge_spans(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """Union of the intervals ``[starts[i], ends[i]]`` as sorted, disjoint ``(start, end)`` pairs."""
    spans: list[tuple[float, float]] = []
    for a, b in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans
