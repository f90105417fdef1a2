"""``none-sweep report --experiment NAME [--out DIR]``: Pareto plot, importances, stability of one sweep.

Writes ``pareto.png``, ``front.csv``, ``summary.json`` and ``report.md`` into DIR (default
``reports/NAME``) and logs them to the sweep's parent run under ``report/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_tracking_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's default sqlite:///mlflow.db)",
    )


def add_rule_arguments(p: argparse.ArgumentParser) -> None:
    """The selection rule, shared by ``export`` and ``report`` (default: ``--max-drop 0.02``)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--max-asr", type=float, metavar="X", help="best clean accuracy among trials with asr <= X (e.g. 0.02)"
    )
    g.add_argument(
        "--max-drop",
        type=float,
        metavar="X",
        help="lowest ASR among trials with clean_acc_drop <= X (default rule: --max-drop 0.02)",
    )
    g.add_argument(
        "--knee",
        action="store_true",
        help="the trial of the sweep's feasible Pareto front closest to the best value of each of its "
        "objectives (min-max normalised; older sweeps without a record: min asr, max clean_acc)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="Pareto-front plot, parameter importances and stability of a sweep")
    p.add_argument("--experiment", required=True, metavar="NAME", help="the sweep's MLflow experiment (its --name)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: reports/NAME)")
    add_rule_arguments(p)
    p.add_argument(
        "--k",
        type=int,
        default=5,
        metavar="K",
        help="neighbours of the chosen trial for the stability spread (default: 5)",
    )
    p.add_argument(
        "--importance",
        default="default",
        choices=("default", "ped-anova", "fanova", "mdi"),
        help="Optuna importance evaluator (default: Optuna's, PED-ANOVA)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the files to the sweep's parent run")
    add_tracking_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..report.runs import load_sweep, open_client, print_progress
    from ..report.selection import rule_from_args
    from ..report.summary import build_report

    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    rule = rule_from_args(args.max_asr, args.max_drop, args.knee)
    client, uri = open_client(args.tracking_uri)
    sweep = load_sweep(client, uri, args.experiment, progress=print_progress(sys.stderr))
    out = Path(args.out) if args.out else Path("reports") / args.experiment
    summary = build_report(
        sweep,
        rule,
        out,
        k=args.k,
        evaluator=args.importance,
        client=None if args.no_log else client,
        say=lambda line: print(line, file=sys.stderr, flush=True),
    )
    chosen = summary["chosen"]
    n = summary["trials"]
    print(
        f"report: {out} (pareto.png, front.csv, summary.json, report.md); "
        f"{n['finished']}/{n['total']} trials finished, {len(summary['front'])} on the front"
    )
    if chosen:
        values = " ".join(f"{c}={chosen[c]:.4f}" for c in summary["columns"] if chosen.get(c) is not None)
        print(f"chosen by {summary['rule']}: run {chosen['run_id']} {values}")
    else:
        print(f"no trial meets the rule: {summary['rule_note']}")
    return 0
