"""Reading a finished (or running) sweep back from MLflow: export the best config, report, list sweeps.

- :mod:`.model` — :class:`Sweep`, :class:`Trial` and the sweep's :class:`Goals` (objectives and constraints
  from its record; front and knee by :mod:`none_sweep.sweep.pareto`, the rule the sweep itself applies);
- :mod:`.runs` — the MLflow layout (:mod:`none_sweep.tracking.layout`) read into a :class:`Sweep`;
- :mod:`.selection` — the selection rules (``--max-asr``, ``--max-drop``, ``--knee``);
- :mod:`.pareto` — the trade-off plot; :mod:`.importance` — Optuna parameter importances on the sweep's own
  study (its journal); :mod:`.stability` — how robust the chosen point is;
- :mod:`.summary` / :mod:`.markdown` — ``none-sweep report``; :mod:`.export` — ``none-sweep export``;
  :mod:`.verify` — re-running a config on fresh seeds with Ray; :mod:`.listing` — ``none-sweep ls``.

MLflow, Optuna, Ray and matplotlib are imported inside functions.
"""

from .model import DEFAULT_GOALS, Goals, Sweep, Trial
from .runs import load_sweep, load_trial, open_client
from .selection import DEFAULT_MAX_DROP, Rule, rule_from_args, select

__all__ = [
    "DEFAULT_GOALS",
    "DEFAULT_MAX_DROP",
    "Goals",
    "Rule",
    "Sweep",
    "Trial",
    "load_sweep",
    "load_trial",
    "open_client",
    "rule_from_args",
    "select",
]
