"""What the command lines of melcnn share: exit statuses and option helpers (used by :mod:`melcnn.cli`
and :mod:`melcnn.training.cli`, so that neither imports the other's internals)."""

from __future__ import annotations

import argparse

from .registry import MODELS

EXIT_OK, EXIT_USAGE, EXIT_MEDIA, EXIT_MODEL = 0, 2, 3, 4

#: "v2, v3": the variants, for help texts
_VARIANTS = ", ".join(MODELS)
#: "V2 0, V3 1.5": each variant's default overlap in seconds, for help texts
_DEFAULT_OVERLAPS = ", ".join(f"{s.label} {s.default_overlap_s:g}" for s in MODELS.values())


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value
