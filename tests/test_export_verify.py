"""``export --verify-seeds``: the chosen config re-trained on fresh seeds as Ray tasks."""

from __future__ import annotations

import json
import statistics

import pytest
from support.report_store import EXPECTED, SWEEP, populate_store

from none_sweep.cli import main as run_cli
from none_sweep.report import verify


def test_seeds_follow_the_config_seed():
    assert verify.seeds_for({"seed": 7}, 3) == [8, 9, 10]
    assert verify.seeds_for({}, 2) == [1, 2]


def test_summary_and_table():
    results = [
        {"seed": s, "clean_acc": acc, "asr": asr} for s, acc, asr in [(1, 0.95, 0.02), (2, 0.93, 0.04), (3, 0.94, 0.03)]
    ]
    summary = verify.summarise(results, {"clean_acc": 0.955, "asr": 0.015}, run_id="r", experiment="e", config_seed=0)
    acc = summary["summary"]["clean_acc"]
    assert acc["mean"] == pytest.approx(0.94) and acc["sd"] == pytest.approx(statistics.stdev([0.95, 0.93, 0.94]))
    assert acc["sweep"] == 0.955 and acc["n"] == 3 and summary["seeds"] == [1, 2, 3]
    text = verify.table(summary)
    assert "fresh seeds 1..3 (n=3)" in text
    assert "clean_acc" in text and "0.9550" in text and "0.9400 ± 0.0100" in text
    assert text.count("seed ") >= 3
    assert verify.verify_path("out/best_defense.yaml").name == "best_defense.verify.json"


def test_a_natural_backdoor_config_is_verified_on_reasr_and_clean_accuracy():
    """No trigger injected: ASR is None on every seed, so it is left out; REASR is what the seeds are judged on."""
    results = [{"seed": s, "clean_acc": 0.82, "asr": None, "reasr": r} for s, r in [(1, 0.7), (2, 0.9), (3, 0.8)]]
    summary = verify.summarise(results, {"clean_acc": 0.83, "reasr": 0.75}, run_id="r", experiment="e", config_seed=0)
    assert set(summary["summary"]) == {"clean_acc", "reasr"}
    assert summary["summary"]["reasr"]["mean"] == pytest.approx(0.8) and summary["summary"]["reasr"]["sweep"] == 0.75
    text = verify.table(summary)
    assert "seed 2: clean_acc=0.8200 reasr=0.9000" in text and "asr=" not in text.replace("reasr=", "")


def test_each_seed_is_paired_with_its_own_undefended_run():
    """Drop, DER and cost per seed against that seed's undefended run, summarised beside the metrics."""
    config = {"seed": 0, "defense": {"enabled": True, "rounds": 2}, "train": {"epochs": 4}}
    base = verify.undefended(config)
    assert base["defense"] == {"enabled": False, "rounds": 2} and config["defense"]["enabled"] is True
    runs = [
        verify.paired({"seed": 1, "clean_acc": 0.80, "asr": 0.02, "wall_s": 30.0},
                      {"seed": 1, "clean_acc": 0.82, "asr": 0.98, "wall_s": 20.0}),
        verify.paired({"seed": 2, "clean_acc": 0.79, "asr": 0.04, "wall_s": 36.0},
                      {"seed": 2, "clean_acc": 0.79, "asr": 0.96, "wall_s": 24.0}),
    ]  # fmt: skip
    assert runs[0]["clean_acc_drop"] == pytest.approx(0.02) and runs[1]["clean_acc_drop"] == pytest.approx(0.0)
    assert runs[0]["der"] == pytest.approx((0.96 - 0.02 + 1) / 2) and runs[1]["cost"] == pytest.approx(1.5)
    assert verify.undefended_means(runs) == pytest.approx({"clean_acc": 0.805, "asr": 0.97})
    summary = verify.summarise(
        runs, {"clean_acc": 0.81, "asr": 0.01, "clean_acc_drop": 0.005}, run_id="r", experiment="e", config_seed=0
    )
    drop = summary["summary"]["clean_acc_drop"]
    assert drop["mean"] == pytest.approx(0.01) and drop["sweep"] == 0.005 and drop["n"] == 2
    assert summary["summary"]["cost"]["mean"] == pytest.approx(1.5) and summary["summary"]["cost"]["sweep"] is None
    text = verify.table(summary)
    assert "clean_acc_drop" in text and "0.0100 ± 0.0141" in text
    assert "undefended: clean_acc=0.8200 asr=0.9800" in text and "its own undefended run" in text


def test_unpaired_seeds_report_no_drop_even_when_the_sweep_has_one():
    """Without the per-seed undefended runs there is nothing to take a drop against: no row rather than a guess."""
    results = [{"seed": 1, "clean_acc": 0.8, "asr": 0.03}, {"seed": 2, "clean_acc": 0.81, "asr": 0.02}]
    summary = verify.summarise(results, {"clean_acc": 0.8, "asr": 0.02, "clean_acc_drop": 0.01, "der": 0.97},
                               run_id="r", experiment="e", config_seed=0)  # fmt: skip
    assert set(summary["summary"]) == {"clean_acc", "asr"}
    assert verify.undefended_means(results) == {}


def test_a_natural_backdoor_seed_has_no_der():
    """DER is defined on ASR; a REASR-judged seed still gets its drop and cost."""
    run = verify.paired({"seed": 1, "clean_acc": 0.8, "asr": None, "reasr": 0.4, "wall_s": 10.0},
                        {"seed": 1, "clean_acc": 0.81, "asr": None, "reasr": 0.8, "wall_s": 8.0})  # fmt: skip
    assert run["der"] is None and run["clean_acc_drop"] == pytest.approx(0.01) and run["cost"] == pytest.approx(1.25)


def test_verify_seeds_must_be_positive(tmp_path, capsys):
    rc = run_cli(
        ["export", "--experiment", SWEEP, "--verify-seeds", "0", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]
    )
    assert rc == 2 and "--verify-seeds must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_verify_three_seeds_with_ray(tmp_path, capfd, monkeypatch):
    """Real Ray (a local cluster started for the call), real training of the exported digits config; Ray's notice
    that token authentication is on (its safe default) is not shown (file descriptors captured: Ray's handler
    holds the original stderr)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    store = populate_store(tmp_path / "store")
    out = tmp_path / "best_defense.yaml"
    rc = run_cli(
        [
            "export",
            "--experiment",
            SWEEP,
            "--max-asr",
            "0.02",
            "--out",
            str(out),
            "--verify-seeds",
            "3",
            "--tracking-uri",
            store.uri,
        ]
    )
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    assert "fresh seeds 1..3 (n=3)" in captured.out and "Token authentication" not in captured.err
    data = json.loads((tmp_path / "best_defense.verify.json").read_text())
    assert data["run_id"] == store.run_ids[EXPECTED["max_asr_0.02"]]
    assert data["seeds"] == [1, 2, 3] and [r["seed"] for r in data["per_seed"]] == [1, 2, 3]
    for r in data["per_seed"]:
        assert 0.0 <= r["asr"] <= 1.0 and 0.5 < r["clean_acc"] <= 1.0  # trained, not chance (10 classes)
        assert {"poison_precision", "poison_recall", "removed_samples"} <= set(r)  # why a seed differs, kept
        base = r["undefended"]  # the same seed without the defense, trained as its own task
        assert base["seed"] == r["seed"] and 0.5 < base["clean_acc"] <= 1.0
        assert r["clean_acc_drop"] == pytest.approx(base["clean_acc"] - r["clean_acc"])
    drop = data["summary"]["clean_acc_drop"]
    assert drop["mean"] == pytest.approx(statistics.fmean(r["clean_acc_drop"] for r in data["per_seed"]))
    assert "undefended: clean_acc=" in captured.out
    s = data["summary"]["clean_acc"]
    assert s["mean"] == pytest.approx(statistics.fmean(r["clean_acc"] for r in data["per_seed"]))
    assert s["sweep"] == 0.955
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store.uri)
    assert [a.path for a in client.list_artifacts(store.parent_id, "verify")] == ["verify/best_defense.verify.json"]
    metrics = client.get_run(store.parent_id).data.metrics
    assert metrics["verify_clean_acc_mean"] == pytest.approx(s["mean"])
    assert "verify_asr_sd" in metrics and metrics["verify_clean_acc_drop_mean"] == pytest.approx(drop["mean"])
