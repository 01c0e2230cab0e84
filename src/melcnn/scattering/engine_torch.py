"""The torch scattering engine (``device="cuda"`` or ``"cpu-torch"``): Kymatio's own
``ScatteringTorch2D``, given the cached filters instead of building them."""

from __future__ import annotations

import numpy as np

from ..errors import MelcnnError
from .filters import KYMATIO_VERSION


def _installed_kymatio_version() -> str | None:
    """Version of the installed Kymatio distribution, without importing it (None if absent)."""
    from importlib import metadata

    try:
        return metadata.version("kymatio")
    except metadata.PackageNotFoundError:
        return None


class _TorchEngine:
    """Kymatio's ``ScatteringTorch2D`` built from cached filters; torch is imported here only."""

    def __init__(self, J: int, L: int, shape: tuple[int, int], filters: dict[str, np.ndarray], device: str):
        try:
            import torch
        except ImportError as e:
            raise MelcnnError(
                f"device {device!r} needs PyTorch, which is not installed: pip install 'melcnn[gpu]', "
                "or use device='cpu'"
            ) from e
        found = _installed_kymatio_version()
        if found != KYMATIO_VERSION:
            raise MelcnnError(
                f"the torch backend needs kymatio=={KYMATIO_VERSION}, found {found}: pip install 'melcnn[gpu]'"
            )
        from kymatio.frontend.torch_frontend import ScatteringTorch
        from kymatio.scattering2d.frontend.base_frontend import ScatteringBase2D
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

        # ScatteringTorch2D.__init__ without create_filters (which would rebuild the bank for ~13 s):
        # the same steps as Kymatio 0.3.0's constructor, with our cached (identical) filters
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
        self.torch = torch
        self.device = torch.device("cuda" if device == "cuda" else "cpu")
        self.module = module.to(self.device)

    def __call__(self, x: np.ndarray, pooled: bool = False) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
            if pooled:
                y = y.mean(dim=-1)
        return y.cpu().numpy().astype(np.float32, copy=False)

    def close(self) -> None:
        pass
