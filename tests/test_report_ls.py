"""``none-sweep ls`` on a real MLflow store."""

from __future__ import annotations

from none_sweep.cli import main as run_cli
from none_sweep.report.listing import _duration


def test_ls_table(store, capsys):
    rc = run_cli(["ls", "--tracking-uri", store.uri])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].split() == [
        "SWEEP",
        "STATUS",
        "FINISHED",
        "FAILED",
        "RUNNING",
        "BEST",
        "ASR",
        "(drop<=0.02)",
        "STARTED",
        "DURATION",
    ]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert set(rows) == {"digits-demo", "digits-empty"}
    demo = rows["digits-demo"]
    assert demo[1:6] == ["finished", "10", "1", "1", "0.0120"]  # t9: asr 0.012 at drop 0.02
    empty = rows["digits-empty"]
    assert empty[1:6] == ["running", "0", "1", "1", "-"]
    assert "(running)" in out[1 + list(rows).index("digits-empty")]
    # newest first
    assert list(rows) == ["digits-empty", "digits-demo"]


def test_ls_other_threshold(store, capsys):
    assert run_cli(["ls", "--tracking-uri", store.uri, "--max-drop", "0.01"]) == 0
    demo = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("digits-demo"))
    assert demo[5] == "0.0300"  # t3


def test_ls_empty_store_and_missing_store(tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the schema
    assert run_cli(["ls", "--tracking-uri", uri]) == 0
    assert "no sweeps at" in capsys.readouterr().out
    assert run_cli(["ls", "--tracking-uri", f"sqlite:///{tmp_path / 'nope.db'}"]) == 2
    assert "none-sweep ls: error: no MLflow store at" in capsys.readouterr().err


def test_duration_format():
    assert _duration(1_000, 3_723_000) == "1h02m"
    assert _duration(1_000, 66_000) == "1m05s"
    assert _duration(1_000, None, now_s=31) == "30s (running)"
    assert _duration(None, None) == "-"
