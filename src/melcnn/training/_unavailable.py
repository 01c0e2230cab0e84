"""The error a spoof generator raises when a tool or package it needs is not installed.

Shared by :mod:`melcnn.training.vocoders` and :mod:`melcnn.training.tts`; importers use
:class:`melcnn.training.generators.GeneratorUnavailable` (the same class, re-exported).
"""


class GeneratorUnavailable(RuntimeError):
    """A tool or package a generator needs is not installed."""
