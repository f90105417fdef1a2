#!/usr/bin/env bash
# Set up (or check) the PostgreSQL that holds MLflow's runs on the head node; the cluster YAMLs run it from
# head_setup_commands, after cluster/node_setup.sh wrote ~/.none-sweep.env and before cluster/start_mlflow.sh
# (head_start_ray_commands). Idempotent: `ray up` re-runs it on every update. Why PostgreSQL and not SQLite:
# cluster/README.md, "Why PostgreSQL".
#
# 1. Debian/Ubuntu's `postgresql` package (apt, needs sudo) unless a server is installed already; started.
# 2. Listening on loopback only (ALTER SYSTEM listen_addresses = '127.0.0.1' unless it already is loopback
#    only, e.g. Debian's default 'localhost'), checked against the kernel's sockets (ss). Only the MLflow
#    server on this host talks to the database; workers and the driver go through MLflow's REST API.
# 3. A role and a database named after MLFLOW_BACKEND_STORE_URI (postgresql+psycopg2://mlflow@127.0.0.1:5432/
#    mlflow by default). The role's password is generated here once and kept in ~/mlflow/pgpass (mode 600,
#    libpq's password-file format), which start_mlflow.sh hands to MLflow as PGPASSFILE. It is never printed,
#    never on a command line, never in the URI (so neither in ~/.none-sweep.env, which every Ray worker
#    inherits, nor in anything MLflow records).
#
# A managed database (RDS, Cloud SQL, ...) instead: node_setup.sh --backend-store-uri postgresql+psycopg2://
# USER@HOST:5432/DB (no password in it) and its password as a line HOST:5432:DB:USER:PASSWORD in
# ~/mlflow/pgpass (chmod 600); this script then starts nothing. A non-PostgreSQL store: nothing either.
set -euo pipefail

ENV_FILE="${NONE_SWEEP_ENV_FILE:-$HOME/.none-sweep.env}"
# shellcheck disable=SC1090
[ -f "$ENV_FILE" ] && . "$ENV_FILE"
STATE="${NONE_SWEEP_MLFLOW_DIR:-$HOME/mlflow}"
PASSFILE="${PGPASSFILE:-$STATE/pgpass}"
HERE="${BASH_SOURCE[0]%/*}"; [ "$HERE" != "${BASH_SOURCE[0]}" ] || HERE=.   # run as `bash node_setup.sh` too
# shellcheck source=cluster/defaults.sh
. "$HERE/defaults.sh"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-$NONE_SWEEP_DEFAULT_BACKEND}"
WAIT="${NONE_SWEEP_PG_START_TIMEOUT:-60}"
me="start_postgres.sh"

# The URI is never echoed: whatever it holds stays out of logs.
case "$BACKEND" in
  postgresql://*|postgresql+psycopg2://*) ;;
  *) echo "$me: the MLflow store is not PostgreSQL (${BACKEND%%:*}); nothing to set up"; exit 0 ;;
esac
if [[ "$BACKEND" =~ ^[^:]+://[^/@:]*:[^/@]*@ ]]; then
  echo "$me: MLFLOW_BACKEND_STORE_URI carries a password; leave it out and put it in $PASSFILE (HOST:PORT:DB:USER:PASSWORD, chmod 600)" >&2
  exit 2
fi
NAME='[A-Za-z_][A-Za-z0-9_]*'
LOCAL_URI="^postgresql(\+psycopg2)?://($NAME)@(127\.0\.0\.1|localhost)(:([0-9]+))?/($NAME)\$"
AUTHORITY="${BACKEND#*://}"; AUTHORITY="${AUTHORITY%%/*}"; HOSTPORT="${AUTHORITY##*@}"
if [[ "$BACKEND" =~ $LOCAL_URI ]]; then
  PG_USER="${BASH_REMATCH[2]}"; PG_HOST="${BASH_REMATCH[3]}"; PG_PORT="${BASH_REMATCH[5]:-5432}"; PG_DB="${BASH_REMATCH[6]}"
else
  case "${HOSTPORT%:*}" in
    127.0.0.1|localhost|"")
      echo "$me: expected MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://USER@127.0.0.1:PORT/DB for the head's own database" >&2
      exit 2 ;;
  esac
  echo "$me: the MLflow store is a database elsewhere (${HOSTPORT%:*}); nothing to start on this node"
  exit 0
fi

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "$me: installing PostgreSQL (apt)"
  sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq postgresql
fi
sudo service postgresql start

# The server's superuser, over its Unix socket (peer authentication); SQL goes on stdin, not on argv.
admin() { (cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@"); }

wait_ready() {
  for _ in $(seq "$WAIT"); do
    if admin -Atc 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "$me: PostgreSQL does not answer on port $PG_PORT after ${WAIT}s (pg_lsclusters; /var/log/postgresql/)" >&2
  exit 1
}

loopback_only() {  # every entry of a listen_addresses value is a loopback address (and there is one)
  local item items
  IFS=',' read -ra items <<< "$1"
  [ "${#items[@]}" -gt 0 ] || return 1
  for item in "${items[@]}"; do
    case "${item// /}" in localhost|127.0.0.1|::1) ;; *) return 1 ;; esac
  done
}

wait_ready
LISTEN="$(admin -Atc 'SHOW listen_addresses')"
if ! loopback_only "$LISTEN"; then
  echo "$me: listen_addresses was '$LISTEN'; setting 127.0.0.1 only"
  admin -c "ALTER SYSTEM SET listen_addresses = '127.0.0.1'"
  sudo service postgresql restart
  wait_ready
  LISTEN="$(admin -Atc 'SHOW listen_addresses')"
  if ! loopback_only "$LISTEN"; then
    echo "$me: listen_addresses is still '$LISTEN' after a restart" >&2
    exit 1
  fi
fi
# What the kernel says, whatever the configuration says: nothing on this port beyond loopback.
if command -v ss >/dev/null 2>&1; then
  EXPOSED="$(ss -Hltn "sport = :$PG_PORT" | awk '{print $4}' | grep -Ev '^(127\.[0-9.]+|\[::1\]):[0-9]+$' || true)"
  if [ -n "$EXPOSED" ]; then
    echo "$me: port $PG_PORT listens beyond loopback: $(echo "$EXPOSED" | tr '\n' ' ')" >&2
    exit 1
  fi
fi

# The password: the one in the password file if there is one (a re-run keeps it), else 24 random bytes in hex
# (no character that libpq's file format or a URI would need to escape).
umask 077
mkdir -p "$STATE"
KEY="$PG_HOST:$PG_PORT:$PG_DB:$PG_USER:"
PW=""
if [ -f "$PASSFILE" ]; then
  PW="$(awk -v k="$KEY" 'index($0, k) == 1 { print substr($0, length(k) + 1); exit }' "$PASSFILE")"
fi
if [ -z "$PW" ]; then
  PW="$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
fi
[ -n "$PW" ] || { echo "$me: no password (from $PASSFILE or /dev/urandom)" >&2; exit 1; }
{
  if [ -f "$PASSFILE" ]; then awk -v k="$KEY" 'index($0, k) != 1' "$PASSFILE"; fi
  printf '%s%s\n' "$KEY" "$PW"   # printf is a builtin: the password is on no process's argv
} > "$PASSFILE.tmp"
chmod 600 "$PASSFILE.tmp"
mv "$PASSFILE.tmp" "$PASSFILE"

# The role (its password set on every run, so it always matches the file) and its database, which only it
# may connect to. Identifiers were checked against $NAME above.
admin <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$PG_USER') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')\gexec
ALTER ROLE "$PG_USER" WITH LOGIN PASSWORD '${PW//\'/\'\'}';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
REVOKE ALL ON DATABASE "$PG_DB" FROM PUBLIC;
GRANT ALL ON DATABASE "$PG_DB" TO "$PG_USER";
SQL
unset PW

# What MLflow will do: log in over TCP on loopback with the password file, never prompting.
if ! PGPASSFILE="$PASSFILE" psql -X -q -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -Atc 'SELECT 1' >/dev/null; then
  echo "$me: role $PG_USER cannot log in to $PG_DB on $PG_HOST:$PG_PORT with $PASSFILE (pg_hba.conf?)" >&2
  exit 1
fi
VERSION="$(admin -Atc 'SHOW server_version')"
echo "$me: PostgreSQL $VERSION on $PG_HOST:$PG_PORT (listen_addresses '$LISTEN'), database $PG_DB, role $PG_USER, password in $PASSFILE"
