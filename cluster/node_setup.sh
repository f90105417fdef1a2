#!/usr/bin/env bash
# Set up one cluster node (head or worker) for none-sweep; the cluster YAMLs' setup_commands run it after
# file_mounts has synced this repository to ~/none-sweep. Idempotent: `ray up` re-runs it on every update.
#
#   bash ~/none-sweep/cluster/node_setup.sh --storage s3://BUCKET/none-sweep/ray \
#        --artifacts s3://BUCKET/none-sweep/mlflow-artifacts [--backend-store-uri URI] [--port 5000]
#
# 1. a venv ~/venv with none-sweep[cluster,postgres] (editable, from the synced repo; psycopg2 for MLflow's
#    PostgreSQL store) and the Ray version of the laptop;
# 2. ~/.none-sweep.env, sourced first thing from ~/.bashrc, so `ray start`, every Ray worker process it
#    spawns, `ray submit` and `ray job submit` entrypoints all see:
#      NONE_SWEEP_STORAGE    shared Ray Tune storage (s3://, gs:// or an NFS path mounted on every node)
#      MLFLOW_TRACKING_URI   http://<head private IP>:<port> (the server cluster/start_mlflow.sh starts)
#      NONE_SWEEP_HEAD_IP    the head's private IP (RAY_HEAD_IP on workers; Ray's node IP on the head)
#      MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, MLFLOW_PORT   (read by start_postgres.sh and
#                            start_mlflow.sh); the store URI is the head's PostgreSQL by default and never
#                            holds a password (refused): that lives in ~/mlflow/pgpass, see start_postgres.sh
#      NONE_SWEEP_HOME       the synced repository (run_sweep.py resolves relative space files there)
set -euo pipefail

STORAGE=""
ARTIFACTS=""
HERE="${BASH_SOURCE[0]%/*}"; [ "$HERE" != "${BASH_SOURCE[0]}" ] || HERE=.   # run as `bash node_setup.sh` too
# shellcheck source=cluster/defaults.sh
. "$HERE/defaults.sh"
BACKEND="$NONE_SWEEP_DEFAULT_BACKEND"   # cluster/start_postgres.sh sets it up
PORT=5000
RAY_PIN="ray[default,tune]==2.60.0"   # must equal the laptop's `ray --version`
SKIP_INSTALL=0
REPO="${NONE_SWEEP_HOME:-$HOME/none-sweep}"
VENV="${NONE_SWEEP_VENV:-$HOME/venv}"

while [ $# -gt 0 ]; do
  case "$1" in
    --storage) STORAGE="$2"; shift 2 ;;
    --artifacts) ARTIFACTS="$2"; shift 2 ;;
    --backend-store-uri) BACKEND="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --ray) RAY_PIN="$2"; shift 2 ;;
    --repo) REPO="$2"; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    *) echo "node_setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$STORAGE" ] || { echo "node_setup.sh: --storage is required (s3://..., gs://... or an NFS path)" >&2; exit 2; }
[ -n "$ARTIFACTS" ] || ARTIFACTS="$HOME/mlflow/artifacts"
# ~/.none-sweep.env is sourced by every shell and inherited by every Ray worker: no secret goes in it.
if [[ "$BACKEND" =~ ^[^:]+://[^/@:]*:[^/@]*@ ]]; then
  echo "node_setup.sh: --backend-store-uri carries a password; leave it out and put it in ~/mlflow/pgpass (HOST:PORT:DB:USER:PASSWORD, chmod 600)" >&2
  exit 2
fi

if [ "$SKIP_INSTALL" = 0 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv && python3 -m venv "$VENV"; }
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # boto3 for s3://, google-cloud-storage for gs:// (Ray Tune storage itself goes through pyarrow);
  # the postgres extra (psycopg2-binary) for the MLflow server's PostgreSQL store.
  "$VENV/bin/python" -m pip install -q -e "${REPO}[cluster,postgres]" "$RAY_PIN" boto3 google-cloud-storage
fi

PY="${NONE_SWEEP_PYTHON:-$VENV/bin/python}"
if [ -n "${RAY_HEAD_IP:-}" ]; then
  HEAD_IP="$RAY_HEAD_IP"          # a worker: the autoscaler exports the head's IP to setup_commands
else
  HEAD_IP="$("$PY" -c 'import ray.util; print(ray.util.get_node_ip_address())')"   # the head itself
fi
case "$HEAD_IP" in
  ""|0.0.0.0|127.*) echo "node_setup.sh: cannot tell the head's private IP (got '$HEAD_IP')" >&2; exit 1 ;;
esac

ENV_FILE="$HOME/.none-sweep.env"
cat > "$ENV_FILE.tmp" <<EOF
# Written by none-sweep cluster/node_setup.sh; sourced from ~/.bashrc.
[ -f "$VENV/bin/activate" ] && . "$VENV/bin/activate"
export NONE_SWEEP_HOME="$REPO"
export NONE_SWEEP_HEAD_IP="$HEAD_IP"
export NONE_SWEEP_STORAGE="$STORAGE"
export MLFLOW_PORT="$PORT"
export MLFLOW_TRACKING_URI="http://$HEAD_IP:$PORT"
export MLFLOW_BACKEND_STORE_URI="$BACKEND"
export MLFLOW_ARTIFACTS_DESTINATION="$ARTIFACTS"
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
touch "$HOME/.bashrc"
# First line of ~/.bashrc: Ubuntu's returns early for non-interactive shells.
if ! grep -qxF '[ -f ~/.none-sweep.env ] && . ~/.none-sweep.env' "$HOME/.bashrc"; then
  { echo '[ -f ~/.none-sweep.env ] && . ~/.none-sweep.env'; cat "$HOME/.bashrc"; } > "$HOME/.bashrc.none-sweep" && mv "$HOME/.bashrc.none-sweep" "$HOME/.bashrc"
fi
echo "node_setup.sh: head $HEAD_IP, MLflow http://$HEAD_IP:$PORT, storage $STORAGE"
