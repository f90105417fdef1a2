"""One line per trial event instead of Ray's boxed tables (``--verbose`` gives Ray's own output back).

A Ray Tune ``Callback`` (public API) in the driver: started, each reset round's result, finished with ASR /
clean accuracy / drop / wall time, failed with its reason; after each trial that ends, a compact status line.
It holds no live objects, so Ray can pickle it into the experiment and a resumed sweep keeps its progress lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback

from ..tracking.layout import POINT_KEY
from ..train.metrics import backdoor_metric


def _pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return f"{100 * value:.1f}%"


def _backdoor(result: Mapping[str, Any]) -> str:
    """``ASR x%, `` or, for natural backdoors (REASR at the end only), ``REASR x%, ``; nothing without either."""
    key = backdoor_metric(result)
    return f"{key.upper()} {_pct(result[key])}, " if key else ""


def _short(trial_id: str) -> str:
    return trial_id.split("_", 1)[-1] if "_" in trial_id else trial_id


class ProgressLines(Callback):
    """Prints to stdout; ``num_samples`` sizes the status line."""

    def __init__(self, num_samples: int, max_params: int = 4) -> None:
        self.num_samples = num_samples
        self.max_params = max_params
        self._reset()

    def _reset(self) -> None:
        self._started: dict[str, float] = {}
        self._ended: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "max_params": self.max_params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ------------------------------------------------------------------ Ray hooks
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._started.setdefault(trial.trial_id, time.monotonic())
        self._line(f"trial {_short(trial.trial_id)} started{self._point(trial)}: {self._params(trial.config)}")

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:  # fmt: skip
        if result.get("round_end") and not result.get("final"):
            self._line(f"trial {_short(trial.trial_id)} round {result.get('round')} (epoch {result.get('epoch')}): "
                       f"{_backdoor(result)}clean acc {_pct(result.get('clean_acc'))}, "
                       f"removed {result.get('removed_samples', 0):.0f} samples")  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        drop = r.get("clean_acc_drop")
        drop_text = "n/a" if not isinstance(drop, (int, float)) else f"{100 * drop:+.1f} pt"
        wall = max(0.0, time.monotonic() - self._started.get(trial.trial_id, time.monotonic()))
        stopped = "" if r.get("final") else " (stopped early by the scheduler)"
        self._line(f"trial {_short(trial.trial_id)} finished{stopped}: {_backdoor(r)}clean acc "
                   f"{_pct(r.get('clean_acc'))} (drop {drop_text}) in {wall:.0f}s")  # fmt: skip
        self._end(trial, "done", trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._line(f"trial {_short(trial.trial_id)} failed (details in MLflow and {trial.path or 'Ray results'})")
        self._end(trial, "failed", trials)

    # ------------------------------------------------------------------ text
    def _end(self, trial: Any, how: str, trials: list[Any]) -> None:
        self._ended[trial.trial_id] = how
        done = sum(v == "done" for v in self._ended.values())
        failed = sum(v == "failed" for v in self._ended.values())
        running = sum(t.status == "RUNNING" and t.trial_id not in self._ended for t in trials)
        self._line(f"  [{done + failed}/{self.num_samples} ended: {done} done, {failed} failed; {running} running]")

    def _point(self, trial: Any) -> str:
        point = trial.config.get(POINT_KEY)
        return f" ({point})" if point else ""

    def _params(self, config: Mapping[str, Any]) -> str:
        items = [(k, v) for k, v in config.items() if not k.startswith("_")]
        shown = ", ".join(f"{k.split('.')[-1]}={_value(v)}" for k, v in items[: self.max_params])
        more = f", +{len(items) - self.max_params} more" if len(items) > self.max_params else ""
        return shown + more

    @staticmethod
    def _line(text: str) -> None:
        print(f"none-sweep: {text}", file=sys.stdout, flush=True)


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
