"""Undefended vs NONE-defended runs per attack: the table behind bench/RESULTS.md's attack section.

    python -m bench.attack_table                       # all five Fashion-MNIST configs, paper thresholds
    python -m bench.attack_table --configs configs/fmnist_badnets.yaml --set defense.max_reset_fraction=0.2
    python -m bench.attack_table --json paper.json                      # keep the raw results ...
    python -m bench.attack_table --baselines paper.json --set defense.finetune_lr=0.01 --json tuned.json

Each config runs twice with the same seed (defense off, defense on), through the same code path as
``none-sweep train``; the table gives clean accuracy, ASR, robust accuracy, detection and wall time.
``--baselines`` takes the undefended rows from an earlier ``--json`` instead of re-training them, but only
where that run's resolved config equals this one's outside the (unused) defense section (else it trains
it again), so a defended-only re-run with other defense settings still compares against exactly the same
attacked model.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from none_sweep.config import parse_overrides, to_dict
from none_sweep.experiment import load_experiment
from none_sweep.train import ExperimentRun, compare_to_baseline

DEFAULT_CONFIGS = [f"configs/fmnist_{a}.yaml" for a in ("badnets", "blend", "all_to_all", "sig", "wanet")]


def _attacked_model(resolved: dict | None) -> dict | None:
    """An undefended run's config less its (then unused) defense section: what decides the trained model."""
    if resolved is None or resolved["defense"]["enabled"]:
        return None
    return {k: v for k, v in resolved.items() if k != "defense"}


def run_pair(path: str, overrides: list[str], say, earlier: dict | None = None) -> dict:
    rows: dict = {}
    for label, extra in (("undefended", ["defense.enabled=false"]), ("none", [])):
        cfg = load_experiment(path, parse_overrides(overrides + extra))
        resolved = to_dict(cfg)
        same = earlier and _attacked_model(earlier.get("undefended_config")) == _attacked_model(resolved)
        if label == "undefended" and same:
            say(f"  [{Path(path).stem} {label}] reusing the undefended run from --baselines (same attacked model)")
            rows[label], rows["undefended_config"] = earlier[label], resolved
            continue
        run = ExperimentRun(cfg, progress=lambda line, lab=label: say(f"  [{Path(path).stem} {lab}] {line}"))
        for _ in run.epochs():
            pass
        rows[label] = run.result().metrics
        rows[f"{label}_config"] = resolved
    rows["compare"] = compare_to_baseline(rows["none"], rows["undefended"])
    return rows


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def table(results: dict[str, dict]) -> str:
    lines = [
        "| config | CA undef. | ASR undef. | CA NONE | ASR NONE | robust NONE | CA drop | DER | poison P / R | reset | wall (s, pair) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        u, d, c = r["undefended"], r["none"], r["compare"]
        lines.append(
            f"| {name} | {pct(u['clean_acc'])} | {pct(u['asr'])} | {pct(d['clean_acc'])} | {pct(d['asr'])} | "
            f"{pct(d['robust_acc'])} | {pct(c.get('clean_acc_drop'))} | {c['der']:.3f} | "
            f"{pct(d['poison_precision'])} / {pct(d['poison_recall'])} | {d['neurons_reset']} | "
            f"{u['wall_s'] + d['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument(
        "--baselines",
        nargs="+",
        default=[],
        help="earlier --json files: reuse their undefended runs where the attacked model matches",
    )
    args = parser.parse_args()
    say = lambda line: print(line, flush=True)  # noqa: E731
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    earlier: dict = {}
    for path in args.baselines:
        earlier.update(json.loads(Path(path).read_text()))
    results = {}
    for p in args.configs:
        results[Path(p).stem] = run_pair(p, args.overrides, say, earlier.get(Path(p).stem))
        if args.json:  # after every pair, so an interrupted table keeps what it finished
            Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    print(f"\n{started}, {platform.processor() or platform.machine()}, overrides {args.overrides or 'none'}\n")
    print(table(results))


if __name__ == "__main__":
    main()
