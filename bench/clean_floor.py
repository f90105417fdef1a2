"""The ASR a model shows without a backdoor: the floor under any defense's ASR on a patch attack.

    python -m bench.clean_floor --json bench/clean_floor_results.json
    python -m bench.clean_floor --experiments configs/fmnist_label_consistent.yaml configs/fmnist_all_to_all.yaml \
        --scales full --json bench/clean_floor_other_patches.json

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
    "subset": {"train_subset": 12000, "test_subset": 2000},
    "full": {"train_subset": None, "test_subset": None},
}
ONE_SAMPLE = 1e-9  # poison_count rounds up to at least one sample


def floor_config(scale: dict[str, int | None], experiment: Path = EXPERIMENT) -> dict[str, Any]:
    config = verify.config_mapping(experiment.read_text())
    return {
        **config,
        "data": {**config["data"], **scale},
        "attack": {**config["attack"], "poison_rate": ONE_SAMPLE},
        "defense": {**config["defense"], "enabled": False},
    }


def measure(seeds: int, experiments: list[Path], scales: list[str]) -> dict[str, Any]:
    out = {}
    for experiment in experiments:
        for name in scales:
            config = floor_config(SCALES[name], experiment)
            runs = verify.run_seeds(config, seeds, with_baseline=False, say=lambda line: print(line))
            asr = [r["asr"] for r in runs]
            out[f"{experiment.stem}, {name}"] = {"per_seed": runs, "asr_mean": statistics.fmean(asr),
                                                  "asr_sd": statistics.stdev(asr) if len(asr) > 1 else 0.0}  # fmt: skip
    return out


def table(results: dict[str, Any]) -> str:
    lines = ["| experiment, scale (subset: 12 000 / 2 000 images; full: 60 000 / 10 000) | seeds | "
             "clean-model ASR, mean ± sd | clean accuracy |", "| --- | --- | --- | --- |"]  # fmt: skip
    for name, r in results.items():
        acc = statistics.fmean(x["clean_acc"] for x in r["per_seed"])
        seeds = ", ".join(str(x["seed"]) for x in r["per_seed"])
        lines.append(f"| {name} | {seeds} | {100 * r['asr_mean']:.2f} ± {100 * r['asr_sd']:.2f} | {100 * acc:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--experiments", nargs="+", type=Path, default=[EXPERIMENT])
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--json", type=Path, default=Path("bench/clean_floor_results.json"))
    args = parser.parse_args()
    results = measure(args.seeds, args.experiments, args.scales)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(table(results))


if __name__ == "__main__":
    main()
