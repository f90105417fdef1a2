"""Reading a finished (or running) sweep back from MLflow: export the best config, report, list sweeps.

- :mod:`.runs` — the MLflow layout (``docs/architecture.md``) read into :class:`Sweep` / :class:`Trial`;
- :mod:`.selection` — the selection rules (``--max-asr``, ``--max-drop``, ``--knee``);
- :mod:`.pareto` — Pareto front, knee, plot; :mod:`.space` — the searched space inferred from params;
- :mod:`.importance` — Optuna parameter importances; :mod:`.stability` — how robust the chosen point is;
- :mod:`.summary` — ``none-sweep report``; :mod:`.export` — ``none-sweep export``;
  :mod:`.verify` — re-running a config on fresh seeds with Ray; :mod:`.listing` — ``none-sweep ls``.

MLflow, Optuna, Ray and matplotlib are imported inside functions, so importing this package is cheap.
"""

from .runs import Sweep, Trial, load_sweep, load_trial, open_client
from .selection import DEFAULT_MAX_DROP, Rule, rule_from_args, select

__all__ = [
    "DEFAULT_MAX_DROP",
    "Rule",
    "Sweep",
    "Trial",
    "load_sweep",
    "load_trial",
    "open_client",
    "rule_from_args",
    "select",
]
