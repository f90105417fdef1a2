"""Optuna's own tools on a finished sweep: ``optuna.load_study`` and ``optuna-dashboard`` read the sweep's journal.

The searcher keeps the search state in an Optuna study in ``<storage>/<sweep>/optuna.journal`` (study name = sweep
name), so a user can open it with Optuna's tools, not only through ``none-sweep report``. These tests open it the
way the README tells a user to — plain Optuna calls and the ``optuna-dashboard`` command, nothing of ours — and
check it against what the sweep itself says: its space file (directions, distributions) and Ray's final results.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState
from support.net import free_port
from support.processes import BIN, kill_group
from support.sweeps import FinishedSweep

from none_sweep.config import flatten, to_dict
from none_sweep.sweep.space import SweepSpace, load_space

DIRECTION = {"min": StudyDirection.MINIMIZE, "max": StudyDirection.MAXIMIZE}
#: Ray's status of a trial → the state its Optuna trial must hold (the digits sweep neither prunes nor stops early).
STATE_OF = {"TERMINATED": TrialState.COMPLETE, "ERROR": TrialState.FAIL}
DASHBOARD = BIN / "optuna-dashboard"


def journal_of(sweep: FinishedSweep) -> Path:
    return sweep.folder / "optuna.journal"


@pytest.fixture(scope="module")
def study(digits_sweep: FinishedSweep) -> optuna.Study:
    """The sweep's study, opened exactly as the README shows."""
    assert digits_sweep.code == 0, digits_sweep.text
    storage = JournalStorage(JournalFileBackend(str(journal_of(digits_sweep))))
    return optuna.load_study(study_name=digits_sweep.name, storage=storage)


@pytest.fixture(scope="module")
def space(digits_sweep: FinishedSweep) -> SweepSpace:
    return load_space(digits_sweep.opts.space_path)


def by_ray_id(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """Optuna trial per Ray trial id (the user attr the searcher sets when Ray asks)."""
    return {t.user_attrs["ray_trial_id"]: t for t in study.trials}


def test_the_study_optimises_the_spaces_objectives(study: optuna.Study, space: SweepSpace) -> None:
    assert [o.metric for o in space.objectives] == ["asr", "clean_acc"]  # what the digits space declares
    assert study.directions == [DIRECTION[o.mode] for o in space.objectives]
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]


def test_every_trial_has_the_spaces_distributions(study: optuna.Study, space: SweepSpace) -> None:
    base = flatten(to_dict(space.base_config()))
    assert study.trials
    for trial in study.trials:
        assert set(trial.params) <= set(space.keys), trial.params
        for p in space.params:
            current = {**base, **trial.params}
            if p.key in trial.params:
                assert trial.distributions[p.key] == p.distribution(), (trial.number, p.key)
            else:  # only a conditional key may be missing, and only where its condition does not hold
                assert p.when and not p.active(current), (trial.number, p.key, trial.params)


def test_trial_states_and_values_are_rays_final_results(study: optuna.Study, space: SweepSpace,
                                                        digits_sweep: FinishedSweep) -> None:  # fmt: skip
    ray_trials = {t.trial_id: t for t in digits_sweep.trials}
    assert len(ray_trials) == space.num_samples
    optuna_trials = by_ray_id(study)
    assert set(optuna_trials) == set(ray_trials)
    assert len(study.trials) == len(ray_trials)  # nothing orphaned or re-added in a clean run
    for ray_id, ray_trial in ray_trials.items():
        trial = optuna_trials[ray_id]
        assert trial.state == STATE_OF[ray_trial.status], (ray_id, ray_trial.status, trial.state)
        if trial.state == TrialState.COMPLETE:
            expected = [float(ray_trial.last_result[m]) for m in space.metrics]
            assert trial.values is not None and all(map(math.isfinite, trial.values))
            assert trial.values == pytest.approx(expected, abs=1e-9), ray_id
            assert trial.params == {k: v for k, v in ray_trial.config.items() if k in space.keys}, ray_id


def test_the_enqueued_point_is_the_first_trial(study: optuna.Study, space: SweepSpace) -> None:
    first = min(study.trials, key=lambda t: t.number)
    point = space.points[0]
    assert first.user_attrs.get("none_sweep.point") == point.name
    assert first.params == {k: v for k, v in point.params.items() if k in first.params}


# ---------------------------------------------------------------------- optuna-dashboard
def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def wait_json(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> Any:
    """``url``'s JSON once the server answers; fails with the server's log when it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_json(url)
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"optuna-dashboard exited {proc.returncode}:\n{log.read_text()}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"optuna-dashboard did not answer in {timeout:.0f}s:\n{log.read_text()}") from None
            time.sleep(0.5)


@pytest.fixture
def dashboard(digits_sweep: FinishedSweep, tmp_path: Path) -> Iterator[str]:
    """``optuna-dashboard <journal>`` on a free loopback port; its base URL. Stopped (its process group) after.

    ``--server wsgiref``: the default picks gunicorn where it is installed (MLflow brings it), whose control
    socket lives in ``~/.gunicorn`` and is shared with any other gunicorn of the user.
    """
    if not DASHBOARD.exists():
        pytest.skip("optuna-dashboard is not installed: pip install -e '.[dashboard]' (it is in the dev extra)")
    port = free_port()
    log = tmp_path / "dashboard.log"
    argv = [str(DASHBOARD), str(journal_of(digits_sweep)), "--host", "127.0.0.1", "--port", str(port),
            "--server", "wsgiref"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=tmp_path, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_json(f"{base}/api/studies", proc, log)
        yield base
    finally:
        proc.terminate()  # wsgiref: one process, no children
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait(timeout=15)


def test_optuna_dashboard_lists_the_study_and_its_trials(dashboard: str, digits_sweep: FinishedSweep,
                                                         study: optuna.Study) -> None:  # fmt: skip
    summaries = get_json(f"{dashboard}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == [digits_sweep.name]
    summary = summaries[0]
    assert summary["directions"] == ["minimize", "maximize"]
    detail = get_json(f"{dashboard}/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == len(digits_sweep.trials) == len(study.trials)
    assert sorted(t["number"] for t in detail["trials"]) == sorted(t.number for t in study.trials)
    states = {t.number: t.state.name.capitalize() for t in study.trials}  # the dashboard says "Complete", "Fail"
    assert {t["number"]: t["state"] for t in detail["trials"]} == states
    shown = {(t["number"], p["name"]) for t in detail["trials"] for p in t["params"]}
    assert shown == {(t.number, key) for t in study.trials for key in t.params}
