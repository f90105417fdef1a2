"""The NONE neuron statistic, streamed over batches and vectorised over channels and classes.

For one layer with channel maxima ``a [B, C]`` and softmax outputs ``p [B, K]``, a sample is *strong* for class
``k`` when ``p[n, k] > lamda_h`` and *weak* when ``p[n, k] < lamda_l``. Per channel ``j`` and class ``k``::

    diff[k, j] = max(a[strong_k, j]) - (mean(a[weak_k, j]) + 3 * std(a[weak_k, j]))    (population std)
    score[j]   = max over usable classes k of diff[k, j], and at least 0 if any class was skipped

A class is *skipped* when its strong set or its weak set is empty. The published code skips an empty strong set
but produces NaN for an empty weak set (numpy's mean of nothing), and NaN then ranks first; here both cases are
skipped, which is the defined behaviour. If every class is skipped the score is 0.

Streaming state per layer is ``O(K·C)``: the strong maximum (float32, starts at -inf) and the weak count, sum
and sum of squares (float64, so the variance survives 50k samples). The weak sums are two matmuls of the float
weak mask with ``a`` and ``a²``. The strong maximum is a scatter-amax of the strong (sample, class) pairs, so no
``[B, C, K]`` tensor is ever built: with ``lamda_h > 0.501`` a sample is strong for at most one class (its arg-max),
which needs neither a sync nor a copy bigger than ``a``; below 0.5 the pairs come from ``nonzero`` and are
processed in chunks of at most ``max_elements`` gathered values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_MAX_ELEMENTS = 1 << 22  # gathered activations per chunk (16 MiB of float32)
# Above this lamda_h a sample is strong for at most one class; the margin over 0.5 absorbs softmax rounding.
_ONE_CLASS_LAMDA = 0.501


@dataclass(frozen=True)
class ClassMasks:
    """Strong and weak membership of one batch, computed once and shared by every layer's statistics.

    ``strong_classes[i]`` is the class of strong pair ``i``; its sample is ``strong_rows[i]`` (or ``i`` itself when
    ``strong_rows`` is None, the one-class-per-sample case) and it counts only where ``strong_valid[i]`` (None: all).
    """

    strong_rows: Tensor | None
    strong_classes: Tensor
    strong_valid: Tensor | None
    weak: Tensor  # [B, K] float64, 1 where weak
    strong_count: Tensor  # [K] float64
    weak_count: Tensor  # [K] float64


def class_masks(probs: Tensor, lamda_l: float, lamda_h: float) -> ClassMasks:
    """Strong/weak membership from softmax outputs ``probs [B, K]``."""
    strong = probs > lamda_h
    weak = (probs < lamda_l).double()
    if lamda_h > _ONE_CLASS_LAMDA:  # probabilities sum to 1, so at most one class can exceed lamda_h
        top_p, top_k = probs.max(dim=1)
        rows, classes, valid = None, top_k, top_p > lamda_h
    else:
        rows, classes = strong.nonzero(as_tuple=True)
        valid = None
    return ClassMasks(rows, classes, valid, weak, strong.sum(0).double(), weak.sum(0))


class ChannelClassStats:
    """Streaming per-(class, channel) statistics of one layer; :meth:`scores` gives the NONE score per channel."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        device: torch.device | str = "cpu",
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> None:
        self.channels, self.num_classes, self.max_elements = channels, num_classes, max_elements
        self.strong_max = torch.full((num_classes, channels), -math.inf, device=device)
        self.weak_sum = torch.zeros(num_classes, channels, dtype=torch.float64, device=device)
        self.weak_sumsq = torch.zeros_like(self.weak_sum)
        self.strong_count = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.weak_count = torch.zeros_like(self.strong_count)

    def update(self, acts: Tensor, masks: ClassMasks) -> None:
        """Fold in one batch: ``acts [B, C]`` channel maxima and the batch's :class:`ClassMasks`."""
        self._update_strong(acts.float(), masks)
        wide = acts.double()
        self.weak_sum += masks.weak.T @ wide
        self.weak_sumsq += masks.weak.T @ (wide * wide)
        self.strong_count += masks.strong_count
        self.weak_count += masks.weak_count

    def _update_strong(self, acts: Tensor, masks: ClassMasks) -> None:
        pairs = masks.strong_classes.numel()
        step = max(1, self.max_elements // max(1, self.channels))
        for start in range(0, pairs, step):  # loops over chunks of samples, never over channels or classes
            part = slice(start, start + step)
            values = acts[part] if masks.strong_rows is None else acts.index_select(0, masks.strong_rows[part])
            if masks.strong_valid is not None:
                values = values.masked_fill(~masks.strong_valid[part, None], -math.inf)
            index = masks.strong_classes[part, None].expand_as(values)
            self.strong_max.scatter_reduce_(0, index, values, reduce="amax")

    def diff(self) -> tuple[Tensor, Tensor]:
        """``diff [K, C]`` (float64) and ``usable [K]``: classes with non-empty strong and weak sets."""
        count = self.weak_count.clamp_min(1.0)[:, None]
        mean = self.weak_sum / count
        std = (self.weak_sumsq / count - mean * mean).clamp_min(0.0).sqrt()
        usable = (self.strong_count > 0) & (self.weak_count > 0)
        return self.strong_max.double() - (mean + 3.0 * std), usable

    def scores(self) -> Tensor:
        """Score per channel ``[C]`` (float64, on the statistics' device); see the module docstring."""
        diff, usable = self.diff()
        best = diff.masked_fill(~usable[:, None], -math.inf).amax(dim=0)
        floor = torch.where(usable.all(), -math.inf, 0.0).to(best)  # a skipped class counts as 0
        return torch.maximum(best, floor)


def top_count(channels: int, fraction: float) -> int:
    """``ceil(fraction * channels)``, at least 1 and at most ``channels``.

    A relative slack of 1e-9 keeps float noise from adding a channel (``0.07 * 100`` is 7.000000000000001).
    """
    return min(channels, max(1, math.ceil(fraction * channels * (1 - 1e-9))))


def select_top(scores: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` highest scores, highest first; ties go to the lower channel index (stable sort)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:count]


def select_compromised(scores: Tensor, fraction: float) -> Tensor:
    """The compromised channels of one layer: the top ``ceil(fraction * C)`` by score (``max_reset_fraction``)."""
    return select_top(scores, top_count(scores.numel(), fraction))


def channel_scores(acts: Tensor, probs: Tensor, lamda_l: float, lamda_h: float) -> Tensor:
    """One-shot convenience: the scores of ``acts [N, C]`` given ``probs [N, K]`` (no streaming)."""
    stats = ChannelClassStats(acts.shape[1], probs.shape[1], acts.device)
    stats.update(acts, class_masks(probs, lamda_l, lamda_h))
    return stats.scores()
