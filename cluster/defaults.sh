# Defaults the cluster scripts share: sourced by node_setup.sh, start_postgres.sh and start_mlflow.sh, never run.
# One place for each value; the cluster YAMLs pass the same URI to node_setup.sh explicitly, for the reader.
# shellcheck shell=bash disable=SC2034

# MLflow's runs: the head's own PostgreSQL (cluster/start_postgres.sh sets it up). No password in the URI: it
# lives in ~/mlflow/pgpass (libpq's password file), which start_mlflow.sh hands to MLflow.
NONE_SWEEP_DEFAULT_BACKEND="postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow"
