"""The CUDA-only code paths, run on CPU before any GPU sees them.

``train.cpu_fast_paths: true`` makes bf16 autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``), channels-last
and ``torch.compile`` (inductor's C++ backend) apply on CPU exactly as they do on CUDA. Each switch must train a
digits model into the default path's accuracy band; the NONE analysis under autocast must pick the channels fp32
picks; a run with the switches on must checkpoint and resume bit for bit; the CUDA RNG state of a checkpoint must
round-trip (checked with ``torch.cuda``'s RNG functions replaced, as no GPU is here); a checkpoint from a GPU node
must resume on a CPU node; the analysis cache must stay within its budget; and fractional-GPU trials must pack on
one (fake) GPU and fall back to the CPU when ``torch.cuda.is_available()`` is false.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from support.faults import space_file
from support.processes import Proc, no_traceback, ray_sandbox
from support.results import ray_trials, trial_rows
from torch import nn

from bench.gpu_suite_checks import BACKDOOR_SELECTION, Backdoored, backdoor_inputs
from none_sweep.config import DefenseConfig, TrainConfig, parse_overrides
from none_sweep.data import load_dataset
from none_sweep.defense import analyse, find_monitored_layers
from none_sweep.experiment import load_experiment
from none_sweep.train import ExperimentRun, load_state, save_state
from none_sweep.train.checkpoint import restore_rng, rng_state
from none_sweep.train.device import autocast, compiled, fast_paths_on, memory_format

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits_badnets.yaml"
CPU = torch.device("cpu")
#: undefended, 4 epochs: every path reaches ~98 % clean accuracy and learns the backdoor
BAND_RUN = {"defense.enabled": "false", "train.epochs": 4, "train.num_threads": 1}
#: defended, short: 3 pre-training epochs, one analysis, 2 fine-tuning epochs
DEFENDED_RUN = {"train.epochs": 3, "defense.pretrain_epochs": 3, "defense.reset_interval": 2, "train.num_threads": 1}
SWITCHES = {
    "amp": {"train.amp": "true", "train.channels_last": "false", "train.compile": "false"},
    "channels_last": {"train.amp": "false", "train.channels_last": "true", "train.compile": "false"},
    "compile": {"train.amp": "false", "train.channels_last": "false", "train.compile": "true"},
}


def digits_cfg(*parts: dict[str, Any], fast: bool = False) -> Any:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    if fast:
        merged["train.cpu_fast_paths"] = "true"
    return load_experiment(DIGITS, parse_overrides([f"{k}={v}" for k, v in merged.items()]))


@pytest.fixture(scope="module")
def digits_data() -> Any:
    return load_dataset(digits_cfg().data, seed=0)


@pytest.fixture(scope="module")
def default_metrics(digits_data: Any) -> dict[str, Any]:
    run = ExperimentRun(digits_cfg(BAND_RUN), data=digits_data)
    list(run.epochs())
    return run.result().metrics


def finished(cfg: Any, data: Any) -> ExperimentRun:
    run = ExperimentRun(cfg, data=data)
    list(run.epochs())
    return run


# ---------------------------------------------------------------------- the switches themselves
def test_fast_paths_apply_on_cuda_and_on_cpu_only_when_asked() -> None:
    plain, fast = TrainConfig(compile=True), TrainConfig(compile=True, cpu_fast_paths=True)
    cuda = torch.device("cuda")  # only a descriptor: nothing runs on it
    assert fast_paths_on(cuda, plain) and not fast_paths_on(CPU, plain) and fast_paths_on(CPU, fast)
    assert memory_format(CPU, plain) == torch.contiguous_format and memory_format(CPU, fast) == torch.channels_last
    assert memory_format(cuda, plain) == torch.channels_last
    with autocast(CPU, plain):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(CPU, fast):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    model = nn.Linear(2, 2)
    assert compiled(model, CPU, plain) is model
    assert compiled(model, CPU, fast) is not model  # a compiled wrapper sharing the module's parameters
    assert compiled(model, CPU, TrainConfig(cpu_fast_paths=True, compile=False)) is model


@pytest.mark.parametrize("switch", ["amp", "channels_last"])
def test_each_fast_path_trains_digits_into_the_default_band(switch: str, digits_data: Any,
                                                            default_metrics: dict[str, Any]) -> None:  # fmt: skip
    run = finished(digits_cfg(BAND_RUN, SWITCHES[switch], fast=True), digits_data)
    m = run.result().metrics
    assert m["clean_acc"] >= default_metrics["clean_acc"] - 0.03 and m["clean_acc"] > 0.9, (m, default_metrics)
    assert m["asr"] > 0.9 and default_metrics["asr"] > 0.9, (m, default_metrics)  # the backdoor is learned alike
    if switch == "channels_last":
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in run.model.parameters() if p.ndim == 4)


def test_compiled_model_trains_digits_into_the_default_band(digits_data: Any, default_metrics: dict[str, Any]) -> None:
    run = finished(digits_cfg(BAND_RUN, SWITCHES["compile"], fast=True), digits_data)
    assert run.forward is not run.model  # the compiled wrapper trained and evaluated
    m = run.result().metrics
    assert m["clean_acc"] >= default_metrics["clean_acc"] - 0.03 and m["asr"] > 0.9, (m, default_metrics)


# ---------------------------------------------------------------------- analysis under autocast
# The hand-built model with a clear backdoor neuron (channel 7 of each conv) is shared with the device run's
# checks (bench/gpu_suite_checks.py), so the GPU checks the very case this test checks on the CPU.
def test_analysis_under_bf16_autocast_selects_the_fp32_channels_and_samples() -> None:
    model, (batches, is_triggered) = Backdoored().eval(), backdoor_inputs()
    cfg = DefenseConfig(max_reset_fraction=0.5)
    layers = find_monitored_layers(model, cfg)
    assert [layer.name for layer in layers] == ["conv1", "conv2"]
    fp32 = analyse(model, batches, layers, cfg, 4)
    dtypes: list[torch.dtype] = []
    hook = model.conv1.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    with autocast(CPU, TrainConfig(cpu_fast_paths=True)):
        bf16 = analyse(model, batches, layers, cfg, 4)
    hook.remove()
    assert set(dtypes) == {torch.bfloat16}  # the analysis really ran in bf16
    for name in ("conv1", "conv2"):
        assert fp32.compromised[name].tolist() == BACKDOOR_SELECTION, (name, fp32.scores[name])
        assert torch.equal(bf16.compromised[name], fp32.compromised[name]), (name, bf16.scores[name])
        assert torch.equal(bf16.detect_channels[name], fp32.detect_channels[name])
    assert torch.equal(fp32.suspected, is_triggered) and torch.equal(bf16.suspected, fp32.suspected)


# ---------------------------------------------------------------------- checkpoints
def stop_save_resume(cfg: Any, data: Any, path: Path, stop_after: int) -> tuple[ExperimentRun, ExperimentRun]:
    """An uninterrupted run, and one stopped after ``stop_after`` epochs, checkpointed and resumed in a new run."""
    straight = finished(cfg, data)
    first = ExperimentRun(cfg, data=data)
    epochs = first.epochs()
    for _ in range(stop_after):
        next(epochs)
    first.save_checkpoint(path)
    second = ExperimentRun(cfg, data=data)
    second.load_checkpoint(path)
    list(second.epochs())
    return straight, second


def assert_same_run(a: ExperimentRun, b: ExperimentRun) -> None:
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    timeless = lambda history: [{k: v for k, v in h.items() if k != "epoch_s"} for h in history]  # noqa: E731
    assert timeless(a.history) == timeless(b.history)
    assert torch.equal(a.removed, b.removed)


def test_checkpoint_written_with_bf16_and_channels_last_resumes_bit_for_bit(digits_data: Any, tmp_path: Path) -> None:
    cfg = digits_cfg(DEFENDED_RUN, {"train.compile": "false"}, fast=True)
    straight, resumed = stop_save_resume(cfg, digits_data, tmp_path / "ckpt.pt", stop_after=4)  # past the reset
    assert_same_run(straight, resumed)
    m = resumed.result().metrics
    assert m["neurons_reset"] > 0 and m["poison_recall"] > 0.5, m  # NONE works under the switches too
    assert load_state(tmp_path / "ckpt.pt")["rng_device"] == "cpu"


@pytest.mark.slow
def test_checkpoint_written_with_compile_and_channels_last_resumes_to_rounding(
    digits_data: Any, tmp_path: Path
) -> None:
    """Compiled, a resumed run matches the uninterrupted one to float rounding, not bit for bit.

    The resumed process compiles its own graphs (a static batch shape first, then the dynamic one for the last
    partial batch), which inductor may code-generate differently from the uninterrupted run's (recompiled
    dynamic after its first epoch): the same arithmetic in another order. In fp32 that stays at rounding level;
    under bf16 the fine-tuning after a reset amplifies it, so there the two runs only agree statistically.
    """
    cfg = digits_cfg(DEFENDED_RUN, {"train.compile": "true", "train.amp": "false"}, fast=True)
    straight, resumed = stop_save_resume(cfg, digits_data, tmp_path / "ckpt.pt", stop_after=4)
    assert resumed.forward is not resumed.model
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=1e-4, atol=1e-4, msg=key)
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["clean_acc"] == pytest.approx(
            b["clean_acc"], abs=0.01
        )
    assert torch.equal(straight.removed, resumed.removed)


def test_cuda_rng_state_round_trips_through_a_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cuda_state = torch.arange(16, dtype=torch.uint8)  # what a CUDA generator's state looks like: seed and offset
    applied: list[tuple[torch.Tensor, Any]] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": cuda_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": applied.append((state, device)))
    generator = torch.Generator().manual_seed(5)
    save_state(rng_state(torch.device("cuda"), generator), tmp_path / "rng.pt")
    state = load_state(tmp_path / "rng.pt")  # weights_only=True: the states are plain tensors
    assert state["rng_device"] == "cuda" and len(state["rng_cuda"]) == 1

    restored = torch.Generator()
    assert restore_rng(state, torch.device("cuda"), restored)
    ((tensor, device),) = applied
    assert torch.equal(tensor, cuda_state) and device == torch.device("cuda")
    assert torch.equal(restored.get_state(), generator.get_state())
    applied.clear()
    assert not restore_rng(state, CPU, torch.Generator())  # on a CPU node: not applied, the caller reseeds
    assert applied == []


def test_checkpoint_from_a_gpu_node_resumes_on_a_cpu_node(digits_data: Any, tmp_path: Path) -> None:
    cfg = digits_cfg(DEFENDED_RUN)
    run = ExperimentRun(cfg, data=digits_data)
    epochs = run.epochs()
    for _ in range(2):
        next(epochs)
    state = run.state_dict()  # as a GPU node writes it: a CUDA RNG state and a CUDA generator's 16 bytes
    state.update(rng_device="cuda", rng_cuda=[torch.arange(16, dtype=torch.uint8)],
                 generator=torch.zeros(16, dtype=torch.uint8))  # fmt: skip
    save_state(state, tmp_path / "gpu.pt")
    lines: list[str] = []
    resumed = ExperimentRun(cfg, data=digits_data, progress=lines.append)
    resumed.load_checkpoint(tmp_path / "gpu.pt")
    reports = list(resumed.epochs())
    assert any("written on cuda, resumed on cpu" in line for line in lines), lines
    assert [r.epoch for r in reports] == list(range(3, len(resumed.plan) + 1)) and reports[-1].final
    assert math.isfinite(reports[-1].metrics["loss"])


# ---------------------------------------------------------------------- the analysis cache budget
def test_tiny_analysis_cache_budget_forces_the_second_pass_with_the_same_result(digits_data: Any) -> None:
    small = {"defense.analysis_batch_size": 128}  # 128 images × 112 channels × 4 B = 56 KiB of maxima a batch
    one_pass = finished(digits_cfg(DEFENDED_RUN, small), digits_data)
    two_pass = finished(digits_cfg(DEFENDED_RUN, small, {"train.analysis_cache_mb": 0.1}), digits_data)
    (r1,), (r2,) = one_pass.rounds, two_pass.rounds
    n_train, channels = one_pass.data.num_train, 16 + 32 + 64
    assert r1["analysis_passes"] == 1 and r1["analysis_cache_bytes"] == n_train * channels * 4
    assert r2["analysis_passes"] == 2 and 0 < r2["analysis_cache_bytes"] <= 0.1 * 2**20, r2
    timeless = lambda r: {k: v for k, v in r.items() if not k.startswith("analysis_")}  # noqa: E731
    assert timeless(r1) == timeless(r2)
    assert_same_run(one_pass, two_pass)


# ---------------------------------------------------------------------- packing on a fake GPU
DRIVER = """
import json, sys
import ray
from none_sweep.sweep.runner import SweepOptions, run_sweep
# one fake GPU; whatever this machine has, the trials see no CUDA device (Ray leaves CUDA_VISIBLE_DEVICES alone)
ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
         runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", "CUDA_VISIBLE_DEVICES": "",
                                   "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}})
space, name, storage, uri = sys.argv[1:5]
code = run_sweep(SweepOptions(space_path=space, name=name, storage=storage, tracking_uri=uri))
ray.shutdown()
sys.exit(code)
"""


def intervals(rows: dict[str, list[dict[str, Any]]]) -> list[tuple[float, float]]:
    """(start, end) of each trial in wall-clock seconds, from its first and last ``result.json`` rows."""
    return [(r[0]["timestamp"] - r[0]["time_total_s"], r[-1]["timestamp"]) for r in rows.values()]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


@pytest.mark.timeout(600)
@pytest.mark.slow  # ~2 minutes of Ray start-up and four trials
def test_quarter_gpu_trials_pack_on_one_fake_gpu_and_run_on_the_cpu(tmp_path: Path) -> None:
    space = space_file(tmp_path, base={"train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "num_threads": 1},
                                       "defense": {"pretrain_epochs": 3, "reset_interval": 1, "rounds": 1}},
                       resources={"cpu": 1, "gpu": 0.25}, num_samples=4, max_concurrent=4)  # fmt: skip
    (tmp_path / "driver.py").write_text(DRIVER)
    storage, name, uri = tmp_path / "ray", "packed", f"sqlite:///{tmp_path / 'mlflow.db'}"
    with ray_sandbox() as env:
        env["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] = "1"
        proc = Proc([sys.executable, str(tmp_path / "driver.py"), str(space), name, str(storage), uri],
                    tmp_path, env, "sweep")  # fmt: skip
        try:
            code = proc.wait(540)
        finally:
            proc.close()
    assert code == 0 and no_traceback(proc.out + proc.err), proc.tail()
    trials = ray_trials(storage, name)
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials), [t.status for t in trials]
    assert all(t.placement_group_factory.required_resources.get("GPU") == 0.25 for t in trials)
    spans = intervals(trial_rows(storage, name))
    assert most_at_once(spans) >= 2, spans  # Ray packed several 0.25-GPU trials on the one GPU at once
    for t in trials:  # each trial fell back to the CPU: its checkpoint's RNG state was written there
        (ckpt,) = sorted(Path(t.checkpoint.path).glob("run.ckpt"))
        assert load_state(ckpt)["rng_device"] == "cpu"
    print(f"\npacked sweep: up to {most_at_once(spans)} of 4 quarter-GPU trials ran at once")
