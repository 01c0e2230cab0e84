"""The training subcommands of ``melcnn`` (``data build``, ``train``, ``eval``): their options and handlers.

:mod:`melcnn.cli` registers them with :func:`add_commands`. This module imports nothing heavy: the
training code (and torch) is imported by a handler when its command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._cli_common import _DEFAULT_OVERLAPS, _VARIANTS, EXIT_OK, EXIT_USAGE, _non_negative_float
from ..classifier import HeadConfig
from ..config import TIME_STATS
from ..errors import MelcnnError
from ..registry import MODELS
from .protocol import CANDIDATE_TRANSFORMS


def add_commands(sub: Any) -> None:
    """Add ``data`` (``data build``), ``train`` and ``eval`` to ``sub`` (the subparsers of ``melcnn``)."""
    da = sub.add_parser("data", help="build the training dataset")
    da_sub = da.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    db = da_sub.add_parser("build", help="fetch bona fide sources, generate spoofs, launder, split, write a manifest")
    db.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder to build the dataset in")
    db.add_argument("--minutes", type=float, default=None, help="approximate bona fide minutes (default: all)")
    db.add_argument("--seed", type=int, default=0, help="random seed of the build (default 0)")
    db.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    db.add_argument(
        "--views",
        type=int,
        default=2,
        help="channel-augmented views of every train and dev clip, for both classes alike (default 2)",
    )
    db.add_argument(
        "--revocoded-share",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="share of each split's utterances that get one extra spoof of re-vocoded TTS (a TTS engine's speech "
        "rendered again by a neural vocoder); only the new clips are made (default 0: none)",
    )
    db.add_argument(
        "--transform-share",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="share of the train split's utterances that get one extra spoof made by a signal-processing "
        "transform of the utterance itself (phase-vocoder pitch shift, minimum-phase inversion, formant shift); "
        "only the new clips are made (default 0: none)",
    )
    db.add_argument(
        "--candidate-transforms",
        type=_candidate_list,
        default=(),
        metavar="NAME[,NAME]",
        help="candidate transforms that each add one more extra spoof to a sixth of the train split's "
        "utterances, drawn for each alone, to be screened with `melcnn eval --cv --drop-generators NAME` "
        f"(among {', '.join(CANDIDATE_TRANSFORMS)}); only the new clips are made (default: none)",
    )
    db.add_argument(
        "--view-denoise",
        type=_probability,
        default=0.0,
        metavar="P",
        help="share of the views that also pass through a noise suppressor (spectral gating, as phones, call "
        "software and editors apply to real speech); views a finished build made that now draw it are made "
        "again (default 0: none)",
    )
    db.add_argument(
        "--view-opus-ml",
        type=_probability,
        default=0.0,
        metavar="P",
        help="share of the views that also pass through a VoIP leg: Opus at 9-16 kbit/s decoded by libopus 1.5 "
        "with its neural post-filter (LACE or NoLACE) or none, as real calls reach users; needs node and the npm "
        "decoder (scripts/install_training_deps.sh); views a finished build made that now draw it are made again "
        "(default 0: none)",
    )
    db.add_argument(
        "--manifest-only",
        action="store_true",
        help="make no clip: write the manifest of the clips a (running or stopped) build finished (default off)",
    )
    db.set_defaults(func=_cmd_data_build)

    tr = sub.add_parser("train", help="train a V2 or V3 checkpoint on a dataset built by `melcnn data build`")
    tr.add_argument(
        "--data", type=Path, required=True, metavar="DATA_DIR", help="dataset built by `melcnn data build` (required)"
    )
    tr.add_argument("--model", choices=tuple(MODELS), required=True, help="version to train (required)")
    tr.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint directory to write (required)")
    tr.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    tr.add_argument("--epochs", type=int, default=60, help="most training epochs; early stopping on dev (default 60)")
    tr.add_argument(
        "--train-overlap",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help=f"chunk overlap of the training examples in seconds (default: the model's own, {_DEFAULT_OVERLAPS})",
    )
    tr.add_argument("--workers", type=int, default=2, help="feature extraction processes (default 2)")
    tr.add_argument("--bands", type=int, default=2, help="frequency bands of the head input (default 2)")
    _add_time_stats_option(
        tr, "statistics over time of each scattering coefficient, comma-separated among {} (default mean)"
    )
    _add_extra_head_option(tr, "")
    tr.add_argument(
        "--chunk-classifier",
        type=Path,
        default=None,
        metavar="CKPT",
        help="reuse this checkpoint's head and only calibrate it for --model's chunking (default: train a head)",
    )
    tr.add_argument(
        "--reencode-files",
        type=int,
        default=200,
        help="eval files re-encoded six ways for the invariance report (default 200; 0 skips it)",
    )
    _add_regulariser_options(
        tr,
        consistency_help="weight of the view-consistency penalty: variance of the scores of a clip and its "
        "augmented views (default 0: off)",
        average_help="run every epoch and ship the average of the weights of epochs E..--epochs instead of "
        "early stopping (default 0: early stopping on dev)",
    )
    tr.add_argument(
        "--no-eval",
        action="store_true",
        help="do not score the eval split after training (model selection looks at dev only)",
    )
    tr.add_argument(
        "--fit-on",
        choices=("train", "train+dev"),
        default="train",
        help="train: early stopping and calibration on dev (the default); train+dev: the head trains on both "
        "for exactly --epochs epochs and is calibrated on cross-fitted logits (each train/dev file scored by a "
        "head of the same recipe trained without the cross-validation fold that holds out its source or "
        "generator), so dev's sources and generators teach the head too; those fold heads' cross-validation "
        "report is written to OUT/cv (as `melcnn eval --cv` would with these settings)",
    )
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's held-out split")
    ev.add_argument(
        "--data", type=Path, required=True, metavar="DATA_DIR", help="dataset built by `melcnn data build` (required)"
    )
    ev.add_argument(
        "--model", default=None, help=f"checkpoint directory or {_VARIANTS} (default none; required unless --cv)"
    )
    ev.add_argument(
        "--cv",
        action="store_true",
        help="run the leave-source-out cross-validation (5 folds over train/dev sources and generators) instead",
    )
    ev.add_argument("--cv-head", choices=("mlp", "logreg"), default="mlp", help="head trained per fold (default mlp)")
    ev.add_argument("--bands", type=int, default=2, help="frequency bands of the head input with --cv (default 2)")
    ev.add_argument(
        "--cv-hidden",
        type=_layer_sizes,
        default=None,
        metavar="N[,N...]",
        help="with --cv and the mlp head: its hidden layers, e.g. 256,128 for a quick screen (default the "
        "specification's 1024,512,128)",
    )
    _add_time_stats_option(ev, "with --cv: statistics over time of the head input, among {} (default mean)")
    _add_extra_head_option(ev, "with --cv: ")
    ev.add_argument(
        "--drop-generators",
        type=_generator_list,
        default=(),
        metavar="G[,G...]",
        help="with --cv: train no fold on these generators' spoofs (their test clips stay): what does a "
        "family teach about the others? (default none)",
    )
    ev.add_argument("--epochs", type=int, default=12, help="epochs per fold with --cv (default 12)")
    ev.add_argument("--seed", type=int, default=0, help="with --cv: random seed of the folds' heads (default 0)")
    ev.add_argument("--no-views", action="store_true", help="with --cv: train without the augmented views")
    _add_regulariser_options(
        ev,
        consistency_help="with --cv: view-consistency penalty of the head's training (default 0: off)",
        average_help="with --cv: average the weights of epochs E..--epochs (default 0: the last epoch)",
    )
    ev.add_argument(
        "--reencode-files",
        type=int,
        default=200,
        help="files re-encoded six ways for the invariance report (default 200; 0 skips it)",
    )
    ev.add_argument("--split", default="eval", help="split of the dataset to score (default eval)")
    ev.add_argument("--out", type=Path, default=None, metavar="DIR", help="report directory (default CKPT/eval)")
    ev.add_argument("--workers", type=int, default=2, help="feature extraction processes (default 2)")
    ev.set_defaults(func=_cmd_eval)


def _distinct_names(text: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated distinct names among ``known`` (at least one), or an argparse error."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names or len(set(names)) != len(names) or not set(names) <= set(known):
        raise argparse.ArgumentTypeError(f"expected distinct names among {','.join(known)}, got {text!r}")
    return names


def _time_stats(text: str) -> tuple[str, ...]:
    return _distinct_names(text, TIME_STATS)


def _generator_list(text: str) -> tuple[str, ...]:
    from .protocol import GENERATOR_SPLITS

    gens = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = sorted(set(gens) - set(GENERATOR_SPLITS))
    if not gens or unknown:
        raise argparse.ArgumentTypeError(f"unknown generators {unknown}; known: {','.join(GENERATOR_SPLITS)}")
    return gens


def _layer_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        sizes = ()
    if not 1 <= len(sizes) <= 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected 1 to 3 positive layer sizes, e.g. 256,128, got {text!r}")
    return sizes


def _extra_head(text: str) -> HeadConfig:
    """``BANDS:STATS[:HIDDEN]``, e.g. ``8:mean,std:64,32``: a further head of a checkpoint."""
    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 3:
            raise ValueError("expected BANDS:STATS[:HIDDEN]")
        head = HeadConfig(freq_bands=int(parts[0]), time_stats=_time_stats(parts[1]))
        if head.freq_bands < 1 or head.n_rows % head.freq_bands:
            raise ValueError(f"{head.freq_bands} bands do not divide the {head.n_rows} frequency rows")
        return head.with_hidden(_layer_sizes(parts[2])) if len(parts) == 3 else head
    except (ValueError, argparse.ArgumentTypeError, MelcnnError) as exc:
        raise argparse.ArgumentTypeError(f"--extra-head {text!r}: {exc}") from None


def _add_extra_head_option(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--extra-head",
        type=_extra_head,
        action="append",
        default=[],
        metavar="BANDS:STATS[:HIDDEN]",
        help=f"{prefix}train a further head on another input, e.g. 8:mean,std:64,32 (8 bands, mean and std over "
        "time, hidden layers 64-32; default the specification's layers); the model's logit is the mean of "
        "all heads' logits. Repeatable (default none)",
    )


def _candidate_list(text: str) -> tuple[str, ...]:
    return _distinct_names(text, CANDIDATE_TRANSFORMS)


def _add_time_stats_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--time-stats",
        type=_time_stats,
        default=("mean",),
        metavar="S[,S...]",
        help=help_text.format(",".join(TIME_STATS)),
    )


def _probability(text: str) -> float:
    """A number in [0, 1) (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _add_regulariser_options(parser: argparse.ArgumentParser, *, consistency_help: str, average_help: str) -> None:
    """``--consistency W``, ``--average-from E``, ``--balance-domains``, ``--mixup A``, ``--band-dropout P``,
    ``--adversary W``, ``--pairing W``, ``--label-smoothing E``, ``--sam RHO`` and ``--weight-decay D``
    (:class:`~melcnn.training.train.TrainConfig`'s, gathered by :func:`_regularisers`)."""
    parser.add_argument("--consistency", type=_non_negative_float, default=0.0, metavar="W", help=consistency_help)
    parser.add_argument("--average-from", type=int, default=0, metavar="E", help=average_help)
    parser.add_argument(
        "--balance-domains",
        action="store_true",
        help="weight the loss so that every bona fide source and every generator counts alike within its "
        "class (default off: every chunk counts alike)",
    )
    parser.add_argument(
        "--mixup",
        type=_non_negative_float,
        default=0.0,
        metavar="A",
        help="mix each train chunk with another of its batch, inputs and targets alike, with a weight drawn "
        "from Beta(A, A); not with --consistency (default 0: off)",
    )
    parser.add_argument(
        "--band-dropout",
        type=_probability,
        default=0.0,
        metavar="P",
        help="replace each frequency band of each train chunk, with probability P, by its train mean, so that "
        "no band alone decides (default 0: off)",
    )
    parser.add_argument(
        "--adversary",
        type=_non_negative_float,
        default=0.0,
        metavar="W",
        help="train a domain adversary of weight W: a classifier of each chunk's source (bona fide) or "
        "generator (spoof) on the head's last hidden layer, its gradient reversed, so the head learns to "
        "hide them; not with --mixup (default 0: off)",
    )
    parser.add_argument(
        "--pairing",
        type=_non_negative_float,
        default=0.0,
        metavar="W",
        help="add W times a partner ranking loss: every spoof made from (or beside) a bona fide utterance is "
        "asked to score above that utterance's bona fide clips, so a shift that a source or channel gives "
        "both cancels; not with --mixup (default 0: off)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=_probability,
        default=0.0,
        metavar="E",
        help="train towards the targets E/2 and 1-E/2 instead of 0 and 1 (default 0: off)",
    )
    parser.add_argument(
        "--sam",
        type=_non_negative_float,
        default=0.0,
        metavar="RHO",
        help="sharpness-aware minimisation: take each step's gradient at the weights moved by RHO up the "
        "batch's gradient (e.g. 0.05; twice the training time; default 0: off)",
    )
    parser.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        default=None,
        metavar="D",
        help="AdamW's decoupled weight decay (default: TrainConfig's, 0.01)",
    )


def _regularisers(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`_add_regulariser_options` as keyword arguments of ``train_model`` and
    ``cross_validate``."""
    from .train import REGULARISERS

    out = {n: getattr(args, n) for n in REGULARISERS}
    if out["weight_decay"] is None:  # not given: the training's own default
        del out["weight_decay"]
    return out


class _Progress:
    """One self-overwriting progress line on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[str, int] = ("", -1)

    def __call__(self, stage: str, done: int, total: int) -> None:
        pct = int(100 * done / total) if total else 100
        if not self.tty and (stage, pct // 10) == self.last and done != total:
            return
        self.last = (stage, pct // 10)
        line = f"{stage}: {done}/{total} ({pct}%)"
        print(("\r" + line.ljust(70)) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        if self.tty and done == total:
            print(file=sys.stderr)


def _cmd_data_build(args: argparse.Namespace) -> int:
    from .build import build_dataset

    manifest = build_dataset(
        args.data_dir,
        minutes=args.minutes,
        seed=args.seed,
        workers=args.workers,
        views=args.views,
        revocoded_share=args.revocoded_share,
        transform_share=args.transform_share,
        candidate_transforms=args.candidate_transforms,
        view_denoise=args.view_denoise,
        view_opus_ml=args.view_opus_ml,
        manifest_only=args.manifest_only,
        progress=_Progress(),
    )
    print(f"manifest written to {manifest}")
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from . import crossval
    from .pipeline import CV_DIR, markdown, train_model

    out = train_model(
        args.data,
        variant=args.model,
        out=args.out,
        seed=args.seed,
        epochs=args.epochs,
        train_overlap_s=args.train_overlap,
        workers=args.workers,
        freq_bands=args.bands,
        time_stats=args.time_stats,
        extra_heads=tuple(args.extra_head),
        chunk_classifier=args.chunk_classifier,
        reencode_files=args.reencode_files,
        **_regularisers(args),
        evaluate=not args.no_eval,
        fit_on=args.fit_on,
        progress=_Progress(),
    )
    cv = out / CV_DIR / "cv.json"
    if args.chunk_classifier is None and args.fit_on == "train+dev" and cv.is_file():  # its fold heads
        print(crossval.markdown(json.loads(cv.read_text())))
    report = out / "eval" / "eval.json"
    if report.is_file():
        print(markdown(json.loads(report.read_text())))
    print(f"checkpoint written to {out}")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_model, markdown

    if args.cv:
        from . import crossval

        cv = crossval.cross_validate(
            args.data,
            model=args.cv_head,
            freq_bands=args.bands,
            time_stats=args.time_stats,
            hidden=args.cv_hidden,
            extra_heads=tuple(args.extra_head),
            drop_generators=args.drop_generators,
            epochs=args.epochs,
            seed=args.seed,
            views=not args.no_views,
            **_regularisers(args),
            workers=args.workers,
            progress=_Progress(),
        )
        name = f"{args.cv_head}-b{args.bands}-e{args.epochs}"
        name += "-h" + "x".join(map(str, args.cv_hidden)) if args.cv_hidden else ""
        name += "-" + "+".join(args.time_stats) if args.time_stats != ("mean",) else ""
        for h in args.extra_head:
            name += f"-and-b{h.freq_bands}-{'+'.join(h.time_stats)}-h{'x'.join(map(str, h.hidden))}"
        name += "-without-" + "+".join(args.drop_generators) if args.drop_generators else ""
        name += f"-seed{args.seed}" if args.seed else ""
        name += f"-c{args.consistency:g}" if args.consistency else ""
        name += f"-a{args.average_from}" if args.average_from else ""
        name += "-balanced" if args.balance_domains else ""
        name += f"-m{args.mixup:g}" if args.mixup else ""
        name += f"-bd{args.band_dropout:g}" if args.band_dropout else ""
        name += f"-adv{args.adversary:g}" if args.adversary else ""
        name += f"-pair{args.pairing:g}" if args.pairing else ""
        name += f"-ls{args.label_smoothing:g}" if args.label_smoothing else ""
        name += f"-sam{args.sam:g}" if args.sam else ""
        name += f"-wd{args.weight_decay:g}" if args.weight_decay is not None else ""
        out = args.out or Path(args.data) / "cv" / name
        crossval.write(cv, out)
        print(crossval.markdown(cv))
        print(f"report written to {out}/cv.json, cv.md")
        return EXIT_OK
    if args.model is None:
        print("melcnn eval: --model is required (or --cv)", file=sys.stderr)
        return EXIT_USAGE
    out = args.out
    if out is None:
        model_dir = Path(args.model)
        out = (model_dir / "eval") if model_dir.is_dir() else Path(f"eval-{args.model}")
    result = evaluate_model(
        args.data,
        args.model,
        split=args.split,
        out_dir=out,
        workers=args.workers,
        reencode_files=args.reencode_files,
        progress=_Progress(),
    )
    print(markdown(result))
    print(f"report written to {out}/eval.json, eval.md, det.png, hist.png")
    return EXIT_OK
