#!/usr/bin/env bash
# Installs what the test suite needs and runs it: the README's test command.
#   bash scripts/test.sh [pytest args...]
# Installs: melcnn with its test extras (pip), the dataset builder's TTS engines and vocoders
# (apt + pip, for the build -> train -> eval smoke test), then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
bash scripts/install_training_deps.sh > /tmp/melcnn-install-training-deps.log 2>&1 \
  || { cat /tmp/melcnn-install-training-deps.log; exit 1; }
if [ -f scripts/install_test_deps.sh ]; then
  bash scripts/install_test_deps.sh > /tmp/melcnn-install-test-deps.log 2>&1 \
    || { cat /tmp/melcnn-install-test-deps.log; exit 1; }
fi
ruff check src tests benchmarks scripts
python3 -m pytest -q "$@"
