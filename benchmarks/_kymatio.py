"""Kymatio 0.3.0's own ``ScatteringTorch2D``, built from melcnn's cached filter bank (the reference the
benchmarks compare against; needs torch and kymatio==0.3.0, e.g. ``pip install -e '.[test]'``).

Kymatio's constructor builds its filter bank in 12-16 s; melcnn's cache holds the same arrays (built
bit for bit), so this runs the constructor's other steps and registers those.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def kymatio_scattering(J: int = 4, L: int = 8, shape: tuple[int, int] = (256, 256), device: str = "cpu") -> Any:
    """``kymatio.torch.Scattering2D(J, shape, L)`` on ``device``, with the cached filters."""
    from kymatio.frontend.torch_frontend import ScatteringTorch
    from kymatio.scattering2d.frontend.base_frontend import ScatteringBase2D
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    from melcnn.scattering import load_filter_bank

    filters = load_filter_bank(J, L, shape)
    module = ScatteringTorch2D.__new__(ScatteringTorch2D)
    ScatteringTorch.__init__(module)
    ScatteringBase2D.__init__(
        module, J=J, shape=shape, L=L, max_order=2, pre_pad=False, backend="torch", out_type="array"
    )
    ScatteringBase2D._instantiate_backend(module, "kymatio.scattering2d.backend.")
    ScatteringBase2D.build(module)
    module.phi = {"levels": [np.array(filters[f"phi_{r}"]) for r in range(J)], "j": J}
    module.psi = [
        {
            "levels": [np.array(filters[f"psi_{j}_{t}_{r}"]) for r in range(min(j + 1, max(J - 1, 1)))],
            "j": j,
            "theta": t,
        }
        for j in range(J)
        for t in range(L)
    ]
    module.register_filters()
    return module.to(device)


def run(module: Any, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Coefficients of float32 images ``x`` ``(n, H, W)``, as NumPy."""
    import torch

    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)).cpu().numpy()
