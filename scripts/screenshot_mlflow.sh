#!/usr/bin/env bash
# Regenerate docs/mlflow-ui.png: a sweep's runs table in the MLflow UI, taken by headless Chromium's --screenshot.
#
#   bash scripts/screenshot_mlflow.sh TRACKING_URI EXPERIMENT [OUT]     (OUT: docs/mlflow-ui.png)
#   e.g. bash scripts/screenshot_mlflow.sh sqlite:////abs/path/mlflow.db fmnist-demo
#
# A database URI is served by a private `mlflow server` on a free loopback port (stopped again at the end); an
# http(s) URI is a tracking server already, and is opened as it is. The page is the experiment's runs table in
# MLflow's model-training mode (workflowType=machine_learning: without it MLflow 3.17 opens the GenAI overview in
# a fresh browser), sorted by SORT_METRIC (default asr, best first), which lists every trial beside the sweep run.
# When the experiment holds a saved view (an `mlflow.sharedViewState.<key>` tag), that view is opened instead,
# with its own columns and sort; otherwise MLflow's default columns show. Needs /usr/bin/chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,4p' "$0" >&2; exit 2; }
URI=$1 EXPERIMENT=$2 OUT=${3:-docs/mlflow-ui.png}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
PY=.venv/bin/python
[ -x "$CHROMIUM" ] || { echo "screenshot: $CHROMIUM is absent (apt-get install -y chromium)" >&2; exit 1; }

# experiment id, saved-view key (or empty) and a free port, asked of MLflow's client
read -r EXP_ID VIEW PORT < <(MLFLOW_DISABLE_TELEMETRY=true "$PY" - "$URI" "$EXPERIMENT" <<'EOF'
import socket, sys
from mlflow import MlflowClient
exp = MlflowClient(tracking_uri=sys.argv[1]).get_experiment_by_name(sys.argv[2])
if exp is None:
    sys.exit(f"screenshot: no experiment {sys.argv[2]!r} in {sys.argv[1]}")
prefix = "mlflow.sharedViewState."
views = sorted(k[len(prefix):] for k in exp.tags if k.startswith(prefix))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(exp.experiment_id, views[0] if views else "-", s.getsockname()[1])
EOF
)
[ -n "${PORT:-}" ] || exit 1

TMP=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill -TERM -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
case "$URI" in
  http://* | https://*) BASE=${URI%/} ;;
  *)
    BASE="http://127.0.0.1:$PORT"
    # no job runner: MLflow would start seven huey consumers beside the UI, which this picture never needs
    (cd "$TMP" && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec setsid "$OLDPWD/.venv/bin/mlflow" server --backend-store-uri "$URI" --host 127.0.0.1 \
      --port "$PORT" --workers 1 >"$TMP/mlflow.log" 2>&1) &
    SERVER=$!
    "$PY" - "$BASE/health" "$TMP/mlflow.log" <<'EOF' || { tail -20 "$TMP/mlflow.log" >&2; exit 1; }
import sys, time, urllib.request
deadline = time.monotonic() + 240
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"screenshot: mlflow server did not answer at {sys.argv[1]}")
        time.sleep(1)
EOF
    ;;
esac

URL="$BASE/#/experiments/$EXP_ID/runs?workflowType=machine_learning"
if [ "$VIEW" = "-" ]; then  # sorting, filtering and columns come with a view; a sort in the URL would override it
  URL="$URL&orderByKey=$(printf 'metrics.%%60%s%%60' "${SORT_METRIC:-asr}")&orderByAsc=true"
else
  URL="$URL&viewStateShareKey=$VIEW"
fi
mkdir -p "$(dirname "$OUT")"
OUT_ABS=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$TMP/profile" --window-size=1400,900 \
  --hide-scrollbars --virtual-time-budget="${BUDGET_MS:-30000}" --screenshot="$OUT_ABS" "$URL" \
  >"$TMP/chromium.log" 2>&1 || { tail -20 "$TMP/chromium.log" >&2; exit 1; }
[ -s "$OUT_ABS" ] || { echo "screenshot: Chromium wrote no picture" >&2; tail -20 "$TMP/chromium.log" >&2; exit 1; }
echo "screenshot: wrote $OUT ($URL)"
