"""``none-sweep sync-mlflow --name N``: back-fill MLflow from Ray's records of a sweep (after a tracking outage)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sync-mlflow", help="back-fill MLflow from a sweep's Ray results")
    p.add_argument("--name", required=True, help="the sweep name")
    p.add_argument("--storage", default="./ray_results", help="the sweep's Ray storage (folder or URI)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the sweep was started with)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..sweep.storage import SweepStorage
    from ..sweep.sync import sync_sweep

    def say(line: str) -> None:
        print(line, flush=True)

    storage = SweepStorage(args.storage, args.name)
    stats = sync_sweep(storage, args.tracking_uri, say)
    say(f"sync-mlflow {args.name!r}: {stats.line()}")
    return 0
