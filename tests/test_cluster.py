"""Cluster configs: Ray's own schema and config checks, the KubeRay RayJob, node set-up, the head's PostgreSQL
set-up (against stand-ins for sudo, apt, the service and psql) and the entry script."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.net import free_port

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = ["aws-gpu.yaml", "gcp-gpu.yaml", "onprem.yaml"]
#: the head's own PostgreSQL (cluster/start_postgres.sh): no password in it, that lives in ~/mlflow/pgpass
PG_URI = "postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def ray_schema() -> dict:
    import ray

    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    assert path.is_file(), f"the installed ray ships no {path}"
    return json.loads(path.read_text())


def commands(cfg: dict) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    return [c for k in keys for c in cfg.get(k, [])]


# -- cluster-launcher configs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_config_validates_against_ray_schema(name):
    import jsonschema

    jsonschema.validate(load(name), ray_schema())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_config_passes_ray_s_own_preparation(name):
    """What `ray up` does before touching a cloud: fill defaults, then validate (schema + node types)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(load(name))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml"])
def test_cloud_configs_have_gpu_workers_and_no_trials_on_the_head(name):
    cfg = load(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert all(t["min_workers"] >= 1 and t["max_workers"] <= cfg["max_workers"] for t in workers)
    assert cfg["idle_timeout_minutes"] <= 15
    if name == "aws-gpu.yaml":
        assert all(t["node_config"]["InstanceType"].startswith("g5.") for t in workers)
        assert cfg["provider"]["cache_stopped_nodes"] is False
    else:
        assert all(t["node_config"]["guestAccelerators"][0]["acceleratorCount"] == 1 for t in workers)


def test_onprem_is_a_local_provider_with_ips():
    cfg = load("onprem.yaml")
    assert cfg["provider"]["type"] == "local"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", cfg["provider"]["head_ip"])
    assert cfg["provider"]["worker_ips"] and cfg["max_workers"] == len(cfg["provider"]["worker_ips"])


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_config_installs_the_project_sets_storage_and_starts_mlflow(name):
    cfg = load(name)
    assert cfg["file_mounts"] == {"~/none-sweep": "."}
    assert ".venv" in cfg["rsync_exclude"]
    (setup,) = cfg["setup_commands"]
    argv = shlex.split(setup)
    assert argv[:2] == ["bash", "~/none-sweep/cluster/node_setup.sh"]
    storage = argv[argv.index("--storage") + 1]
    expected = {"aws-gpu.yaml": "s3://", "gcp-gpu.yaml": "gs://", "onprem.yaml": "/mnt/nfs/"}[name]
    assert storage.startswith(expected)
    assert argv[argv.index("--backend-store-uri") + 1] == PG_URI
    # the head sets up its PostgreSQL after node_setup.sh (Ray runs setup_commands, then head_setup_commands)
    assert cfg["head_setup_commands"] == ["bash ~/none-sweep/cluster/start_postgres.sh"]
    assert (CLUSTER / "start_postgres.sh").is_file()
    assert cfg["head_start_ray_commands"][-1] == "bash ~/none-sweep/cluster/start_mlflow.sh"
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    # nothing listens on every interface: not MLflow, not the dashboard
    assert not any("0.0.0.0" in c for c in commands(cfg))


def test_start_mlflow_binds_the_private_ip_with_allowed_hosts():
    script = (CLUSTER / "start_mlflow.sh").read_text()
    assert '--host "$HOST"' in script and "--allowed-hosts" in script
    assert '0.0.0.0|::|"*") echo "start_mlflow.sh: refusing' in script
    assert "--backend-store-uri" in script and "--artifacts-destination" in script


def test_start_mlflow_refuses_all_interfaces(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("export NONE_SWEEP_HEAD_IP=0.0.0.0\n")
    proc = subprocess.run(
        ["bash", str(CLUSTER / "start_mlflow.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path), "NONE_SWEEP_ENV_FILE": str(env_file)},
    )
    assert proc.returncode == 2
    assert "refusing to bind MLflow to all interfaces" in proc.stderr


def test_start_mlflow_refuses_a_password_in_the_store_uri(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text(
        "export NONE_SWEEP_HEAD_IP=10.1.2.3\n"
        "export MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow:s3cret-pw@db.example:5432/mlflow\n"
    )
    proc = subprocess.run(
        ["bash", str(CLUSTER / "start_mlflow.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path), "NONE_SWEEP_ENV_FILE": str(env_file)},
    )
    assert proc.returncode == 2 and "carries a password" in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    assert not (tmp_path / "mlflow" / "server.pid").exists()


def test_start_mlflow_hands_the_password_file_to_mlflow_not_the_password(tmp_path):
    """A stand-in `mlflow` records what the real one would get: the URI without a password on its command
    line, and PGPASSFILE (the file start_postgres.sh writes) in its environment."""
    state = tmp_path / "mlflow"
    state.mkdir()
    (state / "pgpass").write_text("127.0.0.1:5432:mlflow:mlflow:0123abcd\n")
    (state / "pgpass").chmod(0o600)
    fake = tmp_path / "fake-mlflow"
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "PGPASSFILE=$PGPASSFILE"\n')
    fake.chmod(0o755)
    env_file = tmp_path / "env"
    env_file.write_text(f"export NONE_SWEEP_HEAD_IP=127.0.0.1\nexport MLFLOW_PORT={free_port()}\n")
    proc = subprocess.run(
        ["bash", str(CLUSTER / "start_mlflow.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PGPASS"))},
            "HOME": str(tmp_path),
            "NONE_SWEEP_ENV_FILE": str(env_file),
            "MLFLOW_BIN": str(fake),
            "NONE_SWEEP_PYTHON": sys.executable,
        },
    )
    assert proc.returncode == 1 and "did not come up" in proc.stderr  # the stand-in exits at once
    log = (state / "server.log").read_text()
    assert f"--backend-store-uri {PG_URI} " in log  # the default store: the head's PostgreSQL
    assert f"PGPASSFILE={state / 'pgpass'}" in log
    assert "0123abcd" not in log + proc.stdout + proc.stderr


# -- start_postgres.sh (sudo, apt-get, service, psql and ss replaced by stand-ins) --------------------------

#: what the stand-ins do; each appends its command line to calls, psql's stdin (the SQL) goes to sql
FAKES = {
    "sudo": 'echo "sudo $*" >> "$FAKE/calls"; [ "$1" = -u ] && shift 2; exec "$@"',
    "apt-get": 'echo "apt-get $*" >> "$FAKE/calls"\n'
    'case " $* " in *" install "*) printf \'#!/bin/sh\\n\' > "$FAKE/bin/pg_lsclusters"; '
    'chmod +x "$FAKE/bin/pg_lsclusters" ;; esac',
    "service": 'echo "service $*" >> "$FAKE/calls"\n'
    'if [ "$2" = restart ] && [ -f "$FAKE/listen.next" ]; then mv "$FAKE/listen.next" "$FAKE/listen"; fi',
    "psql": 'echo "psql PGPASSFILE=${PGPASSFILE:-} $*" >> "$FAKE/calls"\n'
    'case "$*" in\n'
    '  *"SHOW listen_addresses"*) cat "$FAKE/listen" ;;\n'
    '  *"SHOW server_version"*) echo "16.4 (stand-in)" ;;\n'
    '  *"ALTER SYSTEM SET listen_addresses = \'127.0.0.1\'"*) echo 127.0.0.1 > "$FAKE/listen.next" ;;\n'
    '  *"SELECT 1"*) echo 1 ;;\n'
    '  *) cat >> "$FAKE/sql" ;;\n'
    "esac",
    "ss": 'cat "$FAKE/ss"',
}
#: the real tools start_postgres.sh (and the stand-ins) use; PATH holds nothing else, so one it does not list fails
REAL_TOOLS = ("bash", "env", "seq", "sleep", "awk", "grep", "tr", "od", "mkdir", "chmod", "mv", "cat")


class FakeHead:
    """A home directory and a PATH of stand-ins in which cluster/start_postgres.sh runs as on a fresh head."""

    def __init__(self, root: Path, listen: str = "localhost", ss: str = "127.0.0.1:5432", installed: bool = False):
        self.root, self.home = root, root / "home"
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.home.mkdir()
        bash = shutil.which("bash")
        for name, body in FAKES.items():
            (self.bin / name).write_text(f"#!{bash}\n{body}\n")
            (self.bin / name).chmod(0o755)
        for tool in REAL_TOOLS:
            (self.bin / tool).symlink_to(shutil.which(tool))
        if installed:
            (self.bin / "pg_lsclusters").write_text("#!/bin/sh\n")
            (self.bin / "pg_lsclusters").chmod(0o755)
        (root / "listen").write_text(listen + "\n")
        (root / "ss").write_text(f"LISTEN 0 244 {ss} *:*\n")
        self.pgpass = self.home / "mlflow" / "pgpass"

    def run(self, backend: str | None = None) -> subprocess.CompletedProcess:
        for name in ("calls", "sql"):
            (self.root / name).write_text("")
        env_file = self.home / ".none-sweep.env"
        env_file.write_text(f"export MLFLOW_BACKEND_STORE_URI='{backend}'\n" if backend else "")
        env = {
            "HOME": str(self.home),
            "PATH": str(self.bin),
            "FAKE": str(self.root),
            "NONE_SWEEP_PG_START_TIMEOUT": "3",
        }
        return subprocess.run(
            [str(self.bin / "bash"), str(CLUSTER / "start_postgres.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    def calls(self) -> str:
        return (self.root / "calls").read_text()

    def sql(self) -> str:
        return (self.root / "sql").read_text()


def test_start_postgres_installs_listens_on_loopback_only_and_keeps_the_password_private(tmp_path):
    head = FakeHead(tmp_path, listen="*")
    head.pgpass.parent.mkdir()
    head.pgpass.write_text("db.example:5432:other:me:keep-me\n")  # someone else's line survives
    proc = head.run()  # the default store: the head's own PostgreSQL
    assert proc.returncode == 0, proc.stderr
    calls = head.calls()
    assert (
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq postgresql" in calls
    )
    assert "sudo service postgresql start" in calls
    # '*' (every interface) becomes loopback only, applied by a restart
    assert "-c ALTER SYSTEM SET listen_addresses = '127.0.0.1'" in calls and "service postgresql restart" in calls
    assert "listen_addresses '127.0.0.1'" in proc.stdout
    # the password: generated, mode 600 in libpq's format, never on a command line or in the output
    assert stat.S_IMODE(head.pgpass.stat().st_mode) == 0o600
    other, ours = head.pgpass.read_text().splitlines()
    assert other == "db.example:5432:other:me:keep-me"
    match = re.fullmatch(r"127\.0\.0\.1:5432:mlflow:mlflow:([0-9a-f]{48})", ours)
    assert match, ours
    password = match.group(1)
    assert password not in calls + proc.stdout + proc.stderr
    sql = head.sql()  # what psql read on stdin, as the postgres superuser
    assert f"ALTER ROLE \"mlflow\" WITH LOGIN PASSWORD '{password}';" in sql
    assert "format('CREATE ROLE %I LOGIN', 'mlflow') WHERE NOT EXISTS" in sql
    assert "format('CREATE DATABASE %I OWNER %I', 'mlflow', 'mlflow') WHERE NOT EXISTS" in sql
    assert 'REVOKE ALL ON DATABASE "mlflow" FROM PUBLIC;' in sql
    # every statement as the superuser went through `sudo -u postgres` (peer authentication on the socket)
    admin = [line for line in calls.splitlines() if line.startswith("psql ") and "-d postgres" in line]
    assert admin and len(admin) == sum(line.startswith("sudo -u postgres psql ") for line in calls.splitlines())
    # then it logs in as MLflow will: TCP on loopback with the password file
    assert f"psql PGPASSFILE={head.pgpass} -X -q -w -h 127.0.0.1 -p 5432 -U mlflow -d mlflow -Atc SELECT 1" in calls

    # `ray up` again: nothing to install or restart, the same password
    proc = head.run()
    assert proc.returncode == 0, proc.stderr
    calls = head.calls()
    assert "apt-get" not in calls and "restart" not in calls and "ALTER SYSTEM" not in calls
    assert head.pgpass.read_text().splitlines() == [other, ours]
    assert f"PASSWORD '{password}'" in head.sql()


def test_start_postgres_stops_when_the_port_is_open_beyond_loopback(tmp_path):
    head = FakeHead(tmp_path, installed=True, ss="0.0.0.0:5432")  # what the kernel says wins over the config
    proc = head.run()
    assert proc.returncode == 1 and "listens beyond loopback" in proc.stderr
    assert not head.pgpass.exists() and head.sql() == ""


@pytest.mark.parametrize(
    "backend, rc, says",
    [
        (
            "postgresql+psycopg2://mlflow@db.example.internal:5432/mlflow",
            0,
            "a database elsewhere (db.example.internal)",
        ),
        ("sqlite:////home/ubuntu/mlflow/mlflow.db", 0, "not PostgreSQL (sqlite)"),
        ("postgresql://mlflow:s3cret-pw@127.0.0.1:5432/mlflow", 2, "carries a password"),
        ("postgresql://mlflow:s3cret-pw@db.example.internal:5432/mlflow", 2, "carries a password"),
    ],
)
def test_start_postgres_leaves_other_stores_alone_and_refuses_a_password_in_the_uri(tmp_path, backend, rc, says):
    head = FakeHead(tmp_path)
    proc = head.run(backend)
    assert proc.returncode == rc and says in proc.stdout + proc.stderr
    assert head.calls() == "" and not head.pgpass.exists()  # no apt, no sudo, no psql
    assert "s3cret" not in proc.stdout + proc.stderr


# -- node_setup.sh ----------------------------------------------------------------------------------------


def node_setup(home: Path, *args: str, head_ip: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_HEAD_IP", "NONE_SWEEP_HOME", "NONE_SWEEP_VENV")}
    env.update(HOME=str(home), NONE_SWEEP_PYTHON=sys.executable)
    if head_ip:
        env["RAY_HEAD_IP"] = head_ip
    return subprocess.run(
        ["bash", str(CLUSTER / "node_setup.sh"), "--skip-install", *args], capture_output=True, text=True, env=env
    )


def sourced_env(home: Path) -> dict[str, str]:
    """The environment a `bash -i` (what Ray's command runner uses) sees after ~/.bashrc."""
    out = subprocess.run(
        ["bash", "-c", ". ~/.bashrc; env"],
        capture_output=True,
        text=True,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_node_setup_on_a_worker_writes_the_env(tmp_path):
    (tmp_path / ".bashrc").write_text("case $- in *i*) ;; *) return;; esac\nexport LATE=1\n")
    proc = node_setup(tmp_path, "--storage", "s3://b/ray", "--artifacts", "s3://b/art", head_ip="10.1.2.3")
    assert proc.returncode == 0, proc.stderr
    env = sourced_env(tmp_path)
    assert env["NONE_SWEEP_STORAGE"] == "s3://b/ray"
    assert env["MLFLOW_TRACKING_URI"] == "http://10.1.2.3:5000"
    assert env["NONE_SWEEP_HEAD_IP"] == "10.1.2.3"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://b/art"
    assert env["NONE_SWEEP_HOME"] == f"{tmp_path}/none-sweep"
    assert env["MLFLOW_BACKEND_STORE_URI"] == PG_URI  # the default: the head's PostgreSQL, no password
    assert "LATE" not in env  # non-interactive: proves the env line sits above Ubuntu's early return
    # idempotent: `ray up` re-runs setup_commands
    assert node_setup(tmp_path, "--storage", "s3://b/ray2", head_ip="10.1.2.3").returncode == 0
    bashrc = (tmp_path / ".bashrc").read_text()
    assert bashrc.count(".none-sweep.env") == 2 and bashrc.splitlines()[0].startswith("[ -f ~/.none-sweep.env ]")
    assert sourced_env(tmp_path)["NONE_SWEEP_STORAGE"] == "s3://b/ray2"


def test_node_setup_on_the_head_uses_ray_s_node_ip(tmp_path):
    import ray.util

    proc = node_setup(tmp_path, "--storage", "/mnt/nfs/x", "--port", "5123")
    assert proc.returncode == 0, proc.stderr
    ip = ray.util.get_node_ip_address()
    assert sourced_env(tmp_path)["MLFLOW_TRACKING_URI"] == f"http://{ip}:5123"


def test_node_setup_needs_storage(tmp_path):
    proc = node_setup(tmp_path)
    assert proc.returncode == 2 and "--storage is required" in proc.stderr


def test_node_setup_keeps_a_password_out_of_the_env_file(tmp_path):
    """~/.none-sweep.env is sourced by every shell and inherited by every Ray worker: no password goes in it."""
    uri = "postgresql+psycopg2://mlflow:s3cret-pw@db.example:5432/mlflow"
    proc = node_setup(tmp_path, "--storage", "s3://b/ray", "--backend-store-uri", uri, head_ip="10.1.2.3")
    assert proc.returncode == 2 and "carries a password" in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    assert not (tmp_path / ".none-sweep.env").exists()


# -- run_sweep.py -----------------------------------------------------------------------------------------


def run_sweep_module():
    spec = importlib.util.spec_from_file_location("run_sweep", CLUSTER / "run_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENV = {"NONE_SWEEP_STORAGE": "s3://b/ray", "MLFLOW_TRACKING_URI": "http://10.0.0.5:5000"}


def test_run_sweep_adds_the_cluster_s_settings(tmp_path):
    rs = run_sweep_module()
    argv = rs.sweep_argv(["search_spaces/digits_tiny.yaml", "--name", "d", "--num-samples", "4"], ENV)
    assert argv == [
        "sweep",
        "search_spaces/digits_tiny.yaml",
        "--name",
        "d",
        "--num-samples",
        "4",
        "--address",
        "auto",
        "--storage",
        "s3://b/ray",
        "--tracking-uri",
        "http://10.0.0.5:5000",
    ]


def test_run_sweep_keeps_explicit_arguments_and_resolves_the_space(tmp_path):
    rs = run_sweep_module()
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "s.yaml").write_text("x: 1\n")
    env = {**ENV, "NONE_SWEEP_HOME": str(tmp_path), "RAY_ADDRESS": "10.0.0.5:6379"}
    argv = rs.sweep_argv(["--", "search_spaces/s.yaml", "--storage=/nfs/r", "--tracking-uri", "sqlite:///x.db"], env)
    assert argv == [
        "sweep",
        str(tmp_path / "search_spaces" / "s.yaml"),
        "--storage=/nfs/r",
        "--tracking-uri",
        "sqlite:///x.db",
        "--address",
        "10.0.0.5:6379",
    ]


def test_run_sweep_without_the_environment_is_a_clear_error(capsys, monkeypatch):
    rs = run_sweep_module()
    for var in ("NONE_SWEEP_STORAGE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    assert rs.main(["search_spaces/digits_tiny.yaml"]) == 2
    assert "NONE_SWEEP_STORAGE is not set and --storage was not given" in capsys.readouterr().err


def test_run_sweep_reaches_the_sweep_cli(capsys, tmp_path, monkeypatch):
    """Through the real CLI: a space that does not exist fails in the sweep's own preflight (exit 2)."""
    rs = run_sweep_module()
    monkeypatch.setenv("NONE_SWEEP_STORAGE", str(tmp_path / "ray"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    try:
        from none_sweep.cli import build_parser

        build_parser()
    except ModuleNotFoundError as exc:
        pytest.skip(f"the sweep CLI has not landed yet ({exc})")
    assert rs.main([str(tmp_path / "missing.yaml"), "--name", "x"]) == 2
    captured = capsys.readouterr()
    assert "run_sweep.py: none-sweep sweep" in captured.out and "--address auto" in captured.out
    assert "none-sweep sweep: error:" in captured.err


# -- KubeRay ----------------------------------------------------------------------------------------------


def kuberay_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay-rayjob.yaml").read_text()) if d]


def test_kuberay_rayjob_has_what_a_rayjob_needs():
    (job,) = [d for d in kuberay_docs() if d["kind"] == "RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python /home/ray/none-sweep/cluster/run_sweep.py ")
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["NONE_SWEEP_STORAGE"].startswith("s3://")
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow.none-sweep.svc.cluster.local:5000"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] and head_container["name"] == "ray-head"
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265}
    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"] and isinstance(group["rayStartParams"], dict)
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert worker["image"] == head_container["image"]


def kuberay_doc(kind: str, name: str) -> dict:
    (doc,) = [d for d in kuberay_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_kuberay_mlflow_server_binds_the_pod_ip():
    assert {"RayJob", "Deployment", "StatefulSet", "Service", "PersistentVolumeClaim"} <= {
        d["kind"] for d in kuberay_docs()
    }
    deployment, service = kuberay_doc("Deployment", "mlflow"), kuberay_doc("Service", "mlflow")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["mlflow", "server"]
    assert "--host=$(POD_IP)" in c["args"]
    assert c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    hosts = next(a for a in c["args"] if a.startswith("--allowed-hosts="))
    assert "mlflow.none-sweep.svc.cluster.local:5000" in hosts
    assert not any("0.0.0.0" in a for a in c["args"])
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_kuberay_mlflow_keeps_its_runs_in_postgres_with_the_password_from_a_secret():
    pg, pg_service = kuberay_doc("StatefulSet", "postgres"), kuberay_doc("Service", "postgres")
    pod = pg["spec"]["template"]["spec"]
    (db,) = pod["containers"]
    assert db["image"] == "postgres:16"
    db_env = {e["name"]: e for e in db["env"]}
    secret = {"secretKeyRef": {"name": "mlflow-postgres", "key": "password"}}
    assert db_env["POSTGRES_PASSWORD"]["valueFrom"] == secret
    assert db_env["POSTGRES_USER"]["value"] == db_env["POSTGRES_DB"]["value"] == "mlflow"
    # its data on the PVC, in a subdirectory of the mount (initdb refuses a volume root holding lost+found)
    (mount,) = db["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = kuberay_doc("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert db_env["PGDATA"]["value"].startswith(mount["mountPath"] + "/")
    assert pg_service["spec"]["selector"] == pg["spec"]["selector"]["matchLabels"]
    assert pg_service["spec"]["ports"][0]["port"] == 5432 and pg_service["spec"].get("type", "ClusterIP") == "ClusterIP"
    # MLflow: the Service's name in the URI without a password; libpq reads it from PGPASSWORD, from the Secret
    (c,) = kuberay_doc("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"]
    assert "--backend-store-uri=postgresql+psycopg2://mlflow@postgres:5432/mlflow" in c["args"]
    assert {e["name"]: e.get("valueFrom") for e in c["env"]}["PGPASSWORD"] == secret
    assert not c.get("volumeMounts")  # nothing of the store on the MLflow pod any more
    # only the MLflow pods may reach the database (where the CNI enforces NetworkPolicy)
    policy = kuberay_doc("NetworkPolicy", "postgres")
    assert policy["spec"]["podSelector"] == pg["spec"]["selector"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "mlflow"}}}]
    # no password in the file: no Secret document, no literal value for the password variables
    assert not any(d["kind"] == "Secret" for d in kuberay_docs())
    assert "value" not in db_env["POSTGRES_PASSWORD"]


def test_readme_names_the_commands():
    readme = (CLUSTER / "README.md").read_text()
    for needle in (
        "ray up cluster/aws-gpu.yaml",
        "ray submit cluster/aws-gpu.yaml cluster/run_sweep.py --",
        "ray job submit",
        "ray dashboard",
        "-L 5000:$HEAD_PRIVATE:5000",
        "ray down",
        "kubectl apply",
        "kubectl create secret generic -n none-sweep mlflow-postgres",
        "start_postgres.sh",
        "pg_dump",
        "## Why PostgreSQL",
    ):
        assert needle in readme, needle


# -- the MLflow server on a private address (real server) ------------------------------------------------


@pytest.mark.slow
def test_start_mlflow_serves_on_the_node_ip_only(tmp_path):
    import ray.util

    ip = ray.util.get_node_ip_address()
    if ip.startswith("127."):
        pytest.skip("this machine has no non-loopback address")
    port = free_port()
    # the store is not what this test is about (PostgreSQL: tests/test_postgres.py): a SQLite file, no server
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    setup = node_setup(tmp_path, "--storage", str(tmp_path / "ray"), "--port", str(port), "--backend-store-uri", store)
    assert setup.returncode == 0
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow"),
        "NONE_SWEEP_PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(CLUSTER / "start_mlflow.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    pid = int((tmp_path / "mlflow" / "server.pid").read_text())
    try:
        assert proc.returncode == 0, proc.stderr
        url = f"http://{ip}:{port}/api/2.0/mlflow/experiments/search?max_results=1"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.URLError):  # not on loopback
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        req = urllib.request.Request(url, headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as err:  # Host header not allowed
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 403
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"{ip}:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        os.killpg(pid, 15)
        for _ in range(60):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(1)
