"""Which training samples a round removes: the natural-breaks suspects, cumulated or not, optionally capped.

Why a cap: on a model only a few epochs old the two-class split of the sample scores is not yet bimodal, and
the upper class can hold 40 % of the training set; removed cumulatively over a few rounds that drops more than
half the data (bench/RESULTS.md, hand setting B). A cap keeps only the highest-scoring suspects, which are the
ones the statistic is surest of, so early and frequent resets can be swept without starving the training.

Whether a round filters at all is :func:`filters_samples`, the one place ``defense.filter_samples`` is read: the
published script drops suspects only when an attack is present. On a clean model the natural-breaks split still
has an upper class (on clean Fashion-MNIST, 40 % of the training set), so filtering there only throws data away.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def filters_samples(setting: bool | str, injects_trigger: bool) -> bool:
    """Whether suspected samples are dropped: ``defense.filter_samples`` ``True`` / ``False`` as said, ``"auto"``
    only when the attack injects a trigger (natural-backdoor runs keep their data, as published)."""
    if setting == "auto":
        return injects_trigger
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"defense.filter_samples must be auto, true or false, got {setting!r}")


def removal_mask(removed: Tensor, suspected: Tensor, sample_scores: Tensor, *, cumulative: bool,
                 max_fraction: float | None) -> Tensor:  # fmt: skip
    """The new [N] bool removal mask.

    ``removed``: the mask so far; ``suspected``: this round's natural-breaks upper class; ``sample_scores``: this
    round's scores (higher = more suspicious). Cumulative keeps every earlier removal and spends only what is left
    of the budget (``floor(max_fraction * N)`` samples in all) on new suspects, highest score first; per-round
    starts afresh. Ties at the budget's edge are broken by sample index, so the result is deterministic.
    """
    base = removed.clone() if cumulative else torch.zeros_like(removed)
    new = suspected & ~base
    if max_fraction is not None:
        budget = max(0, math.floor(max_fraction * removed.numel()) - int(base.sum()))
        if int(new.sum()) > budget:
            candidates = new.nonzero().squeeze(1)
            # stable sort on descending score: equal scores keep index order
            order = torch.sort(sample_scores[candidates].to(torch.float64), descending=True, stable=True).indices
            new = torch.zeros_like(new)
            new[candidates[order[:budget]]] = True
    return base | new
