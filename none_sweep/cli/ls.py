"""``none-sweep ls [--tracking-uri URI]``: the sweeps in a tracking store, newest first."""

from __future__ import annotations

import argparse

from .report import add_tracking_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ls", help="list sweeps: status, trials finished/failed/running, best ASR, duration")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.02,
        metavar="X",
        help="best ASR among trials with clean_acc_drop <= X (default: 0.02)",
    )
    add_tracking_argument(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report.listing import format_table, list_sweeps
    from ..report.runs import open_client
    from ..report.selection import Rule

    Rule("max_drop", args.max_drop)  # validates the threshold
    client, uri = open_client(args.tracking_uri)
    rows = list_sweeps(client, uri, args.max_drop)
    if not rows:
        print(f"no sweeps at {uri} (a sweep is a run tagged none_sweep.role=sweep)")
        return 0
    print(format_table(rows, args.max_drop))
    return 0
