"""The ASR a model shows without a backdoor: the floor under any defense's ASR on a patch attack.

    python -m bench.clean_floor --json bench/clean_floor_results.json

ASR counts the patched non-target test images classified as the target. A model that never learned the
trigger still sends some of them there (a patch over an image is a corruption, and the model's errors on
corrupted images are not uniform over the classes), so a perfect defense, one that removes every poisoned
sample and retrains, lands on that floor and not on 0. Measured here as the experiment
``configs/fmnist_badnets.yaml`` undefended with one poisoned sample (the least an attack poisons: a single image
teaches no trigger), on fresh seeds, at the sweeps' 12 000 / 2 000-image subset and on the full sets. Runs go
through ``report.verify`` (Ray tasks, one CPU each), as ``export --verify-seeds`` does.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from none_sweep.report import verify

EXPERIMENT = Path("configs/fmnist_badnets.yaml")
SCALES: dict[str, dict[str, int | None]] = {
    "subset 12000 / 2000": {"train_subset": 12000, "test_subset": 2000},
    "full 60000 / 10000": {"train_subset": None, "test_subset": None},
}
ONE_SAMPLE = 1e-9  # poison_count rounds up to at least one sample


def floor_config(scale: dict[str, int | None]) -> dict[str, Any]:
    config = verify.config_mapping(EXPERIMENT.read_text())
    return {
        **config,
        "data": {**config["data"], **scale},
        "attack": {**config["attack"], "poison_rate": ONE_SAMPLE},
        "defense": {**config["defense"], "enabled": False},
    }


def measure(seeds: int) -> dict[str, Any]:
    out = {}
    for name, scale in SCALES.items():
        runs = verify.run_seeds(floor_config(scale), seeds, with_baseline=False, say=lambda line: print(line))
        asr = [r["asr"] for r in runs]
        out[name] = {"per_seed": runs, "asr_mean": statistics.fmean(asr), "asr_sd": statistics.stdev(asr)}
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| scale (train / test images) | seeds | clean-model ASR, mean ± sd | clean accuracy |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for name, r in results.items():
        acc = statistics.fmean(x["clean_acc"] for x in r["per_seed"])
        seeds = ", ".join(str(x["seed"]) for x in r["per_seed"])
        lines.append(f"| {name} | {seeds} | {100 * r['asr_mean']:.2f} ± {100 * r['asr_sd']:.2f} | {100 * acc:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("bench/clean_floor_results.json"))
    args = parser.parse_args()
    results = measure(args.seeds)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(table(results))


if __name__ == "__main__":
    main()
