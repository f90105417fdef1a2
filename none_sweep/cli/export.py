"""``none-sweep export``: the best trial of a sweep as a config file ``none-sweep train`` runs as-is.

    none-sweep export --experiment digits-tiny --max-asr 0.02 --out best_defense.yaml
    none-sweep export --experiment digits-tiny --knee --register-model none-digits --verify-seeds 3
    none-sweep export --run-id 3f2a... --out best_defense.yaml

Rules (default ``--max-drop 0.02``): ``--max-asr X`` best clean accuracy among trials with asr <= X;
``--max-drop X`` lowest ASR among trials with clean_acc_drop <= X; ``--knee`` the Pareto-front trial
closest to (min asr, max clean_acc) after min-max normalising both axes.
"""

from __future__ import annotations

import argparse
import sys

from .report import add_rule_arguments, add_tracking_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the best trial's config (with provenance); optionally register "
        "its model and re-check it on fresh seeds",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", metavar="NAME", help="the sweep's MLflow experiment (its --name)")
    which.add_argument("--run-id", metavar="ID", help="export this trial run instead of applying a rule")
    add_rule_arguments(p)
    p.add_argument(
        "--out",
        default="best_defense.yaml",
        metavar="FILE",
        help="where to write the config (default: best_defense.yaml)",
    )
    p.add_argument(
        "--register-model",
        metavar="NAME",
        help="register the trial's logged model (runs:/ID/model) as a new version of NAME",
    )
    p.add_argument(
        "--verify-seeds",
        type=int,
        metavar="N",
        help="re-train the config on N fresh seeds (seed+1..seed+N) as Ray tasks; report mean ± sd",
    )
    p.add_argument(
        "--verify-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pair each fresh seed with its own undefended run, so that its drop, DER and cost are against "
        "the same seed (default; --no-verify-baseline halves the time, and then no drop is reported)",
    )
    p.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster for --verify-seeds (default: $RAY_ADDRESS, else a local Ray)"
    )
    add_tracking_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..report import export, verify
    from ..report.runs import load_sweep, load_trial, open_client, print_progress, tracking_call
    from ..report.selection import rule_from_args, select

    if args.verify_seeds is not None and args.verify_seeds < 1:
        raise ConfigError(f"--verify-seeds must be at least 1, got {args.verify_seeds}")
    client, uri = open_client(args.tracking_uri)
    if args.run_id:
        if args.max_asr is not None or args.max_drop is not None or args.knee:
            raise ConfigError("--run-id exports that run; drop --max-asr/--max-drop/--knee (or use --experiment)")
        trial, sweep = load_trial(client, uri, args.run_id)
        rule = f"explicit --run-id {args.run_id}"
    else:
        sweep = load_sweep(client, uri, args.experiment, progress=print_progress(sys.stderr))
        chosen_rule = rule_from_args(args.max_asr, args.max_drop, args.knee)
        trial = select(sweep.trials, chosen_rule, sweep_name=sweep.name, goals=sweep.goals)
        rule = chosen_rule.describe(sweep.goals)

    out = export.export_config(client, trial, sweep, rule, args.out)
    print(f"export: {trial.label} of sweep {sweep.name!r} ({rule})")
    print(f"  {trial.describe_metrics()}")
    print(f"  wrote {out}; run it with: none-sweep train {out}")

    if args.register_model:
        version = export.register_model(client, trial, sweep, rule, args.register_model)
        print(
            f"  registered models:/{args.register_model}/{version.version} "
            f"(runs:/{trial.run_id}/model = {version.source})"
        )

    if args.verify_seeds:
        config = verify.config_mapping(export.read_config_text(client, uri, trial))
        results = verify.run_seeds(
            config,
            args.verify_seeds,
            address=args.ray_address,
            with_baseline=args.verify_baseline,
            say=lambda line: print(line, file=sys.stderr, flush=True),
        )
        summary = verify.summarise(
            results,
            trial.metrics,
            run_id=trial.run_id,
            experiment=sweep.name,
            config_seed=int(config.get("seed", 0) or 0),
        )
        path = verify.write(summary, verify.verify_path(out))
        print(verify.table(summary))
        print(f"  wrote {path}")
        if sweep.parent is not None:
            pid = sweep.parent.run_id
            tracking_call("logging the verification", uri, client.log_artifact, pid, str(path), "verify")
            for key, s in summary["summary"].items():
                for stat in ("mean", "sd"):
                    if s[stat] is not None:
                        tracking_call(
                            "logging the verification", uri, client.log_metric, pid, f"verify_{key}_{stat}", s[stat]
                        )
            print(f"  logged to the sweep run {pid} (verify/{path.name}, verify_* metrics)")
    return 0
