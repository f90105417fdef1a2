"""The sweep's one-line progress (``sweep/progress.py``): what a trial's lines say with and without a trigger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from none_sweep.sweep.progress import ProgressLines


@dataclass
class FinishedTrial:
    """The attributes of a Ray ``Trial`` the callback reads."""

    trial_id: str
    last_result: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "TERMINATED"
    path: str | None = None


def lines_for(result: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[str]:
    progress = ProgressLines(num_samples=2)
    trial = FinishedTrial("train_abc12_00000", result)
    progress.on_trial_result(0, [trial], trial, {**result, "round_end": 1, "round": 0, "epoch": 2, "final": 0})
    progress.on_trial_complete(0, [trial], trial)
    return capsys.readouterr().out.splitlines()


def test_a_trigger_attack_shows_asr(capsys: pytest.CaptureFixture[str]) -> None:
    out = lines_for({"asr": 0.021, "clean_acc": 0.8, "clean_acc_drop": 0.01, "final": 1}, capsys)
    assert out[0] == "none-sweep: trial abc12_00000 round 0 (epoch 2): ASR 2.1%, clean acc 80.0%, removed 0 samples"
    assert out[1].startswith("none-sweep: trial abc12_00000 finished: ASR 2.1%, clean acc 80.0% (drop +1.0 pt) in ")
    assert out[2] == "none-sweep:   [1/2 ended: 1 done, 0 failed; 0 running]"


def test_natural_backdoors_show_reasr_not_an_asr_that_cannot_exist(capsys: pytest.CaptureFixture[str]) -> None:
    out = lines_for({"asr": None, "clean_acc": 0.82, "clean_acc_drop": -0.009, "reasr": 0.795, "final": 1}, capsys)
    assert "ASR" not in out[0].replace("REASR", "")
    assert "finished: REASR 79.5%, clean acc 82.0% (drop -0.9 pt)" in out[1] and " ASR" not in out[1]
