"""Exported defense configs on BadNets patch variants that no sweep saw: does robust selection generalise?

    python -m bench.unseen_variants --picks badnets_only=/work/runs/part4/fmnist_badnets.best.yaml \
        robust=/work/runs/part4/fmnist_badnets_robust.best.yaml --json bench/unseen_variants_results.json

The variants below are held out: they appear in no space file (``search_spaces/``), so neither the BadNets-only
sweep nor the robust one (whose three variants are in ``fmnist_badnets_robust.yaml``) chose on them. Per variant
the undefended run is trained once (the first pick's config with ``defense.enabled=false``), then each pick's
exported config as it is, with only the attack's patch changed; drop and DER are against that undefended run.
Runs go two at a time with one torch thread each, as the sweep's trials did.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: Held-out patch variants (size, place, pattern); keep them out of every file in search_spaces/.
UNSEEN: dict[str, dict[str, Any]] = {
    "p3_tl_random": {"patch_size": 3, "location": "top_left", "pattern": "random"},
    "p4_bl_checker": {"patch_size": 4, "location": "bottom_left", "pattern": "checker"},
    "p5_tr_white": {"patch_size": 5, "location": "top_right", "pattern": "white"},
}


def overrides_for(variant: str, defended: bool) -> list[str]:
    out = [f"attack.params.{k}={v}" for k, v in UNSEEN[variant].items()]
    return out + ([] if defended else ["defense.enabled=false"])


def train(path: str, overrides: list[str]) -> dict[str, Any]:
    """One run of ``path`` with ``overrides`` to the end; its final metrics."""
    import torch

    from none_sweep.config import parse_overrides
    from none_sweep.experiment import load_experiment
    from none_sweep.train import ExperimentRun

    torch.set_num_threads(1)
    run = ExperimentRun(load_experiment(path, parse_overrides(overrides)))
    for _ in run.epochs():
        pass
    return dict(run.result().metrics)


def evaluate(picks: dict[str, str]) -> dict[str, Any]:
    from none_sweep.train.metrics import compare_to_baseline

    first = next(iter(picks.values()))
    jobs = {(v, "undefended"): (first, overrides_for(v, False)) for v in UNSEEN}
    jobs |= {(v, name): (path, overrides_for(v, True)) for v in UNSEEN for name, path in picks.items()}
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(train, *job) for key, job in jobs.items()}
        done = {key: f.result() for key, f in futures.items()}
    out: dict[str, Any] = {}
    for v in UNSEEN:
        base = done[(v, "undefended")]
        out[v] = {"params": UNSEEN[v], "undefended": base}
        for name in picks:
            out[v][name] = {**done[(v, name)], **compare_to_baseline(done[(v, name)], base)}
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def table(results: dict[str, Any], picks: list[str]) -> str:
    head = "| unseen variant | undefended ASR / CA | " + " | ".join(f"{p}: ASR / CA (drop)" for p in picks) + " |"
    lines = [head, "| " + " | ".join(["---"] * (2 + len(picks))) + " |"]
    for v, r in results.items():
        cells = [f"{pct(r[p]['asr'])} / {pct(r[p]['clean_acc'])} ({pct(r[p]['clean_acc_drop'])})" for p in picks]
        lines.append(f"| {v} | {pct(r['undefended']['asr'])} / {pct(r['undefended']['clean_acc'])} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    worst = [f"**{pct(max(r[p]['asr'] for r in results.values()))}**" for p in picks]
    lines.append("| worst ASR | | " + " | ".join(worst) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picks", nargs="+", required=True, metavar="NAME=CONFIG", help="exported configs")
    parser.add_argument("--json", type=Path, default=Path("bench/unseen_variants_results.json"))
    args = parser.parse_args()
    picks = dict(p.split("=", 1) for p in args.picks)
    results = evaluate(picks)
    args.json.write_text(json.dumps({"variants": UNSEEN, "picks": picks, "results": results}, indent=1))
    print(table(results, list(picks)))


if __name__ == "__main__":
    main()
