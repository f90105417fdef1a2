"""``none-sweep sweep SPACE.yaml``: a Ray Tune + Optuna + MLflow sweep of NONE (see ``none_sweep/sweep/runner.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="sweep NONE's hyperparameters (Ray Tune + Optuna + MLflow)")
    p.add_argument("space", help="search-space YAML (see search_spaces/)")
    p.add_argument("--name", help="sweep name = MLflow experiment = Ray experiment folder (default: SPACE-<time>)")
    p.add_argument("--num-samples", type=int, metavar="K", help="number of trials (default: the space's num_samples)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once (default: as many as fit)")
    p.add_argument("--storage", default="./ray_results", help="Ray storage: a local/NFS folder or a URI (s3://, gs://)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<working folder>/mlflow.db)")
    p.add_argument("--address", help="existing Ray cluster, e.g. auto (default: start a local Ray)")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name from its storage")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the space's base config, e.g. --set train.epochs=4 (repeatable)",
    )
    p.add_argument("--verbose", action="store_true", help="Ray's own trial tables instead of one line per event")
    p.add_argument("--export", metavar="FILE",
                   help="when the sweep has finished: report it, export the lowest-ASR trial within its clean-accuracy "
                        "drop constraint (else 2 points) to FILE, attach both to the sweep's MLflow parent run and "
                        "print the verdict")  # fmt: skip
    p.add_argument("--report-dir", metavar="DIR", help="with --export: the report's folder (default: reports/NAME)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..sweep.runner import SweepOptions, sweep_and_record

    for flag, value in (("--num-samples", args.num_samples), ("--max-concurrent", args.max_concurrent)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    options = SweepOptions(
        space_path=args.space, name=args.name, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
        storage=args.storage, tracking_uri=args.tracking_uri, address=args.address, resume=args.resume,
        overrides=list(args.overrides), verbose=args.verbose,
    )  # fmt: skip
    code, record = sweep_and_record(options)
    if code == 0 and args.export:
        from ..report.publish import publish

        out = Path(args.report_dir) if args.report_dir else Path("reports") / record.name
        verdict = publish(record.name, record.tracking_uri, out, Path(args.export), say=print)
        print(verdict.line(), flush=True)
    return code
