"""The space file's shape: one dataclass per section, read by :func:`none_sweep.config.validation.build`.

``build`` gives every file the same messages (unknown key with a "did you mean", wrong type, out of range),
so what is declared here is only the shape and the ranges; what a param type makes of its fields is the
param's own business (:mod:`.params`), and the checks that read several sections are in :mod:`.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...config.validation import spec

#: ``log_models``: "front" (the Pareto front's trials, when the sweep ends) or "all" (each trial as it ends).
LOG_MODELS = ("front", "all")
DEFAULT_OBJECTIVES = [{"metric": "asr", "mode": "min"}, {"metric": "clean_acc", "mode": "max"}]


@dataclass
class ParamSpec:
    """One ``space`` entry as written: every field any param type takes (each type says which it accepts)."""

    type: str = spec("")
    low: float | None = spec(None)
    high: float | None = spec(None)
    step: float | None = spec(None, low=0.0, low_open=True)
    values: list[Any] = spec([])
    when: dict[str, Any] = spec({})

    def given(self) -> list[str]:
        """The value fields the file set (``type`` and ``when`` aside), in declaration order."""
        out = [name for name in ("low", "high", "step") if getattr(self, name) is not None]
        return out + (["values"] if self.values else [])


@dataclass
class ObjectiveSpec:
    metric: str = spec("")
    mode: str = spec("", choices=("min", "max"))


@dataclass
class SearchSettings:
    """The Optuna sampler. ``points_to_evaluate`` run first (a mapping, or ``{name: ..., params: {...}}``)."""

    sampler: str = spec("tpe", choices=("tpe", "nsga2", "random", "grid"))
    seed: int | None = spec(0, low=0, high=2**31 - 1)
    n_startup_trials: int = spec(4, low=0, help="tpe: random trials before the model is used")
    population_size: int | None = spec(None, low=2, help="nsga2: default min(50, num_samples // 2, at least 2)")
    points_to_evaluate: list[dict[str, Any]] = spec([])


@dataclass
class SchedulerSettings:
    """Early stopping. ASHA takes one scalar metric, also when the search has several objectives."""

    name: str = spec("none", choices=("none", "asha"))
    metric: str | None = spec(None, help="default: the first objective")
    mode: str | None = spec(None, choices=("min", "max"))
    grace_period: int = spec(1, low=1)
    reduction_factor: float = spec(2.0, low=1.0, low_open=True)
    max_t: int = spec(100, low=1, help="epochs; the longest a trial may run")


@dataclass
class ResourceSettings:
    """Per trial; ``gpu`` may be a fraction (several trials share a GPU)."""

    cpu: float = spec(1.0, low=0.0, low_open=True)
    gpu: float = spec(0.0, low=0.0)


@dataclass
class VariantSpec:
    """One attack variant of a robust sweep: a name and the dotted base keys it changes (``--set`` style)."""

    name: str = spec("")
    set: dict[str, Any] = spec({})


@dataclass
class SpaceFile:
    """A whole space file (see the package docstring for what each section means)."""

    description: str = spec("")
    base: dict[str, Any] = spec({})
    space: dict[str, Any] = spec({})
    objectives: list[dict[str, Any]] = spec(DEFAULT_OBJECTIVES)
    constraints: list[str] = spec([])
    search: SearchSettings = field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    num_samples: int = spec(8, low=1, high=100000)
    max_concurrent: int | None = spec(None, low=1, help="default: as many trials as the cluster fits")
    max_failures: int = spec(2, low=0, high=100, help="retries of a failed trial (from its last checkpoint)")
    variants: list[dict[str, Any]] = spec([], help="attack variants every trial is run against (robust selection)")
    keep_checkpoints: int = spec(
        3,
        low=1,
        high=100,
        help="checkpoints Ray keeps per trial (each holds the model and the optimiser; the last serves export "
        "and the front's models): 1 for large sweeps of large models",
    )
    log_models: str = spec(
        "front",
        choices=LOG_MODELS,
        help="which trials get an MLflow model: the front's, when the sweep ends (export logs any other it "
        "registers), or every trial's as it ends (~1.6 s of driver time each)",
    )
