"""The benchmarks' core functions at tiny sizes: they run, and each naive reference agrees with the library.

No timing is asserted anywhere: these tests only keep ``python -m bench.bench_*`` from rotting and make sure
the speed-ups in ``bench/RESULTS.md`` compare equal results.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bench_analysis, bench_epoch, bench_overhead, bench_scale, bench_sweep
from bench._common import synthetic_images, table

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- bench_analysis
def test_naive_statistic_agrees_with_the_library_streaming_path() -> None:
    acts, probs = bench_analysis.synthetic_activations(700, [5, 12, 3], num_classes=4, seed=1)
    ours = bench_analysis.ours_scores(acts, probs, batch=128)  # several batches: the streaming path
    for a, o in zip(acts, ours):
        naive = bench_analysis.naive_layer_scores(a.numpy(), probs.numpy())
        ok, diff = bench_analysis.scores_agree(o, naive)
        assert ok, diff


def test_naive_statistic_skips_classes_with_an_empty_strong_or_weak_set_like_the_library() -> None:
    g = torch.Generator().manual_seed(0)
    acts = [torch.randn(60, 6, generator=g).abs()]
    probs = torch.full((60, 3), 0.05)
    probs[:30, 0] = 0.9  # class 0: strong for 30 samples, weak for the other 30
    probs[30:, 1] = 0.9  # class 1: strong for 30
    probs[:, 2] = 0.5  # class 2: never strong and never weak -> skipped, counts as 0
    probs = probs / probs.sum(1, keepdim=True)
    ours = bench_analysis.ours_scores(acts, probs, lamda_l=0.1, lamda_h=0.6)[0]
    naive = bench_analysis.naive_layer_scores(acts[0].numpy(), probs.numpy(), lamda_l=0.1, lamda_h=0.6)
    assert bench_analysis.scores_agree(ours, naive)[0]
    assert (naive >= 0).all()  # a skipped class puts a floor of 0 under every score


def test_naive_subset_of_channels_matches_the_first_channels() -> None:
    acts, probs = bench_analysis.synthetic_activations(300, [10], num_classes=3, seed=2)
    full = bench_analysis.naive_layer_scores(acts[0].numpy(), probs.numpy())
    part = bench_analysis.naive_layer_scores(acts[0].numpy(), probs.numpy(), channels=4)
    np.testing.assert_array_equal(part, full[:4])


@pytest.mark.parametrize("values", [
    np.r_[np.random.default_rng(0).normal(0, 1, 200), np.random.default_rng(1).normal(6, 1, 15)],
    np.array([1.0, 1.0, 1.0, 5.0, 5.0, 2.0, 2.0]),  # ties: a split only between different values
    np.random.default_rng(3).exponential(1.0, 400),
])  # fmt: skip
def test_naive_breaks_agree_with_the_library(values: np.ndarray) -> None:
    assert bench_analysis.naive_breaks(values) == pytest.approx(bench_analysis.ours_breaks(torch.from_numpy(values)))


def test_statistic_bench_on_resnet18_shapes_runs_and_agrees() -> None:
    r = bench_analysis.bench_statistic(200, CPU, seed=0, naive_fraction=0.01, repeats=1)
    assert r["layers"] == 15 and r["channels"] == 4480  # ResNet-18 layer2..layer4 + downsample, as published
    assert r["agree"] and r["breaks_agree"]
    assert r["ours_s"] > 0 and r["naive_s"] > 0


def test_full_pass_bench_runs_and_the_naive_pass_gives_the_same_scores() -> None:
    r = bench_analysis.bench_full_pass(16, CPU, seed=0, batch=8, naive=True, model_name="small_cnn", skip_first=0)
    assert r["naive_agree"] and r["passes"] == 1
    assert r["analyse_s"] > 0 and r["epoch_s"] > 0


# --------------------------------------------------------------------------- bench_epoch
def test_conventional_and_resident_pipelines_feed_the_model_the_same_numbers() -> None:
    from none_sweep.data import dataset_info

    for name in ("cifar10", "fashion-mnist"):
        info = dataset_info(name)
        x, y = synthetic_images(6, info.channels, info.size, info.num_classes, seed=0)
        plain = bench_epoch.ConventionalDataset(x, y, bench_epoch.conventional_transform(info, augment=False))
        conventional = torch.stack([plain[i][0] for i in range(len(plain))])
        resident = bench_epoch.resident_data(x, y, info, CPU, channels_last=False).prepare(x)
        torch.testing.assert_close(conventional, resident, rtol=1e-5, atol=1e-5)
        augmented = bench_epoch.ConventionalDataset(x, y, bench_epoch.conventional_transform(info))[0][0]
        assert augmented.shape == resident[0].shape


@pytest.mark.parametrize("variant", ["conventional", "resident-fp32"])
def test_epoch_bench_runs_both_paths(variant: str) -> None:
    w = bench_epoch.Workload("small_cnn", "fashion-mnist", 48)
    r = bench_epoch.measure(w, bench_epoch.VARIANTS[variant], 16, CPU, workers=0, repeats=1, warmup_batches=1, seed=0)
    assert r["s"] > 0 and math.isfinite(r["loss"])


def test_flop_count_of_resnet18_is_the_known_figure() -> None:
    flops = bench_epoch.train_flops_per_image(bench_epoch.Workload("resnet18", "cifar10", 1))
    assert 3.0e9 < flops < 3.6e9  # 0.56 GMAC forward on 32x32 = 1.11 GFLOP, x3 for forward + backward


# --------------------------------------------------------------------------- bench_overhead / bench_sweep
def test_overhead_arithmetic() -> None:
    # 4 trials, 1.5 s each + 20 ms per report, 5 ms of work per report, one at a time
    wall = lambda k: 4 * (1.5 + k * (0.020 + 0.005))  # noqa: E731
    per_trial, per_report = bench_overhead.overheads(wall(1), wall(21), 4, 1, 21, 0.005)
    assert per_trial == pytest.approx(1.5) and per_report == pytest.approx(0.020)
    # two at a time halve the wall, not the per-trial cost
    per_trial, per_report = bench_overhead.overheads(wall(1) / 2, wall(21) / 2, 4, 1, 21, 0.005, concurrent=2)
    assert per_trial == pytest.approx(1.5) and per_report == pytest.approx(0.020)


def test_overhead_epoch_result_is_what_the_trainable_reports() -> None:
    from none_sweep.train.metrics import EPOCH_METRICS

    result = bench_overhead.epoch_result(3, final=True)
    assert set(EPOCH_METRICS) <= set(result) and result["final"] == 1


@pytest.mark.parametrize("device,quick", [("cpu", True), ("cpu", False), ("cuda", False)])
def test_sweep_configs_validate(device: str, quick: bool) -> None:
    space = bench_sweep.make_space(bench_sweep.base_config(device, quick, None))
    cfg = space.trial_config({"defense.max_reset_fraction": 0.1})
    assert cfg.defense.max_reset_fraction == 0.1 and cfg.defense.enabled


def test_synthetic_dataset_loads_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from none_sweep.config import DataConfig
    from none_sweep.data import load_dataset

    monkeypatch.setenv("BENCH_SYNTHETIC_TRAIN", "40")
    bench_sweep.register_synthetic()
    data = load_dataset(DataConfig(name=bench_sweep.SYNTHETIC, test_subset=20), seed=0)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (3, 32, 32)
    assert data.info.augmentation == "crop_flip" and len(data.test_y) == 20


def test_gpu_sampler_without_nvidia_smi_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with bench_sweep.GpuSampler() as sampler:
        pass
    assert math.isnan(sampler.mean_util)


def test_table_is_markdown() -> None:
    text = table(["a", "b"], [[1, 0.12345], ["x", float("nan")]])
    assert text.splitlines()[0].startswith("| a") and "0.123" in text and "n/a" in text


# --------------------------------------------------------------------------- attack_table
def test_attack_table_reuses_a_baseline_only_for_the_same_attacked_model() -> None:
    """``--baselines``: a defense-only change keeps the undefended run; any other change trains it again."""
    from bench import attack_table

    config, short = "configs/digits_badnets.yaml", ["train.epochs=2", "defense.pretrain_epochs=2",
                                                    "defense.reset_interval=1"]  # fmt: skip
    lines: list[str] = []
    first = attack_table.run_pair(config, short, lines.append)
    assert first["undefended_config"]["defense"]["enabled"] is False
    assert not any("reusing" in line for line in lines)

    lines.clear()
    tuned = attack_table.run_pair(config, short + ["defense.max_reset_fraction=0.3"], lines.append, first)
    assert any("reusing the undefended run" in line for line in lines)
    assert tuned["undefended"] == first["undefended"]
    assert tuned["none"]["neurons_reset"] != first["none"]["neurons_reset"]  # the defense really changed

    lines.clear()
    other = attack_table.run_pair(config, short + ["attack.poison_rate=0.2"], lines.append, first)
    assert not any("reusing" in line for line in lines)  # another attacked model: trained again
    assert other["undefended_config"]["attack"]["poison_rate"] == 0.2
    assert "| digits_badnets |" in attack_table.table({"digits_badnets": tuned})


# --------------------------------------------------------------------------- gpu_suite (the prepared device run)
def test_gpu_suite_steps_are_real_modules_and_fit_the_eight_minutes() -> None:
    import importlib.util

    from bench import gpu_suite

    for step in gpu_suite.STEPS:
        for argv in (step.full, step.quick):
            if argv is not None:
                assert importlib.util.find_spec(argv[0]) is not None, argv
    assert sum(s.budget_full for s in gpu_suite.STEPS) <= gpu_suite.DEADLINE_S <= 8 * 60
    assert all(s.quick is not None for s in gpu_suite.STEPS if s.name != "sweep-cache")


def test_gpu_suite_runs_steps_keeps_figures_stops_a_slow_step_and_skips_past_the_deadline(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from pathlib import Path

    from bench import gpu_suite

    (tmp_path / "suite_ok.py").write_text("print('noise'); print('figure: answer = 42'); print('| a | b |')\n")
    (tmp_path / "suite_slow.py").write_text("import time\nprint('figure: started', flush=True)\ntime.sleep(120)\n")
    root = Path(__file__).parents[1]
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{root}")
    steps = (gpu_suite.Step("ok", "prints figures", ("suite_ok",), ("suite_ok",), 5, 5),
             gpu_suite.Step("slow", "outlasts its budget", ("suite_slow",), ("suite_slow",), 3, 3),
             gpu_suite.Step("late", "no time left", ("suite_ok",), ("suite_ok",), 60, 60))  # fmt: skip
    monkeypatch.setattr(gpu_suite, "STEPS", steps)
    monkeypatch.setattr(gpu_suite, "STEP_NAMES", [s.name for s in steps])
    monkeypatch.setattr(gpu_suite, "environment", lambda log: {"machine": "test"})  # no Ray/MLflow imports here
    out = tmp_path / "out"
    # 10 s: "ok" starts (it needs its 5 s budget), "slow" is stopped after 3 s, then < 20 s are left for "late"
    assert gpu_suite.main(["--quick", "--out", str(out), "--deadline", "10"]) == 1  # not every step passed
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [("ok", "ok"), ("slow", "timeout"),
                                                                   ("late", "skipped")]  # fmt: skip
    figures = (out / "figures.md").read_text()
    assert "figure: answer = 42" in figures and "| a | b |" in figures and "figure: started" in figures
    assert "noise" not in figures and "noise" in (out / "suite.log").read_text()


def test_gpu_suite_checks_pass_on_the_cpu() -> None:
    """The dry run's cheapest part: the analysis checks of the device run, on the CPU."""
    from bench import gpu_suite_checks

    gpu_suite_checks.check_autocast_analysis(CPU)
    gpu_suite_checks.check_analysis_memory(CPU, 64, "small_cnn")
    assert gpu_suite_checks.FAILED == []


@pytest.mark.parametrize("cuda", [True, False])
def test_gpu_suite_smoke_data_and_space_go_through_the_product(tmp_path, cuda: bool) -> None:
    from bench import gpu_suite_smoke
    from none_sweep.config import DataConfig
    from none_sweep.data import load_dataset
    from none_sweep.sweep.space import space_from_dict

    root = gpu_suite_smoke.write_cifar(tmp_path, train=50, test=20)
    data = load_dataset(DataConfig(name="cifar10", root=str(root), augment=False), seed=0)  # torchvision's layout
    assert data.train_x.shape == (50, 3, 32, 32) and len(data.test_y) == 20
    space = space_from_dict(gpu_suite_smoke.space(root, cuda=cuda, quick=False), source="smoke")
    assert space.num_samples == 4 and space.resources.gpu == (0.25 if cuda else 0)
    assert space.trial_config({"defense.max_reset_fraction": 0.1, "defense.lamda_l": 0.1}).model.name == (
        "resnet18" if cuda else "small_cnn"
    )


# --------------------------------------------------------------------------- bench_scale
def test_synthetic_run_has_the_experiment_runs_interface(tmp_path: Path) -> None:
    """Same epoch plan, reports, result keys and checkpoint round trip as ExperimentRun; shares pre-training."""
    from bench._synthetic import synthetic_run
    from none_sweep.errors import CheckpointError
    from none_sweep.sweep.space import load_space
    from none_sweep.train import PretrainCache, build_plan

    space = load_space(bench_scale.SPACE_FILE)
    cfg = space.trial_config({"defense.max_reset_fraction": 0.2, "defense.rounds": 2})
    first = synthetic_run(cfg, pretrain_cache=PretrainCache(tmp_path / "cache"), progress=None)
    reports = list(first.epochs())
    assert [r.epoch for r in reports] == [s.epoch for s in build_plan(cfg)] and reports[-1].final
    assert sum(r.round_end for r in reports) == 3 and not any(r.cached for r in reports)
    result = first.result().metrics
    assert {"asr", "clean_acc", "robust_acc", "neurons_reset", "epochs"} <= set(result)
    assert result["asr"] < 0.5 < result["clean_acc"]  # resets 20% of the channels: the backdoor is mostly gone
    second = synthetic_run(cfg, pretrain_cache=PretrainCache(tmp_path / "cache"))
    again = list(second.epochs())
    assert all(r.cached for r in again[:6]) and second.result().metrics == {**result, "pretrain_cached": True}
    first.save_checkpoint(tmp_path / "run.ckpt")
    resumed = synthetic_run(cfg)
    resumed.load_checkpoint(tmp_path / "run.ckpt")
    assert list(resumed.epochs()) == [] and resumed.result().metrics["asr"] == result["asr"]
    with pytest.raises(CheckpointError):
        synthetic_run(space.trial_config({"defense.max_reset_fraction": 0.1})).load_checkpoint(tmp_path / "run.ckpt")
    baseline = synthetic_run(space.baseline_config())
    assert len(list(baseline.epochs())) == 6 and baseline.result().metrics["asr"] > 0.9


def test_scale_growth_exponent() -> None:
    rows = [{"n": n, "concurrency": 4, "flat": 2.0, "linear": 0.01 * n} for n in (10, 100, 1000)]
    assert bench_scale.growth(rows, "flat") == pytest.approx(0.0, abs=1e-9)
    assert bench_scale.growth(rows, "linear") == pytest.approx(1.0)


def test_scale_quick_runs_the_real_sweep_stops_it_at_half_and_resumes_to_the_end(tmp_path: Path) -> None:
    """``python -m bench.bench_scale --quick``: N=4, 2 at a time, through the runner, report and export."""
    import json

    out = tmp_path / "scale.json"
    assert bench_scale.main(["--quick", "--out", str(out), "--plot", str(tmp_path / "scale.png"),
                             "--keep", str(tmp_path / "work")]) == 0  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["machine"] and payload["date"] and payload["command"].startswith("python -m bench.bench_scale")
    (row,) = payload["rows"]
    assert set(bench_scale.FIELDS) <= set(row)
    n = row["n"]
    assert (n, row["concurrency"]) == (4, 2)
    # stopped by SIGINT once half the trials ended, resumed to the end: every store holds all N, all finished
    assert row["start_code"] == 130 and row["resume_code"] == 0 and 2 <= row["interrupted_at"] < n
    assert row["trials_ray"] == row["trials_ended"] == row["runs_mlflow"] == row["trials_optuna_complete"] == n
    assert row["report_finished"] == n and row["report_rc"] == 0 and row["export_rc"] == 0
    assert row["suggest_calls"] == n and row["reports"] >= 5 * n and row["mlflow_warnings"] == 0
    for key in ("wall_s", "driver_cpu_s", "driver_cpu_per_trial_s", "driver_cpu_setup_s", "suggest_ms_median",
                "suggest_ms_p95", "report_ms_median", "report_ms_p95", "mlflow_s_per_trial", "close_s_per_trial",
                "peak_rss_mb", "journal_bytes", "mlflow_store_bytes", "artifact_bytes", "storage_bytes",
                "resume_first_trial_s", "resume_first_new_trial_s", "resume_total_s", "report_s", "export_s",
                "cli_startup_s"):  # fmt: skip
        assert isinstance(row[key], (int, float)) and math.isfinite(row[key]) and row[key] > 0, key
    assert row["suggest_ms_p95"] >= row["suggest_ms_median"] and row["resume_total_s"] >= row["resume_first_trial_s"]
    assert (tmp_path / "scale.png").stat().st_size > 0


# --------------------------------------------------------------------------- bench_reasr
def test_reasr_quick_names_the_injected_target_at_every_setting(tmp_path: Path) -> None:
    """``python -m bench.bench_reasr --quick``: a BadNets digits model (target 0); the default and the cheap,
    screened setting both invert the trigger to label 0, and the JSON holds every row's flip rates."""
    import json

    from bench import bench_reasr

    out = tmp_path / "reasr.json"
    assert bench_reasr.main(["--quick", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    rows = {r["name"]: r for r in payload["rows"]}
    assert set(rows) == {s.name for s in bench_reasr.QUICK}
    for row in rows.values():
        assert row["label"] == 0 and 0.0 < row["reasr"] <= 1.0, row
        assert bench_reasr.ranking(row["per_label"])[0] == 0


# --------------------------------------------------------------------------- bench_samplers
def test_sampler_bench_times_every_sampler_on_a_study_of_the_sweeps_space(tmp_path: Path) -> None:
    import json

    from bench import bench_samplers

    out = tmp_path / "samplers.json"
    assert bench_samplers.main(["--n", "30", "--asks", "2", "--json", str(out)]) == 0
    ms = json.loads(out.read_text())["ms_per_ask"]
    assert set(ms) == set(bench_samplers.SAMPLERS) and all(v["30"] > 0 for v in ms.values())


def test_sampler_bench_studies_hold_the_spaces_params_and_its_conditions() -> None:
    import optuna

    from bench import bench_samplers
    from none_sweep.sweep.space import load_space

    space = load_space(str(bench_samplers.SPACE))
    trials = bench_samplers._synthetic(space, 40, 0, optuna)
    assert len(trials) == 40 and all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in trials)
    for t in trials:  # `removal` is searched only where filter_samples is on, as in a sweep
        assert ("defense.removal" in t.params) == bool(t.params["defense.filter_samples"])
        assert set(t.params) <= set(space.keys)


# --------------------------------------------------------------------------- attack_sweeps
def test_attack_sweeps_row_takes_paired_figures_and_marks_the_unpaired_ones() -> None:
    """A paired export's drop and cost are its seeds' own; an export kept from before pairing is against the
    sweep's undefended run and is flagged in the table."""
    from bench import attack_sweeps
    from none_sweep.report import verify

    baseline = {"metrics": {"clean_acc": 0.81, "asr": 0.99}, "wall_s": 20.0}
    seeds = [
        verify.paired({"seed": 1, "clean_acc": 0.80, "asr": 0.02, "wall_s": 30.0},
                      {"seed": 1, "clean_acc": 0.83, "asr": 0.98, "wall_s": 20.0}),
        verify.paired({"seed": 2, "clean_acc": 0.79, "asr": 0.04, "wall_s": 26.0},
                      {"seed": 2, "clean_acc": 0.80, "asr": 0.97, "wall_s": 20.0}),
    ]  # fmt: skip
    # DER per seed: (0.96 - 0.03 + 1) / 2 = 0.965 and (0.93 - 0.01 + 1) / 2 = 0.960
    paired = attack_sweeps.verified(verify.summarise(seeds, {}, run_id="r", experiment="e", config_seed=0), baseline)
    assert paired["paired"] and paired["clean_acc_drop"] == pytest.approx(0.02) and paired["cost"] == pytest.approx(1.4)
    unpaired_seeds = [{k: v for k, v in s.items() if k in ("seed", "clean_acc", "asr", "wall_s")} for s in seeds]
    unpaired = attack_sweeps.verified(
        verify.summarise(unpaired_seeds, {}, run_id="r", experiment="e", config_seed=0), baseline
    )
    assert not unpaired["paired"] and unpaired["clean_acc_drop"] == pytest.approx(0.81 - 0.795)
    assert unpaired["cost"] == pytest.approx(28.0 / 20.0)
    pick = {"asr": 0.01, "clean_acc": 0.81, "clean_acc_drop": 0.0, "poison_precision": 1.0, "poison_recall": 1.0}
    rows = [
        {"space": s, "undefended": baseline, "paper_defaults": None, "best_hand": None, "pick": pick,
         "verified": v, "rule": "--max-drop 0.01"}
        for s, v in (("paired_space", paired), ("old_space", unpaired))
    ]  # fmt: skip
    text = attack_sweeps.table(rows)
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "‡" not in lines["| paired_space"] and "(2.00) | 0.963 |" in lines["| paired_space"]
    assert "| 97.50 / 81.50 | **3.00" in lines["| paired_space"]  # the fresh seeds' own undefended runs, mean
    assert "| — | **3.00" in lines["| old_space"] and "‡" in lines["| old_space"]
    assert "1.40 | --max-drop" in lines["| old_space"] and "\n‡ verified" in text


def test_attack_sweeps_lists_trials_by_their_backdoor_metric_and_each_seed_beside_its_baseline() -> None:
    from bench import attack_sweeps
    from none_sweep.report import verify

    def trial(metric: str, value: float, point: str | None) -> dict:
        return {metric: value, "clean_acc_drop": 0.01, "poison_recall": None, "removed_samples": 0, "wall_s": 10.0,
                "pretrain_saved_s": 20.0, "point": point, "params": {"defense.after_reset": "retrain"}}  # fmt: skip

    row = {"space": "s", "sweep": "s-part4", "undefended": {"wall_s": 20.0},
           "trials": [trial("reasr", 0.5, None), trial("reasr", 0.3, "paper_defaults")]}  # fmt: skip
    seed = verify.paired({"seed": 1, "clean_acc": 0.8, "reasr": 0.4, "wall_s": 30.0},
                         {"seed": 1, "clean_acc": 0.81, "reasr": 0.9, "wall_s": 20.0})  # fmt: skip
    lines = attack_sweeps.trial_lines(row, [seed])
    assert lines[1].startswith("  reasr=30.00 drop=1.00") and lines[1].endswith("cost~1.50  [paper_defaults]")
    assert lines[2].startswith("  reasr=50.00") and "after_reset=retrain" in lines[2]
    assert (
        lines[3].startswith("  verified seed 1: clean_acc=0.8000 reasr=0.4000")
        and "undefended: clean_acc=0.8100" in lines[3]
    )


def test_full_set_verify_clears_the_subsets_and_grades_the_goal() -> None:
    from bench import full_set_verify

    config = {"seed": 0, "data": {"name": "fashion-mnist", "train_subset": 12000, "test_subset": 2000}}
    assert full_set_verify.full_set(config)["data"] == {"name": "fashion-mnist", "train_subset": None,
                                                        "test_subset": None}  # fmt: skip
    assert config["data"]["train_subset"] == 12000  # the exported mapping is left as it was
    changes = ["defense.pretrain_epochs=2"]
    assert full_set_verify.row_name("fmnist_badnets", changes) == "fmnist_badnets (defense.pretrain_epochs=2)"
    kept = full_set_verify.kept_path(Path("/r"), "fmnist_badnets", changes)
    assert kept.name == "fmnist_badnets.fullset.defense.pretrain_epochs=2.verify.json"
    assert full_set_verify.kept_path(Path("/r"), "fmnist_badnets", []).name == "fmnist_badnets.fullset.verify.json"
    stats = {"asr": {"mean": 0.008}, "clean_acc_drop": {"mean": 0.013}, "cost": {"mean": 1.2}}
    assert full_set_verify.goal(stats) == "asr 0.80 ✓, clean_acc_drop 1.30 ✗, cost 1.20× ✓"


def test_clean_floor_runs_the_experiment_undefended_with_one_poisoned_sample() -> None:
    from bench import clean_floor
    from none_sweep.attacks import poison_count
    from none_sweep.experiment import resolve_config

    for scale in clean_floor.SCALES.values():
        cfg = resolve_config(clean_floor.floor_config(scale), source="clean floor")
        assert not cfg.defense.enabled and cfg.data.train_subset == scale["train_subset"]
        assert poison_count(cfg.attack.poison_rate, 60000) == 1 and cfg.attack.name == "badnets"
    for experiment, attack in (("fmnist_label_consistent", "label_consistent"), ("fmnist_all_to_all", "badnets")):
        data = clean_floor.floor_config(clean_floor.SCALES["full"], Path(f"configs/{experiment}.yaml"))
        cfg = resolve_config(data, source="clean floor")  # each attack's own patch and target rule, one sample
        assert cfg.attack.name == attack and cfg.data.train_subset is None and not cfg.defense.enabled
        assert poison_count(cfg.attack.poison_rate, 60000) == 1
