#!/usr/bin/env python
"""Entry script for ``ray submit``/``ray job submit``: run a none-sweep sweep on the cluster it lands on.

    ray submit cluster/aws-gpu.yaml cluster/run_sweep.py -- search_spaces/digits_tiny.yaml --name digits-aws

Everything after ``--`` is ``none-sweep sweep``'s own arguments. This script adds what the cluster knows:

- ``--address auto`` (the Ray cluster this node belongs to) unless ``--address`` is given;
- ``--storage $NONE_SWEEP_STORAGE`` (the shared s3://, gs:// or NFS location every node sees);
- ``--tracking-uri $MLFLOW_TRACKING_URI`` (the MLflow server on the head node).

Both variables are written by ``cluster/node_setup.sh`` into ``~/.none-sweep.env`` (sourced from ``~/.bashrc``).
A relative space path that does not exist here is looked up in ``$NONE_SWEEP_HOME`` (the synced repository),
because ``ray submit`` runs this script from the home folder. It calls the CLI's ``main`` in-process: no shell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: flag → the environment variable that supplies it when the flag is absent.
FROM_ENV = {"--storage": "NONE_SWEEP_STORAGE", "--tracking-uri": "MLFLOW_TRACKING_URI"}


class MissingSetting(Exception):
    """The node's environment lacks a setting the sweep needs (the node was not set up by node_setup.sh)."""


def _has_flag(argv: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _resolve_space(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """Point a relative space path at ``$NONE_SWEEP_HOME`` when it is not found from the current folder."""
    home = env.get("NONE_SWEEP_HOME")
    positional = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if positional is None or home is None:
        return argv
    space = Path(argv[positional])
    if not space.is_absolute() and not space.exists() and (Path(home) / space).exists():
        argv = list(argv)
        argv[positional] = str(Path(home) / space)
    return argv


def sweep_argv(args: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``none-sweep`` argv for the sweep: the user's arguments plus what the cluster's environment supplies."""
    env = os.environ if env is None else env
    argv = list(args[1:]) if args[:1] == ["--"] else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        return ["sweep", *argv]
    argv = _resolve_space(argv, env)
    if not _has_flag(argv, "--address"):
        argv += ["--address", env.get("RAY_ADDRESS") or "auto"]
    for flag, var in FROM_ENV.items():
        if not _has_flag(argv, flag):
            if not env.get(var):
                raise MissingSetting(
                    f"{var} is not set and {flag} was not given; run cluster/node_setup.sh on this "
                    f"node (the cluster YAML's setup_commands do) or pass {flag}"
                )
            argv += [flag, env[var]]
    return ["sweep", *argv]


def main(args: Sequence[str] | None = None) -> int:
    from none_sweep.cli import main as cli_main

    try:
        argv = sweep_argv(sys.argv[1:] if args is None else args)
    except MissingSetting as exc:
        print(f"run_sweep.py: error: {exc}", file=sys.stderr)
        return 2
    print("run_sweep.py: none-sweep " + " ".join(argv), flush=True)
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
