"""What REASR (the natural-backdoor score, trigger inversion) costs, and what its cheaper settings read.

REASR at its default settings (100 Adam steps on 256 held-in images, every label) took ~200-290 s on 2 cores
against ~25-75 s of training: too dear for a 32-trial sweep. Here one undefended small_cnn is trained on
``configs/fmnist_natural.yaml`` (no injected trigger; a seeded training subset), then
:func:`none_sweep.train.trigger_inversion.invert_triggers` runs on that same model at each setting, so every row
reads the same network: seconds, REASR, the label it names and the per-label flip rates. A cheap setting is
fit for a sweep when it names the default's label and ranks the trials the same way; its value is compared
only with values taken at the same setting.

    python -m bench.bench_reasr                       # Fashion-MNIST natural, 6000 training images
    python -m bench.bench_reasr --json bench/reasr_runs.json
    python -m bench.bench_reasr --quick               # digits + BadNets, a few steps (smoke run)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import add_common_args, print_header, setup, table


@dataclass(frozen=True)
class Setting:
    """One REASR setting: the ``evaluation.reasr_*`` keys, as ``invert_triggers`` takes them."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


#: The default first: every other row is read against it.
SETTINGS = (
    Setting("default", {"steps": 100, "images": 256}),
    Setting("steps 60, images 128", {"steps": 60, "images": 128}),
    Setting("steps 50, images 64, holdout 1024", {"steps": 50, "images": 64, "holdout": 1024}),
    Setting(
        "the same, 3 labels after a 12-step screen",
        {"steps": 50, "images": 64, "holdout": 1024, "labels": 3, "screen_steps": 12},
    ),
)
QUICK = (
    Setting("default", {"steps": 20, "images": 64}),
    Setting("cheap, 2 labels", {"steps": 20, "images": 32, "holdout": 128, "labels": 2, "screen_steps": 10}),
)


def trained_model(quick: bool, train_subset: int) -> tuple[Any, float]:
    """The undefended run (REASR off during it): the model every setting inverts, and its training seconds."""
    from none_sweep.config import parse_overrides
    from none_sweep.experiment import load_experiment
    from none_sweep.train import ExperimentRun

    root = Path(__file__).resolve().parents[1] / "configs"
    if quick:
        cfg = load_experiment(str(root / "digits_badnets.yaml"),
                              parse_overrides(["defense.enabled=false", "evaluation.reasr=never", "train.epochs=2"]))  # fmt: skip
    else:
        overrides = [f"data.train_subset={train_subset}", "defense.enabled=false", "evaluation.reasr=never"]
        cfg = load_experiment(str(root / "fmnist_natural.yaml"), parse_overrides(overrides))
    t0 = time.perf_counter()
    run = ExperimentRun(cfg)
    for _ in run.epochs():
        pass
    return run, time.perf_counter() - t0


def measure(run: Any, setting: Setting) -> dict[str, Any]:
    from none_sweep.train.trigger_inversion import invert_triggers

    t0 = time.perf_counter()
    r = invert_triggers(run.model, run.data.test_x, run.data.test_y, run.info, seed=run.cfg.seed, **setting.kwargs)
    return {"name": setting.name, **setting.kwargs, "seconds": time.perf_counter() - t0, "reasr": float(r.reasr),
            "label": int(r.label), "per_label": {str(k): round(float(v), 4) for k, v in r.per_label.items()}}  # fmt: skip


def ranking(per_label: dict[str, float], top: int = 4) -> list[int]:
    """The labels with the highest flip rates, highest first: what a setting must keep to judge trials alike."""
    return [int(k) for k, _ in sorted(per_label.items(), key=lambda kv: (-kv[1], int(kv[0])))[:top]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_reasr", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--train-subset", type=int, default=6000, help="training images of the natural run")
    parser.add_argument("--json", default=None, help="write the raw results here")
    args = parser.parse_args(argv)
    device = setup(args)
    print_header("bench_reasr: REASR cost and value at its settings, one model", device)
    run, train_s = trained_model(args.quick, args.train_subset)
    clean = float(run.result().metrics["clean_acc"])
    print(f"model: {run.cfg.data.name}, {run.cfg.model.name}, attack {run.cfg.attack.name}, "
          f"{len(run.data.train_y)} training images, {train_s:.1f} s of training, clean acc {100 * clean:.1f}%")  # fmt: skip
    rows = [measure(run, s) for s in (QUICK if args.quick else SETTINGS)]
    ref = rows[0]
    print(table(["setting", "seconds", "× training", "REASR", "label", "top labels", "same top label as default"],
                [[r["name"], r["seconds"], r["seconds"] / train_s, r["reasr"], r["label"],
                  " ".join(map(str, ranking(r["per_label"]))), r["label"] == ref["label"]] for r in rows]))  # fmt: skip
    if args.json:
        payload = {"train_s": train_s, "clean_acc": clean, "train_images": len(run.data.train_y),
                   "config": run.cfg.data.name, "rows": rows}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
