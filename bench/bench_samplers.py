"""What one suggestion costs each Optuna sampler as the study grows: the searcher's share of a large sweep.

``bench_scale`` measures the suggestion inside a running sweep (wall time, with Ray and MLflow beside it); this
isolates the sampler. A study with N finished trials over the space of ``search_spaces/digits_tiny.yaml`` (the
trials' params drawn by the space's own params, random objective values and constraint violations) is held in
memory; then ``--asks`` suggestions are made through the sampler the sweep would build
(:func:`none_sweep.sweep.search.make_sampler`) and the space's params, and their CPU time is averaged.

    python -m bench.bench_samplers                   # N = 1000 and 5000; tpe, nsga2 (population 50), random
    python -m bench.bench_samplers --n 100,1000 --asks 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

from ._common import table

SPACE = Path(__file__).resolve().parents[1] / "search_spaces" / "digits_tiny.yaml"
SAMPLERS = ("tpe", "nsga2", "random")


def _synthetic(space: Any, n: int, seed: int, optuna: Any) -> list[Any]:
    rng = random.Random(seed)
    base = base_values(space)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = sample(space, trial, base)
        frozen = study.tell(trial, [rng.random(), rng.random()])
        out.append(optuna.trial.create_trial(params=params, distributions=frozen.distributions,
                                             values=frozen.values, constraints={"drop": rng.gauss(0.0, 1.0)}))  # fmt: skip
    return out


def base_values(space: Any) -> dict[str, Any]:
    from none_sweep.config import flatten, to_dict

    return dict(flatten(to_dict(space.base_config())))


def sample(space: Any, trial: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The space's params in order, each when its condition holds (what ``SweepSearcher`` does per suggestion)."""
    current = dict(base)
    out = {}
    for p in space.params:
        if p.active(current):
            current[p.key] = out[p.key] = p.suggest(trial)
    return out


def ask_cost(space: Any, trials: list[Any], sampler: str, asks: int, seed: int) -> float:
    """Mean CPU seconds of one suggestion by ``sampler`` over a study holding ``trials``."""
    import optuna

    from none_sweep.sweep.search import make_sampler

    search = dataclasses.replace(space.search, sampler=sampler, population_size=50)
    tuned = dataclasses.replace(space, search=search)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(tuned, seed, len(trials)))
    study.add_trials(trials)
    base = base_values(space)
    t0 = time.process_time()
    for _ in range(asks):
        trial = study.ask()
        sample(space, trial, base)
        study.tell(trial, None, state=optuna.trial.TrialState.FAIL)
    return (time.process_time() - t0) / asks


def main(argv: list[str] | None = None) -> int:
    import warnings

    import optuna

    from none_sweep.sweep.space import load_space

    parser = argparse.ArgumentParser(prog="python -m bench.bench_samplers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1000,5000", help="comma-separated study sizes")
    parser.add_argument("--asks", type=int, default=3, help="suggestions timed per sampler and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the raw figures here")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    space = load_space(str(SPACE))
    sizes = [int(n) for n in args.n.split(",")]
    print(f"# bench_samplers: CPU ms per suggestion, space {SPACE.name} ({len(space.params)} params, 2 objectives, "
          f"1 constraint); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    rows: dict[str, dict[int, float]] = {s: {} for s in SAMPLERS}
    for n in sizes:
        trials = _synthetic(space, n, args.seed, optuna)
        for s in SAMPLERS:
            rows[s][n] = 1000 * ask_cost(space, trials, s, args.asks, args.seed)
    print(table(["sampler", *[f"N={n}" for n in sizes]], [[s, *[rows[s][n] for n in sizes]] for s in SAMPLERS]))
    if args.json:
        Path(args.json).write_text(json.dumps({"ms_per_ask": rows, "asks": args.asks}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
