"""Search-space files: what a sweep varies, what it optimises, and how Ray runs it.

A space file is YAML with the sections below; each is a dataclass (:mod:`.schema`) validated by
:func:`none_sweep.config.validation.build`, so an unknown key, a wrong type or an out-of-range value is one
:class:`~none_sweep.errors.ConfigError` naming the file and the key::

    base:        an experiment config, the same schema ``none-sweep train`` takes
    space:       dotted config key -> {type: uniform|loguniform|int|choice, low, high, step, values, when}
    objectives:  [{metric: asr, mode: min}, {metric: clean_acc, mode: max}]   (the default)
    constraints: ["clean_acc_drop <= 0.02"]            (feasible when every one holds)
    search:      {sampler: tpe|nsga2|random|grid, seed, n_startup_trials, population_size, points_to_evaluate}
    scheduler:   {name: none|asha, metric, mode, grace_period, reduction_factor, max_t}
    resources:   {cpu, gpu}                            (per trial; gpu may be a fraction)
    num_samples, max_concurrent, max_failures
    log_models:  front|all                             (MLflow models: the front's at the end, or every trial's)
    keep_checkpoints                                   (per trial in Ray's storage; default 3)
    variants:    [{name, set: {dotted base key: value}}]   (attack variants every trial runs against)
    include:     [space files], experiment: FILE          (composition, :mod:`.compose`)

The modules, in the order a file goes through them: :mod:`.compose` (includes and the base experiment merged into
one self-contained mapping), :mod:`.schema` (the file's shape), :mod:`.params` (one
class per param type, registered by name: validates, samples, converts to its Optuna distribution, describes
itself), :mod:`.load` (read and resolve, once), :mod:`.checks` (every bound builds a valid experiment config,
points inside the space, settings that fit, objectives that can be measured), :mod:`.model` (the result).
"""

from .load import load_space, space_from_dict
from .model import Constraint, Objective, Point, SweepSpace
from .params import PARAM_TYPES, Param, describe_param
from .schema import ResourceSettings, SchedulerSettings, SearchSettings, SpaceFile

__all__ = [
    "PARAM_TYPES",
    "Constraint",
    "Objective",
    "Param",
    "Point",
    "ResourceSettings",
    "SchedulerSettings",
    "SearchSettings",
    "SpaceFile",
    "SweepSpace",
    "describe_param",
    "load_space",
    "space_from_dict",
]
