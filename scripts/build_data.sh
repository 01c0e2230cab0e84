#!/usr/bin/env bash
# The training-data recipe: install the builder's dependencies (with the non-free TTS engines: SVOX Pico,
# RHVoice, MBROLA), then build. Usage: scripts/build_data.sh [DATA_DIR] [MINUTES] [SEED] [VIEWS]
#   DATA_DIR defaults to $MELCNN_DATA or ../data/melcnn-v3 beside the repository (never inside it).
#   MINUTES: approximate bona fide minutes, spoofs matched one to one; "all" (the default) uses every
#   minute of every source (about 1,030), as the shipped weights were trained (77,402 clips; from scratch
#   about 113 min on 2 cores without the source-filter and unit-splice spoofs, which add about 40 and 30;
#   see the README and docs/training.md).
#   Half of the train utterances also get a spoof made by a signal-processing transform (--transform-share 0.5:
#   phase-vocoder pitch shift, minimum-phase inversion, formant shift, in turn), as for the shipped weights,
#   a sixth of them one more made by a source-filter vocoder (--candidate-transforms source_filter: Praat
#   F0, cepstral envelope, pulse/noise excitation), and another sixth one made by cutting the utterance into
#   units and joining them again as unit selection does (unit_splice), both adopted by the cross-validation
#   (docs/training.md).
#   VIEWS: channel-augmented views per train/dev clip (default 2).
#   Resumable: rerun after an interruption. It runs in rounds of whole utterances, so
#   `python -m melcnn.training build DATA_DIR ... --manifest-only` writes a balanced manifest of the
#   clips finished so far.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-${MELCNN_DATA:-$HERE/../data/melcnn-v3}}"
MINUTES="${2:-all}"
SEED="${3:-0}"
VIEWS="${4:-2}"
case "$(realpath -m "$DATA_DIR")/" in
  "$HERE"/*) echo "refusing to write the data set inside the repository: $DATA_DIR" >&2; exit 2;;
esac

"$HERE/scripts/install_training_deps.sh" --non-free
START=$(date +%s)
ARGS=(--seed "$SEED" --views "$VIEWS" --workers 2 --transform-share 0.5 --candidate-transforms source_filter,unit_splice)
[ "$MINUTES" = "all" ] || ARGS+=(--minutes "$MINUTES")
python3 -m melcnn.training build "$DATA_DIR" "${ARGS[@]}"
echo "build took $(( $(date +%s) - START )) s on $(nproc) cores ($(uname -m)); summary: $DATA_DIR/summary.json"
