#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: a venv with none-sweep and its dev extras, and the
# Fashion-MNIST IDX files from Debian's dataset-fashion-mnist package (the default dataset).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import none_sweep, torch, ray, optuna, mlflow" \
  || { echo "setup: installing none-sweep failed" >&2; exit 1; }
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
echo "setup: ready (.venv, Fashion-MNIST in /usr/share/datasets/fashion-mnist)"
