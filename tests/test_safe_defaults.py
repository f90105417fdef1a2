"""Safe defaults: nothing loaded can run code, nothing listens beyond loopback unless asked, nothing secret is
recorded, and config paths stay where data lives.

1. checkpoints are read with ``torch.load(weights_only=True)``: a pickled object inside one is refused;
2. YAML is safe-loaded only: ``!!python/...`` tags are refused in config files, space files and ``--set``;
3. the sweep's own local Ray starts without a dashboard, the cluster scripts set no non-loopback dashboard host
   and never bind MLflow to every interface; the printed and documented ``mlflow ui`` commands name 127.0.0.1;
4. credentials in the environment or embedded in URIs never become MLflow params;
5. file paths in configs obey ``none_sweep/config/paths.py`` (working folder or explicit roots, no ``..``).
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from none_sweep.cli import main
from none_sweep.config import parse_overrides
from none_sweep.errors import CheckpointError, ConfigError
from none_sweep.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "none_sweep"
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"


def calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call ``<anything>.name(...)`` or ``name(...)`` in the package's source."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                if (isinstance(f, ast.Attribute) and f.attr == name) or (isinstance(f, ast.Name) and f.id == name):
                    found.append((path, node))
    return found


# --------------------------------------------------------------------------- 1. checkpoints
def test_every_torch_load_in_the_package_is_weights_only() -> None:
    loads = [(p, c) for p, c in calls("load") if isinstance(c.func, ast.Attribute)
             and isinstance(c.func.value, ast.Name) and c.func.value.id == "torch"]  # fmt: skip
    assert loads, "expected torch.load calls to check"
    for path, call in loads:
        kw = {k.arg: k.value for k in call.keywords}
        assert (
            "weights_only" in kw and isinstance(kw["weights_only"], ast.Constant) and kw["weights_only"].value is True
        ), f"{path.relative_to(ROOT)}:{call.lineno}: torch.load without weights_only=True"


class Payload:
    """Unpickling this runs a command: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_object_in_a_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    from none_sweep.train.checkpoint import FORMAT, load_state

    marker = tmp_path / "ran"
    plain = tmp_path / "plain.pt"  # a torch.save of an object, not our format at all
    torch.save({"model": Payload(marker)}, plain)
    buf = io.BytesIO()
    torch.save({"model": Payload(marker)}, buf)
    forged = tmp_path / "forged.pt"  # our envelope with a correct digest around a malicious payload
    torch.save(
        {"format": FORMAT, "digest": hashlib.sha256(buf.getvalue()).hexdigest(), "payload": buf.getvalue()}, forged
    )
    for path, message in ((plain, "unreadable checkpoint"), (forged, "payload unreadable")):
        with pytest.raises(CheckpointError, match=message):
            load_state(path)
    assert not marker.exists(), "loading a checkpoint executed code"


def test_the_pretrain_cache_drops_a_malicious_entry_instead_of_loading_it(tmp_path: Path) -> None:
    from none_sweep.train import PretrainCache

    cache = PretrainCache(tmp_path / "cache")
    marker = tmp_path / "ran"
    (tmp_path / "cache").mkdir()
    torch.save({"model": Payload(marker)}, cache.path("k"))
    with cache.claim("k") as state:
        assert state is None  # treated as absent: the caller trains and stores a clean one
    assert not marker.exists() and not cache.path("k").exists()


# --------------------------------------------------------------------------- 2. YAML
EVIL = '!!python/object/apply:os.system ["touch {marker}"]'


def test_the_package_never_uses_an_unsafe_yaml_loader() -> None:
    for name in ("load", "unsafe_load", "full_load", "load_all", "full_load_all", "unsafe_load_all"):
        for path, call in calls(name):
            if (
                isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "yaml"
            ):
                raise AssertionError(f"{path.relative_to(ROOT)}:{call.lineno}: yaml.{name}; use yaml.safe_load")


def test_python_tags_are_refused_in_config_files(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"defense:\n  lamda_l: {EVIL.format(marker=marker)}\n")
    assert main(["train", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and "python/object/apply" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_python_tags_are_refused_in_space_files(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    text = DIGITS.read_text().replace("num_samples: 6", f"num_samples: {EVIL.format(marker=marker)}")
    assert EVIL.split()[0] in text
    path = tmp_path / "evil_space.yaml"
    path.write_text(text)
    assert (
        main(["sweep", str(path), "--storage", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "not valid YAML" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "m.db").exists()


def test_python_tags_in_set_overrides_stay_plain_text(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    overrides = parse_overrides([f"seed={EVIL.format(marker=marker)}"])
    assert isinstance(overrides["seed"], str)  # not constructed: kept as text, which then fails validation
    with pytest.raises(ConfigError, match="seed must be an integer"):
        load_experiment(None, overrides)
    assert not marker.exists()


# --------------------------------------------------------------------------- 3. listening addresses
class Stop(Exception):
    pass


@pytest.mark.parametrize("address", [None, "auto"])
def test_the_sweep_starts_ray_without_a_dashboard_and_names_no_host(tmp_path: Path, monkeypatch, address) -> None:
    """What ``run_sweep`` passes to ``ray.init`` (captured; Ray is not started)."""
    import ray

    from none_sweep.sweep.runner import SweepOptions, run_sweep

    seen: dict[str, Any] = {}

    def fake_init(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs, args=args)
        raise Stop

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.chdir(tmp_path)
    opts = SweepOptions(space_path=str(DIGITS), name="addr", storage=str(tmp_path / "ray"),
                        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", address=address)  # fmt: skip
    with pytest.raises(Stop):
        run_sweep(opts, say=lambda _line: None)
    assert not seen["args"]
    assert not any("host" in k for k in seen), seen  # no dashboard_host / node_ip_address overrides
    if address is None:  # our own local Ray: no dashboard at all
        assert seen["include_dashboard"] is False
    else:  # attaching to a cluster: its dashboard is the cluster's business (ray start's loopback default)
        assert seen["include_dashboard"] in (None, False) and seen["address"] == "auto"


def test_cluster_scripts_bind_nothing_to_every_interface() -> None:
    texts = {p.name: p.read_text() for p in (ROOT / "cluster").iterdir() if p.suffix in (".yaml", ".sh", ".py")}
    for name, text in texts.items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"--dashboard-host[= ](?!127\.0\.0\.1|localhost)", code), name
        assert not re.search(r"--host[= ]+[\"']?0\.0\.0\.0", code), name
        assert "0.0.0.0" not in code or name in ("start_mlflow.sh", "node_setup.sh"), name  # only in refusals
    assert '0.0.0.0|::|"*") echo "start_mlflow.sh: refusing' in texts["start_mlflow.sh"]


def test_the_printed_ui_command_binds_loopback() -> None:
    from none_sweep.sweep.console import where_to_look

    text = where_to_look("sqlite:////x/mlflow.db", "s")
    assert "--host 127.0.0.1" in text and "0.0.0.0" not in text


def test_every_documented_mlflow_command_names_a_loopback_host() -> None:
    """The ``mlflow ui``/``mlflow server`` commands we tell people to run (README, docs, cluster notes, the demo)
    say ``--host 127.0.0.1`` themselves instead of leaving the bind address to MLflow's default."""
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "cluster").glob("*.md"),
             *(ROOT / "scripts").glob("*.sh")]  # fmt: skip
    commands = {(f.name, m.group(0)) for f in files
                for m in re.finditer(r"mlflow (?:ui|server) --backend-store-uri[^`\n]*", f.read_text())}  # fmt: skip
    assert commands, "expected documented mlflow ui/server commands to check"
    for name, command in commands:
        assert re.search(r"--host[= ](127\.0\.0\.1|localhost)\b", command), f"{name}: {command}"


# --------------------------------------------------------------------------- 4. secrets
SECRETS = {"AWS_SECRET_ACCESS_KEY": "sekrit-aws-8c1f0e", "MLFLOW_TRACKING_PASSWORD": "sekrit-mlflow-77d2",
           "HF_TOKEN": "sekrit-hf-0b9a31"}  # fmt: skip


def test_no_secret_reaches_mlflow_params_tags_or_artifacts(tmp_path: Path, monkeypatch) -> None:
    """A sweep's parent and trial runs written by the real tracker and callback, with secrets in the
    environment and embedded in the storage URI (pyarrow accepts S3 keys as query parameters)."""
    from none_sweep.sweep.record import SweepRecord
    from none_sweep.tracking import MlflowSweepCallback, SweepTracker

    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"s3://bucket/sweeps?access_key=AKIAEXAMPLE&secret_key={SECRETS['AWS_SECRET_ACCESS_KEY']}"
    record = SweepRecord(name="s", space_path=str(DIGITS), space_text=DIGITS.read_text(),
                         overrides=("train.epochs=2",), tracking_uri=uri, num_samples=2, max_concurrent=1,
                         storage=storage, versions={"python": "3", "token_seen": SECRETS["HF_TOKEN"]})  # fmt: skip
    tracker = SweepTracker(uri, "s")
    tracker.start_parent(record.parent_params(), {"space.yaml": record.space.text}, resume=False)

    class Trial:
        trial_id, status, checkpoint, local_path, storage = "t1", "RUNNING", None, None, None
        pickled_error_file = error_file = None
        config = {"defense.lamda_l": 0.2}  # noqa: RUF012 -- a stub of a Ray trial's instance attributes
        last_result: dict[str, Any] = {}  # noqa: RUF012

        def __str__(self) -> str:
            return "train_trial_t1"

    trial = Trial()
    cb = MlflowSweepCallback(uri, "s", record.resolved_config)
    cb.setup()
    cb.on_trial_start(0, [trial], trial)
    trial.last_result = {"asr": 0.1, "clean_acc": 0.9, "epoch": 1, "final": 1, "timestamp": time.time(), "node_id": "n"}
    cb.on_trial_result(0, [trial], trial, trial.last_result)
    trial.status = "TERMINATED"
    cb.on_trial_complete(0, [trial], trial)

    client = tracker.client
    runs = client.search_runs([tracker.experiment_id])
    assert len(runs) == 2
    texts = []
    for run in runs:
        texts += [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
        texts += list(run.data.metrics)
        for art in client.list_artifacts(run.info.run_id):
            if not art.is_dir:
                texts.append(Path(client.download_artifacts(run.info.run_id, art.path, str(tmp_path))).read_text())
    blob = "\n".join(texts)
    for key, value in SECRETS.items():
        assert value not in blob, f"{key}'s value was recorded in MLflow"
    parent = next(r for r in runs if r.data.tags.get("none_sweep.role") == "sweep")
    assert parent.data.params["sweep.storage"].startswith("s3://bucket/sweeps?")  # still says where, not how


def test_redaction_keeps_ordinary_values() -> None:
    from none_sweep.tracking.layout import param_value

    assert param_value(0.05) == "0.05" and param_value("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert param_value("http://user:pw123@mlflow:5000") == "http://user:***@mlflow:5000"
    assert param_value("s3://b/p?region=eu&secret_key=abc&x=1") == "s3://b/p?region=eu&secret_key=***&x=1"
    assert param_value(["a", "b"]) == "['a', 'b']"


# --------------------------------------------------------------------------- 5. config paths
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv("NONE_SWEEP_DATA_ROOTS", raising=False)
    return work


def digits_with(**data: Any) -> dict[str, Any]:
    return {"data.name": "digits", **{f"data.{k}": v for k, v in data.items()}}


@pytest.mark.parametrize(
    "root", ["data", "./data/sub", "data/../data", str(Path("/usr/share/datasets/x")), "~/.cache/none-sweep/data/x"]
)
def test_allowed_data_roots(workdir: Path, root: str) -> None:
    load_experiment(None, digits_with(root=root))


@pytest.mark.parametrize(
    "root", ["..", "../elsewhere", "data/../../x", "/etc", "/root/.ssh", "~/.ssh", "/usr/share/datasets/../../../etc"]
)
def test_refused_data_roots(workdir: Path, root: str) -> None:
    with pytest.raises(
        ConfigError, match=r"data\.root: .*(climbs out of the working folder|is outside the allowed folders)"
    ):
        load_experiment(None, digits_with(root=root))


def test_data_roots_can_be_extended_explicitly(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    other = "/srv/datasets/cifar"
    with pytest.raises(ConfigError, match="NONE_SWEEP_DATA_ROOTS"):
        load_experiment(None, digits_with(root=other))
    monkeypatch.setenv("NONE_SWEEP_DATA_ROOTS", f"/mnt/nfs{os.pathsep}/srv/datasets")
    assert load_experiment(None, digits_with(root=other)).data.root == other


def test_a_symlink_made_by_the_user_inside_the_working_folder_is_followed(workdir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (workdir / "linked").symlink_to(outside)
    load_experiment(None, digits_with(root="linked"))  # the check is lexical: the user's own link is theirs to make


def test_blend_pattern_paths_follow_the_same_rule(workdir: Path, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("L", (8, 8), 255).save(workdir / "trigger.png")
    load_experiment(None, {"attack.name": "blend", "attack.params.pattern": "trigger.png"})
    load_experiment(None, {"attack.name": "blend", "attack.params.pattern": "noise"})
    with pytest.raises(ConfigError, match=re.escape("attack.params.pattern: '../trigger.png' climbs out")):
        load_experiment(None, {"attack.name": "blend", "attack.params.pattern": "../trigger.png"})


def test_configs_inside_trials_are_not_rechecked(workdir: Path) -> None:
    """Trials rebuild configs from an already-checked space (resolve_config), so cluster workers with
    another working folder or no NONE_SWEEP_DATA_ROOTS still run them."""
    from none_sweep.experiment import resolve_config

    assert resolve_config({"data": {"name": "digits", "root": "/srv/elsewhere"}}).data.root == "/srv/elsewhere"
    with pytest.raises(ConfigError):
        resolve_config({"data": {"name": "digits", "root": "/srv/elsewhere"}}, check_paths=True)


def test_space_files_check_base_and_searched_paths(workdir: Path) -> None:
    from none_sweep.sweep.space import space_from_dict

    data = yaml.safe_load(DIGITS.read_text())
    data["base"]["data"]["root"] = "/etc"
    with pytest.raises(ConfigError, match=r"base: data\.root: '/etc' is outside"):
        space_from_dict(data, "s.yaml")
    data = yaml.safe_load(DIGITS.read_text())
    data["space"]["data.root"] = {"type": "choice", "values": ["data", "/etc"]}
    with pytest.raises(ConfigError, match=r"space\[data\.root\]: data\.root: '/etc' is outside"):
        space_from_dict(data, "s.yaml")
