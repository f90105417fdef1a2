"""The report's reader (``none_sweep.report.runs``) on the session's real MLflow store (fixture ``store``,
built by ``support.report_store`` exactly per the layout in docs/architecture.md)."""

from __future__ import annotations

import sys

import pytest
from support.report_store import BASELINE, SWEEP, TRIALS, name_of


def test_load_sweep_splits_parent_and_trials(store, capsys):
    from none_sweep.report.runs import load_sweep, open_client, print_progress

    client, uri = open_client(store.uri)
    sweep = load_sweep(client, uri, SWEEP, progress=print_progress(sys.stderr))
    assert sweep.parent.run_id == store.parent_id
    assert sweep.baseline == pytest.approx(BASELINE)
    assert len(sweep.trials) == len(TRIALS) + 2
    assert {name_of(store, t) for t in sweep.finished} == set(TRIALS)
    assert sweep.count("FAILED") == 1 and sweep.count("RUNNING") == 1
    t4 = next(t for t in sweep.trials if t.run_id == store.run_ids["t4"])
    # params come back typed, metrics are the final (latest-step) values
    assert t4.params["defense.max_reset_fraction"] == 0.06
    assert t4.params["defense.enabled"] is True
    assert t4.params["data.root"] is None
    assert t4.params["defense.layer_types"] == ["conv"]
    assert (t4.asr, t4.clean_acc, t4.clean_acc_drop) == (0.015, 0.955, pytest.approx(0.015))
    assert t4.trial_id == "ray_t4"
    assert f"read {len(TRIALS) + 3}/{len(TRIALS) + 3} runs" in capsys.readouterr().err


def test_progress_pages(store, monkeypatch, capsys):
    from none_sweep.report import runs

    monkeypatch.setattr(runs, "PAGE_SIZE", 5)
    client, uri = runs.open_client(store.uri)
    sweep = runs.load_sweep(client, uri, SWEEP, progress=runs.print_progress(sys.stderr))
    assert len(sweep.trials) == len(TRIALS) + 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["read 5/13 runs", "read 10/13 runs", "read 13/13 runs"]


def test_unknown_experiment_lists_existing(store):
    from none_sweep.errors import TrackingError
    from none_sweep.report.runs import load_sweep, open_client

    client, uri = open_client(store.uri)
    with pytest.raises(TrackingError, match=r"no experiment named 'nope'.*digits-demo, digits-empty"):
        load_sweep(client, uri, "nope")


def test_missing_sqlite_file_is_refused(tmp_path):
    from none_sweep.errors import TrackingError
    from none_sweep.report.runs import open_client

    with pytest.raises(TrackingError, match="no MLflow store"):
        open_client(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
