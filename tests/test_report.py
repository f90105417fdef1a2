"""Selection rules, Pareto front, importances, stability and ``none-sweep report`` on a real MLflow store."""

from __future__ import annotations

import json
import random
import struct

import pytest

from test_report_store import EXPECTED, SWEEP, name_of, populate_store

from none_sweep.errors import ConfigError, TrackingError
from none_sweep.report.pareto import dominates, front_trials, knee, knee_distance, pareto_front
from none_sweep.report.runs import load_sweep, open_client
from none_sweep.report.selection import Rule, rule_from_args, select


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return populate_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def sweep(store):
    client, uri = open_client(store.uri)
    return load_sweep(client, uri, SWEEP)


def brute_front(points):
    return sorted(i for i, p in enumerate(points) if not any(dominates(q, p) for q in points))


# -- Pareto front -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(25))
def test_front_equals_brute_force_non_dominated_set(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    grid = rng.choice([None, 5, 20])  # coarse grids force ties and duplicates
    points = [
        ((rng.randint(0, grid) / grid, rng.randint(0, grid) / grid) if grid else (rng.random(), rng.random()))
        for _ in range(n)
    ]
    assert sorted(pareto_front(points)) == brute_front(points)


def test_front_of_store_and_knee(sweep, store):
    finished = sweep.finished
    points = [(t.asr, t.clean_acc) for t in finished]
    assert sorted(t.run_id for t in front_trials(finished)) == sorted(finished[i].run_id for i in brute_front(points))
    chosen = knee(finished)
    assert name_of(store, chosen) == EXPECTED["knee"]
    d = knee_distance(finished)
    assert d(chosen) == min(d(t) for t in front_trials(finished))


# -- selection rules --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, expected", [
    (Rule("max_asr", 0.02), EXPECTED["max_asr_0.02"]),
    (Rule("max_drop", 0.01), EXPECTED["max_drop_0.01"]),
    (Rule("max_drop", 0.02), EXPECTED["max_drop_0.02"]),
    (Rule("knee"), EXPECTED["knee"]),
])
def test_rules_pick_the_right_run(sweep, store, rule, expected):
    chosen = select(sweep.trials, rule, sweep_name=SWEEP)
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


# -- space, importance, stability -------------------------------------------------------------------------

def test_inferred_space_and_paper_point(sweep, store):
    from none_sweep.report.space import infer_axes
    from none_sweep.report.summary import paper_defaults_trial

    axes = {ax.name: ax for ax in infer_axes(sweep.finished)}
    assert set(axes) == {"defense.max_reset_fraction", "defense.lamda_l", "defense.lamda_h", "defense.finetune_lr"}
    assert axes["defense.finetune_lr"].log and not axes["defense.max_reset_fraction"].log
    assert axes["defense.finetune_lr"].low == 1e-5 and axes["defense.finetune_lr"].high == 1e-3
    assert name_of(store, paper_defaults_trial(sweep.finished)) == EXPECTED["paper"]
    # an explicit tag wins over nearest-params
    tagged = [t if t.run_id != store.run_ids["t8"] else
              type(t)(**{**t.__dict__, "tags": {**t.tags, "none_sweep.point": "paper_defaults"}})
              for t in sweep.finished]
    assert name_of(store, paper_defaults_trial(tagged)) == "t8"


def test_importances_per_objective(sweep):
    from none_sweep.report.importance import param_importances

    imps = param_importances(sweep.trials)
    assert set(imps) == {"asr", "clean_acc", "pareto_front"}
    for scores in imps.values():
        assert set(scores) == {"defense.max_reset_fraction", "defense.lamda_l", "defense.lamda_h",
                               "defense.finetune_lr"}
        assert sum(scores.values()) == pytest.approx(1.0)
    fanova = param_importances(sweep.trials, "fanova")
    assert set(fanova) == {"asr", "clean_acc"} and sum(fanova["asr"].values()) == pytest.approx(1.0)


def test_importances_need_enough_trials(sweep):
    from none_sweep.report.importance import param_importances

    assert param_importances(sweep.finished[:2]) == {"asr": {}, "clean_acc": {}}


def test_stability_share_and_neighbours(sweep, store):
    from none_sweep.report.space import distance, infer_axes
    from none_sweep.report.stability import stability

    rule = Rule("max_drop", 0.02)
    chosen = select(sweep.trials, rule)
    st = stability(sweep.trials, chosen, rule, k=3)
    assert (st.meeting, st.finished) == (7, 10)  # t0,t1,t2,t3,t4,t7,t9
    assert st.share_meeting == pytest.approx(0.7)
    assert len(st.neighbours) == 3
    axes = infer_axes(sweep.finished)
    others = sorted((distance(axes, chosen, t), t.run_id) for t in sweep.finished if t.run_id != chosen.run_id)
    assert [n["run_id"] for n in st.neighbours] == [rid for _, rid in others[:3]]
    assert st.neighbours[0]["run_id"] in (store.run_ids["t4"], store.run_ids["t7"])  # t9's close relatives
    asrs = [n["asr"] for n in st.neighbours]
    assert st.asr.min == min(asrs) and st.asr.max == max(asrs)


# -- none-sweep report ------------------------------------------------------------------------------------

def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_report_command_writes_files_and_logs_them(store, tmp_path, capsys):
    from test_report_store import run_cli

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
    assert summary["paper_defaults"]["run_id"] == store.run_ids["t5"]
    client, uri = open_client(store.uri)
    sweep = load_sweep(client, uri, SWEEP)
    points = [(t.asr, t.clean_acc) for t in sweep.finished]
    expected_front = sorted(sweep.finished[i].run_id for i in brute_front(points))
    assert sorted(p["run_id"] for p in summary["front"]) == expected_front
    md = (out / "report.md").read_text()
    assert "![ASR vs clean accuracy](pareto.png)" in md and "## Parameter importance" in md
    assert "7 of 10 finished trials (70.0%) meet the rule" in md
    assert "report: " in printed.out and str(out) in printed.out
    logged = {a.path for a in client.list_artifacts(store.parent_id, "report")}
    assert logged == {f"report/{n}" for n in ("pareto.png", "front.csv", "summary.json", "report.md")}


def test_report_with_rule_nobody_meets_still_reports(store, tmp_path, capsys):
    from test_report_store import run_cli

    rc = run_cli(["report", "--experiment", SWEEP, "--out", str(tmp_path), "--tracking-uri", store.uri,
                  "--max-asr", "0.0001", "--no-log"])
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chosen"] is None and "closest" in summary["rule_note"]
    assert "No trial meets the rule" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "nope"], "no experiment named 'nope'"),
    (["--experiment", "digits-empty"], "no finished trials"),
])
def test_report_errors_are_one_line_exit_2(store, tmp_path, capsys, argv, message):
    from test_report_store import run_cli

    rc = run_cli(["report", *argv, "--out", str(tmp_path), "--tracking-uri", store.uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("none-sweep report: error: ") and message in err[-1]
