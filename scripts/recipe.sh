#!/usr/bin/env bash
# The whole recipe of the shipped weights, end to end:
#   data build -> train the V2 chunk classifier on train + dev (20 epochs; calibrated on cross-fitted scores:
#   each train/dev file scored by a head of the same recipe trained without its fold of the leave-source-out
#   cross-validation; those fold heads' cross-validation report is written to CKPT/v2/cv) ->
#   V3 = the same chunk classifier calibrated on overlapping chunks -> evaluate both on the held-out eval split
#   -> copy into the package -> record the sha256 -> remake the regression fixtures.
# Usage: scripts/recipe.sh [DATA_DIR] [MINUTES] [SEED] [BANDS] [TRAIN_SEED]
#   (defaults: ../data/melcnn-v3 beside the repository, all, 0, 16, 1: the settings of the shipped weights,
#   SEED the data build's seed and TRAIN_SEED the heads';
#   MINUTES "all" builds every minute of every source, a number about that many bona fide minutes)
# Everything resumes after an interruption (rerun the script): the data build, the feature cache and V2's
# training (its final head and each fold head are kept in CKPT/v2/.partial as they finish); V3 starts again.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-${MELCNN_DATA:-$HERE/../data/melcnn-v3}}"
MINUTES="${2:-all}"
SEED="${3:-0}"
BANDS="${4:-16}"
TRAIN_SEED="${5:-1}"
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, and the weights it ships
CKPT="${MELCNN_CKPT:-$(dirname "$(realpath -m "$DATA_DIR")")/ckpt-$(basename "$DATA_DIR")}"

"$HERE/scripts/build_data.sh" "$DATA_DIR" "$MINUTES" "$SEED"
START=$(date +%s)
python3 -m melcnn train --data "$DATA_DIR" --model v2 --bands "$BANDS" --epochs 20 --balance-domains --fit-on train+dev --out "$CKPT/v2" --seed "$TRAIN_SEED"
python3 -m melcnn train --data "$DATA_DIR" --model v3 --chunk-classifier "$CKPT/v2" --out "$CKPT/v3" --seed "$TRAIN_SEED"
echo "training and evaluation took $(( $(date +%s) - START )) s"
WEIGHTS="$HERE/src/melcnn/weights"
for v in v2 v3; do
  cp "$CKPT/$v/config.json" "$CKPT/$v/model.safetensors" "$WEIGHTS/$v/"
done
(cd "$WEIGHTS" && sha256sum v2/model.safetensors v3/model.safetensors > SHA256SUMS)
python3 "$HERE/scripts/make_fixture_set.py" "$DATA_DIR"
echo "shipped weights updated from $CKPT; reports in $CKPT/v2/cv (the cross-validation), $CKPT/v2/eval and $CKPT/v3/eval"
