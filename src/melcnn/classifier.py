"""The specification's MLP head and its checkpoint format.

Input: the scattering coefficients of one chunk image averaged over time, ``(n_channels, n_rows)``
(417 x 16 for J=4, L=8 on 256x256; with ``time_stats`` beyond the mean, the standard deviation and/or
maximum over time follow as further channel blocks, :func:`melcnn.features.pool_time`), pooled
further into ``freq_bands`` bands along frequency, then
``log(x + log_eps)`` and standardised with the training set's mean and std (both stored in the
checkpoint), flattened, and passed through the specification's network::

    Linear(n_in -> 1024) -> ReLU -> BatchNorm1d -> Dropout(0.4) ->
    Linear(1024 -> 512)  -> ReLU -> BatchNorm1d -> Dropout(0.4) ->
    Linear(512 -> 128)   -> ReLU -> BatchNorm1d -> Dropout(0.3) ->
    Linear(128 -> 1)

The raw 417x16x16 map flattened would need 110 M parameters; pooling keeps the head at the
specification's ~1-2 M (417 x 2 bands: 1.45 M).

A checkpoint may hold further heads on other inputs (``extra_heads``: other bands, other statistics over
time, smaller hidden layers); its logit is then the mean of all heads' logits, calibrated as one. Heads
that see the scattering map differently err on different files, so their mean does better on held-out
sources and generators than either alone (by about a point on the cross-validation, docs/training.md).

A checkpoint is a directory with ``model.safetensors`` (weights, never a pickle) and
``config.json`` (every pipeline setting, the calibration, the threshold, training summary and
measured metrics). Inference here runs in NumPy; training builds the same network in torch with
:func:`torch_head` and saves it with :func:`save_checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .config import TIME_STATS, FeatureConfig
from .errors import CheckpointError
from .registry import ModelSpec, spec_for

FORMAT = "melcnn-checkpoint"
FORMAT_VERSION = 1  # a checkpoint of one head
ENSEMBLE_FORMAT_VERSION = 2  # a checkpoint of several heads (``extra_heads``), which readers of 1 must refuse
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_BN_EPS = 1e-5  # torch.nn.BatchNorm1d default


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the classifier head."""

    n_channels: int = 417  # scattering channels, 1 + J*L + L*L*J*(J-1)/2
    n_rows: int = 16  # frequency rows of the scattering map (image_size / 2**J)
    freq_bands: int = 2  # rows are averaged into this many frequency bands
    hidden: tuple[int, ...] = (1024, 512, 128)
    dropout: tuple[float, ...] = (0.4, 0.4, 0.3)
    log_eps: float = 1e-6  # features enter as log(x + log_eps)
    output: str = "fake"  # the logit is of P(fake); "real" means P(real), as the spec's V2
    time_stats: tuple[str, ...] = ("mean",)  # statistics over time of each coefficient (TIME_STATS)

    def __post_init__(self) -> None:
        stats = tuple(self.time_stats)
        if not stats or len(set(stats)) != len(stats) or not set(stats) <= set(TIME_STATS):
            raise CheckpointError(f"time_stats must be distinct names among {', '.join(TIME_STATS)}, got {list(stats)}")
        object.__setattr__(self, "time_stats", stats)

    @property
    def n_inputs(self) -> int:
        return self.n_channels * len(self.time_stats) * self.freq_bands

    def n_parameters(self) -> int:
        sizes = [self.n_inputs, *self.hidden, 1]
        linear = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        return linear + 2 * sum(self.hidden)  # + BatchNorm affine

    def with_hidden(self, hidden: tuple[int, ...]) -> HeadConfig:
        """The same head with other hidden layers, each with the dropout of the specification's layer of
        the same depth from the end (``(256, 128)`` -> dropout 0.4, 0.3)."""
        if not hidden or len(hidden) > len(self.dropout) or min(hidden) < 1:
            raise ValueError(f"hidden: 1 to {len(self.dropout)} positive layer sizes, got {list(hidden)}")
        return replace(self, hidden=tuple(hidden), dropout=self.dropout[len(self.dropout) - len(hidden) :])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("hidden", "dropout", "time_stats"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadConfig:
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", cls.hidden))
        d["dropout"] = tuple(d.get("dropout", cls.dropout))
        d["time_stats"] = tuple(d.get("time_stats", cls.time_stats))
        return cls(**d)


def pool_bands(pooled: np.ndarray, freq_bands: int) -> np.ndarray:
    """Average the frequency rows of time-pooled scattering maps into ``freq_bands`` bands.

    Parameters
    ----------
    pooled : np.ndarray [shape=(n, n_channels, n_rows)]

    Returns
    -------
    np.ndarray [shape=(n, n_channels * freq_bands)], channel-major
    """
    n, c, rows = pooled.shape
    if rows % freq_bands:
        raise CheckpointError(f"{rows} frequency rows cannot be split into {freq_bands} equal bands")
    return pooled.reshape(n, c, freq_bands, rows // freq_bands).mean(axis=-1).reshape(n, c * freq_bands)


def select_stats(pooled: np.ndarray, have: tuple[str, ...], want: tuple[str, ...]) -> np.ndarray:
    """The channel blocks of the time statistics ``want`` (in that order) from time-pooled maps
    ``(n, C * len(have), R)`` that hold the blocks of ``have``."""
    if tuple(want) == tuple(have):
        return pooled
    missing = set(want) - set(have)
    if missing:
        raise CheckpointError(f"the features hold the time statistics {list(have)}, not {sorted(missing)}")
    c = pooled.shape[1] // len(have)
    return np.concatenate([pooled[:, have.index(s) * c : (have.index(s) + 1) * c] for s in want], axis=1)


def time_stats_of(heads: tuple[HeadConfig, ...]) -> tuple[str, ...]:
    """Statistics over time the features must hold for all ``heads``: the first head's, in its order,
    then any other a further head needs (:func:`melcnn.features.chunk_features`' ``time_stats``)."""
    return tuple(dict.fromkeys(s for h in heads for s in h.time_stats))


def member_prefix(i: int) -> str:
    """Prefix of the tensors of a checkpoint's ``i``-th head: none for the first (so a one-head
    checkpoint's tensors keep their names), ``heads.<i>.`` for the others."""
    return "" if i == 0 else f"heads.{i}."


def join_members(weights: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One checkpoint's tensors from each head's own (as :func:`weights_from_torch` gives them)."""
    return {member_prefix(i) + k: v for i, w in enumerate(weights) for k, v in w.items()}


def head_inputs(pooled: np.ndarray, head: HeadConfig) -> np.ndarray:
    """Unstandardised head inputs: band pooling and log. ``(n, C, R) -> (n, C * bands)``.

    Scattering coefficients are non-negative, but where the true value is 0 (a band the recording
    leaves digitally empty, such as everything above 4 kHz of a clean 8 kHz file) the float32 FFTs
    leave round-off of either sign, up to about 1e-5, larger than ``log_eps``: the bands are clipped at 0
    before the log, which changes no coefficient that is not round-off.
    """
    bands = pool_bands(np.asarray(pooled, dtype=np.float32), head.freq_bands)  # a new array: changed in place
    np.maximum(bands, np.float32(0.0), out=bands)
    bands += np.float32(head.log_eps)
    return np.log(bands, out=bands)


@dataclass
class Checkpoint:
    """A loaded checkpoint: configuration plus NumPy weights."""

    name: str
    variant: str  # a key of melcnn.registry.MODELS: the ModelSpec this checkpoint is trained for
    version: str
    features: FeatureConfig
    head: HeadConfig
    weights: dict[str, np.ndarray]
    threshold: float = 0.5
    calibration: dict[str, Any] = field(default_factory=lambda: {"scale": 1.0, "bias": 0.0})
    extra: dict[str, Any] = field(default_factory=dict)  # training summary, metrics, ...
    path: Path | None = None
    sha256: str | None = None
    extra_heads: tuple[HeadConfig, ...] = ()  # further heads on other inputs; the logit is the mean of all

    @property
    def heads(self) -> tuple[HeadConfig, ...]:
        """Every head: ``head`` first, then ``extra_heads``."""
        return (self.head, *self.extra_heads)

    @property
    def time_stats(self) -> tuple[str, ...]:
        """Statistics over time the features must hold for every head (:func:`time_stats_of`)."""
        return time_stats_of(self.heads)

    def n_parameters(self) -> int:
        """Trainable parameters of all heads together."""
        return sum(h.n_parameters() for h in self.heads)

    @property
    def spec(self) -> ModelSpec:
        """The variant's :class:`melcnn.registry.ModelSpec` (chunking, report sections, picture)."""
        return spec_for(self.variant)

    def config_dict(self) -> dict[str, Any]:
        ensemble = {"extra_heads": [h.to_dict() for h in self.extra_heads]} if self.extra_heads else {}
        return {
            "format": FORMAT,
            "format_version": ENSEMBLE_FORMAT_VERSION if self.extra_heads else FORMAT_VERSION,
            "name": self.name,
            "variant": self.variant,
            "version": self.version,
            "features": self.features.to_dict(),
            "chunking": {"overlap_s": self.spec.default_overlap_s},  # recorded for readers; the spec rules
            "head": self.head.to_dict(),
            **ensemble,
            "threshold": self.threshold,
            "calibration": self.calibration,
            **self.extra,
        }

    def member_logits(self, pooled: np.ndarray) -> np.ndarray:
        """Each head's raw output (eval mode) ``(n, C, R) -> (n_heads, n)``, as a P(fake) logit when the
        heads' ``output`` is "fake" (``C`` = channels x :attr:`time_stats`, as
        :func:`melcnn.features.chunk_features` returns them)."""
        have = self.time_stats
        return np.stack(
            [
                _mlp_logits(select_stats(pooled, have, h.time_stats), h, self.weights, member_prefix(i))
                for i, h in enumerate(self.heads)
            ]
        )

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """Raw output (eval mode) for time-pooled scattering maps ``(n, C, R) -> (n,)``: the head's, or
        the mean of the heads' logits (``C`` = channels x :attr:`time_stats`, as
        :func:`melcnn.features.chunk_features` returns them)."""
        if not self.extra_heads:
            return _mlp_logits(pooled, self.head, self.weights, "")
        return self.member_logits(pooled).mean(axis=0)

    def fake_scores(self, pooled: np.ndarray) -> np.ndarray:
        """Calibrated P(fake) per chunk in [0, 1] ``(n, C, R) -> (n,)``."""
        return calibrated_scores(self.logits(pooled), head=self.head, calibration=self.calibration)


def _mlp_logits(pooled: np.ndarray, head: HeadConfig, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """One head's forward pass in NumPy (eval mode: batch norm with its running statistics)."""
    x = (head_inputs(pooled, head) - w[prefix + "feature_mean"]) / w[prefix + "feature_std"]
    for i in range(len(head.hidden)):
        lin, bn = f"{prefix}net.{1 + 4 * i}.", f"{prefix}net.{3 + 4 * i}."
        x = np.maximum(x @ w[lin + "weight"].T + w[lin + "bias"], 0.0)
        scale = w[bn + "weight"] / np.sqrt(w[bn + "running_var"] + _BN_EPS)
        x = (x - w[bn + "running_mean"]) * scale + w[bn + "bias"]
    last = f"{prefix}net.{1 + 4 * len(head.hidden)}."
    return (x @ w[last + "weight"].T + w[last + "bias"])[:, 0]


def calibrated_scores(logits: np.ndarray, *, head: HeadConfig, calibration: dict[str, Any]) -> np.ndarray:
    """Map head logits to calibrated P(fake): ``sigmoid(scale * fake_logit + bias)``."""
    z = np.asarray(logits, dtype=np.float64)
    if head.output == "real":
        z = -z
    z = float(calibration.get("scale", 1.0)) * z + float(calibration.get("bias", 0.0))
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float64)


def _expected_shapes(heads: tuple[HeadConfig, ...]) -> dict[str, tuple[int, ...]]:
    return {member_prefix(i) + k: v for i, h in enumerate(heads) for k, v in _head_shapes(h).items()}


def _head_shapes(head: HeadConfig) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"feature_mean": (head.n_inputs,), "feature_std": (head.n_inputs,)}
    sizes = [head.n_inputs, *head.hidden]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin, bn = 1 + 4 * i, 3 + 4 * i
        shapes[f"net.{lin}.weight"] = (b, a)
        shapes[f"net.{lin}.bias"] = (b,)
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"net.{bn}.{k}"] = (b,)
    last = 1 + 4 * len(head.hidden)
    shapes[f"net.{last}.weight"] = (1, head.hidden[-1])
    shapes[f"net.{last}.bias"] = (1,)
    return shapes


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load and validate a checkpoint directory (``config.json`` + ``model.safetensors``).

    Raises
    ------
    CheckpointError
        If a file is missing, the JSON or the safetensors data is malformed, a tensor is missing or
        has the wrong shape, or the feature settings are not ones this code can reproduce.
    """
    directory = Path(path)
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint {directory} lacks {p.name}")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a melcnn checkpoint config (format != {FORMAT!r})")
    if cfg.get("format_version") not in (FORMAT_VERSION, ENSEMBLE_FORMAT_VERSION):
        raise CheckpointError(
            f"{cfg_path} has format_version {cfg.get('format_version')!r}; this melcnn reads "
            f"{FORMAT_VERSION} and {ENSEMBLE_FORMAT_VERSION}"
        )
    try:
        features = FeatureConfig.from_dict(cfg["features"])
        head = HeadConfig.from_dict(cfg["head"])
        extra_heads = tuple(HeadConfig.from_dict(d) for d in cfg.get("extra_heads", []))
        variant = str(cfg["variant"])
        name = str(cfg["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} is incomplete or malformed: {exc!r}") from exc
    try:
        spec = spec_for(variant)
    except CheckpointError as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    if features.chunk_s != spec.chunk_s:
        raise CheckpointError(f"{cfg_path}: {features.chunk_s:g} s chunks, but {variant} has {spec.chunk_s:g} s chunks")
    recorded = cfg.get("chunking", {}).get("overlap_s", spec.default_overlap_s)
    if recorded != spec.default_overlap_s:
        raise CheckpointError(
            f"{cfg_path}: records a default overlap of {recorded!r} s, but {variant} has {spec.default_overlap_s:g} s"
        )
    if bool(extra_heads) != (cfg["format_version"] == ENSEMBLE_FORMAT_VERSION):
        raise CheckpointError(
            f"{cfg_path}: format_version {ENSEMBLE_FORMAT_VERSION} goes with extra_heads, and only with them"
        )
    heads = (head, *extra_heads)
    rows = features.image_size // 2**features.scattering_J
    for h in heads:
        if h.n_rows != rows:
            raise CheckpointError(f"{cfg_path}: a head expects {h.n_rows} rows, the features give {rows}")
    if head.output not in ("fake", "real"):
        raise CheckpointError(f"{cfg_path}: head.output must be 'fake' or 'real', not {head.output!r}")
    if any(h.output != head.output for h in extra_heads):
        raise CheckpointError(f"{cfg_path}: every head must output the same class's logit")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{w_path} is not a readable safetensors file: {exc}") from exc
    for key, shape in _expected_shapes(heads).items():
        if key not in weights:
            raise CheckpointError(f"{w_path} lacks tensor {key!r}")
        if tuple(weights[key].shape) != shape:
            raise CheckpointError(f"{w_path}: tensor {key!r} has shape {weights[key].shape}, expected {shape}")
        weights[key] = weights[key].astype(np.float32)
        if not np.all(np.isfinite(weights[key])):
            raise CheckpointError(f"{w_path}: tensor {key!r} contains NaN or infinity")
    known = {"format", "format_version", "name", "variant", "version", "features", "chunking", "head", "extra_heads"}
    known |= {"threshold", "calibration"}
    threshold = float(cfg.get("threshold", 0.5))
    if not 0.0 < threshold < 1.0:
        raise CheckpointError(f"{cfg_path}: threshold must lie in (0, 1), got {threshold}")
    return Checkpoint(
        name=name,
        variant=variant,
        version=str(cfg.get("version", "0")),
        features=features,
        head=head,
        weights=weights,
        threshold=threshold,
        calibration=dict(cfg.get("calibration", {"scale": 1.0, "bias": 0.0})),
        extra={k: v for k, v in cfg.items() if k not in known},
        path=directory,
        sha256=_sha256(w_path),
        extra_heads=extra_heads,
    )


def stored_weights(weights: dict[str, np.ndarray], storage: str = "float32") -> dict[str, np.ndarray]:
    """The tensors as a checkpoint stores them: float32, or with ``storage="float16"`` the weight
    matrices (the bulk of a large head) in float16 and every vector (biases, batch-norm statistics, the
    input standardisation) in float32, where half precision would move the scores most."""
    if storage not in ("float32", "float16"):
        raise CheckpointError(f"unknown weight storage {storage!r} (float32 or float16)")
    return {
        k: np.ascontiguousarray(v, dtype=np.float16 if storage == "float16" and np.ndim(v) >= 2 else np.float32)
        for k, v in weights.items()
    }


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` as a checkpoint directory (atomically per file). Returns the directory.

    The tensors are stored as float32, or, where ``ckpt.extra["storage"] == "float16"`` (a head too large
    for the 16 MB a shipped checkpoint may take), as :func:`stored_weights` says; they are read back as
    float32 either way.
    """
    from safetensors.numpy import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    missing = set(_expected_shapes(ckpt.heads)) - set(ckpt.weights)
    if missing:
        raise CheckpointError(f"cannot save checkpoint: missing tensors {sorted(missing)}")
    tensors = stored_weights(ckpt.weights, ckpt.extra.get("storage", "float32"))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata={"format": FORMAT})
    os.replace(tmp, directory / WEIGHTS_FILE)
    text = json.dumps(_jsonable(ckpt.config_dict()), indent=2, sort_keys=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, directory / CONFIG_FILE)
    ckpt.path = directory
    ckpt.sha256 = _sha256(directory / WEIGHTS_FILE)
    return directory


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def torch_head(head: HeadConfig):  # -> torch.nn.Module (torch imported lazily)
    """The specification's network as a ``torch.nn.Module`` for training.

    Its ``state_dict`` keys are those of the safetensors file: ``feature_mean``, ``feature_std``
    (buffers) and ``net.<i>.*`` of the ``nn.Sequential``. Its forward takes head inputs
    (:func:`head_inputs`, unstandardised) of shape ``(n, n_inputs)`` and returns logits ``(n,)``.
    """
    import torch
    from torch import nn

    class MelCNNHead(nn.Module):
        feature_mean: torch.Tensor  # buffers (register_buffer below), for the type checker
        feature_std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [nn.Flatten()]
            sizes = [head.n_inputs, *head.hidden]
            for (a, b), p in zip(zip(sizes[:-1], sizes[1:], strict=True), head.dropout, strict=True):
                layers += [nn.Linear(a, b), nn.ReLU(), nn.BatchNorm1d(b), nn.Dropout(p)]
            layers.append(nn.Linear(sizes[-1], 1))
            self.net = nn.Sequential(*layers)
            self.register_buffer("feature_mean", torch.zeros(head.n_inputs))
            self.register_buffer("feature_std", torch.ones(head.n_inputs))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.feature_mean) / self.feature_std)[:, 0]

    return MelCNNHead()


def weights_from_torch(module) -> dict[str, np.ndarray]:
    """NumPy copies of a :func:`torch_head` module's parameters and buffers (float32)."""
    return {
        k: v.detach().cpu().numpy().astype(np.float32)
        for k, v in module.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
