#!/usr/bin/env bash
# Set up (if needed) and run the main job: a small real sweep on Fashion-MNIST (Debian's dataset-fashion-mnist,
# installed by set-up; a seeded 6000-image subset sized for 2 CPU cores): NONE-defended trials on a local Ray
# instance, guided by multi-objective Optuna from shipped starting points, recorded in MLflow (./mlflow.db). It
# ends with one verdict line, the chosen defense exported to best_defense.yaml, and where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
NAME="fmnist-demo-$(date +%Y%m%d-%H%M%S)"  # a fresh sweep each time; a finished one is never overwritten
exec .venv/bin/none-sweep sweep search_spaces/fmnist_demo.yaml --name "$NAME" --export best_defense.yaml "$@"
