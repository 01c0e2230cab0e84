"""The scattering's products: the separable low-pass operators, the periodised products of spectra with
the wavelet filters, and the compiled kernels (:mod:`melcnn._kernels`) that run them where built."""

from __future__ import annotations

import numpy as np

from ..errors import MelcnnError

try:  # the optional compiled kernels (built by pip install where a C compiler exists)
    from .. import _kernels
except ImportError:  # pragma: no cover - depends on the installation
    _kernels = None

#: SVD terms of a low-pass filter below this fraction of the first one are dropped (float32 noise)
_SEPARABLE_RTOL = 1e-6
#: alias blocks of a periodised filter product whose filter values all stay below this fraction of
#: the largest filter value are skipped (see _AliasFilter)
_ALIAS_RTOL = 1e-6


def _lowpass_operator(h: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real matrices equal to Kymatio's low-pass step at one resolution.

    Kymatio computes ``unpad(real(ifft2(subsample_fourier(fft2(x) * h, k))))`` for a real image
    ``x`` of shape ``(m, n)``. With ``h`` separable, ``h = sum_r a_r b_r^T``, this is
    ``sum_r real(A_r x B_r^T)`` where ``A_r[y, p] = ifft(a_r)[(k*y - p) mod m]`` for the kept rows
    ``y = 1 .. m/k - 2`` (and ``B_r`` likewise): periodising in Fourier is subsampling in space.

    Parameters
    ----------
    h : numpy.ndarray
        float32 ``(m, n)``, Kymatio's phi at this resolution.
    k : int
        Subsampling factor.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Pairs ``(A, B)`` of float32 ``(m/k - 2, m)`` and ``(n, n/k - 2)`` such that the output is
        ``sum(A @ x @ B)``. Terms below float32 rounding (imaginary parts, further SVD terms) are
        omitted.
    """
    m, n = h.shape
    h64 = h.astype(np.float64)
    i, j = np.unravel_index(np.argmax(np.abs(h64)), h64.shape)
    col, row = h64[:, j], h64[i, :] / h64[i, j]
    if np.abs(h64 - np.outer(col, row)).max() <= _SEPARABLE_RTOL * np.abs(h64).max():
        # Kymatio's phi is a Gaussian: separable up to float32 rounding (the usual case, no SVD needed)
        norm = np.linalg.norm(row)
        u, s, vt = (col / np.linalg.norm(col))[:, None], np.array([np.linalg.norm(col) * norm]), (row / norm)[None]
    else:
        u, s, vt = np.linalg.svd(h64)
    terms: list[tuple[np.ndarray, np.ndarray]] = []

    def spatial(v: np.ndarray, size: int) -> np.ndarray:
        kernel = np.fft.ifft(v)
        y = np.arange(1, size // k - 1)[:, None]
        p = np.arange(size)[None, :]
        return kernel[(k * y - p) % size]

    for r in range(len(s)):
        if s[r] < _SEPARABLE_RTOL * s[0]:
            break
        ca = spatial(u[:, r] * s[r], m)
        cb = spatial(vt[r], n)
        scale = np.abs(ca).max() * np.abs(cb).max()
        terms.append((ca.real, cb.real.T))
        if np.abs(ca.imag).max() * np.abs(cb.imag).max() > _SEPARABLE_RTOL * scale:
            terms.append((-ca.imag, cb.imag.T))
    return [(np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)) for a, b in terms]


def _apply_lowpass(x: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``sum(A @ x @ B)`` over the last two axes: float32 ``(..., m, n)`` -> ``(..., mo, no)``."""
    lead, (m, n) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, n)
    out = None
    for a, b in ops:
        z = (flat @ b).reshape(-1, m, b.shape[1])
        term = np.matmul(a, z)
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(*lead, out.shape[-2], out.shape[-1])


def _dup(h: np.ndarray) -> np.ndarray:
    """Real filter ``(..., m, n)`` -> float32 ``(..., m, 2n)`` that multiplies a complex64 float view."""
    out = np.empty((*h.shape, 2), np.float32)
    out[..., 0] = h
    out[..., 1] = h
    return out.reshape(*h.shape[:-1], 2 * h.shape[-1])


class _AliasFilter:
    """Filters ``(T, m, n)`` prepared for the periodised product with a spectrum (``k x k`` aliases).

    ``blocks`` is float32 ``(T, C, m/k * 2n/k)``: each filter cut into its ``k x k`` alias blocks
    (block ``(a, b)`` holds the frequencies ``(a*m/k + p, b*n/k + q)``), each block stored contiguously
    with every value duplicated, so that it multiplies a complex64 spectrum seen as float32 (re, im).
    Only the ``C`` blocks ``(ridx[c], cidx[c])`` where some filter exceeds ``_ALIAS_RTOL`` of the
    largest filter value are kept. Kymatio's Morlet filters are Gaussians in Fourier: for ``k >= 4``
    most alias blocks hold only values at float32 noise level (at most 4e-7 of the peak), whose
    products lie below the rounding of the sums they would enter; and each orientation uses about
    half of the kept blocks, so the filters are split into two runs of orientations (``groups``),
    each multiplied over its own slice of blocks (a third fewer products for ``k >= 4``).
    """

    def __init__(self, h: np.ndarray, k: int, scale: float = 1.0):
        h = h * np.float32(scale) if scale != 1.0 else h
        t, m, n = h.shape
        self.k, self.out_shape = k, (m // k, n // k)
        mag = np.abs(h.astype(np.float64)).reshape(t, k, m // k, k, n // k)
        peak = mag.max()
        rows = np.flatnonzero(mag.max(axis=(0, 2, 3, 4)) > _ALIAS_RTOL * peak)
        cols = np.flatnonzero(mag.max(axis=(0, 1, 2, 4)) > _ALIAS_RTOL * peak)
        self.groups = [(0, t, 0, len(rows) * len(cols))]
        if k == 1:  # no aliases: a plain product, complex64 times the real filter (half the bytes)
            self.blocks = np.ascontiguousarray(h, np.float32)
        else:
            # the kept blocks as (row, column) pairs; then the filters cut into two groups of
            # orientations (each Morlet uses about half of the blocks), the blocks ordered "first
            # group only, both, second group only" so that each group's blocks are one slice
            ridx, cidx = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
            used = mag[:, ridx, :, cidx].max(axis=(2, 3)).T > _ALIAS_RTOL * peak  # (t, blocks)
            self.groups, order = _orientation_groups(used)
            self.ridx, self.cidx = ridx[order], cidx[order]
            blocks = _dup(h).reshape(t, k, m // k, k, 2 * n // k).transpose(0, 1, 3, 2, 4)[:, self.ridx, self.cidx]
            self.blocks = np.ascontiguousarray(blocks).reshape(t, len(order), -1)
        self.blocks.setflags(write=False)

    def product(self, spec: np.ndarray, out: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Periodised products ``spec x filter[t]`` for the filters ``t0 <= t < t1``, written to ``out``.

        Parameters
        ----------
        spec : numpy.ndarray
            complex64 ``(P, m, n)`` spectra.
        out : numpy.ndarray
            C-contiguous complex64 ``(P, T, m/k, n/k)``.

        Returns
        -------
        numpy.ndarray
            ``out``, holding ``sum_{a,b} spec[s, a*m/k + p, b*n/k + q] * h[t, ...]`` (Kymatio's
            ``subsample_fourier`` times ``k**2``; the filters carry the transforms' scaling).
        """
        t1 = self.blocks.shape[0] if t1 is None else t1
        P, k, (m2, n2) = spec.shape[0], self.k, self.out_shape
        if k == 1:
            return np.multiply(spec[:, None], self.blocks[None, t0:t1], out=out)
        # the spectra's alias blocks, each contiguous, in the filters' block order: (P, C, X)
        f = spec.view(np.float32).reshape(P, k, m2, k, 2 * n2).transpose(0, 1, 3, 2, 4)[:, self.ridx, self.cidx]
        f = f.reshape(P, len(self.ridx), -1)
        flat = out.view(np.float32).reshape(P, t1 - t0, -1)
        for g0, g1, c0, c1 in self.groups:
            a, b = max(g0, t0), min(g1, t1)
            if a < b:  # one einsum per group: 1.1-2x faster than one per filter (NumPy 2.4)
                np.einsum("scx,tcx->stx", f[:, c0:c1], self.blocks[a:b, c0:c1], out=flat[:, a - t0 : b - t0])
        return out


class _SparseFilter:
    """Filters ``(T, m, n)`` prepared for the compiled periodised product (``_kernels.periodised_product``).

    The same products as :class:`_AliasFilter`, read from the ``rfft2`` half spectra of real arrays
    (no Hermitian completion) and without its block granularity: Kymatio's Morlet filters are
    Gaussian bumps in Fourier, so only the values above ``_ALIAS_RTOL`` of the largest one are kept
    (12-48 % of them for ``k >= 2``, where whole alias blocks keep 50-100 %), as runs of consecutive
    columns ("pieces"). A piece never crosses an alias block, nor the middle column: columns up to
    ``n // 2`` are read from the half spectrum directly, the others through ``full[r, c] =
    conj(half[-r mod m, n - c])`` (the kernel conjugates these pieces' products). The
    products left out are below the float32 rounding of the sums, as for :class:`_AliasFilter`.
    """

    def __init__(self, h: np.ndarray, k: int, scale: float = 1.0):
        h = h * np.float32(scale) if scale != 1.0 else h
        t, m, n = h.shape
        if n % 2:
            raise MelcnnError(f"periodised products need an even spectrum width, got {n}")  # Kymatio pads to 2**J
        m2, n2 = m // k, n // k
        self.k, self.out_shape, self.n_filters = k, (m2, n2), t
        # rows in the kernel's order: filter t, output row p, alias a (spectrum row a * m2 + p)
        hp = np.ascontiguousarray(h.reshape(t, k, m2, n).transpose(0, 2, 1, 3))
        keep = np.abs(hp) > _ALIAS_RTOL * np.abs(hp).max()
        # runs of kept columns that stay inside one alias block and one half of the spectrum
        c = np.arange(n)
        segment = 2 * (c // n2) + (c > n // 2)
        first = np.r_[True, segment[1:] != segment[:-1]]  # column c starts a segment
        last = np.r_[first[1:], True]
        before = np.zeros_like(keep)
        before[..., 1:] = keep[..., :-1]
        after = np.zeros_like(keep)
        after[..., :-1] = keep[..., 1:]
        ft, fp, fa, c0 = np.nonzero(keep & (~before | first))  # in (t, p, a, column) order
        c1 = np.nonzero(keep & (~after | last))[3]  # each run's last column, same order
        fr = fa * m2 + fp
        lengths = c1 - c0 + 1
        mirrored = c0 > n // 2
        src_row = np.where(mirrored, (m - fr) % m, fr)
        src_col = np.where(mirrored, n - c1, c0)
        offsets = np.r_[0, np.cumsum(lengths)[:-1]]
        self.pieces = np.ascontiguousarray(
            np.stack([src_row, src_col, c0 % n2, lengths, offsets, mirrored], axis=1), np.int32
        )
        self.row_start = np.searchsorted(ft * m2 + fp, np.arange(t * m2 + 1)).astype(np.int32)
        self.values = np.ascontiguousarray(hp[keep], np.float32)  # the pieces' values, in their order
        for a in (self.pieces, self.row_start, self.values):
            a.setflags(write=False)

    def product(self, half: np.ndarray, out: np.ndarray, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Periodised products, as :meth:`_AliasFilter.product`, from half spectra.

        Parameters
        ----------
        half : numpy.ndarray
            C-contiguous complex64 ``(P, m, n // 2 + 1)``, ``rfft2`` spectra of real arrays.
        out : numpy.ndarray
            C-contiguous complex64 ``(P, t1 - t0, m/k, n/k)``, overwritten and returned.
        """
        t1 = self.n_filters if t1 is None else t1
        P = half.shape[0]
        _kernels.periodised_product(
            half.view(np.float32).reshape(P, half.shape[1], -1),
            self.pieces,
            self.row_start,
            self.values,
            t0,
            t1,
            out.view(np.float32).reshape(P, t1 - t0, self.out_shape[0], -1),
        )
        return out


def _resolve_kernels(kernels: str) -> str:
    """``"compiled"`` or ``"numpy"`` for a ``kernels`` argument of :class:`Scattering`."""
    if kernels not in ("auto", "compiled", "numpy"):
        raise MelcnnError(f"unknown scattering kernels {kernels!r}; expected auto, compiled or numpy")
    if kernels == "compiled" and _kernels is None:
        raise MelcnnError(
            "the compiled scattering kernels are not built (melcnn was installed without a C compiler); "
            "reinstall melcnn where one is available, or use kernels='numpy'"
        )
    return "compiled" if kernels == "compiled" or (kernels == "auto" and _kernels is not None) else "numpy"


def _orientation_groups(used: np.ndarray) -> tuple[list[tuple[int, int, int, int]], np.ndarray]:
    """Split filters into two runs of orientations whose alias blocks form two overlapping slices.

    Parameters
    ----------
    used : numpy.ndarray
        bool ``(T, C)``: filter ``t`` has values above ``_ALIAS_RTOL`` in block ``c``.

    Returns
    -------
    groups : list of (t0, t1, c0, c1)
        Filters ``t0 <= t < t1`` use the blocks ``c0 <= c < c1`` of the new order (one group if a
        split saves nothing).
    order : numpy.ndarray
        The blocks in their new order (first group only, both groups, second group only); blocks no
        filter uses are left out.
    """
    T = used.shape[0]
    anywhere = np.flatnonzero(used.any(axis=0))  # blocks no filter uses are dropped
    best = (T * len(anywhere), 0)
    for split in range(1, T):
        cost = split * used[:split].any(axis=0).sum() + (T - split) * used[split:].any(axis=0).sum()
        if cost < best[0]:
            best = (int(cost), split)
    split = best[1]
    if split == 0:
        return [(0, T, 0, len(anywhere))], anywhere
    first, second = used[:split].any(axis=0), used[split:].any(axis=0)
    parts = [np.flatnonzero(first & ~second), np.flatnonzero(first & second), np.flatnonzero(~first & second)]
    order = np.concatenate(parts)
    return [(0, split, 0, len(parts[0]) + len(parts[1])), (split, T, len(parts[0]), len(order))], order


def _modulus_lowpass(
    u: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]], compiled: bool, store: np.ndarray | None = None
) -> np.ndarray:
    """Low-pass of ``|u|`` (complex64 ``(..., m, n)``), storing ``|u|`` into ``store`` if given.

    With ``compiled`` (the engine's ``kernels == "compiled"``) the compiled kernel forms ``|u| @ B``
    row by row without writing ``|u|`` (unless asked to), then ``A @`` that; NumPy writes ``|u|`` and
    applies :func:`_apply_lowpass`.
    """
    if not compiled or len(ops) != 1:
        return _apply_lowpass(np.abs(u, out=store), ops)
    a, b = ops[0]
    lead, (m, n) = u.shape[:-2], u.shape[-2:]
    z = np.empty((*lead, m, b.shape[1]), np.float32)
    _kernels.abs_pool(
        u.view(np.float32).reshape(-1, m, 2 * n),
        np.ascontiguousarray(b.T),
        z.reshape(-1, m, b.shape[1]),
        None if store is None else store.reshape(-1, m, n),
    )
    return np.matmul(a, z)
