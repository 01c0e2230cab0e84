"""Kymatio 0.3.0's 2-D Morlet filter bank, built bit for bit as Kymatio builds it, in 0.35 s.

:func:`kymatio.scattering2d.filter_bank.filter_bank` takes 12-16 s for the 288 x 288 bank that
melcnn's ``Scattering2D(J=4, L=8)`` needs, and most of that is not arithmetic: its
``periodize_filter_fft`` adds the aliases of every filter value in a four-deep Python loop, and
its ``gabor_2d`` evaluates a complex exponential on 25 shifted copies of the whole grid although
the Gaussian envelope makes most of those values far too small to change a float32 sum.

This module performs the same floating-point operations, in the same order, on the values that can
change the result, and skips only additions that provably cannot:

* the periodisation adds the same float32 aliases in the same order, as whole-array additions
  instead of one scalar at a time (each output value sees the identical sequence of float32 adds);
* ``gabor_2d`` accumulates ``exp(arg)`` (complex128) into a complex64 array, offset by offset.
  Where the real part of ``arg`` is below ``_NEGLIGIBLE_LOG`` (``|exp(arg)| < 2**-152``) the term is
  smaller than half the smallest float32 subnormal, so adding it (in complex128, then rounding to
  complex64) gives back the accumulator exactly, whatever its value: those terms are not computed.
  Every other term is computed with the same expression on the same operands as Kymatio's. Whole
  shifted grids are skipped when a bound (the quadratic form's smallest eigenvalue times the
  squared distance of the grid's nearest point) shows that all their terms are that small.

``tests/test_scattering.py`` checks that the arrays are identical to Kymatio's (``==``, not a
tolerance) for the production bank and small ones.
"""

from __future__ import annotations

import numpy as np

#: exp(x) < 2**-152 for x below this: a term that cannot change a float32 (complex64) sum
_NEGLIGIBLE_LOG = -152 * np.log(2.0) - 1.0
#: a shifted grid is skipped whole only when its largest term is below _NEGLIGIBLE_LOG by this much more
#: (rounding of the quadratic form is ~1e-13 of it; the eigenvalue bound is cut by 1e-6)
_MARGIN = 10.0


def filter_bank(M: int, N: int, J: int, L: int = 8) -> dict[str, np.ndarray]:
    """The arrays of ``kymatio.scattering2d.filter_bank.filter_bank(M, N, J, L)`` (Kymatio 0.3.0).

    Returns
    -------
    dict of str to numpy.ndarray
        float32 ``phi_{res}`` for ``res < J`` and ``psi_{j}_{theta}_{res}`` for
        ``res < min(j + 1, max(J - 1, 1))``, each of shape ``(M >> res, N >> res)``: Kymatio's
        ``filters["phi"]["levels"][res]`` and ``filters["psi"][j * L + theta]["levels"][res]``.
    """
    from scipy.fft import fft2

    grids = _Grids(M, N)
    out: dict[str, np.ndarray] = {}
    for j in range(J):
        for theta in range(L):
            psi = _morlet_2d(
                grids, 0.8 * 2**j, (int(L - L / 2 - 1) - theta) * np.pi / L, 3.0 / 4.0 * np.pi / 2**j, 4.0 / L
            )
            fourier = np.real(fft2(psi))
            for res in range(min(j + 1, max(J - 1, 1))):
                out[f"psi_{j}_{theta}_{res}"] = _periodize(fourier, res)
    phi = np.real(fft2(_gabor_2d(grids, 0.8 * 2 ** (J - 1), 0, 0)))
    for res in range(J):
        out[f"phi_{res}"] = _periodize(phi, res)
    return out


def _periodize(x: np.ndarray, res: int) -> np.ndarray:
    """Kymatio's ``periodize_filter_fft``: the same float32 additions, a whole block at a time."""
    M, N = x.shape
    mask = np.ones(x.shape, np.float32)
    len_x = int(M * (1 - 2 ** (-res)))
    start_x = int(M * 2 ** (-res - 1))
    len_y = int(N * (1 - 2 ** (-res)))
    start_y = int(N * 2 ** (-res - 1))
    mask[start_x : start_x + len_x, :] = 0
    mask[:, start_y : start_y + len_y] = 0
    x = np.multiply(x, mask)
    m, n = int(M / 2**res), int(N / 2**res)
    crop = np.zeros((M // 2**res, N // 2**res), x.dtype)
    for i in range(int(2**res)):  # Kymatio's order: crop[k, l] += x[k + i m, l + j n] for i, then j
        for j in range(int(2**res)):
            crop += x[i * m : i * m + m, j * n : j * n + n]
    return crop


class _Grids:
    """The integer grids Kymatio's ``gabor_2d`` builds for each of its 25 offsets, each built once."""

    def __init__(self, M: int, N: int):
        self.M, self.N = M, N
        self._grids: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self.nearest_sq: dict[tuple[int, int], int] = {}  # squared distance of each grid's nearest point to 0
        for ex in (-2, -1, 0, 1, 2):
            for ey in (-2, -1, 0, 1, 2):
                self.nearest_sq[ex, ey] = _nearest(ex * M, ex * M + M - 1) ** 2 + _nearest(ey * N, ey * N + N - 1) ** 2

    def grid(self, ex: int, ey: int) -> tuple[np.ndarray, ...]:
        """Kymatio's ``np.mgrid`` for offset ``(ex, ey)`` and its products ``xx, yy, xx*xx, xx*yy, yy*yy``."""
        if (ex, ey) not in self._grids:
            M, N = self.M, self.N
            xx, yy = np.mgrid[ex * M : M + ex * M, ey * N : N + ey * N]
            self._grids[ex, ey] = (xx, yy, np.multiply(xx, xx), np.multiply(xx, yy), np.multiply(yy, yy))
        return self._grids[ex, ey]


def _nearest(lo: int, hi: int) -> int:
    """Distance from 0 to the nearest integer of ``[lo, hi]``."""
    return 0 if lo <= 0 <= hi else min(abs(lo), abs(hi))


def _gabor_2d(g: _Grids, sigma: float, theta: float, xi: float, slant: float = 1.0) -> np.ndarray:
    """Kymatio's ``gabor_2d(M, N, sigma, theta, xi, slant)`` (offset 0), skipping negligible terms."""
    gab = np.zeros((g.M, g.N), np.complex64)
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    R_inv = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]], np.float32)
    D = np.array([[1, 0], [0, slant * slant]])
    curv = np.dot(R, np.dot(D, R_inv)) / (2 * sigma * sigma)
    # -real(arg) = u^T C u >= lam * |u|^2 (lam: C's smallest eigenvalue), so a shifted grid whose
    # nearest point is farther than sqrt(bound / lam) from the origin holds only negligible terms
    sym = 0.5 * (curv + curv.T)
    lam = float(np.linalg.eigvalsh(sym)[0]) * (1 - 1e-6)
    bound = -_NEGLIGIBLE_LOG + _MARGIN
    flat = gab.reshape(-1)
    for ex in (-2, -1, 0, 1, 2):
        for ey in (-2, -1, 0, 1, 2):
            if lam > 0 and lam * g.nearest_sq[ex, ey] > bound:
                continue
            xx, yy, x2, xy, y2 = g.grid(ex, ey)
            real = -(curv[0, 0] * x2 + (curv[0, 1] + curv[1, 0]) * xy + curv[1, 1] * y2)
            keep = np.flatnonzero(real.reshape(-1) >= _NEGLIGIBLE_LOG)
            if keep.size == 0:
                continue
            xs, ys = xx.reshape(-1)[keep], yy.reshape(-1)[keep]
            arg = real.reshape(-1)[keep] + 1.0j * (xs * xi * np.cos(theta) + ys * xi * np.sin(theta))
            part = flat[keep]
            part += np.exp(arg)
            flat[keep] = part
    norm_factor = 2 * 3.1415 * sigma * sigma / slant
    gab /= norm_factor
    return gab


def _morlet_2d(g: _Grids, sigma: float, theta: float, xi: float, slant: float) -> np.ndarray:
    """Kymatio's ``morlet_2d`` (offset 0)."""
    wv = _gabor_2d(g, sigma, theta, xi, slant)
    wv_modulus = _gabor_2d(g, sigma, theta, 0, slant)
    K = np.sum(wv) / np.sum(wv_modulus)
    return wv - K * wv_modulus
