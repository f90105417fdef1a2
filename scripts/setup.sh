#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine: a venv with none-sweep (plus the extras named as arguments, e.g.
# `dev` for the tests) and the Fashion-MNIST IDX files from Debian's dataset-fashion-mnist package (the default
# dataset). Quiet: pip's notices and setuptools' build warnings (PYTHONWARNINGS=ignore for pip only) are
# filtered; errors still show.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
TARGET="."
if [ "$#" -gt 0 ]; then TARGET=".[$(IFS=,; echo "$*")]"; fi
quiet_pip() {  # a failed install is caught by the import check below
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 \
    | grep -v -e "is ignored" -e "^\[notice\]" -e "^$" || true
}
quiet_pip --upgrade pip
quiet_pip -e "$TARGET"
.venv/bin/python -c "import none_sweep, torch, ray, optuna, mlflow" \
  || { echo "setup: installing none-sweep failed" >&2; exit 1; }
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
echo "setup: ready (.venv, Fashion-MNIST in /usr/share/datasets/fashion-mnist)"
