#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default data: a small real sweep
# (digits, 6 NONE-defended trials on a local Ray instance, Optuna multi-objective, MLflow in ./mlflow.db).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NAME="digits-demo-$(date +%Y%m%d-%H%M%S)"  # a fresh sweep each time; a finished one is never overwritten
.venv/bin/none-sweep sweep search_spaces/digits_tiny.yaml --name "$NAME" "$@"
.venv/bin/none-sweep report --experiment "$NAME" --out "reports/$NAME"
echo
echo "Open the MLflow UI:  .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db --host 127.0.0.1 --port 5000"
echo "then http://127.0.0.1:5000 → experiment '$NAME' (Chart view: asr vs clean_acc); Pareto plot: reports/$NAME/pareto.png"
