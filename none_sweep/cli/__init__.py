"""``none-sweep`` command line: one module per subcommand, each with ``add_parser`` and ``run``.

Expected failures (:class:`~none_sweep.errors.NoneSweepError`) become one line on stderr and exit
code 2; anything else is a bug and keeps its traceback. Ray, Optuna and MLflow are imported only by
the subcommands that need them, so ``none-sweep train --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import NoneSweepError

#: Subcommand name → module under ``none_sweep.cli`` (each defines ``add_parser(subparsers)`` and ``run(args)``).
COMMANDS: dict[str, str] = {
    "train": "train",
    "sweep": "sweep",
    "export": "export",
    "report": "report",
    "ls": "ls",
    "sync-mlflow": "sync_mlflow",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="none-sweep",
        description="Sweep the NONE backdoor defense with Ray Tune, Optuna and MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"none-sweep {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"{__name__}.{module_name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except NoneSweepError as exc:
        print(f"none-sweep {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"none-sweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
