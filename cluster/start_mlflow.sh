#!/usr/bin/env bash
# Start (or restart) the MLflow tracking server on the head node; the cluster YAMLs run it from
# head_start_ray_commands, after cluster/node_setup.sh wrote ~/.none-sweep.env.
#
# Bound to the head's private IP only (NONE_SWEEP_HEAD_IP): the driver and workers reach it inside the
# VPC / security group; nothing outside does, and it never listens on 0.0.0.0. MLflow 3 accepts only
# local Host headers unless told otherwise, so --allowed-hosts names the private IP (what clients send)
# and localhost (what an `ssh -L 5000:<private IP>:5000` tunnel sends).
# SQL backend: MLFLOW_BACKEND_STORE_URI, by default the head's own PostgreSQL that cluster/start_postgres.sh
# set up (postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow), or a managed one. The URI never carries the
# password (refused here): libpq reads it from the password file ~/mlflow/pgpass (PGPASSFILE), so it is on no
# command line, in no env file and in nothing MLflow logs. Why not SQLite: cluster/README.md, "Why PostgreSQL".
# Artifacts go through the server (--serve-artifacts) to MLFLOW_ARTIFACTS_DESTINATION (s3://, gs://, NFS).
set -euo pipefail

ENV_FILE="${NONE_SWEEP_ENV_FILE:-$HOME/.none-sweep.env}"
# shellcheck disable=SC1090
[ -f "$ENV_FILE" ] && . "$ENV_FILE"
HOST="${NONE_SWEEP_HEAD_IP:?run cluster/node_setup.sh first: NONE_SWEEP_HEAD_IP is not set}"
PORT="${MLFLOW_PORT:-5000}"
HERE="${BASH_SOURCE[0]%/*}"; [ "$HERE" != "${BASH_SOURCE[0]}" ] || HERE=.   # run as `bash node_setup.sh` too
# shellcheck source=cluster/defaults.sh
. "$HERE/defaults.sh"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-$NONE_SWEEP_DEFAULT_BACKEND}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-$HOME/mlflow/artifacts}"
STATE="${NONE_SWEEP_MLFLOW_DIR:-$HOME/mlflow}"
PASSFILE="${PGPASSFILE:-$STATE/pgpass}"
MLFLOW="${MLFLOW_BIN:-mlflow}"
PY="${NONE_SWEEP_PYTHON:-python}"

case "$HOST" in
  0.0.0.0|::|"*") echo "start_mlflow.sh: refusing to bind MLflow to all interfaces ($HOST)" >&2; exit 2 ;;
esac
if [[ "$BACKEND" =~ ^[^:]+://[^/@:]*:[^/@]*@ ]]; then
  echo "start_mlflow.sh: MLFLOW_BACKEND_STORE_URI carries a password; leave it out and put it in $PASSFILE (HOST:PORT:DB:USER:PASSWORD, chmod 600)" >&2
  exit 2
fi
case "$BACKEND" in
  postgresql://*|postgresql+psycopg2://*)
    if [ -f "$PASSFILE" ]; then
      export PGPASSFILE="$PASSFILE"
    else
      echo "start_mlflow.sh: no password file $PASSFILE (cluster/start_postgres.sh writes it); connecting without one" >&2
    fi ;;
esac
mkdir -p "$STATE"
case "$ARTIFACTS" in *://*) ;; *) mkdir -p "$ARTIFACTS" ;; esac

# Stop the server this script started before (its process group), if it is still running.
if [ -f "$STATE/server.pid" ]; then
  OLD="$(cat "$STATE/server.pid")"
  if kill -0 "$OLD" 2>/dev/null; then
    kill -- "-$OLD" 2>/dev/null || kill "$OLD" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$OLD" 2>/dev/null || break; sleep 1; done
    kill -0 "$OLD" 2>/dev/null && { kill -KILL -- "-$OLD" 2>/dev/null || true; sleep 1; }
  fi
  rm -f "$STATE/server.pid"
fi

setsid nohup "$MLFLOW" server \
  --backend-store-uri "$BACKEND" \
  --serve-artifacts --artifacts-destination "$ARTIFACTS" \
  --host "$HOST" --port "$PORT" \
  --allowed-hosts "$HOST:$PORT,$HOST,localhost:$PORT,127.0.0.1:$PORT" \
  --workers "${MLFLOW_WORKERS:-2}" \
  > "$STATE/server.log" 2>&1 < /dev/null &
echo $! > "$STATE/server.pid"

# Wait until it answers on the private IP (first start creates the database schema: can take a while).
for _ in $(seq "${MLFLOW_START_TIMEOUT:-120}"); do
  if "$PY" - "$HOST" "$PORT" <<'EOF' 2>/dev/null
import sys, urllib.request
host, port = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
  then
    echo "start_mlflow.sh: MLflow at http://$HOST:$PORT (pid $(cat "$STATE/server.pid"), log $STATE/server.log)"
    exit 0
  fi
  if ! kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then break; fi
  sleep 1
done
echo "start_mlflow.sh: MLflow did not come up on $HOST:$PORT; last log lines:" >&2
tail -n 20 "$STATE/server.log" >&2 || true
exit 1
