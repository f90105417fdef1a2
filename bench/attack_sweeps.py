"""A ≥32-trial sweep per shipped Fashion-MNIST space, its export re-verified on fresh seeds: RESULTS' sweep table.

    python -m bench.attack_sweeps --root /work/runs/part4                       # every space below, in order
    python -m bench.attack_sweeps --root /work/runs/part4 --spaces fmnist_badnets fmnist_all_to_all
    python -m bench.attack_sweeps --root /work/runs/part4 --table-only          # the table from the JSON kept
    python -m bench.attack_sweeps --root /work/runs/part4 --table-only --trials --spaces fmnist_wanet   # + each trial

Each space goes through the commands a user types (so the figures are what they would get):
``none-sweep sweep`` (resumed when its storage holds an unfinished run of it, skipped when finished), then
``none-sweep export --max-drop 0.01 --verify-seeds 3`` (falling back to ``--max-drop 0.02`` when no trial
loses at most one point; the natural-backdoor space, which has no ASR, exports its knee on REASR and clean
accuracy). The row is read back from the sweep's MLflow experiment (the trials, through ``report.runs``), its
storage (``baseline.json``: the undefended run, trained once by the sweep) and the export's ``.verify.json``;
every row is kept in ``<root>/<space>.json`` and all of them in ``--json``.

Each fresh seed is paired with its own undefended run by ``--verify-seeds`` (same seed, no defense): drop, DER
and cost (the pick's own training, which starts from scratch without the sweep's shared pre-training, over that
undefended run's wall time, one CPU each) are per seed against it, then averaged. A space swept again in a root
that holds an earlier sweep of it (the spaces moved from a subset to the full training set) takes ``--suffix``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from none_sweep.report.verify import measured, undefended_means
from none_sweep.tracking.layout import POINT_TAG
from none_sweep.train.metrics import backdoor_metric, compare_to_baseline

SPACES = [
    "fmnist_badnets", "fmnist_all_to_all", "fmnist_label_consistent", "fmnist_badnets_1pct",
    "fmnist_badnets_05pct", "fmnist_blend", "fmnist_sig", "fmnist_wanet", "fmnist_natural",
]  # fmt: skip
ROBUST = "fmnist_badnets_robust"  # its row's plain metrics are the worst over its three variants
RULES = ("0.01", "0.02")  # the export rule: lowest ASR with clean_acc_drop <= 1 point, else <= 2 points
CLI = [sys.executable, "-m", "none_sweep"]


SUFFIX = "part4"  # --suffix: a space re-swept in a root that holds an earlier sweep of it gets a new name


def sweep_name(space: str, suffix: str = SUFFIX) -> str:
    return f"{space.replace('_', '-')}-{suffix}"


def run_logged(cmd: list[str], log: Path) -> int:
    """``cmd`` with its output appended to ``log`` (the console gets one line per command)."""
    print(f"$ {' '.join(cmd)}   (log: {log})", flush=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def sweep_status(storage: Path, name: str) -> str | None:
    summary = storage / name / "summary.json"
    return json.loads(summary.read_text()).get("status") if summary.exists() else None


def run_sweep(space: str, name: str, root: Path, uri: str) -> None:
    storage = root / "ray"
    status = sweep_status(storage, name)
    if status == "finished":
        print(f"{space}: sweep {name} already finished", flush=True)
        return
    cmd = [*CLI, "sweep", f"search_spaces/{space}.yaml", "--name", name, "--storage", str(storage),
           "--tracking-uri", uri] + (["--resume"] if (storage / name).exists() else [])  # fmt: skip
    code = run_logged(cmd, root / f"{space}.log")
    if code != 0 or sweep_status(storage, name) != "finished":
        raise SystemExit(f"{space}: the sweep did not finish (exit {code}); see {root / f'{space}.log'}")


def export_pick(space: str, name: str, root: Path, uri: str, seeds: int) -> tuple[str, Path]:
    """The rule that picked, and the exported config (its ``.verify.json`` beside it)."""
    out = root / f"{space}.best.yaml"
    base = [*CLI, "export", "--experiment", name, "--tracking-uri", uri, "--out", str(out),
            "--verify-seeds", str(seeds)]  # fmt: skip
    rules = [["--knee"]] if space == "fmnist_natural" else [["--max-drop", r] for r in RULES]
    for rule in rules:
        if run_logged(base + rule, root / f"{space}.log") == 0:
            return " ".join(rule), out
    raise SystemExit(f"{space}: no trial meets any export rule; see {root / f'{space}.log'}")


def trial_row(trial: Any) -> dict[str, Any]:
    keys = ("asr", "clean_acc", "clean_acc_drop", "der", "reasr", "poison_precision", "poison_recall", "wall_s",
            "pretrain_saved_s", "removed_samples")  # fmt: skip
    return {"run_id": trial.run_id, "label": trial.label, "point": trial.tags.get(POINT_TAG),
            "params": trial.params, **{k: trial.metrics.get(k) for k in keys}}  # fmt: skip


def best_hand(trials: list[Any]) -> dict[str, Any] | None:
    """Among the space's hand settings (points ``hand_*``): the export rule's pick, else the lowest ASR."""
    from none_sweep.errors import TrackingError
    from none_sweep.report.selection import Rule, select

    hand = [t for t in trials if (t.tags.get(POINT_TAG) or "").startswith("hand_") and t.asr is not None]
    for limit in map(float, RULES):
        try:
            return trial_row(select(hand, Rule("max_drop", limit)))
        except TrackingError:
            continue
    return trial_row(min(hand, key=lambda t: t.asr)) if hand else None


def verified(summary: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The fresh seeds' mean ± sd. Drop, DER and cost are each seed's against its own undefended run when the
    export paired them (``"paired": true``); an export from before pairing has them against the sweep's
    undefended run (seed 0), the drop and DER of the seeds' mean and the cost of their mean wall time."""
    stats = summary["summary"]
    out = {k: stats[k] for k in stats}
    out["seeds"], out["paired"] = summary["seeds"], "clean_acc_drop" in stats
    if out["paired"]:
        out["undefended_seeds"] = undefended_means(summary["per_seed"])
        out["der"] = stats["der"]["mean"] if "der" in stats else None
        out["cost"] = stats["cost"]["mean"]
        out["clean_acc_drop"] = stats["clean_acc_drop"]["mean"]
        return out
    mean = {k: stats[k]["mean"] for k in ("clean_acc", "asr") if k in stats}
    out.update(
        {k: v for k, v in compare_to_baseline(mean, baseline["metrics"]).items() if k in ("der", "clean_acc_drop")}
    )
    walls = [r["wall_s"] for r in summary["per_seed"] if r.get("wall_s") is not None]
    out["cost"] = sum(walls) / len(walls) / baseline["wall_s"] if walls else None
    return out


def collect(space: str, name: str, root: Path, uri: str, rule: str, config: Path) -> dict[str, Any]:
    from none_sweep.report.runs import load_sweep, open_client

    client, _ = open_client(uri)
    sweep = load_sweep(client, uri, name)
    complete = [t for t in sweep.trials if t.complete]
    rows = [trial_row(t) for t in complete]
    baseline = json.loads((root / "ray" / name / "baseline.json").read_text())
    summary = json.loads(config.with_suffix(".verify.json").read_text())
    pick = next(r for r in rows if r["run_id"] == summary["run_id"])
    return {
        "space": space, "sweep": name, "rule": rule, "trials": rows,
        "finished": len(rows), "feasible_002": sum(1 for r in rows if (r["clean_acc_drop"] or 1) <= 0.02),
        "undefended": {"metrics": baseline["metrics"], "wall_s": baseline["wall_s"]},
        "paper_defaults": next((r for r in rows if r["point"] == "paper_defaults"), None),
        "best_hand": best_hand(complete), "pick": pick, "verified": verified(summary, baseline),
        "exported_config": config.read_text(),
    }  # fmt: skip


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if row.get("asr") is None:
        return f"REASR {row['reasr']:.3f} / {pct(row['clean_acc'])} ({pct(row['clean_acc_drop'])})"
    return f"{pct(row['asr'])} / {pct(row['clean_acc'])} ({pct(row['clean_acc_drop'])})"


def pick_cell(r: dict[str, Any]) -> str:
    v = r["verified"]
    if r["pick"].get("asr") is None:
        reasr = v["reasr"]
        return (f"REASR **{reasr['mean']:.3f} ± {reasr['sd']:.3f}** / {pct(v['clean_acc']['mean'])} ± "
                f"{pct(v['clean_acc']['sd'])} ({pct(v['clean_acc_drop'])}){'' if v.get('paired') else ' ‡'}")  # fmt: skip
    unpaired = "" if v.get("paired") else " ‡"
    return (f"**{pct(v['asr']['mean'])} ± {pct(v['asr']['sd'])}** / {pct(v['clean_acc']['mean'])} ± "
            f"{pct(v['clean_acc']['sd'])} ({pct(v['clean_acc_drop'])}){unpaired}")  # fmt: skip


def fresh_undefended(v: dict[str, Any]) -> str:
    """The fresh seeds' own undefended runs, mean (what the pick's drop and DER are against when paired)."""
    u = v.get("undefended_seeds")
    if not u:
        return "—"
    backdoor = f"REASR {u['reasr']:.3f}" if u.get("asr") is None else pct(u["asr"])
    return f"{backdoor} / {pct(u['clean_acc'])}"


def table(results: list[dict[str, Any]]) -> str:
    head = ("| space | undefended ASR / CA | paper defaults | best hand setting | sweep pick (sweep seed) | "
            "fresh seeds undefended: ASR / CA | pick on the fresh seeds: ASR / CA (drop) | DER | detection P / R | "
            "cost × undef. | rule |")  # fmt: skip
    lines = [head, "| " + " | ".join(["---"] * 11) + " |"]
    for r in results:
        u, p, v = r["undefended"]["metrics"], r["pick"], r["verified"]
        undef = f"{pct(u.get('asr'))} / {pct(u.get('clean_acc'))}"
        if u.get("asr") is None:
            undef = f"REASR {u['reasr']:.3f} / {pct(u.get('clean_acc'))}"
        cost = v["cost"] if "cost" in v else v["wall_s"] / r["undefended"]["wall_s"]  # row kept before pairing
        detect = f"{pct(p['poison_precision'], 1)} / {pct(p['poison_recall'], 1)}"
        der = "n/a" if v.get("der") is None else f"{v['der']:.3f}"
        lines.append(f"| {r['space']} | {undef} | {cell(r['paper_defaults'])} | {cell(r['best_hand'])} | "
                     f"{cell(p)} | {fresh_undefended(v)} | {pick_cell(r)} | {der} | {detect} | "
                     f"{'n/a' if cost is None else f'{cost:.2f}'} | {r['rule']} |")  # fmt: skip
    if any(not r["verified"].get("paired") for r in results):
        lines.append("\n‡ verified before each fresh seed had its own undefended run: drop, DER and cost are "
                     "those of the seeds' mean against the sweep's undefended run (seed 0).")  # fmt: skip
    return "\n".join(lines)


def trial_lines(row: dict[str, Any], per_seed: list[dict[str, Any]]) -> list[str]:
    """Every trial by its backdoor metric, then every verified seed beside its own undefended run: the single
    figures RESULTS quotes. A trial's cost is its wall time plus the shared pre-training it skipped over the
    sweep's undefended run (an estimate; the fresh seeds' cost in the table is measured)."""
    base_wall = row["undefended"]["wall_s"]
    lines = [f"{row['space']} ({row['sweep']}): {len(row['trials'])} trials"]
    for t in sorted(row["trials"], key=lambda t: t[backdoor_metric(t) or "clean_acc"] or 0.0):
        metric = backdoor_metric(t)
        p = t["params"]
        cost = ((t["wall_s"] or 0.0) + (t["pretrain_saved_s"] or 0.0)) / base_wall
        lines.append(
            f"  {metric}={pct(t.get(metric) if metric else None)} drop={pct(t['clean_acc_drop'])} "
            f"recall={pct(t['poison_recall'], 1)} removed={t['removed_samples']} "
            f"after_reset={p.get('defense.after_reset')} pretrain={p.get('defense.pretrain_epochs')} "
            f"rounds={p.get('defense.rounds')} cost~{cost:.2f}" + (f"  [{t['point']}]" if t["point"] else "")
        )
    for r in per_seed:
        base = r.get("undefended")
        lines.append(
            f"  verified seed {r['seed']}: {measured(r)}" + (f"   undefended: {measured(base)}" if base else "")
        )
    return lines


def measure(space: str, name: str, root: Path, uri: str, seeds: int, kept: Path) -> None:
    """Sweep, export, verify and collect one space into ``kept``."""
    t0 = time.monotonic()
    run_sweep(space, name, root, uri)
    rule, config = export_pick(space, name, root, uri, seeds)
    row = collect(space, name, root, uri, rule, config)
    row["bench_wall_s"] = time.monotonic() - t0
    kept.write_text(json.dumps(row, indent=1))
    print(f"{space}: done in {row['bench_wall_s']:.0f}s; {table([row]).splitlines()[-1]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="Ray storage, MLflow store, logs and exports")
    parser.add_argument("--spaces", nargs="+", default=SPACES, choices=[*SPACES, ROBUST])
    parser.add_argument("--seeds", type=int, default=3, help="fresh seeds for export --verify-seeds")
    parser.add_argument("--suffix", default=SUFFIX, help="sweep names are <space>-<suffix> (default %(default)s)")
    parser.add_argument("--json", type=Path, default=Path("bench/attack_sweeps_results.json"))
    parser.add_argument("--table-only", action="store_true", help="print the table from <root>/<space>.json")
    parser.add_argument(
        "--trials",
        action="store_true",
        help="also list every trial and every verified seed (--json is then left as it is)",
    )
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{args.root.resolve() / 'mlflow.db'}"
    results, failures = [], []
    for space in args.spaces:
        kept = args.root / f"{space}.json"
        if not args.table_only and not kept.exists():
            try:
                measure(space, sweep_name(space, args.suffix), args.root, uri, args.seeds, kept)
            except SystemExit as failed:  # one space failing does not stop the others
                print(failed, flush=True)
                failures.append(space)
        if kept.exists():
            row = json.loads(kept.read_text())
            checked = args.root / f"{space}.best.verify.json"  # the verification's own record, read afresh
            summary = json.loads(checked.read_text()) if checked.exists() else None
            if summary is not None:
                row["verified"] = verified(summary, row["undefended"])
            if args.trials:
                print("\n".join(trial_lines(row, summary["per_seed"] if summary else [])))
            results.append(row)
    if results and not args.trials:  # a listing of a few spaces must not overwrite the raw results
        args.json.write_text(json.dumps(results, indent=1))
        print(table(results))
    if failures:
        raise SystemExit(f"failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
