#!/bin/sh
# Installs edgekit's device parts on a Jetson with JetPack 6: the core (numpy, pillow), ONNX Runtime
# and cuda-python, pinned by constraints-jetson.txt. TensorRT and CUDA come from JetPack (system
# dist-packages, seen through a --system-site-packages venv) and are never pip-installed; torch
# is not needed on the device. Dockerfile.jetson runs it; on a bare Jetson run it the same way:
#   python3 -m venv --system-site-packages ~/edgekit-venv
#   sh docker/install-jetson.sh ~/edgekit-venv/bin/python .
#
# Usage: docker/install-jetson.sh PYTHON SRC_DIR
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 PYTHON SRC_DIR" >&2
    exit 2
fi
PY=$1
SRC=$(cd "$2" && pwd)  # absolute: pip reads a bare relative name as a package name

"$PY" -m pip --disable-pip-version-check install -c "$SRC/constraints-jetson.txt" "$SRC[jetson]"
"$PY" -c "import edgekit, numpy, onnxruntime; print('edgekit', edgekit.__version__, 'numpy', numpy.__version__)"
