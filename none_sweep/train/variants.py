"""One defense config against several attack variants: robust selection's unit of work.

A user cannot know the trigger they will face, so a config is only worth exporting if it holds on several.
:class:`VariantsRun` trains one run per variant (same defense, each variant's own data poisoning), one after the
other, and has the interface of :class:`~.run.ExperimentRun` (``epochs()``, ``result()``, checkpoints, ``model``)
so the sweep's trainable drives either the same way. Each variant's pre-training goes through the shared cache
under its own key, so trials share it per variant.

Its final metrics are per variant (``<variant>.<metric>``, :func:`variant_key`), the aggregates that objectives and constraints name
(:data:`AGGREGATES`), and the plain names as the worst case over the variants (``asr`` is the highest ASR,
``clean_acc`` the lowest clean accuracy, ``clean_acc_drop`` the largest drop): whatever reads a single-attack
trial (selection rules, the report) then judges a robust trial by its weakest variant. Costs are summed.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, to_dict
from ..errors import CheckpointError
from .checkpoint import load_state, save_state
from .metrics import AGGREGATES, compare_to_baseline
from .pretrain_cache import PretrainCache
from .run import EpochReport, ExperimentRun, Progress, RunResult

RunFactory = Callable[..., Any]
"""Builds one variant's run: ``factory(cfg, pretrain_cache=..., progress=...)`` (default :class:`ExperimentRun`)."""

SEPARATOR = "."  # so variant names are letters, digits, "_" and "-" (sweep/space/load.py checks them)
#: The plain names of a multi-variant result: the worst case over the variants ...
WORST = {"asr": "max", "clean_acc": "min", "clean_acc_drop": "max", "robust_acc": "min", "asr_reduction": "min",
         "der": "min", "rir": "min", "reasr": "max"}  # fmt: skip
#: ... or the sum (what the trial cost and did in all).
SUMMED = ("wall_s", "pretrain_s", "pretrain_saved_s", "epochs", "removed_samples", "neurons_reset", "poisoned_samples")


def variant_key(variant: str, metric: str) -> str:
    """The name of one variant's metric: ``p4_tl.asr`` (no ``/``: Ray's results use it for nested keys)."""
    return f"{variant}{SEPARATOR}{metric}"


def split_variant_key(key: str) -> tuple[str, str] | None:
    """``("p4_tl", "asr")`` for ``p4_tl.asr``; None for a plain metric name."""
    variant, sep, metric = key.partition(SEPARATOR)
    return (variant, metric) if sep and variant and metric else None


def aggregate(per_variant: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """:data:`AGGREGATES` over the variants that measured the metric (one variant: each equals its value)."""
    out: dict[str, float] = {}
    for name, (metric, how) in AGGREGATES.items():
        values = [float(m[metric]) for m in per_variant.values() if _number(m.get(metric))]
        if values:
            out[name] = _combine(values, how)
    return out


def combined_metrics(per_variant: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The final metrics of a multi-variant trial (see the module docstring); non-numeric values are dropped."""
    out: dict[str, Any] = {}
    for name, metrics in per_variant.items():
        out.update({variant_key(name, k): v for k, v in metrics.items() if _number(v)})
    keys = {k for m in per_variant.values() for k, v in m.items() if _number(v)}
    for key in sorted(keys):
        values = [float(m[key]) for m in per_variant.values() if _number(m.get(key))]
        how = WORST.get(key, "sum" if key in SUMMED else "mean")
        out[key] = _combine(values, how)
    out.update(aggregate(per_variant))
    out["variants"] = len(per_variant)
    return out


class VariantsRun:
    """The variants of one trial in turn; checkpointable between any two epochs, like :class:`ExperimentRun`."""

    def __init__(
        self,
        configs: Mapping[str, ExperimentConfig],
        baselines: Mapping[str, Mapping[str, Any]],
        *,
        pretrain_cache: PretrainCache | None = None,
        progress: Progress | None = None,
        factory: RunFactory = ExperimentRun,
    ) -> None:
        if not configs:
            raise ValueError("VariantsRun needs at least one variant")
        self.configs = dict(configs)
        self.names = list(self.configs)
        self.baselines = {k: dict(v) for k, v in baselines.items()}
        self.pretrain_cache = pretrain_cache
        self.progress = progress or (lambda _line: None)
        self.factory = factory
        self.index = 0
        self.epoch_offset = 0
        self.done: dict[str, dict[str, Any]] = {}
        self.attacks: dict[str, dict[str, Any]] = {}
        self.current: Any = None
        self.last: Any = None

    @property
    def model(self) -> Any:
        """The model of the variant being trained, or of the last one finished (the one a final checkpoint holds)."""
        run = self.current if self.current is not None else self.last
        if run is None:
            run = self._start()
        return run.model

    def epochs(self) -> Iterator[EpochReport]:
        """Every remaining epoch of every remaining variant; ``round_end`` also at each variant's end."""
        while self.index < len(self.names):
            name = self.names[self.index]
            run = self.current if self.current is not None else self._start()
            for rep in run.epochs():
                metrics = {**rep.metrics, **self._compare(name, rep.metrics), "variant": float(self.index)}
                epoch = self.epoch_offset + rep.epoch
                if rep.final:  # advance before the report: a checkpoint taken at it starts the next variant
                    self._finish(name, run)
                last_variant = self.index == len(self.names)
                yield EpochReport(epoch, rep.phase, rep.round, metrics, rep.round_end or rep.final,
                                  rep.final and last_variant, rep.cached)  # fmt: skip

    def result(self) -> RunResult:
        metrics = combined_metrics(self.done)
        config = {"variants": {n: to_dict(c) for n, c in self.configs.items()}}
        return RunResult(metrics, {"variants": dict(self.attacks)}, config)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        inner = None
        if self.current is not None:
            with tempfile.TemporaryDirectory(prefix="none-sweep-variant-") as folder:
                path = Path(folder) / "inner.ckpt"
                self.current.save_checkpoint(path)
                inner = load_state(path)
        return {"variants": list(self.names), "index": self.index, "epoch_offset": self.epoch_offset,
                "done": self.done, "attacks": self.attacks, "inner": inner}  # fmt: skip

    def save_checkpoint(self, path: str | Path) -> None:
        save_state(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        state = load_state(path)
        if state.get("variants") != self.names:
            raise CheckpointError(
                f"{path}: checkpoint belongs to other variants ({state.get('variants')}); start afresh"
            )
        self.index, self.epoch_offset = int(state["index"]), int(state["epoch_offset"])
        self.done, self.attacks = dict(state["done"]), dict(state["attacks"])
        self.current = None
        if state.get("inner") is not None and self.index < len(self.names):
            run = self._start()  # with the cache: it holds the surrogate the variant was poisoned with
            with tempfile.TemporaryDirectory(prefix="none-sweep-variant-") as folder:
                inner = Path(folder) / "inner.ckpt"
                save_state(state["inner"], inner)
                run.load_checkpoint(inner)

    # ----------------------------------------------------------------- internals
    def _start(self) -> Any:
        """The current variant's run. A resumed one gets the cache too: its pre-training fork is skipped (the
        checkpoint puts it past epoch 0), but an attack's surrogate is looked up there, so it re-poisons alike."""
        name = self.names[self.index]
        self.progress(f"variant {self.index + 1}/{len(self.names)}: {name}")
        self.current = self.factory(self.configs[name], pretrain_cache=self.pretrain_cache, progress=self.progress)
        return self.current

    def _finish(self, name: str, run: Any) -> None:
        result = run.result()
        metrics = {k: v for k, v in result.metrics.items() if _number(v)}
        metrics.update(self._compare(name, result.metrics))
        self.done[name] = metrics
        self.attacks[name] = dict(result.attack)
        self.epoch_offset += int(metrics.get("epochs", 0))
        self.index += 1
        self.last, self.current = run, None

    def _compare(self, name: str, metrics: Mapping[str, Any]) -> dict[str, float]:
        baseline = self.baselines.get(name)
        return compare_to_baseline(metrics, baseline) if baseline else {}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _combine(values: list[float], how: str) -> float:
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    if how == "sum":
        return float(sum(values))
    return sum(values) / len(values)
