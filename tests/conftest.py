"""Shared fixtures. Keep fixtures specific to one module in that module's test file."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator: tests never use the global RNG."""
    return np.random.default_rng(1234)
