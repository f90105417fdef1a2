"""Search-space files: what a sweep varies, what it optimises, and how Ray runs it.

A space file is YAML with the sections below; each is a dataclass validated by
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

Every ``space`` key must be a real config key, and every bound is checked by building the experiment config
at ``low``, ``high`` and each choice, so a sweep never starts with a value that a trial would reject.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import ExperimentConfig, apply_overrides, config_from_dict, flatten, read_yaml, to_dict
from ..config.validation import ConfigIssue, build, fail, set_dotted, spec
from ..errors import ConfigError

PARAM_TYPES = ("uniform", "loguniform", "int", "choice")

#: Metrics every epoch report carries (the scheduler may stop on these). ``clean_acc_drop``,
#: ``asr_reduction``, ``der`` and ``rir`` are against the sweep's undefended baseline.
EPOCH_METRICS = (
    "asr", "clean_acc", "robust_acc", "clean_acc_drop", "asr_reduction", "der", "rir",
    "loss", "lr", "removed_samples", "neurons_reset", "epoch_s",
)  # fmt: skip
#: Metrics of a trial's final report (objectives and constraints may name any of these).
FINAL_METRICS = EPOCH_METRICS + (
    "poison_precision", "poison_recall", "poisoned_samples", "epochs", "wall_s", "pretrain_s",
    "pretrain_saved_s", "reasr",
)  # fmt: skip
DEFAULT_OBJECTIVES = [{"metric": "asr", "mode": "min"}, {"metric": "clean_acc", "mode": "max"}]


# --------------------------------------------------------------------------- file schema
@dataclass
class ParamSpec:
    """One searched key. ``step`` quantises uniform/int; ``when`` makes the key conditional."""

    type: str = spec("", choices=PARAM_TYPES)
    low: float | None = spec(None)
    high: float | None = spec(None)
    step: float | None = spec(None, low=0.0, low_open=True)
    values: list[Any] = spec([])
    when: dict[str, Any] = spec({})


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
    cpu: float = spec(1.0, low=0.0, low_open=True)
    gpu: float = spec(0.0, low=0.0)


@dataclass
class SpaceFile:
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


# --------------------------------------------------------------------------- resolved objects
@dataclass(frozen=True)
class Param:
    """A searched key, validated; ``when`` maps condition keys to the tuple of values that enable it."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    values: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def active(self, current: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``current`` (sampled values over the base config)."""
        return all(current.get(key) in allowed for key, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this key's value."""
        if self.type == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1))
        if self.type == "loguniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step)

    def grid(self) -> list[Any]:
        """The values a grid search visits (choice, int, or uniform with a step)."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.type == "uniform" and self.step:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [round(self.low + i * self.step, 12) for i in range(n + 1)]
        raise ConfigError(f"search.sampler grid needs discrete keys; space[{self.key}] is {self.type} without a step")

    def edges(self) -> list[Any]:
        """Values checked at load time: both bounds, or every choice."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return any(value == v and type(value) is type(v) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "min" | "max"


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= threshold`` or ``metric >= threshold``; Optuna's convention: feasible when value <= 0."""

    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def violation(self, value: float) -> float:
        return value - self.threshold if self.op == "<=" else self.threshold - value


@dataclass(frozen=True)
class Point:
    """A configuration evaluated first (e.g. the paper's defaults)."""

    name: str
    params: dict[str, Any]


@dataclass
class SweepSpace:
    """A loaded, validated space file: everything the driver, the searcher and the trainable need."""

    path: str
    text: str
    base: dict[str, Any]
    params: list[Param]
    objectives: list[Objective]
    constraints: list[Constraint]
    search: SearchSettings
    scheduler: SchedulerSettings
    resources: ResourceSettings
    num_samples: int
    max_concurrent: int | None
    max_failures: int
    description: str = ""

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    @property
    def points(self) -> list[Point]:
        return [_point(i, p) for i, p in enumerate(self.search.points_to_evaluate)]

    def base_config(self) -> ExperimentConfig:
        return config_from_dict(copy.deepcopy(self.base), source=f"{self.path}: base")

    def baseline_config(self) -> ExperimentConfig:
        """The undefended run every trial is compared with: the same base, ``defense.enabled=false``."""
        data = copy.deepcopy(self.base)
        set_dotted(data, "defense.enabled", False)
        return config_from_dict(data, source=f"{self.path}: baseline")

    def trial_config(self, sampled: Mapping[str, Any], source: str = "trial") -> ExperimentConfig:
        """``base`` with the sampled dotted keys set (keys starting with ``_`` are bookkeeping, skipped)."""
        data = copy.deepcopy(self.base)
        for key, value in sampled.items():
            if not key.startswith("_"):
                set_dotted(data, key, value)
        return config_from_dict(data, source=source)


# --------------------------------------------------------------------------- loading
def load_space(path: str | Path, overrides: Mapping[str, Any] | None = None) -> SweepSpace:
    """Read and validate a space file; ``overrides`` (``--set``) change its ``base``."""
    path = Path(path)
    data = read_yaml(path)
    try:
        raw = build(SpaceFile, data)
        return _resolve(raw, str(path), path.read_text(encoding="utf-8"), dict(overrides or {}))
    except ConfigIssue as issue:
        raise ConfigError(f"{path}: {issue.message}") from None


def space_from_dict(data: Mapping[str, Any], source: str = "<space>", overrides: Mapping[str, Any] | None = None,
                    text: str | None = None) -> SweepSpace:  # fmt: skip
    """Like :func:`load_space` for an in-memory mapping (tests, the stored spec of a sweep being resumed)."""
    import yaml

    if text is None:
        text = yaml.safe_dump(dict(data), sort_keys=False)
    try:
        raw = build(SpaceFile, dict(data))
        return _resolve(raw, source, text, dict(overrides or {}))
    except ConfigIssue as issue:
        raise ConfigError(f"{source}: {issue.message}") from None


def _resolve(raw: SpaceFile, source: str, text: str, overrides: dict[str, Any]) -> SweepSpace:
    base = copy.deepcopy(raw.base)
    for key in overrides:
        if key in raw.space:
            raise fail(key, f"--set {key}: that key is searched (space[{key}]); remove it from the space or the --set")
    try:
        apply_overrides(base, overrides)
    except ConfigError as exc:
        raise fail("base", str(exc)) from None
    base_cfg = config_from_dict(copy.deepcopy(base), source=f"{source}: base", check_paths=True)
    base_flat = flatten(to_dict(base_cfg))
    if not raw.space:
        raise fail("space", "space must name at least one config key to search, e.g. defense.max_reset_fraction")
    params = _order([_param(key, value, base_flat) for key, value in raw.space.items()])
    _check_paths(params)
    objectives = _objectives(raw.objectives)
    constraints = [_constraint(i, c) for i, c in enumerate(raw.constraints)]
    space = SweepSpace(
        path=source, text=text, base=base, params=params, objectives=objectives, constraints=constraints,
        search=raw.search, scheduler=raw.scheduler, resources=raw.resources, num_samples=raw.num_samples,
        max_concurrent=raw.max_concurrent, max_failures=raw.max_failures, description=raw.description,
    )  # fmt: skip
    _check_bounds(space, base_flat)
    _check_points(space, base_flat)
    _check_settings(space)
    _check_satisfiable(space, base_cfg)
    return space


def _param(key: str, value: Any, base_flat: Mapping[str, Any]) -> Param:
    where = f"space[{key}]"
    if not isinstance(key, str) or (key not in base_flat and not key.startswith("attack.params.")):
        import difflib

        known = sorted(k for k in base_flat if not isinstance(base_flat[k], (list, dict)))
        section = str(key).split(".")[0] + "."
        nearby = [k for k in known if k.startswith(section)] or known
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(where, f"{where}: {key!r} is not a config key{hint}; keys there: {nearby}")
    if isinstance(base_flat.get(key), (list, dict)):
        raise fail(where, f"{where}: {key} holds a {type(base_flat[key]).__name__}, which cannot be searched")
    ps = build(ParamSpec, value, prefix=f"{where}.")
    if not ps.type:
        raise fail(f"{where}.type", f"{where}.type is required: one of {list(PARAM_TYPES)}")
    if ps.type == "choice":
        if not ps.values:
            raise fail(f"{where}.values", f"{where}.values must list at least one value for type choice")
        for v in ps.values:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise fail(f"{where}.values",
                           f"{where}.values entries must be numbers, strings, booleans or null, got {v!r}")  # fmt: skip
        if ps.low is not None or ps.high is not None or ps.step is not None:
            raise fail(where, f"{where}: type choice takes values, not low/high/step")
    else:
        if ps.values:
            raise fail(f"{where}.values", f"{where}: values is only for type choice; {ps.type} takes low and high")
        if ps.low is None or ps.high is None:
            raise fail(where, f"{where}: type {ps.type} needs both low and high")
        if ps.low > ps.high:
            raise fail(f"{where}.low", f"{where}: low ({ps.low:g}) must not exceed high ({ps.high:g})")
        if ps.type == "loguniform" and ps.low <= 0:
            raise fail(f"{where}.low", f"{where}: loguniform needs low > 0, got {ps.low:g}")
        if ps.type == "loguniform" and ps.step is not None:
            raise fail(f"{where}.step", f"{where}: loguniform cannot be quantised (Optuna ignores step on a log scale)")
        if ps.type == "int":
            for name in ("low", "high", "step"):
                v = getattr(ps, name)
                if v is not None and not float(v).is_integer():
                    raise fail(f"{where}.{name}", f"{where}.{name} must be an integer for type int, got {v:g}")
    when = []
    for cond_key, allowed in ps.when.items():
        if cond_key not in base_flat and not str(cond_key).startswith("attack.params."):
            raise fail(f"{where}.when", f"{where}.when: {cond_key!r} is not a config key")
        if cond_key == key:
            raise fail(f"{where}.when", f"{where}.when cannot depend on the key itself")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        when.append((cond_key, allowed))
    low = None if ps.low is None else (int(ps.low) if ps.type == "int" else float(ps.low))
    high = None if ps.high is None else (int(ps.high) if ps.type == "int" else float(ps.high))
    return Param(key, ps.type, low, high, ps.step, tuple(ps.values), tuple(when))


def _check_paths(params: list[Param]) -> None:
    """Searched path keys (a choice of ``data.root`` or blend patterns) obey the same rule as the base's."""
    from ..config.paths import check_path

    for p in params:
        if p.key in ("data.root", "attack.params.pattern"):
            for value in p.values:
                if isinstance(value, str) and not (p.key == "attack.params.pattern" and value == "noise"):
                    try:
                        check_path(p.key, value)
                    except ConfigIssue as issue:
                        raise fail(f"space[{p.key}]", f"space[{p.key}]: {issue.message}") from None


def _order(params: list[Param]) -> list[Param]:
    """File order, except that a key comes after the searched keys its ``when`` depends on."""
    keys = {p.key for p in params}
    done: list[Param] = []
    pending = list(params)
    while pending:
        placed = {p.key for p in done}
        ready = [p for p in pending if all(k in placed or k not in keys for k, _ in p.when)]
        if not ready:
            cycle = ", ".join(p.key for p in pending)
            raise fail("space", f"space: the when conditions of {cycle} depend on each other in a cycle")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def _objectives(items: list[dict[str, Any]]) -> list[Objective]:
    if not items:
        raise fail("objectives", "objectives must name at least one {metric, mode}")
    out = []
    for i, item in enumerate(items):
        o = build(ObjectiveSpec, item, prefix=f"objectives[{i}].")
        _check_metric(f"objectives[{i}].metric", o.metric, FINAL_METRICS)
        if not o.mode:
            raise fail(f"objectives[{i}].mode", f"objectives[{i}].mode is required: min or max")
        out.append(Objective(o.metric, o.mode))
    if len({o.metric for o in out}) != len(out):
        raise fail("objectives", "objectives: each metric may appear once")
    return out


def _constraint(i: int, text: str) -> Constraint:
    m = _CONSTRAINT.match(text)
    if not m:
        hint = "write e.g. 'clean_acc_drop <= 0.02' (<= or >=)"
        raise fail(f"constraints[{i}]", f"constraints[{i}]: cannot parse {text!r}; {hint}")
    _check_metric(f"constraints[{i}]", m.group(1), FINAL_METRICS)
    return Constraint(m.group(1), m.group(2), float(m.group(3)))


def _check_metric(where: str, metric: str, allowed: tuple[str, ...]) -> None:
    if metric not in allowed:
        import difflib

        close = difflib.get_close_matches(metric, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(where, f"{where}: unknown metric {metric!r}{hint}; choose from {list(allowed)}")


def _condition_values(param: Param) -> dict[str, Any]:
    return {key: allowed[0] for key, allowed in param.when}


def _check_bounds(space: SweepSpace, base_flat: Mapping[str, Any]) -> None:
    """Build the experiment config at every edge of every key (with its condition made true)."""
    for p in space.params:
        for value in p.edges():
            sampled = {**_condition_values(p), p.key: value}
            _build_or_fail(space, sampled, f"space[{p.key}]", f"{p.key}={value!r}")
        for cond_key, allowed in p.when:
            searched = next((q for q in space.params if q.key == cond_key), None)
            if searched is None and base_flat.get(cond_key) not in allowed:
                raise fail(
                    f"space[{p.key}].when",
                    f"space[{p.key}].when can never hold: {cond_key} is not searched and the base has "
                    f"{cond_key}={base_flat.get(cond_key)!r}, not one of {list(allowed)}",
                )
            if searched is not None and searched.type == "choice" and not any(v in allowed for v in searched.values):
                where = f"space[{p.key}].when"
                raise fail(where, f"{where} can never hold: no choice of {cond_key} is in {list(allowed)}")


def _check_points(space: SweepSpace, base_flat: Mapping[str, Any]) -> None:
    params = {p.key: p for p in space.params}
    names = set()
    for i, point in enumerate(space.points):
        where = f"search.points_to_evaluate[{i}]"
        if point.name in names:
            raise fail(where, f"{where}: the name {point.name!r} is used twice")
        names.add(point.name)
        for key, value in point.params.items():
            if key not in params:
                raise fail(where, f"{where}: {key!r} is not a searched key; searched: {list(params)}")
            if not params[key].contains(value):
                p = params[key]
                allowed = list(p.values) if p.type == "choice" else f"[{p.low:g}, {p.high:g}] ({p.type})"
                raise fail(where, f"{where}: {key}={value!r} is outside space[{key}]: {allowed}")
        _build_or_fail(space, point.params, where, point.name)


def _build_or_fail(space: SweepSpace, sampled: Mapping[str, Any], where: str, what: str) -> None:
    try:
        space.trial_config(sampled, source="")
    except ConfigError as exc:
        message = str(exc).lstrip(": ").strip()
        raise fail(where, f"{where}: with {what} the experiment config is invalid: {message}") from None


def _check_settings(space: SweepSpace) -> None:
    sch = space.scheduler
    if sch.name == "asha":
        metric = sch.metric or space.objectives[0].metric
        _check_metric("scheduler.metric", metric, EPOCH_METRICS)
        if sch.grace_period > sch.max_t:
            message = f"scheduler.grace_period ({sch.grace_period}) must not exceed max_t ({sch.max_t})"
            raise fail("scheduler.grace_period", message)
    r = space.resources
    if r.gpu > 1 and not float(r.gpu).is_integer():
        raise fail("resources.gpu", f"resources.gpu must be a fraction in (0, 1] or a whole number, got {r.gpu:g}")
    if space.search.sampler == "grid":
        for p in space.params:
            try:
                p.grid()
            except ConfigError as exc:
                raise fail("search.sampler", str(exc)) from None
    if space.max_concurrent is not None and space.max_concurrent > space.num_samples:
        space.max_concurrent = space.num_samples


#: Metrics a run without an injected trigger (``attack.name: none``) never measures.
NEEDS_ATTACK = ("asr", "robust_acc", "asr_reduction", "poison_recall")


def _check_satisfiable(space: SweepSpace, base: ExperimentConfig) -> None:
    """Objectives and constraints that no trial could ever meet or measure are refused before any trial runs.

    Without this every trial would end FAIL in Optuna ("final result has asr=nan") or infeasible: a whole sweep
    spent for nothing. Only the base config is judged; a searched ``attack.name`` / ``evaluation.reasr`` is left
    to the trials (a final result missing an objective fails that trial, in Ray, Optuna and MLflow alike).
    """
    bounds: dict[str, list[float]] = {}
    for c in space.constraints:
        low, high = bounds.setdefault(c.metric, [-math.inf, math.inf])
        bounds[c.metric] = [max(low, c.threshold), high] if c.op == ">=" else [low, min(high, c.threshold)]
    for metric, (low, high) in bounds.items():
        if low > high:
            raise fail("constraints", f"constraints: {metric} >= {low:g} and {metric} <= {high:g} cannot both hold, so "
                                      f"no trial could be feasible; loosen or drop one of them")  # fmt: skip
    searched = set(space.keys)
    needed = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(space.objectives)]
    needed += [(f"constraints[{i}]", c.metric) for i, c in enumerate(space.constraints)]
    for where, metric in needed:
        if metric in NEEDS_ATTACK and base.attack.name == "none" and "attack.name" not in searched:
            raise fail(where, f"{where}: {metric} is never measured with attack.name none (no trigger to test); "
                              f"use reasr (natural backdoors) and clean_acc, or set base.attack.name")  # fmt: skip
        reasr = base.evaluation.reasr
        measured = reasr == "always" or (reasr == "auto" and base.attack.name == "none")
        if metric == "reasr" and not measured and not searched & {"attack.name", "evaluation.reasr"}:
            raise fail(where, f"{where}: reasr is never measured with evaluation.reasr {reasr} and attack.name "
                              f"{base.attack.name}; set base.evaluation.reasr: always")  # fmt: skip


def _point(i: int, raw: Mapping[str, Any]) -> Point:
    where = f"search.points_to_evaluate[{i}]"
    if set(raw) and set(raw) <= {"name", "params"} and "params" in raw:
        name, params = raw.get("name") or f"point{i}", raw["params"]
        if not isinstance(params, Mapping) or not isinstance(name, str):
            raise fail(where, f"{where}: expected {{name: TEXT, params: {{key: value}}}}")
        return Point(name, dict(params))
    return Point(f"point{i}", dict(raw))


def describe_param(p: Param) -> str:
    """``uniform[0.01, 0.2] step 0.01 when defense.after_reset=finetune`` (for the sweep header)."""
    body = f"choice{list(p.values)}" if p.type == "choice" else f"{p.type}[{p.low:g}, {p.high:g}]"
    if p.step:
        body += f" step {p.step:g}"
    if p.when:
        body += " when " + ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in p.when)
    return body
