"""Exact two-class Jenks natural breaks on one dimension, in O(n log n) on any device.

With two classes, the Jenks optimum is the split of the sorted values that minimises the total within-class sum
of squared deviations; each class is a contiguous run of the sorted values. After one sort, prefix sums of
``x`` and ``x²`` give every split's cost at once (``SSD = Σx² − (Σx)²/n`` per side), so the exact optimum costs a
sort, two cumulative sums and an arg-min, instead of jenkspy's general dynamic programme.

Rule: a split may only fall between two *different* values (equal values always share a class), ties in cost go
to the lowest split, the break value is the largest value of the lower class (jenkspy's convention), and the
flagged set is exactly the upper class: ``values > break``. jenkspy users who flag ``values >= break`` also
flag the lower class's maximum and its ties; the published NONE code does that, a difference of a sample or two.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def two_class_breaks(values: Tensor) -> tuple[float, Tensor]:
    """``(break_value, upper)`` for 1-D ``values``: ``upper`` (bool, same device) marks the upper class.

    Fewer than two values, or all equal: nothing is flagged and the break is the maximum (NaN when empty).
    """
    flat = values.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return math.nan, torch.zeros_like(flat, dtype=torch.bool)
    ordered = torch.sort(flat.double()).values
    split = _best_split(ordered)
    break_value = ordered[-1] if split is None else ordered[split - 1]
    upper = flat.double() > break_value
    return float(break_value), upper.reshape(values.shape)


def split_costs(ordered: Tensor) -> Tensor:
    """Within-class SSD for every split of sorted ``ordered`` (float64): entry ``i`` puts ``i + 1`` values below.

    Values are centred first so that the prefix sums lose as little precision as possible to cancellation.
    """
    n = ordered.numel()
    centred = ordered - ordered.mean()
    s1, s2 = torch.cumsum(centred, 0), torch.cumsum(centred * centred, 0)
    low_n = torch.arange(1, n, device=ordered.device, dtype=torch.float64)
    low_s1, low_s2 = s1[:-1], s2[:-1]
    high_s1, high_s2 = s1[-1] - low_s1, s2[-1] - low_s2
    return (low_s2 - low_s1 * low_s1 / low_n) + (high_s2 - high_s1 * high_s1 / (n - low_n))


def _best_split(ordered: Tensor) -> int | None:
    """Size of the lower class at the optimum, or None when no split between different values exists."""
    if ordered.numel() < 2:
        return None
    allowed = ordered[1:] > ordered[:-1]
    if not bool(allowed.any()):
        return None
    costs = split_costs(ordered).masked_fill(~allowed, math.inf)
    return int(torch.argmin(costs)) + 1
