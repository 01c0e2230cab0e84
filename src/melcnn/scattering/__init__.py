"""Fast 2-D scattering transform, numerically equal to Kymatio 0.3.0's ``Scattering2D``.

The classifier consumes Kymatio ``Scattering2D(J=4, L=8, shape=(256, 256))`` coefficients of the
mel-spectrogram image. Kymatio's torch frontend costs about 100 ms per image on two CPU cores,
builds its filter bank in 12-16 s per process and needs ``import torch`` (about 2 s). This module
computes the same transform (same reflection padding, Morlet filters, Fourier periodisation,
modulus, low-pass, unpadding and channel order) with NumPy and FFTW (through pyFFTW; :mod:`scipy.fft`
where pyFFTW is not installed):

* the filter bank is Kymatio's own, built bit for bit by :mod:`melcnn._filters` (0.35 s, where
  Kymatio's ``filter_bank`` takes 12-16 s) on a cache miss and cached on disk as a checksummed
  ``.npz`` (:func:`cache_dir`); a cache hit loads in milliseconds; neither imports Kymatio or torch;
* everything is float32/complex64, as in Kymatio's torch backend; FFTs are unnormalised both ways
  and Kymatio's ``1/size`` of the inverse transform is folded into the filters the forward spectra
  multiply (no extra pass); the modulus images are real, so their spectra come from real-input FFTs
  (half the work) completed by Hermitian symmetry;
* FFTW's measured plans (1.2-2x faster than scipy's pocketfft here; "patient" ones for the small
  transforms) run on per-task buffers; the planner's wisdom is cached beside the filter bank, so a
  new process does not plan them again (:class:`_Transforms`);
* products with the (real) wavelet filters fold in Kymatio's ``subsample_fourier`` (mean of the
  ``k x k`` aliases). Kymatio's Morlet filters are Gaussian bumps in Fourier: filter values below
  ``_ALIAS_RTOL`` (1e-6) of the filters' peak are left out. With the compiled kernels
  (:mod:`melcnn._kernels`, built by ``pip install`` where a C compiler exists) each product reads
  the ``rfft2`` half spectrum and multiplies only the runs of kept filter values, 3-48 % of them
  for ``k >= 2`` (:class:`_SparseFilter`), and the modulus is fused with the low-pass's column
  weights. Without them (``kernels="numpy"``), the spectrum's alias blocks are copied
  contiguously and summed against filters stored the same way, with each value duplicated to
  multiply the complex64 spectrum as float32 (re, im) pairs, skipping the blocks where every
  filter value is below the threshold (:class:`_AliasFilter`);
* the low-pass phi is separable (an isotropic Gaussian), so Kymatio's "multiply by phi, periodise,
  inverse FFT, take the real part, unpad" is a real linear map ``A @ x @ B`` applied to the modulus
  directly: no forward FFT of the last layer and no work on discarded border pixels; the column
  mean of :meth:`Scattering.pooled` folds into ``B``;
* the first-order paths are independent: each image's transform is cut into tasks of similar size
  (a few first-order paths each, a few MB of arrays) that the calling thread and a small pool drain
  from one queue (FFTW and NumPy release the GIL), with NumPy's OpenBLAS held to one thread
  meanwhile; :meth:`Scattering.submit` runs other work on the same threads.

The result equals Kymatio's to float32 rounding: the max abs difference is below 1e-6 of the max
abs coefficient (the tests require 1e-5).

``device="cuda"`` (and ``"cpu-torch"``, to test it without a GPU) runs the same mathematics in torch,
batched over images, filters and orientations (:mod:`.engine_torch`), importing torch only then;
it needs neither Kymatio nor anything else beyond torch.

Coefficient layout (Kymatio's): channel 0 is the order-0 low-pass; channels ``1 + j*L + theta`` are
order 1; then order 2 for every first-order path ``n1 = (j1, theta1)`` in that order and, inside it,
every ``n2 = (j2, theta2)`` with ``j2 > j1``. For ``J=4, L=8``: ``1 + 32 + 384 = 417`` channels on a
``16 x 16`` grid for a ``256 x 256`` input.

Layout (each step lives in one module; this package's namespace re-exports what callers import):

* :mod:`.filters`: Kymatio's padding rule, the filter bank and its on-disk cache (:func:`cache_dir`);
* :mod:`.fft`: FFT buffers and plans (pyFFTW, else :mod:`scipy.fft`) and FFTW's cached wisdom;
* :mod:`.products`: the low-pass operators and periodised products, and the compiled kernels
  (:mod:`melcnn._kernels`) that run them;
* :mod:`.engine_numpy`: the CPU engine (tasks, thread pool); :mod:`.engine_torch`: the batched torch
  engine for ``device="cuda"``;
* :mod:`.frontend`: :class:`Scattering`, :func:`get_scattering`, :func:`is_prepared`.
"""

from __future__ import annotations

# the names other modules and the tests import from melcnn.scattering (private ones too), re-exported
# ("X as X"); to patch one in a test, patch the module that reads it (e.g. products._kernels)
from .engine_numpy import _NumpyEngine as _NumpyEngine
from .engine_torch import _TorchEngine as _TorchEngine
from .fft import _hermitian_full as _hermitian_full
from .fft import _Transforms as _Transforms
from .fft import _wisdom_path as _wisdom_path
from .filters import CACHE_FORMAT_VERSION, cache_dir, load_filter_bank
from .filters import KYMATIO_VERSION as KYMATIO_VERSION
from .filters import _cache_path as _cache_path
from .filters import _check_params as _check_params
from .filters import _filter_bank_cached as _filter_bank_cached
from .filters import _read_cache as _read_cache
from .filters import _write_cache as _write_cache
from .filters import padded_shape as padded_shape
from .frontend import Scattering, get_scattering, is_prepared
from .frontend import _get_scattering as _get_scattering
from .products import _AliasFilter as _AliasFilter
from .products import _apply_lowpass as _apply_lowpass
from .products import _kernels as _kernels
from .products import _lowpass_operator as _lowpass_operator
from .products import _SparseFilter as _SparseFilter

__all__ = ["CACHE_FORMAT_VERSION", "Scattering", "cache_dir", "get_scattering", "is_prepared", "load_filter_bank"]
