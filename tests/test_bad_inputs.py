"""Bad-input corpus: space files, CLI flags, data and config paths, each through ``none_sweep.cli.main``.

Every case must end the same way: exit code 2, exactly one line on stderr (``none-sweep CMD: error: ...``)
naming the cause and the fix, no traceback, and nothing recorded in the tracking store (its SQLite file is
absent or holds no run). ``tests/test_config.py`` has the config-file corpus (34 cases); this file adds the
other categories. One case (``gpu: 4`` per trial on a GPU-less machine) needs a real local Ray: it runs as a
subprocess with a private ``RAY_TMPDIR`` whose processes are killed afterwards.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from none_sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"


# --------------------------------------------------------------------------- building blocks
@dataclass
class Ctx:
    tmp: Path

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def db(self) -> Path:
        return self.tmp / "mlflow.db"

    @property
    def storage(self) -> Path:
        return self.tmp / "ray"

    def sweep(self, space: Path, *extra: str) -> list[str]:
        return ["sweep", str(space), "--storage", str(self.storage), "--tracking-uri", self.uri, *extra]

    def space(
        self, mutate: Callable[[dict], Any] | None = None, text: str | None = None, name: str = "space.yaml"
    ) -> Path:
        path = self.tmp / name
        if text is not None:
            path.write_text(text)
            return path
        data = yaml.safe_load(DIGITS.read_text())
        if mutate:
            mutate(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def base(self, **sections: Any) -> Path:
        """A digits space whose base sections are replaced by ``sections``."""

        def mutate(d: dict) -> None:
            d["base"].update(copy.deepcopy(sections))

        return self.space(mutate)


def idx_bytes(array: list[list[int]] | list[int], dims: tuple[int, ...]) -> bytes:
    flat = bytes(v for row in array for v in (row if isinstance(row, list) else [row]))
    return b"\x00\x00\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + flat


def fmnist_folder(folder: Path, n: int = 20, size: int = 28, label: int = 3, gz: bool = False) -> Path:
    """The four Fashion-MNIST IDX files, ``n`` images each (all zeros), written straight in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        images = idx_bytes([[0] * (size * size) for _ in range(n)], (n, size, size))
        labels = idx_bytes([label] * n, (n,))
        for stem, blob in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
            else:
                (folder / stem).write_bytes(blob)
    return folder


def fmnist_base(root: Path, **extra: Any) -> dict[str, Any]:
    return {"data": {"name": "fashion-mnist", "root": str(root), **extra}}


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def set_in(d: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


#: A natural-backdoor space (no trigger planted) judged on REASR and clean accuracy, as a space file would set it.
NATURAL_SPACE = {
    "base.attack": {"name": "none"},
    "objectives": [{"metric": "reasr", "mode": "min"}, {"metric": "clean_acc", "mode": "max"}],
}
ASHA_ON_ASR = {"name": "asha", "metric": "asr", "mode": "min", "grace_period": 1, "max_t": 2}


def with_(changes: dict[str, Any]) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for dotted, value in changes.items():
            set_in(d, dotted, value)

    return mutate


def stored_spec(ctx: Ctx, name: str = "old") -> str:
    """A ``sweep.json`` as a started sweep leaves it (without any Ray state): what ``--resume`` reads first."""
    from none_sweep.sweep.record import SweepRecord
    from none_sweep.sweep.storage import SweepStorage

    storage = SweepStorage(str(ctx.storage), name)
    SweepRecord(name=name, space_path=str(DIGITS), space_text=DIGITS.read_text(), overrides=(), tracking_uri=ctx.uri,
                num_samples=6, max_concurrent=2, storage=storage.root).save(storage)  # fmt: skip
    return name


def store_with_experiment(ctx: Ctx, name: str = "digits-real") -> None:
    """A tracking store holding one (empty) sweep experiment, for the read-side commands."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=ctx.uri).create_experiment(name)


# --------------------------------------------------------------------------- the corpus
# (id, category, setup(ctx) -> argv, fragments the one line must contain: the cause and the fix)
Case = tuple[str, str, Callable[[Ctx], list[str]], list[str]]

SPACE_CASES: list[Case] = [
    (
        "space_malformed_yaml",
        "space",
        lambda c: c.sweep(c.space(text="space: {defense.lamda_l: {type: uniform\n")),
        ["not valid YAML at line", "space.yaml"],
    ),
    (
        "space_top_level_list",
        "space",
        lambda c: c.sweep(c.space(text="- defense.lamda_l\n")),
        ["top level must be a mapping"],
    ),
    (
        "space_empty_file",
        "space",
        lambda c: c.sweep(c.space(text="")),
        ["space must name at least one config key", "e.g. defense.max_reset_fraction"],
    ),
    (
        "space_empty_section",
        "space",
        lambda c: c.sweep(c.space(with_({"space": {}}))),
        ["space must name at least one config key"],
    ),
    ("space_null_section", "space", lambda c: c.sweep(c.space(with_({"space": None}))), ["space must be a mapping"]),
    (
        "space_unknown_top_key",
        "space",
        lambda c: c.sweep(c.space(lambda d: d.update(num_sample=3))),
        ["unknown key num_sample", "did you mean 'num_samples'"],
    ),
    (
        "space_param_not_mapping",
        "space",
        lambda c: c.sweep(c.space(lambda d: d["space"].update({"defense.lamda_l": 0.1}))),
        ["space[defense.lamda_l] must be a mapping"],
    ),
    (
        "space_param_without_type",
        "space",
        lambda c: c.sweep(c.space(lambda d: d["space"].update({"defense.lamda_l": {"low": 0.1, "high": 0.2}}))),
        ["space[defense.lamda_l].type is required", "uniform"],
    ),
    (
        "space_when_unknown_key",
        "space",
        lambda c: c.sweep(c.space(lambda d: d["space"]["defense.lamda_l"].update(when={"defense.nope": 1}))),
        ["'defense.nope' is not a config key"],
    ),
    (
        "space_when_on_itself",
        "space",
        lambda c: c.sweep(c.space(lambda d: d["space"]["defense.lamda_l"].update(when={"defense.lamda_l": 0.1}))),
        ["when cannot depend on the key itself"],
    ),
    (
        "space_loguniform_with_step",
        "space",
        lambda c: c.sweep(c.space(lambda d: d["space"]["defense.finetune_lr"].update(step=0.001))),
        ["loguniform cannot be quantised"],
    ),
    (
        "space_choice_of_mappings",
        "space",
        lambda c: c.sweep(
            c.space(lambda d: d["space"].update({"defense.reset_mode": {"type": "choice", "values": [{"a": 1}]}}))
        ),
        ["values entries must be numbers, strings, booleans or null"],
    ),
    (
        "space_no_objectives",
        "space",
        lambda c: c.sweep(c.space(with_({"objectives": []}))),
        ["objectives must name at least one"],
    ),
    (
        "space_objective_twice",
        "space",
        lambda c: c.sweep(
            c.space(with_({"objectives": [{"metric": "asr", "mode": "min"}, {"metric": "asr", "mode": "max"}]}))
        ),
        ["each metric may appear once"],
    ),
    (
        "space_point_name_twice",
        "space",
        lambda c: c.sweep(
            c.space(
                lambda d: d["search"]["points_to_evaluate"].append(copy.deepcopy(d["search"]["points_to_evaluate"][0]))
            )
        ),
        ["the name 'paper_defaults' is used twice"],
    ),
    (
        "space_max_failures_negative",
        "space",
        lambda c: c.sweep(c.space(with_({"max_failures": -1}))),
        ["max_failures must be in [0, 100]", "got -1"],
    ),
    (
        "space_gpu_fraction_above_one",
        "space",
        lambda c: c.sweep(c.space(with_({"resources.gpu": 1.5}))),
        ["resources.gpu must be a fraction in (0, 1] or a whole number"],
    ),
    (
        "space_cpu_zero",
        "space",
        lambda c: c.sweep(c.space(with_({"resources.cpu": 0}))),
        ["resources.cpu must be in (0, inf]"],
    ),
    (
        "space_max_concurrent_zero",
        "space",
        lambda c: c.sweep(c.space(with_({"max_concurrent": 0}))),
        ["max_concurrent must be in [1, inf]"],
    ),
    (
        "space_grace_above_max_t",
        "space",
        lambda c: c.sweep(c.space(with_({"scheduler": {"name": "asha", "grace_period": 5, "max_t": 2}}))),
        ["scheduler.grace_period (5) must not exceed max_t (2)"],
    ),
    (
        "space_base_unknown_key",
        "space",
        lambda c: c.sweep(c.space(with_({"base.defense.lamda_q": 0.1}))),
        ["base: unknown key defense.lamda_q", "did you mean 'lamda_l'"],
    ),
    (
        "space_base_out_of_range",
        "space",
        lambda c: c.sweep(c.space(with_({"base.train.epochs": 0}))),
        ["base: train.epochs must be in [1, 10000]"],
    ),
    (
        "space_constraints_not_a_list",
        "space",
        lambda c: c.sweep(c.space(with_({"constraints": "clean_acc_drop <= 0.05"}))),
        ["constraints must be a list"],
    ),
    (
        "space_constraints_contradict",
        "space",
        lambda c: c.sweep(c.space(with_({"constraints": ["clean_acc_drop <= 0.05", "clean_acc_drop >= 0.1"]}))),
        ["cannot both hold", "no trial could be feasible", "loosen or drop one"],
    ),
    (
        "space_objective_unmeasurable_asr",
        "space",
        lambda c: c.sweep(c.space(with_({"base.attack": {"name": "none"}}))),
        ["asr is never measured with attack.name none", "use reasr"],
    ),
    (
        "space_constraint_unmeasurable_der",
        "space",
        lambda c: c.sweep(c.space(with_({**NATURAL_SPACE, "constraints": ["der >= 0.5"]}))),
        ["constraints[0]: der is never measured with attack.name none"],
    ),
    (
        "space_scheduler_unmeasurable_asr",
        "space",
        lambda c: c.sweep(c.space(with_({**NATURAL_SPACE, "constraints": [], "scheduler": ASHA_ON_ASR}))),
        ["scheduler.metric: asr is never measured with attack.name none"],
    ),
    (
        "space_objective_unmeasurable_reasr",
        "space",
        lambda c: c.sweep(
            c.space(with_({"objectives": [{"metric": "reasr", "mode": "min"}], "base.evaluation.reasr": "never"}))
        ),
        ["reasr is never measured", "set base.evaluation.reasr: always"],
    ),
    (
        "space_edge_invalid",
        "space",
        lambda c: c.sweep(
            c.space(lambda d: d["space"].update({"defense.pretrain_epochs": {"type": "int", "low": 0, "high": 3}}))
        ),
        ["with defense.pretrain_epochs=0 the experiment config is invalid", "at least 1"],
    ),
    (
        "space_not_utf8",
        "space",
        lambda c: c.sweep(_write_bytes(c.tmp / "space.yaml", b"\xff\xfe\x00bad")),
        ["cannot read it", "UnicodeDecodeError"],
    ),
    ("space_missing_file", "space", lambda c: c.sweep(c.tmp / "nope.yaml"), ["nope.yaml: no such config file"]),
]

CLI_CASES: list[Case] = [
    (
        "cli_num_samples_zero",
        "cli",
        lambda c: c.sweep(DIGITS, "--num-samples", "0"),
        ["--num-samples must be at least 1, got 0"],
    ),
    (
        "cli_max_concurrent_negative",
        "cli",
        lambda c: c.sweep(DIGITS, "--max-concurrent", "-1"),
        ["--max-concurrent must be at least 1, got -1"],
    ),
    (
        "cli_set_without_equals",
        "cli",
        lambda c: c.sweep(DIGITS, "--set", "train.epochs"),
        ["--set 'train.epochs': expected KEY=VALUE", "e.g. defense.max_reset_fraction=0.1"],
    ),
    ("cli_set_empty_key", "cli", lambda c: c.sweep(DIGITS, "--set", "=3"), ["expected KEY=VALUE"]),
    (
        "cli_set_searched_key",
        "cli",
        lambda c: c.sweep(DIGITS, "--set", "defense.lamda_l=0.2"),
        ["--set defense.lamda_l: that key is searched", "remove it from the space or the --set"],
    ),
    (
        "cli_set_unknown_key",
        "cli",
        lambda c: c.sweep(DIGITS, "--set", "train.epochz=3"),
        ["unknown key train.epochz", "did you mean 'epochs'"],
    ),
    (
        "cli_set_wrong_type",
        "cli",
        lambda c: c.sweep(DIGITS, "--set", "train.epochs=many"),
        ["train.epochs must be an integer", "'many'"],
    ),
    (
        "cli_set_through_a_value",
        "cli",
        lambda c: c.sweep(DIGITS, "--set", "train.epochs.x=1"),
        ["cannot set train.epochs.x: epochs is not a mapping"],
    ),
    ("cli_resume_without_name", "cli", lambda c: c.sweep(DIGITS, "--resume"), ["--resume needs --name"]),
    (
        "cli_resume_with_set",
        "cli",
        lambda c: c.sweep(DIGITS, "--resume", "--name", stored_spec(c), "--set", "train.epochs=2"),
        ["--resume continues the sweep as it was started", "start a new --name"],
    ),
    (
        "cli_resume_other_tracking_uri",
        "cli",
        lambda c: [
            "sweep",
            str(DIGITS),
            "--storage",
            str(c.storage),
            "--resume",
            "--name",
            stored_spec(c),
            "--tracking-uri",
            f"sqlite:///{c.tmp / 'other.db'}",
        ],
        ["records to sqlite:///", "resume without --tracking-uri", "sync-mlflow"],
    ),
    (
        "cli_resume_without_ray_state",
        "cli",
        lambda c: c.sweep(DIGITS, "--resume", "--name", stored_spec(c)),
        ["no Ray experiment state to resume", "start it again without --resume"],
    ),
    (
        "cli_tracking_uri_unknown_scheme",
        "cli",
        lambda c: ["sweep", str(DIGITS), "--storage", str(c.storage), "--tracking-uri", "nosuch://store"],
        ["--tracking-uri nosuch://store: cannot use the tracking store"],
    ),
    (
        "cli_train_resume_without_checkpoint",
        "cli",
        lambda c: ["train", "--out", str(c.tmp / "run"), "--resume"],
        ["--resume: no checkpoint at", "run without --resume to start fresh"],
    ),
    (
        "cli_train_baseline_missing",
        "cli",
        lambda c: ["train", "--out", str(c.tmp / "run"), "--baseline", str(c.tmp / "nope.json")],
        ["--baseline", "cannot read metrics.json"],
    ),
    (
        "cli_train_baseline_not_metrics",
        "cli",
        lambda c: ["train", "--out", str(c.tmp / "run"), "--baseline", str(_write(c.tmp / "m.json", '{"acc": 1}'))],
        ["not a none-sweep metrics.json (no clean_acc)"],
    ),
    (
        "cli_export_unknown_experiment",
        "cli",
        lambda c: (
            store_with_experiment(c)
            or ["export", "--experiment", "digits-reel", "--tracking-uri", c.uri, "--out", str(c.tmp / "b.yaml")]
        ),
        ["no experiment named 'digits-reel'", "existing experiments", "digits-real"],
    ),
    (
        "cli_export_run_id_with_rule",
        "cli",
        lambda c: store_with_experiment(c) or ["export", "--run-id", "abc", "--knee", "--tracking-uri", c.uri],
        ["--run-id exports that run; drop --max-asr/--max-drop/--knee"],
    ),
    (
        "cli_export_verify_seeds_zero",
        "cli",
        lambda c: ["export", "--experiment", "x", "--verify-seeds", "0", "--tracking-uri", c.uri],
        ["--verify-seeds must be at least 1, got 0"],
    ),
    (
        "cli_export_no_store",
        "cli",
        lambda c: ["export", "--experiment", "x", "--tracking-uri", c.uri],
        ["no MLflow store at", "does not exist", "pass --tracking-uri"],
    ),
    (
        "cli_report_unknown_experiment",
        "cli",
        lambda c: store_with_experiment(c) or ["report", "--experiment", "nope", "--tracking-uri", c.uri],
        ["no experiment named 'nope'", "existing experiments"],
    ),
    (
        "cli_sync_unknown_sweep",
        "cli",
        lambda c: ["sync-mlflow", "--name", "ghost", "--storage", str(c.storage), "--tracking-uri", c.uri],
        ["no sweep 'ghost'", "check --name and --storage"],
    ),
]

DATA_CASES: list[Case] = [
    (
        "data_idx_truncated",
        "data",
        lambda c: (
            truncate(fmnist_folder(c.tmp / "fm") / "train-images-idx3-ubyte", 1000),
            c.sweep(c.base(**fmnist_base(c.tmp / "fm"))),
        )[1],
        ["train-images-idx3-ubyte: truncated or corrupt IDX file", "restore the files in", "data.download: true"],
    ),
    (
        "data_idx_gzip_truncated",
        "data",
        lambda c: (
            truncate(fmnist_folder(c.tmp / "fm", gz=True) / "t10k-labels-idx1-ubyte.gz", 12),
            c.sweep(c.base(**fmnist_base(c.tmp / "fm"))),
        )[1],
        ["t10k-labels-idx1-ubyte.gz: cannot read it", "restore the files in"],
    ),
    (
        "data_idx_wrong_magic",
        "data",
        lambda c: (
            _write(fmnist_folder(c.tmp / "fm") / "train-labels-idx1-ubyte", "<html>not found</html>"),
            c.sweep(c.base(**fmnist_base(c.tmp / "fm"))),
        )[1],
        ["not an unsigned-byte IDX file", "restore the files in"],
    ),
    (
        "data_idx_labels_out_of_range",
        "data",
        lambda c: (fmnist_folder(c.tmp / "fm", label=12), c.sweep(c.base(**fmnist_base(c.tmp / "fm"))))[1],
        ["labels must be in [0, 9], got [12, 12]", "check data.name and data.root"],
    ),
    (
        "data_idx_wrong_image_size",
        "data",
        lambda c: (fmnist_folder(c.tmp / "fm", size=20), c.sweep(c.base(**fmnist_base(c.tmp / "fm"))))[1],
        ["images must be uint8 [N, 1, 28, 28]", "check data.name and data.root"],
    ),
    (
        "data_fmnist_root_empty",
        "data",
        lambda c: ((c.tmp / "fm").mkdir(), c.sweep(c.base(**fmnist_base(c.tmp / "fm"))))[1],
        ["fashion-mnist: no IDX files in", "set data.download: true"],
    ),
    (
        "data_cifar10_root_empty",
        "data",
        lambda c: ((c.tmp / "cf").mkdir(), c.sweep(c.base(data={"name": "cifar10", "root": str(c.tmp / "cf")})))[1],
        ["cifar10: no data in", "cifar-10-batches-py", "set data.download: true"],
    ),
    (
        "data_cifar10_corrupt_batches",
        "data",
        lambda c: (_cifar_garbage(c.tmp / "cf"), c.sweep(c.base(data={"name": "cifar10", "root": str(c.tmp / "cf")})))[
            1
        ],
        ["cifar10: cannot load it from", "restore the files, or delete the folder and set data.download: true"],
    ),
    (
        "data_mnist_root_empty",
        "data",
        lambda c: ((c.tmp / "mn").mkdir(), c.sweep(c.base(data={"name": "mnist", "root": str(c.tmp / "mn")})))[1],
        ["mnist: no data in", "MNIST", "set data.download: true"],
    ),
    (
        "data_subset_larger_than_dataset",
        "data",
        lambda c: c.sweep(c.base(data={"name": "digits", "train_subset": 5000})),
        ["data.train_subset=5000 exceeds the", "lower it or set it to null"],
    ),
    (
        "data_root_escapes_working_folder",
        "data",
        lambda c: c.sweep(c.base(data={"name": "digits", "root": "../../elsewhere"})),
        ["data.root: '../../elsewhere' climbs out of the working folder", "use a path inside it"],
    ),
    (
        "data_root_outside_allowed_roots",
        "data",
        lambda c: c.sweep(c.base(data={"name": "digits", "root": "/etc"})),
        ["data.root: '/etc' is outside the allowed folders", "NONE_SWEEP_DATA_ROOTS"],
    ),
    (
        "data_blend_pattern_missing",
        "data",
        lambda c: c.sweep(c.base(attack={"name": "blend", "params": {"pattern": str(c.tmp / "trigger.png")}})),
        ["attack.params.pattern must be 'noise' or an image file", "no such file"],
    ),
    (
        "data_blend_pattern_not_an_image",
        "data",
        lambda c: c.sweep(
            c.base(attack={"name": "blend", "params": {"pattern": str(_write(c.tmp / "trigger.png", "not a png"))}})
        ),
        ["attack.params.pattern", "is not a readable image", "use a PNG/JPEG file or 'noise'"],
    ),
    (
        "data_blend_pattern_outside_roots",
        "data",
        lambda c: c.sweep(c.base(attack={"name": "blend", "params": {"pattern": "/etc/hostname"}})),
        ["attack.params.pattern: '/etc/hostname' is outside the allowed folders"],
    ),
    (
        "data_searched_root_escapes",
        "data",
        lambda c: c.sweep(
            c.space(lambda d: d["space"].update({"data.root": {"type": "choice", "values": ["data", "../x"]}}))
        ),
        ["space[data.root]: data.root: '../x' climbs out of the working folder"],
    ),
]


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _cifar_garbage(folder: Path) -> None:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (batches / name).write_bytes(b"\x80\x04garbage, not a pickle")


ALL_CASES = SPACE_CASES + CLI_CASES + DATA_CASES


def runs_in_store(db: Path) -> int:
    """Runs recorded in a SQLite tracking store (0 when the file or its tables do not exist)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch) -> Ctx:
    monkeypatch.chdir(tmp_path)  # relative paths resolve here; the working folder is an allowed root
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return Ctx(tmp_path)


@pytest.mark.parametrize("case_id,category,setup,fragments", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_bad_input_is_one_line_exit_2_and_records_nothing(
    case_id, category, setup, fragments, ctx: Ctx, capsys
) -> None:
    argv = setup(ctx)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code}\n{err}\n{captured.out[-2000:]}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"none-sweep {argv[0]}: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert runs_in_store(ctx.db) == 0, "a refused input must record nothing in the tracking store"
    assert not list(ctx.storage.glob("*/experiment_state-*.json")), "no Ray experiment may have started"


# --------------------------------------------------------------------------- resources: needs a real (local) Ray
def test_impossible_gpus_per_trial_is_refused_before_any_trial(tmp_path: Path) -> None:
    """Run as the user runs it (a process with its own local Ray, in a private RAY_TMPDIR killed afterwards)."""
    import shutil

    import torch
    from support.processes import kill_matching

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: 4 GPUs per trial may be possible")
    ctx = Ctx(tmp_path)
    space = ctx.space(with_({"resources.gpu": 4}))
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(RAY_TMPDIR=ray_tmp)  # Ray's default auth mode: its "token authentication is enabled" notice is dropped
    try:
        proc = subprocess.run([sys.executable, "-m", "none_sweep", *ctx.sweep(space)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        kill_matching(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "resources.gpu=4 per trial, but the largest Ray node has no GPU" in err
    assert "set resources.gpu=0 (CPU) or run on a GPU cluster (--address)" in err
    assert runs_in_store(ctx.db) == 0


# --------------------------------------------------------------------------- as the user sees it: a subprocess
def test_a_data_error_is_one_line_on_the_real_stderr(tmp_path: Path) -> None:
    """In a real process (not captured in-process): no MLflow set-up chatter, no traceback, one line, exit 2."""
    (tmp_path / "cf").mkdir()
    data = yaml.safe_load(DIGITS.read_text())
    data["base"]["data"] = {"name": "cifar10", "root": "cf"}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-m", "none_sweep", "sweep", "space.yaml", "--storage", "ray"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        "none-sweep sweep: error: space.yaml: base data: cifar10: no data in"
    )
    assert runs_in_store(tmp_path / "mlflow.db") == 0


def test_spec_round_trip_helper_matches_the_runner(ctx: Ctx) -> None:
    """The hand-written sweep.json above is what the runner reads (guards the cli_resume_* cases)."""
    from none_sweep.sweep.record import SweepRecord
    from none_sweep.sweep.storage import SweepStorage

    name = stored_spec(ctx)
    record = SweepRecord.load(SweepStorage(str(ctx.storage), name))
    assert record.tracking_uri == ctx.uri and record.num_samples == 6 and record.space.num_samples == 6
    assert json.loads((ctx.storage / name / "sweep.json").read_text())["name"] == name
