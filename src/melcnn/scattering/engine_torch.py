"""The batched torch scattering engine (``device="cuda"``, or ``"cpu-torch"`` to check it on the CPU).

The NumPy engine's mathematics (:mod:`.engine_numpy`), written as whole-batch tensor operations:
every step handles all images of a call and all filters of a scale at once, so a GPU sees a few
large kernels per scale instead of thousands of small ones. Per call of ``B`` images:

1. reflect-pad to ``(M, N)`` (Kymatio's rule); order 0 is the low-pass of the padded images;
   ``x0 = fft2(padded)``;
2. for each scale ``j1``: the periodised products of ``x0`` with the ``L`` filters ``psi_{j1}``
   (``B x L`` spectra of ``(M, N) / 2**j1``), ``ifft2``, modulus; order 1 is their low-pass;
3. unless ``j1`` is the last scale: ``g1 = fft2(|u1|)`` and, for each ``j2 > j1``, the periodised
   products of the ``B x L`` spectra with the ``L`` filters ``psi_{j2}`` at resolution ``j1``
   (``B x L x L`` spectra), ``ifft2``, modulus, low-pass.

As in the NumPy engine: FFTs are unnormalised both ways and Kymatio's scaling (the mean over
aliases and the inverse transform's ``1/size``) is folded into the filters; a periodised product
sums the ``k x k`` alias blocks of ``spectrum x filter``, leaving out the blocks where every filter
value is below ``_ALIAS_RTOL`` of the peak (products below float32 rounding); the low-pass with
Kymatio's separable phi, its subsampling and unpadding is the real map ``A @ x @ B``
(:func:`.products._lowpass_operator`), with the mean over columns folded into ``B`` for
:meth:`~melcnn.scattering.Scattering.pooled`. A periodised product is one batched matrix product
over the output frequencies (at each, the spectra's values in the kept alias blocks times the
filters' values there), whose frequency-major result the inverse FFT reads with strides
(:class:`_Periodised`).

Everything is float32/complex64. Matrix products run at full float32 precision whatever torch's
``set_float32_matmul_precision`` says (TF32 would leave errors of about 1e-3): see
:func:`_float32_matmul`. Neither Kymatio nor anything beyond torch is needed; torch is imported when
the engine is built, never by ``import melcnn``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import MelcnnError
from .filters import padded_shape
from .products import _ALIAS_RTOL, _lowpass_operator

#: images per engine call on a GPU: large enough to keep it busy, about 8 GB of working memory
#: (about 30 MB per image at the peak, the finest scale's second order)
CUDA_IMAGES_PER_CALL = 256
#: images per engine call of the torch engine on the CPU (tests and reference runs)
CPU_IMAGES_PER_CALL = 16

_precision_lock = threading.Lock()
#: engine calls in progress, and torch's matmul precision before the first of them raised it
_precision_state: dict[str, Any] = {"calls": 0, "previous": None}


@contextlib.contextmanager
def _float32_matmul(torch: Any) -> Iterator[None]:
    """Full float32 matrix products inside (torch's ``"highest"`` precision), the caller's setting restored after.

    ``torch.set_float32_matmul_precision("high")`` (TF32 on NVIDIA GPUs) is common in training
    code; it would leave the coefficients about 1e-3 off. The setting is process-wide: while an
    engine call runs, other threads' float32 products are exact too (slower, never less precise);
    the last of concurrent calls restores the setting the first one found.
    """
    with _precision_lock:
        if _precision_state["calls"] == 0:
            previous = torch.get_float32_matmul_precision()
            _precision_state["previous"] = previous
            if previous != "highest":
                torch.set_float32_matmul_precision("highest")
        _precision_state["calls"] += 1
    try:
        yield
    finally:
        with _precision_lock:
            _precision_state["calls"] -= 1
            if _precision_state["calls"] == 0 and _precision_state["previous"] != "highest":
                torch.set_float32_matmul_precision(_precision_state["previous"])


class _Periodised:
    """``T`` real filters ``(T, m, n)`` ready for batched periodised products with complex spectra.

    ``__call__`` maps spectra ``(P, m, n)`` to the spatial images ``ifft2`` (unnormalised) of
    ``sum_{a,b} spec[., a*m/k + p, b*n/k + q] * h[t, a*m/k + p, b*n/k + q]``, ``(P, T, m/k, n/k)``
    (the filters carry the transforms' scaling).

    For ``k = 1`` the product is a plain broadcast product. For ``k > 1`` it is one complex ``bmm``
    batched over the ``m/k * n/k`` output frequencies: at each, the spectra's values in the ``C``
    kept alias blocks ``(P, C)`` times the filters' ``(C, T)``; with ``triton``, the same sums by the
    fused kernel of :mod:`._triton`. Its result, laid out frequency-major ``(m/k, n/k, P, T)``, goes
    to the inverse FFT as it is: the FFT reads it with strides and writes its images ``(P, T)``-major,
    so no transposing copy is made.
    """

    def __init__(self, h: np.ndarray, k: int, scale: float, torch: Any, device: Any, triton: bool = False):
        h = h * np.float32(scale)  # as the NumPy engine's filters: float32 times the float32 scale
        t, m, n = h.shape
        self.k, self.n_filters, self.out_shape = k, t, (m // k, n // k)
        self.triton = triton and k > 1  # k = 1 is a broadcast product either way
        m2, n2 = self.out_shape
        if k == 1:
            self.h = torch.from_numpy(np.ascontiguousarray(h, np.float32)).to(device)
            return
        blocks = h.reshape(t, k, m2, k, n2)
        mag = np.abs(blocks.astype(np.float64)).max(axis=(0, 2, 4))  # (k, k): largest value per alias block
        rows, cols = np.nonzero(mag > _ALIAS_RTOL * mag.max())
        self.rows = torch.from_numpy(rows.astype(np.int64)).to(device)
        self.cols = torch.from_numpy(cols.astype(np.int64)).to(device)
        # (m2 * n2, C, T): at each output frequency, the kept blocks' values of every filter (complex
        # for the complex bmm; its imaginary parts are zero)
        kept = blocks.transpose(2, 4, 1, 3, 0)[:, :, rows, cols].reshape(m2 * n2, len(rows), t)
        if self.triton:  # the Triton kernel's operands: real filters, int32 block indices
            self.h = torch.from_numpy(np.ascontiguousarray(kept, np.float32)).to(device)
            self.rows, self.cols = self.rows.to(torch.int32), self.cols.to(torch.int32)
            return
        self.h = torch.from_numpy(kept.astype(np.complex64)).to(device)

    def __call__(self, spec: Any) -> Any:
        import torch

        P, m, n = spec.shape
        if self.k == 1:
            return torch.fft.ifft2(spec[:, None] * self.h, norm="forward")
        k, (m2, n2), T = self.k, self.out_shape, self.n_filters
        if self.triton:
            from ._triton import periodised_product

            out = periodised_product(spec, self.h, self.rows, self.cols, k)
        else:
            # (P, k, m2, k, n2) -> (m2, n2, P, k, k) -> the kept blocks (m2, n2, P, C), gathered in one
            # copy (laid out, by torch's indexing, as (P, m2, n2, C)); then (m2 * n2, P, C), a view of
            # that layout: a strided batch of row-major matrices
            blocks = spec.view(P, k, m2, k, n2).permute(2, 4, 0, 1, 3)
            kept = blocks[..., self.rows, self.cols].reshape(m2 * n2, P, -1)
            out = torch.bmm(kept, self.h).view(m2, n2, P, T)
            del kept  # before the FFT allocates its output
        return torch.fft.ifft2(out, dim=(0, 1), norm="forward").permute(2, 3, 0, 1)


def _triton_installed() -> bool:
    """Whether Triton can be imported (it comes with CUDA builds of torch)."""
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def _modulus(u: Any) -> Any:
    """``|u|`` of a complex tensor, as ``torch.abs`` (a hypot) but in one pass: ``abs`` of a complex tensor
    writes a complex result and copies its real part out, twice the memory traffic."""
    import torch

    parts = torch.view_as_real(u)
    return torch.hypot(parts[..., 0], parts[..., 1])


class _TorchEngine:
    """Kymatio's ``scattering2d`` on torch tensors, batched over images and filters.

    Parameters
    ----------
    J, L, shape, filters
        As for :class:`~melcnn.scattering.engine_numpy._NumpyEngine` (the cached filter bank).
    device : {"cuda", "cpu"}
        Torch device of the computation.
    images_per_call : int, optional
        Most images transformed at once (the frontend splits larger batches); default
        :data:`CUDA_IMAGES_PER_CALL` on a GPU, :data:`CPU_IMAGES_PER_CALL` on the CPU.
    products : {"auto", "triton", "torch"}
        How the periodised products at ``k > 1`` run: ``"triton"``, the fused kernel of
        :mod:`._triton`; ``"torch"``, a gather and a batched matrix product; ``"auto"`` (default),
        Triton on a CUDA device when it is installed, torch otherwise. Same sums either way.
    """

    def __init__(
        self,
        J: int,
        L: int,
        shape: tuple[int, int],
        filters: dict[str, np.ndarray],
        device: str,
        images_per_call: int | None = None,
        products: str = "auto",
    ):
        try:
            import torch
        except ImportError as e:
            raise MelcnnError(
                f"device {device!r} needs PyTorch, which is not installed: pip install 'melcnn[gpu]', "
                "or use device='cpu'"
            ) from e
        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        if products not in ("auto", "triton", "torch"):
            raise ValueError(f"products must be 'auto', 'triton' or 'torch', not {products!r}")
        if products == "auto":
            products = "triton" if self.device.type == "cuda" and _triton_installed() else "torch"
        self.products = products
        triton = products == "triton"
        default = CUDA_IMAGES_PER_CALL if self.device.type == "cuda" else CPU_IMAGES_PER_CALL
        self.images_per_call = max(1, int(images_per_call or default))
        self.J, self.L, self.shape = J, L, shape
        self.padded = padded_shape(shape, J)
        M, N = self.padded
        H, W = shape
        self.pads = ((M - H) // 2, (M - H + 1) // 2, (N - W) // 2, (N - W + 1) // 2)
        self.out_spatial = (M // 2**J - 2, N // 2**J - 2)

        def tensor(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device)

        # low-pass at resolution j (input (M >> j, N >> j), subsampled by 2**(J - j)): sum over terms of A @ x @ B
        ops = [_lowpass_operator(filters[f"phi_{j}"], 2 ** (J - j)) for j in range(J)]
        self.lowpass = [[(tensor(a), tensor(b)) for a, b in terms] for terms in ops]
        self.lowpass_pooled = [[(tensor(a), tensor(b.mean(axis=1, keepdims=True))) for a, b in terms] for terms in ops]
        self.psi1 = [
            _Periodised(
                np.stack([filters[f"psi_{j}_{t}_0"] for t in range(L)]), 2**j, 1 / (M * N), torch, self.device, triton
            )
            for j in range(J)
        ]
        self.psi2 = {
            (j1, j2): _Periodised(
                np.stack([filters[f"psi_{j2}_{t}_{j1}"] for t in range(L)]),
                2 ** (j2 - j1),
                1 / ((M >> j1) * (N >> j1)),
                torch,
                self.device,
                triton,
            )
            for j1 in range(J)
            for j2 in range(j1 + 1, J)
        }
        self.n_channels = 1 + J * L + L * L * J * (J - 1) // 2

    def _pad(self, x: Any) -> Any:
        """Reflection padding as Kymatio's torch ``Pad`` (including its pad == size special case)."""
        torch = self.torch
        top, bottom, left, right = self.pads
        H, W = x.shape[-2:]
        rows_special, cols_special = top == H, left == W
        pad = (left - cols_special, right - cols_special, top - rows_special, bottom - rows_special)
        xp = torch.nn.functional.pad(x[:, None], pad, mode="reflect")[:, 0]
        if rows_special:
            xp = torch.cat([xp[:, 1:2], xp, xp[:, -2:-1]], dim=1)
        if cols_special:
            xp = torch.cat([xp[:, :, 1:2], xp, xp[:, :, -2:-1]], dim=2)
        return xp

    @staticmethod
    def _lowpass(x: Any, ops: list[tuple[Any, Any]]) -> Any:
        """``sum(A @ x @ B)`` over the last two axes: ``(..., m, n)`` -> ``(..., mo, no)``."""
        out = None
        for a, b in ops:
            # (..., m, no) -> (..., no, m) @ A.T -> (..., no, mo): one large product, A never broadcast
            term = (x @ b).transpose(-1, -2) @ a.T
            out = term if out is None else out + term
        assert out is not None
        return out.transpose(-1, -2)

    def transform(self, x: Any, pooled: bool = False) -> Any:
        """float32 tensor ``(B, H, W)`` on the engine's device -> ``(B, C, H', W')`` (``W' = 1`` if ``pooled``).

        Without :meth:`run`'s precision guard and inference mode: call that one."""
        torch = self.torch
        J, L = self.J, self.L
        B = x.shape[0]
        lowpass = self.lowpass_pooled if pooled else self.lowpass
        xp = self._pad(x)
        parts = [self._lowpass(xp, lowpass[0])[:, None]]  # order 0: (B, 1, H', W')
        x0 = torch.fft.fft2(xp)
        del xp
        second = []
        for j1 in range(J):
            u1 = self.psi1[j1](x0)  # (B, L, m1, n1)
            a1 = _modulus(u1)
            del u1
            parts.append(self._lowpass(a1, lowpass[j1]))  # order 1: (B, L, H', W')
            if j1 == J - 1:
                break
            m1, n1 = a1.shape[-2:]
            g1 = torch.fft.fft2(a1).reshape(B * L, m1, n1)
            del a1
            per_j2 = []
            for j2 in range(j1 + 1, J):
                u2 = self.psi2[j1, j2](g1)  # (B*L, L, m2, n2)
                s2 = self._lowpass(_modulus(u2), lowpass[j2])
                del u2
                per_j2.append(s2.reshape(B, L, L, *s2.shape[-2:]))
            del g1
            # Kymatio's order: theta1, then j2, then theta2
            second.append(torch.cat(per_j2, dim=2).reshape(B, -1, *per_j2[0].shape[-2:]))
        return torch.cat(parts[:1] + [torch.cat(parts[1:], dim=1)] + second, dim=1)

    def run(self, x: Any, pooled: bool = False) -> Any:
        """float32 tensor ``(B, H, W)`` on the engine's device -> ``(B, C, H', W')``, or ``(B, C, H')``
        averaged over columns if ``pooled``, on the device (for callers that keep their data there)."""
        torch = self.torch
        with torch.inference_mode(), _float32_matmul(torch):
            y = self.transform(x, pooled)
            return y[..., 0] if pooled else y

    def __call__(self, x: np.ndarray, pooled: bool = False) -> np.ndarray:
        """float32 ``(B, H, W)`` -> ``(B, C, H', W')``, or ``(B, C, H')`` averaged over columns if ``pooled``."""
        xt = self.torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
        return self.run(xt, pooled).cpu().numpy()

    def close(self) -> None:
        pass
