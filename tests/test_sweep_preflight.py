"""Preflight: every problem a sweep would hit later is one clear line and exit code 2, before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from none_sweep.cli import main

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"


def space_file(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(DIGITS.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_unreachable_tracking_server_is_a_one_line_error(tmp_path: Path, capsys, free_port: int) -> None:
    args = ["sweep", str(DIGITS), "--storage", str(tmp_path), "--tracking-uri", f"http://127.0.0.1:{free_port}"]
    code, err = run_cli(args, capsys)
    assert code == 2
    assert err.startswith("none-sweep sweep: error: --tracking-uri http://127.0.0.1:") and "\n" not in err


def test_tracking_folder_must_exist(tmp_path: Path, capsys) -> None:
    code, err = run_cli(["sweep", str(DIGITS), "--storage", str(tmp_path),
                         "--tracking-uri", f"sqlite:///{tmp_path}/missing/mlflow.db"], capsys)  # fmt: skip
    assert code == 2 and "does not exist" in err


def test_storage_must_be_writable(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = run_cli(["sweep", str(DIGITS), "--storage", str(blocker / "results"),
                         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capsys)  # fmt: skip
    assert code == 2 and "is not writable" in err and "--storage" in err


def test_missing_dataset_is_a_data_error(tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path, base__data={"name": "fashion-mnist", "root": str(tmp_path / "no-data")})
    code, err = run_cli(["sweep", str(space), "--storage", str(tmp_path / "ray"),
                         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capsys)  # fmt: skip
    assert code == 2 and "base data" in err and "fashion-mnist" in err


@pytest.mark.parametrize(
    ("resources", "expected"), [({"cpu": 64}, "resources.cpu=64"), ({"cpu": 1, "gpu": 0.25}, "resources.gpu=0.25")]
)
def test_resources_must_fit_the_largest_node(tmp_path: Path, capsys, ray_local, resources, expected) -> None:
    space = space_file(tmp_path, resources=resources)
    code, err = run_cli(["sweep", str(space), "--storage", str(tmp_path / "ray"),
                         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], capsys)  # fmt: skip
    assert code == 2 and expected in err and "largest Ray node" in err
