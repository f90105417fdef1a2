#!/usr/bin/env bash
# The prepared device run of issue 13 (see bench/gpu_suite.py): every owed GPU figure, a GPU smoke test of the
# product, all figures printed and written under $OUT, within 8 minutes. `--quick` is the dry run.
#
# On the GPU machine (Python 3.12 + torch, no Ray/Optuna/MLflow, no network), from the repository root:
#   here, once:  ../shared/device/make-bundle          # builds .devbundle/site312.tar.xz (git-ignored)
#   there:       bash bench/gpu_suite.sh                # with .devbundle carried (device run: carry [".devbundle"])
# Here (CPU):    bash bench/gpu_suite.sh --quick        # the project venv has Ray, Optuna and MLflow
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
[ -n "${PYTHON:-}" ] && py=$PYTHON
if ! "$py" -c "import ray, optuna, mlflow" 2>/dev/null; then
  bundle=.devbundle/site312.tar.xz
  if [ ! -f "$bundle" ]; then
    echo "gpu_suite: Ray/Optuna/MLflow are not importable by $py and $bundle is missing;" \
         "build it with ../shared/device/make-bundle where pip works, and carry .devbundle" >&2
    exit 2
  fi
  site=${GPU_SUITE_SITE:-/tmp/site}
  t0=$(date +%s)
  mkdir -p "$site" && { test -d "$site/ray" || tar -C "$site" -xJf "$bundle"; } || exit 2
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
  echo "gpu_suite: Ray/Optuna/MLflow from $bundle, unpacked into $site in $(( $(date +%s) - t0 )) s"
fi
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$py" -m bench.gpu_suite "$@"
