"""``none``: clean training, the reference point every defended run is compared against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import ATTACKS, Attack, PoisonedData, Surrogate, TriggeredSet


@ATTACKS.register("none")
class NoAttack(Attack):
    """No poisoning: ``poison`` copies the data, the triggered test set is empty; poison_rate is ignored."""

    injects_trigger = False

    def apply_trigger(self, x: Tensor) -> Tensor:
        return x.clone()

    def poison(self, x: Tensor, y: Tensor, surrogate: Surrogate | None = None) -> PoisonedData:
        return PoisonedData(x.clone(), y.clone(), torch.empty(0, dtype=torch.int64, device=y.device))

    def triggered_test(self, x: Tensor, y: Tensor) -> TriggeredSet:
        empty = y[:0].clone()
        return TriggeredSet(x[:0].clone(), empty, empty.clone())

    def describe(self) -> dict[str, Any]:
        """Mode, target and rate do not apply; recorded as None / 0 so results are not mistaken for attacked runs."""
        return {
            "name": self.cfg.name,
            "mode": None,
            "target": None,
            "poison_rate": 0.0,
            "clean_label": False,
            "seed": self.seed,
        }
