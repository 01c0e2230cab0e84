#!/usr/bin/env bash
# The whole recipe of the shipped weights, end to end:
#   data build -> train V2 and V3 (features, head, calibration, evaluation) -> copy into the package
#   -> record the sha256 -> remake the regression fixture set.
# Usage: scripts/recipe.sh [DATA_DIR] [MINUTES] [SEED]   (defaults: ../data/melcnn-v2 beside the repository, 180, 0)
# Runtime on a 2-core VM (shared with other work at the time): build 47 min, training and evaluation
# of both versions 43 min. Every step resumes after an interruption; rerun the script to continue.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-${MELCNN_DATA:-$HERE/../data/melcnn-v2}}"
MINUTES="${2:-180}"
SEED="${3:-0}"
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, and the weights it ships
CKPT="${MELCNN_CKPT:-$(dirname "$(realpath -m "$DATA_DIR")")/ckpt-$(basename "$DATA_DIR")}"

"$HERE/scripts/build_data.sh" "$DATA_DIR" "$MINUTES" "$SEED"
for v in v2 v3; do
  START=$(date +%s)
  python3 -m melcnn train --data "$DATA_DIR" --model "$v" --out "$CKPT/$v" --seed "$SEED"
  echo "train $v took $(( $(date +%s) - START )) s"
done
WEIGHTS="$HERE/src/melcnn/weights"
for v in v2 v3; do
  cp "$CKPT/$v/config.json" "$CKPT/$v/model.safetensors" "$WEIGHTS/$v/"
done
(cd "$WEIGHTS" && sha256sum v2/model.safetensors v3/model.safetensors > SHA256SUMS)
python3 "$HERE/scripts/make_fixture_set.py" "$DATA_DIR"
echo "shipped weights updated from $CKPT; evaluation reports in $CKPT/v2/eval and $CKPT/v3/eval"
