#!/usr/bin/env bash
# The full training-data recipe: install the builder's dependencies, then build with the default size
# and seed 0. Usage: scripts/build_data.sh [DATA_DIR] [MINUTES] [SEED]
#   DATA_DIR defaults to $MELCNN_DATA or ../data/melcnn-v2 beside the repository (never inside it).
#   MINUTES (bona fide minutes, spoofs matched) defaults to 180: about 45-50 min with 2 workers on a
#   2-core machine (HiFi-GAN and Griffin-Lim dominate). Resumable: rerun after an interruption.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${1:-${MELCNN_DATA:-$HERE/../data/melcnn-v2}}"
MINUTES="${2:-180}"
SEED="${3:-0}"
case "$(realpath -m "$DATA_DIR")/" in
  "$HERE"/*) echo "refusing to write the data set inside the repository: $DATA_DIR" >&2; exit 2;;
esac

"$HERE/scripts/install_training_deps.sh"
START=$(date +%s)
if command -v melcnn >/dev/null 2>&1 && melcnn data build --help >/dev/null 2>&1; then
  melcnn data build "$DATA_DIR" --minutes "$MINUTES" --seed "$SEED"
else
  python3 -m melcnn.training build "$DATA_DIR" --minutes "$MINUTES" --seed "$SEED" --workers 2
fi
echo "build took $(( $(date +%s) - START )) s on $(nproc) cores ($(uname -m)); summary: $DATA_DIR/summary.json"
