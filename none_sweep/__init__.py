"""none-sweep: hyperparameter sweeps for the NONE backdoor defense.

Layers, each a package: ``data`` → ``attacks`` → ``models`` → ``defense`` (NONE) →
``train`` → ``sweep`` (Ray Tune + Optuna + MLflow) → ``report`` (export, Pareto) → ``cli``.
Ray, Optuna and MLflow are imported only by ``sweep``/``tracking``/``report`` so that
training works without them.
"""

__version__ = "0.1.0"
