"""Selection rules, Pareto front, importances, stability and ``none-sweep report`` on real MLflow stores.

- the session's ``store`` is a sweep made before sweep records: the report falls back to asr min / clean_acc max;
- ``recorded`` is the same runs with a sweep record (a ``clean_acc_drop <= 0.05`` constraint) on the parent run
  and the sweep's Optuna journal: the report follows the record and reads importances from the journal;
- two real sweeps (``reasr`` objectives; a constraint that cuts the front) show that ``none-sweep report`` gives
  the front the sweep's own summary gave.
"""

from __future__ import annotations

import json
import random
import struct

import pytest
import yaml
from support.report_store import EXPECTED, SWEEP, TRIALS, name_of, populate_store

from none_sweep.cli import main as run_cli
from none_sweep.errors import ConfigError, TrackingError
from none_sweep.report.model import DEFAULT_GOALS, Goals, Trial
from none_sweep.report.runs import load_sweep, open_client
from none_sweep.report.selection import Rule, rule_from_args, select
from none_sweep.sweep import pareto
from none_sweep.sweep.record import SweepRecord
from none_sweep.sweep.space import Constraint, Objective
from none_sweep.tracking.layout import EARLY_STOP_TAG, POINT_TAG, RECORD_ARTIFACT, REPORT_FOLDER, TRIAL_ID_TAG

GOALS = (Objective("asr", "min"), Objective("clean_acc", "max"))
DROP = Constraint("clean_acc_drop", "<=", 0.05)


def better(a, b):
    """``a`` dominates ``b`` on (asr min, clean_acc max), written out here, independent of the code under test."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def brute_front(points):
    return sorted(i for i, p in enumerate(points) if not any(better(q, p) for q in points))


@pytest.fixture(scope="module")
def sweep(store):
    client, uri = open_client(store.uri)
    return load_sweep(client, uri, SWEEP)


# -- the one Pareto rule, on hand-made trials ----------------------------------------------------------------


def hand_trial(i, asr, acc, status="FINISHED", early=False):
    metrics = {k: v for k, v in (("asr", asr), ("clean_acc", acc)) if v is not None}
    tags = {TRIAL_ID_TAG: f"t{i}", **({EARLY_STOP_TAG: "true"} if early else {})}
    return Trial(f"r{i}", f"trial_{i}", status, {}, metrics, tags, baseline_clean_acc=0.9)


@pytest.mark.parametrize("seed", range(20))
def test_report_front_on_hand_made_trials_is_the_sweep_rule_with_constraints(seed):
    rng = random.Random(seed)
    grid = rng.choice([None, 5, 20])  # coarse grids force ties and duplicates

    def draw():
        return rng.randint(0, grid) / grid if grid else rng.random()

    trials = [
        hand_trial(i, draw(), None if rng.random() < 0.05 else draw(), rng.choice(["FINISHED"] * 6 + ["FAILED"]),
                   early=rng.random() < 0.1)
        for i in range(rng.randint(1, 60))
    ]  # fmt: skip
    goals = Goals(GOALS, (Constraint("clean_acc_drop", "<=", 0.5),))
    complete = [t for t in trials if t.status == "FINISHED" and EARLY_STOP_TAG not in t.tags]
    metrics = [t.final_metrics for t in complete]
    expected = [complete[i].run_id for i in pareto.pareto_front(metrics, goals.objectives, goals.constraints)]
    assert [t.run_id for t in goals.front(trials)] == expected
    knee = pareto.knee(metrics, goals.objectives, goals.constraints)
    assert (goals.knee(trials) is None) == (knee is None)
    if knee is not None:
        assert goals.knee(trials).run_id == complete[knee].run_id
    # and that is the definition: the non-dominated trials among the complete, feasible ones
    feasible = [t for t in complete if t.clean_acc is not None and 0.9 - t.clean_acc <= 0.5]
    points = [(t.asr, t.clean_acc) for t in feasible]
    assert sorted(t.run_id for t in goals.front(trials)) == sorted(feasible[i].run_id for i in brute_front(points))


def test_a_trial_stopped_early_never_competes():
    stopped = hand_trial(0, 0.0, 1.0, early=True)  # would dominate everything
    trials = [stopped, hand_trial(1, 0.2, 0.8), hand_trial(2, 0.1, 0.7)]
    assert [t.run_id for t in DEFAULT_GOALS.front(trials)] == ["r2", "r1"]
    assert select(trials, Rule("max_asr", 0.5)).run_id == "r1"


# -- a sweep made before records: the defaults ---------------------------------------------------------------


def test_a_sweep_without_record_falls_back_to_the_default_goals(sweep, store):
    assert sweep.record is None and RECORD_ARTIFACT in sweep.record_note
    goals = sweep.goals
    assert goals.objectives == GOALS and goals.constraints == () and not goals.from_record
    assert "defaults (asr min, clean_acc max, no constraint)" in goals.source
    finished = sweep.finished
    points = [(t.asr, t.clean_acc) for t in finished]
    assert sorted(t.run_id for t in goals.front(finished)) == sorted(finished[i].run_id for i in brute_front(points))
    assert name_of(store, goals.knee(finished)) == EXPECTED["knee"]


@pytest.mark.parametrize(
    "rule, expected",
    [
        (Rule("max_asr", 0.02), EXPECTED["max_asr_0.02"]),
        (Rule("max_drop", 0.01), EXPECTED["max_drop_0.01"]),
        (Rule("max_drop", 0.02), EXPECTED["max_drop_0.02"]),
        (Rule("knee"), EXPECTED["knee"]),
    ],
)
def test_rules_pick_the_right_run(sweep, store, rule, expected):
    chosen = select(sweep.trials, rule, sweep_name=SWEEP, goals=sweep.goals)
    assert name_of(store, chosen) == expected
    # brute force: the rule's definition, over every finished trial
    finished = sweep.finished
    if rule.kind == "max_asr":
        ok = [t for t in finished if t.asr <= rule.threshold]
        assert chosen.clean_acc == max(t.clean_acc for t in ok)
    elif rule.kind == "max_drop":
        ok = [t for t in finished if t.clean_acc_drop <= rule.threshold]
        assert chosen.asr == min(t.asr for t in ok)


def test_rule_nobody_meets_names_the_closest(sweep, store):
    with pytest.raises(TrackingError) as err:
        select(sweep.trials, Rule("max_asr", 0.001), sweep_name=SWEEP)
    msg = str(err.value)
    assert "no finished trial in sweep 'digits-demo' has asr <= 0.001 (10 checked)" in msg
    assert store.run_ids["t6"] in msg and "asr=0.0050" in msg and "clean_acc=0.9000" in msg
    with pytest.raises(TrackingError) as err:
        select(sweep.trials, Rule("max_drop", 0.001), sweep_name=SWEEP)
    assert store.run_ids["t0"] in str(err.value) and "clean_acc_drop=0.0020" in str(err.value)


def test_no_finished_trials(store):
    client, uri = open_client(store.uri)
    empty = load_sweep(client, uri, "digits-empty")
    with pytest.raises(TrackingError, match=r"no finished trials in sweep 'digits-empty' \(1 failed, 1 running\)"):
        select(empty.trials, Rule("knee"), sweep_name="digits-empty")


def test_rule_from_args_defaults_and_validation():
    assert rule_from_args(None, None, False) == Rule("max_drop", 0.02)
    assert rule_from_args(0.05, None, False) == Rule("max_asr", 0.05)
    assert rule_from_args(None, None, True) == Rule("knee")
    with pytest.raises(ConfigError, match="--max-asr must be a number >= 0"):
        Rule("max_asr", -1.0)


def test_without_record_there_are_no_guessed_distributions(sweep):
    from none_sweep.report.importance import param_importances
    from none_sweep.report.stability import Axes, stability

    imps = param_importances(sweep.record, sweep.goals)
    assert not any(imps.scores.values()) and "no sweep record" in imps.note
    rule = Rule("max_drop", 0.02)
    st = stability(sweep.trials, select(sweep.trials, rule), rule, sweep.goals, Axes.of(None), k=3)
    assert (st.meeting, st.finished) == (7, 10)  # t0,t1,t2,t3,t4,t7,t9
    assert st.neighbours == [] and "sweep record" in st.note


# -- a recorded sweep: its goals, its journal ----------------------------------------------------------------

SPACE = """
base:
  seed: 0
  data: {name: digits}
  attack: {name: badnets, poison_rate: 0.1, params: {patch_size: 2, location: bottom_right, pattern: white}}
  model: {name: small_cnn}
  train: {epochs: 3, batch_size: 64}
  defense: {pretrain_epochs: 2}
space:
  defense.max_reset_fraction: {type: uniform, low: 0.01, high: 0.3}
  defense.lamda_l: {type: uniform, low: 0.05, high: 0.3}
  defense.lamda_h: {type: uniform, low: 0.6, high: 0.95}
  defense.finetune_lr: {type: loguniform, low: 1.0e-5, high: 1.0e-2}
  defense.reset_mode: {type: choice, values: [zero, reinit]}
objectives: [{metric: asr, mode: min}, {metric: clean_acc, mode: max}]
constraints: [clean_acc_drop <= 0.05]
num_samples: 12
"""
KEYS = ("defense.max_reset_fraction", "defense.lamda_l", "defense.lamda_h", "defense.finetune_lr")


def write_journal(record):
    """The sweep's study, as the searcher leaves it: the trials with the space's real distributions."""
    import optuna

    from none_sweep.sweep.search import RAY_TRIAL_ATTR, journal_storage

    storage = journal_storage(record.open_storage().journal_path())
    study = optuna.create_study(study_name=record.name, storage=storage, directions=["minimize", "maximize"])
    dists = {p.key: p.distribution() for p in record.space.params}
    for name, row in TRIALS.items():
        params = {**dict(zip(KEYS, row[:4])), "defense.reset_mode": "zero"}  # only one value was ever drawn
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=list(row[4:]),
                                                  user_attrs={RAY_TRIAL_ATTR: f"ray_{name}"}))  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The report store's runs, with a sweep record on the parent run and the sweep's journal."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("recorded")
    store = populate_store(root)
    record = SweepRecord(name=SWEEP, space_path="recorded.yaml", space_text=SPACE, overrides=(),
                         tracking_uri=store.uri, num_samples=12, max_concurrent=2, storage=str(root / "ray"))  # fmt: skip
    MlflowClient(tracking_uri=store.uri).log_text(store.parent_id, json.dumps(record.to_json()), RECORD_ARTIFACT)
    write_journal(record)
    client, uri = open_client(store.uri)
    return store, load_sweep(client, uri, SWEEP)


def test_a_recorded_sweep_reports_the_front_of_its_record(recorded):
    store, rec = recorded
    goals = rec.goals
    assert rec.record is not None and goals.from_record and goals.constraints == (DROP,)
    finished = rec.finished
    metrics = [t.final_metrics for t in finished]
    expected = [finished[i].run_id for i in pareto.pareto_front(metrics, GOALS, [DROP])]
    assert [t.run_id for t in goals.front(finished)] == expected
    names = {name_of(store, t) for t in goals.front(finished)}
    unconstrained = {name_of(store, t) for t in DEFAULT_GOALS.front(finished)}
    assert "t6" in unconstrained and "t6" not in names  # drop 0.07: the constraint cuts it from the front
    knee = goals.knee(finished)
    assert knee.run_id == finished[pareto.knee(metrics, GOALS, [DROP])].run_id
    assert select(rec.trials, Rule("knee"), goals=goals).run_id == knee.run_id
    assert Rule("knee").describe(goals).startswith("knee: feasible Pareto-front trial closest to (min asr, max")


def test_paper_point_and_distances_use_the_real_distributions(recorded):
    from none_sweep.report.stability import Axes
    from none_sweep.report.summary import paper_defaults_trial

    store, rec = recorded
    axes = Axes.of(rec.record)
    assert axes.names == [*KEYS, "defense.reset_mode"]
    # finetune_lr is log-uniform over [1e-5, 1e-2]: 1e-4 sits a third of the way along, whatever was observed
    assert axes.coordinate("defense.finetune_lr", 1e-4) == pytest.approx(1 / 3)
    assert axes.coordinate("defense.max_reset_fraction", 0.3) == pytest.approx(1.0)
    assert axes.gap("defense.reset_mode", "zero", "reinit") == 1.0
    assert name_of(store, paper_defaults_trial(rec.finished, axes)) == EXPECTED["paper"]
    tagged = [
        t if t.run_id != store.run_ids["t8"] else Trial(**{**t.__dict__, "tags": {**t.tags, POINT_TAG: "paper_defaults"}})
        for t in rec.finished
    ]  # fmt: skip
    assert name_of(store, paper_defaults_trial(tagged, axes)) == "t8"  # an explicit tag wins over nearest params


def test_importances_come_from_the_journal_study(recorded):
    from none_sweep.report.importance import param_importances

    _, rec = recorded
    imps = param_importances(rec.record, rec.goals)
    assert imps.note == "" and imps.trials == len(TRIALS)
    assert set(imps.scores) == {"asr", "clean_acc", "pareto_front"}
    for scores in imps.scores.values():
        # reset_mode never varied, but the study knows it as a choice of two: it is scored, not dropped
        assert set(scores) == {*KEYS, "defense.reset_mode"}
        assert sum(scores.values()) == pytest.approx(1.0)
    fanova = param_importances(rec.record, rec.goals, "fanova")
    assert set(fanova.scores) == {"asr", "clean_acc"} and sum(fanova.scores["asr"].values()) == pytest.approx(1.0)


def test_importances_are_skipped_when_the_journal_is_elsewhere(recorded, tmp_path):
    import dataclasses

    from none_sweep.report.importance import param_importances

    _, rec = recorded
    moved = dataclasses.replace(rec.record, storage=str(tmp_path / "elsewhere"))
    imps = param_importances(moved, rec.goals)
    assert not any(imps.scores.values())
    assert "optuna.journal" in imps.note and "is not reachable from here" in imps.note


def test_importances_need_enough_trials():
    import optuna

    from none_sweep.report.importance import study_importances

    study = optuna.create_study(directions=["minimize", "maximize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for x in (0.1, 0.9):
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, values=[x, 1 - x]))
    imps = study_importances(study, DEFAULT_GOALS)
    assert imps.scores == {"asr": {}, "clean_acc": {}, "pareto_front": {}} and "at least 4" in imps.note


def test_stability_share_and_neighbours(recorded):
    from none_sweep.report.stability import Axes, stability

    store, rec = recorded
    rule = Rule("max_drop", 0.02)
    chosen = select(rec.trials, rule)
    axes = Axes.of(rec.record)
    st = stability(rec.trials, chosen, rule, rec.goals, axes, k=3)
    assert (st.meeting, st.finished) == (7, 10)
    others = sorted((axes.distance(chosen.params, t.params), t.run_id) for t in rec.finished if t is not chosen)
    assert [n["run_id"] for n in st.neighbours] == [rid for _, rid in others[:3]]
    assert st.neighbours[0]["run_id"] in (store.run_ids["t4"], store.run_ids["t7"])  # t9's close relatives
    asrs = [n["asr"] for n in st.neighbours]
    assert set(st.spread) == {"asr", "clean_acc"} and (st.spread["asr"].min, st.spread["asr"].max) == (
        min(asrs),
        max(asrs),
    )


# -- none-sweep report ------------------------------------------------------------------------------------


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_command_writes_files_and_logs_them(store, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = run_cli(["report", "--experiment", SWEEP, "--out", str(out), "--tracking-uri", store.uri, "--k", "3"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    assert "read 13/13 runs" in printed.err
    png = out / "pareto.png"
    w, h = png_size(png)
    assert (w, h) == (960, 720) and png.stat().st_size > 20_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == {"total": 12, "finished": 10, "failed": 1, "running": 1}
    assert summary["chosen"]["run_id"] == store.run_ids["t9"]
    assert summary["knee"]["run_id"] == store.run_ids["t3"]
    assert summary["paper_defaults"] is None  # no record: no declared ranges to measure "nearest" in
    client, uri = open_client(store.uri)
    sweep = load_sweep(client, uri, SWEEP)
    points = [(t.asr, t.clean_acc) for t in sweep.finished]
    expected_front = sorted(sweep.finished[i].run_id for i in brute_front(points))
    assert sorted(p["run_id"] for p in summary["front"]) == expected_front
    md = (out / "report.md").read_text()
    assert "![ASR vs clean accuracy](pareto.png)" in md and "## Parameter importance" in md
    assert "Objectives (defaults (asr min, clean_acc max, no constraint): the parent run" in md
    assert "7 of 10 finished trials (70.0%) meet the rule" in md
    assert "report: " in printed.out and str(out) in printed.out
    logged = {a.path for a in client.list_artifacts(store.parent_id, REPORT_FOLDER)}
    assert logged == {f"{REPORT_FOLDER}/{n}" for n in ("pareto.png", "front.csv", "summary.json", "report.md")}


def test_report_command_follows_the_record(recorded, tmp_path, capsys):
    store, rec = recorded
    out = tmp_path / "rep"
    argv = ["report", "--experiment", SWEEP, "--out", str(out), "--tracking-uri", store.uri, "--knee", "--no-log"]
    assert run_cli(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["constraints"] == ["clean_acc_drop <= 0.05"] and summary["goals_source"] == "the sweep record"
    assert [p["run_id"] for p in summary["front"]] == [t.run_id for t in rec.goals.front(rec.finished)]
    assert all(p["feasible"] for p in summary["front"])
    assert summary["paper_defaults"]["run_id"] == store.run_ids["t5"]
    assert "defense.reset_mode" in summary["importances"]["asr"]
    front_csv = (out / "front.csv").read_text().splitlines()
    assert front_csv[0].split(",")[:5] == ["run_id", "trial_id", "asr", "clean_acc", "clean_acc_drop"]
    assert {line.split(",")[1] for line in front_csv[1:]} == {p["trial_id"] for p in summary["front"]}
    md = (out / "report.md").read_text()
    assert "Objectives (the sweep record): asr min, clean_acc max; feasible: clean_acc_drop <= 0.05." in md
    assert "| defense.reset_mode |" in md


def test_report_with_rule_nobody_meets_still_reports(store, tmp_path, capsys):
    argv = ["report", "--experiment", SWEEP, "--out", str(tmp_path), "--tracking-uri", store.uri]
    assert run_cli([*argv, "--max-asr", "0.0001", "--no-log"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chosen"] is None and "closest" in summary["rule_note"]
    assert "No trial meets the rule" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--experiment", "nope"], "no experiment named 'nope'"),
        (["--experiment", "digits-empty"], "no finished trials"),
    ],
)
def test_report_errors_are_one_line_exit_2(store, tmp_path, capsys, argv, message):
    rc = run_cli(["report", *argv, "--out", str(tmp_path), "--tracking-uri", store.uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("none-sweep report: error: ") and message in err[-1]


# -- real sweeps: the report's front is the sweep's front ----------------------------------------------------

#: Whole digits (a smaller subset leaves the pre-trained model too weak for any reset to keep it), 4 epochs of
#: pre-training and one of fine-tuning: a few seconds per trial.
BASE = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "small_cnn"},
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.05},
    "defense": {"pretrain_epochs": 4, "reset_interval": 1, "rounds": 1, "after_reset": "finetune", "finetune_lr": 0.01},
}  # fmt: skip
#: Fixed points, so that each sweep is the same four trials whatever the sampler does.
POINTS = [
    {"name": f"reset_{mrf}", "params": {"defense.max_reset_fraction": mrf, "defense.lamda_l": 0.1}}
    for mrf in (0.02, 0.1, 0.3, 0.6)
]
BADNETS = {"name": "badnets", "poison_rate": 0.1, "target": 0,
           "params": {"patch_size": 2, "location": "bottom_right", "pattern": "white"}}  # fmt: skip


def run_small_sweep(tmp_path, name, *, attack, objectives, constraints=(), evaluation=None):
    """The :data:`POINTS` as a digits sweep through the real runner; returns (tracking URI, the sweep's own front
    trial ids)."""
    from none_sweep.sweep.runner import SweepOptions, run_sweep
    from none_sweep.sweep.summary import SUMMARY_FILE

    base = {**BASE, "attack": attack, **({"evaluation": evaluation} if evaluation else {})}
    data = {
        "base": base,
        "space": {"defense.max_reset_fraction": {"type": "uniform", "low": 0.01, "high": 0.7},
                  "defense.lamda_l": {"type": "uniform", "low": 0.05, "high": 0.3}},
        "objectives": [{"metric": m, "mode": mode} for m, mode in objectives],
        "constraints": list(constraints),
        "search": {"sampler": "random", "seed": 0, "points_to_evaluate": POINTS},
        "scheduler": {"name": "none"}, "resources": {"cpu": 1, "gpu": 0}, "num_samples": 4, "max_concurrent": 2,
    }  # fmt: skip
    space = tmp_path / f"{name}.yaml"
    space.write_text(yaml.safe_dump(data, sort_keys=False))
    uri, storage, lines = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "ray", []
    code = run_sweep(SweepOptions(space_path=str(space), name=name, storage=str(storage), tracking_uri=uri),
                     say=lines.append)  # fmt: skip
    assert code == 0, "\n".join(lines)
    own = json.loads((storage / name / SUMMARY_FILE).read_text())
    return uri, {row["trial"] for row in own["front"]}


def report_front(uri, name, out):
    assert run_cli(["report", "--experiment", name, "--out", str(out), "--tracking-uri", uri, "--knee"]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_reasr_sweep_gets_the_same_front_from_report(tmp_path, ray_local):
    uri, own = run_small_sweep(
        tmp_path, "reasr", attack={"name": "none"}, objectives=[("reasr", "min"), ("clean_acc", "max")],
        evaluation={"reasr": "auto", "reasr_steps": 5, "reasr_images": 8},
    )  # fmt: skip
    summary = report_front(uri, "reasr", tmp_path / "rep")
    assert own and {p["trial_id"] for p in summary["front"]} == own
    assert [o["metric"] for o in summary["objectives"]] == ["reasr", "clean_acc"]
    assert all(p["asr"] is None and p["reasr"] is not None for p in summary["front"])  # no trigger: no ASR at all
    assert summary["importance_note"] == ""  # the journal is reachable here


def test_a_constrained_sweep_gets_the_same_front_from_report(tmp_path, ray_local):
    uri, own = run_small_sweep(tmp_path, "drop", attack=BADNETS, objectives=[("asr", "min"), ("clean_acc", "max")],
                               constraints=["clean_acc_drop <= 0.15"])  # fmt: skip
    summary = report_front(uri, "drop", tmp_path / "rep")
    assert own and {p["trial_id"] for p in summary["front"]} == own
    client, _ = open_client(uri)
    sweep = load_sweep(client, uri, "drop")
    # resetting 60% of the neurons removes the backdoor (lowest ASR: on the unconstrained front) and most of the
    # clean accuracy with it: the constraint cuts it, from the sweep's front and from the report's alike
    cut = [t for t in Goals(sweep.goals.objectives).front(sweep.finished) if not sweep.goals.feasible(t)]
    assert cut, "no front candidate is infeasible: the constraint no longer shapes this sweep's front"
    assert {t.trial_id for t in cut}.isdisjoint(own)


def test_export_knee_follows_the_record(recorded, tmp_path, capsys):
    store, rec = recorded
    out = tmp_path / "best_defense.yaml"
    assert run_cli(["export", "--experiment", SWEEP, "--knee", "--out", str(out), "--tracking-uri", store.uri]) == 0
    head = out.read_text().split("#\n", 1)[0]
    assert f"# run: {rec.goals.knee(rec.finished).run_id} " in head
    assert "# rule: knee: feasible Pareto-front trial closest to (min asr, max clean_acc)" in head


def test_a_trial_is_described_by_reasr_where_no_trigger_was_injected() -> None:
    common = {"run_id": "r", "run_name": "n", "status": "FINISHED", "params": {}, "tags": {}}
    natural = Trial(**common, metrics={"clean_acc": 0.813, "clean_acc_drop": 0.002, "reasr": 0.7584})
    assert natural.describe_metrics() == "reasr=0.7584 clean_acc=0.8130 clean_acc_drop=0.0020"
    patched = Trial(**common, metrics={"asr": 0.02, "clean_acc": 0.8, "clean_acc_drop": 0.01, "reasr": 0.5})
    assert patched.describe_metrics() == "asr=0.0200 clean_acc=0.8000 clean_acc_drop=0.0100"
