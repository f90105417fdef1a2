"""Undefended vs NONE-defended runs per attack: the table behind bench/RESULTS.md's attack section.

    python -m bench.attack_table                       # all five Fashion-MNIST configs, paper thresholds
    python -m bench.attack_table --configs configs/fmnist_badnets.yaml --set defense.max_reset_fraction=0.2

Each config runs twice with the same seed (defense off, defense on), through the same code path as
``none-sweep train``; the table gives clean accuracy, ASR, robust accuracy, detection and wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from none_sweep.config import load_config, parse_overrides
from none_sweep.train import ExperimentRun, compare_to_baseline

DEFAULT_CONFIGS = [f"configs/fmnist_{a}.yaml" for a in ("badnets", "blend", "all_to_all", "sig", "wanet")]


def run_pair(path: str, overrides: list[str], say) -> dict:
    rows = {}
    for label, extra in (("undefended", ["defense.enabled=false"]), ("none", [])):
        cfg = load_config(path, parse_overrides(overrides + extra))
        run = ExperimentRun(cfg, progress=lambda line, lab=label: say(f"  [{Path(path).stem} {lab}] {line}"))
        for _ in run.epochs():
            pass
        rows[label] = run.result().metrics
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
    args = parser.parse_args()
    say = lambda line: print(line, flush=True)  # noqa: E731
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {Path(p).stem: run_pair(p, args.overrides, say) for p in args.configs}
    print(f"\n{started}, {platform.processor() or platform.machine()}, overrides {args.overrides or 'none'}\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
