"""A Triton kernel for the torch engine's periodised products on a GPU (:class:`.engine_torch._Periodised`).

The product at scale ratio ``k > 1`` sums, at each output frequency, the spectra's values in ``C``
alias blocks times real filter values. Done with torch ops it is a gather (a copy of the kept blocks)
followed by a complex batched matrix product whose matrices are tiny (``C`` <= 11 by ``T`` = 8
filters); on an H200 the two took about 40 % of a transform (profiled: 3 ms of gather and 9 ms of
products per 256 images, against 12 ms of FFTs). This kernel reads the blocks straight from the
spectra (one 8-byte load per complex value) and writes the frequency-major result the inverse FFT
reads, once. Measured on an H200 (``benchmarks/bench_gpu.py``): 5.4 -> 3.9 ms for the largest
product, 8,740 -> 10,100 chunks/s for the whole transform at batch 1024, the same coefficients.

Used by the engine when the device is CUDA and Triton is installed (it comes with CUDA builds of
torch); elsewhere the engine keeps its torch ops, which compute the same sums. The tests run the
kernel on the CPU with Triton's interpreter (``TRITON_INTERPRET=1``), inside the whole transform,
against the NumPy engine.
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

#: tile of one program: output frequencies x spectra (all ``T`` filters of each), and its warps; the
#: fastest of 12 tilings and launch orders tried on an H200 (docs/performance.md)
BLOCK_F = 8
BLOCK_P = 16
NUM_WARPS = 2


@triton.jit
def _periodised_kernel(
    spec_ptr,  # float32 view of complex64 spectra (P, m, n, 2): re, im interleaved, any strides but the last
    h_ptr,  # float32 filters (F, C, T): at each output frequency, each kept block's value of each filter
    rows_ptr,  # int32 (C,): the kept blocks' row index a (0 <= a < k)
    cols_ptr,  # int32 (C,): their column index b
    out_ptr,  # float32 view of complex64 output (F, P, T, 2)
    P,
    s_p,
    s_m,
    s_n,
    m2,
    n2,
    F,
    C: tl.constexpr,
    T: tl.constexpr,
    BLOCK_F: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid_p, pid_f = tl.program_id(0), tl.program_id(1)  # consecutive programs: neighbouring spectra
    f = pid_f * BLOCK_F + tl.arange(0, BLOCK_F)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    t = tl.arange(0, T)
    ri = tl.arange(0, 2)
    f_ok = f < F
    p_ok = p < P
    fr = f // n2
    fc = f % n2
    acc_re = tl.zeros((BLOCK_F, BLOCK_P, T), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_F, BLOCK_P, T), dtype=tl.float32)
    in_ok = (f_ok[:, None] & p_ok[None, :])[:, :, None] & (ri[None, None, :] < 2)
    p_off = p.to(tl.int64) * s_p
    for c in tl.static_range(C):
        a = tl.load(rows_ptr + c)
        b = tl.load(cols_ptr + c)
        pos = (a * m2 + fr) * s_m + (b * n2 + fc) * s_n  # (BLOCK_F,): the block's value at each output frequency
        idx = p_off[None, :, None] + pos[:, None, None] + ri[None, None, :]  # (BLOCK_F, BLOCK_P, 2), in floats
        x_re, x_im = tl.split(tl.load(spec_ptr + idx, mask=in_ok, other=0.0))  # one 8-byte load per value
        hv = tl.load(h_ptr + (f[:, None] * C + c) * T + t[None, :], mask=f_ok[:, None], other=0.0)  # (BF, T)
        acc_re += x_re[:, :, None] * hv[:, None, :]
        acc_im += x_im[:, :, None] * hv[:, None, :]
    fp = f[:, None, None, None].to(tl.int64) * P + p[None, :, None, None]
    out_idx = (fp * T + t[None, None, :, None]) * 2 + ri[None, None, None, :]  # (BLOCK_F, BLOCK_P, T, 2)
    pf_ok = f_ok[:, None, None, None] & p_ok[None, :, None, None]
    out_ok = pf_ok & (t[None, None, :, None] < T) & (ri[None, None, None, :] < 2)
    tl.store(out_ptr + out_idx, tl.join(acc_re, acc_im), mask=out_ok)


def periodised_product(spec: Any, h: Any, rows: Any, cols: Any, k: int) -> Any:
    """``(m/k, n/k, P, T)`` complex64: at each output frequency ``(p2, q2)`` and filter ``t``, the sum over
    the kept blocks ``c`` of ``spec[:, rows[c] * m/k + p2, cols[c] * n/k + q2] * h[p2 * n/k + q2, c, t]``.

    ``spec``: complex64 ``(P, m, n)``, any strides; ``h``: float32 ``(m/k * n/k, C, T)``, contiguous;
    ``rows``/``cols``: int32 ``(C,)``; all on the same device.
    """
    import torch

    P, m, n = spec.shape
    F, C, T = h.shape
    m2, n2 = m // k, n // k
    out = torch.empty((m2, n2, P, T), dtype=torch.complex64, device=spec.device)
    grid = (triton.cdiv(P, BLOCK_P), triton.cdiv(F, BLOCK_F))
    spec_f = torch.view_as_real(spec)  # strides in floats
    _periodised_kernel[grid](
        spec_f,
        h,
        rows,
        cols,
        torch.view_as_real(out),
        P,
        spec_f.stride(0),
        spec_f.stride(1),
        spec_f.stride(2),
        m2,
        n2,
        F,
        C=C,
        T=T,
        BLOCK_F=BLOCK_F,
        BLOCK_P=BLOCK_P,
        num_warps=NUM_WARPS,
    )
    return out
