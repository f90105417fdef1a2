"""One NONE analysis round: which neurons look compromised, and which training samples look poisoned.

Pass 1 runs the model over the whole training set once (batches in dataset order), streams every monitored
layer's ``[B, C]`` channel maxima into :class:`ChannelClassStats`, and from the final scores selects the
compromised channels and each layer's detection channels. Sample scores need those detection channels' values
for every sample, which are known only after pass 1. Two ways, same result:

* **cache** (default when it fits): keep pass 1's channel maxima on the device, as long as they fit in
  ``cache_budget_bytes`` (4 bytes per sample per monitored channel; ResNet-18 with every conv: about 19 KB per
  sample, 1 GB for 50k samples);
* **second pass**: when they do not fit, drop the cache as soon as the budget is crossed and run the model over
  the batches again. That needs ``batches`` to be re-iterable (a list, an object whose ``__iter__`` starts over,
  or a zero-argument callable returning a fresh iterable); a one-shot iterator raises ``ValueError`` instead.

Both paths fold the sample scores batch by batch with the same arithmetic, so they agree bit for bit as long as
the model is deterministic (always on CPU; on CUDA only with deterministic algorithms, otherwise to rounding).
Everything stays on the model's device until the small final results, which are moved to the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config.schema import DefenseConfig
from .monitor import ChannelMaxRecorder, MonitoredLayer
from .natural_breaks import two_class_breaks
from .statistic import ChannelClassStats, class_masks, select_compromised, select_top, top_count

DEFAULT_CACHE_BUDGET = 2 << 30  # bytes of cached channel maxima (2 GiB)

Batches = Iterable[Tensor] | Callable[[], Iterable[Tensor]]
LayerMaxima = dict[str, Tensor]  # layer name -> [B, C] channel maxima of one batch


@dataclass
class Analysis:
    """The results of one analysis round (CPU tensors; channel indices in rank order, highest score first)."""

    scores: dict[str, Tensor]  # layer -> [C] float64 NONE score per channel
    compromised: dict[str, Tensor]  # layer -> int64 channels to reset, top ceil(max_reset_fraction * C)
    sample_scores: Tensor  # [N] float32: summed activations of the detection channels
    suspected: Tensor  # [N] bool: the upper natural-breaks class of sample_scores
    break_value: float  # largest sample score not suspected
    detect_channels: dict[str, Tensor]  # layer -> int64 channels summed into sample_scores
    passes: int = 1  # 1: sample scores from the cache; 2: from a second pass over the batches
    cache_bytes: int = 0  # most bytes of channel maxima the cache held at once (never above the budget)


def analyse(
    model: nn.Module,
    batches: Batches,
    layers: Sequence[MonitoredLayer],
    cfg: DefenseConfig,
    num_classes: int,
    *,
    cache_budget_bytes: int = DEFAULT_CACHE_BUDGET,
) -> Analysis:
    """Analyse ``model`` on ``batches`` (normalised inputs in dataset order, on the model's device).

    The model runs in eval mode under ``torch.no_grad``; afterwards every submodule gets its own previous mode
    back (so BatchNorm layers frozen for fine-tuning stay frozen). Autocast, if wanted, is the caller's (wrap the
    call). See the module docstring for the cache budget.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return _analyse(model, batches, layers, cfg, num_classes, cache_budget_bytes)
    finally:
        for module, training in modes:
            module.training = training


def _analyse(
    model: nn.Module,
    batches: Batches,
    layers: Sequence[MonitoredLayer],
    cfg: DefenseConfig,
    num_classes: int,
    budget: int,
) -> Analysis:
    if not layers:
        raise ValueError("analyse() needs at least one monitored layer")
    stats, cache, cache_bytes = _first_pass(model, _iterate(batches), layers, cfg, num_classes, budget)
    scores = {name: s.scores() for name, s in stats.items()}
    compromised = {name: select_compromised(s, cfg.max_reset_fraction) for name, s in scores.items()}
    detect = {name: select_top(s, _detect_count(s.numel(), cfg.detect_fraction)) for name, s in scores.items()}
    if cache is None and not _reiterable(batches):
        raise ValueError(
            f"the channel maxima exceed cache_budget_bytes={budget} and `batches` is a one-shot iterator; "
            "pass a list, a re-iterable object or a zero-argument callable so that a second pass can run"
        )
    if cache is not None:
        sample_scores = torch.cat([_batch_sample_scores(maxima, detect) for maxima in cache])
    else:
        sample_scores = _second_pass(model, _iterate(batches), layers, detect)
    sample_scores = sample_scores.float().cpu()
    break_value, suspected = two_class_breaks(sample_scores)
    return Analysis(
        _to_cpu(scores),
        _to_cpu(compromised),
        sample_scores,
        suspected,
        break_value,
        _to_cpu(detect),
        passes=1 if cache is not None else 2,
        cache_bytes=cache_bytes,
    )


def _to_cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: t.cpu() for name, t in tensors.items()}


def _iterate(batches: Batches) -> Iterable[Tensor]:
    return batches() if callable(batches) else batches


def _reiterable(batches: Batches) -> bool:
    return callable(batches) or iter(batches) is not batches


def _detect_count(channels: int, fraction: float | None) -> int:
    """Detection channels per layer: the top one (published default) or ``ceil(detect_fraction * C)``."""
    return 1 if fraction is None else top_count(channels, fraction)


def _first_pass(
    model: nn.Module,
    batches: Iterable[Tensor],
    layers: Sequence[MonitoredLayer],
    cfg: DefenseConfig,
    num_classes: int,
    budget: int,
) -> tuple[dict[str, ChannelClassStats], list[LayerMaxima] | None, int]:
    """Stream the statistics; also keep the maxima while they fit in ``budget`` bytes (else return None).

    The third result is the most the cache held at once: a batch whose maxima would cross the budget is
    never added, the cache is dropped instead, so that figure is at most ``budget``.
    """
    stats: dict[str, ChannelClassStats] = {}
    cache: list[LayerMaxima] | None = []
    cached_bytes = held = 0
    with ChannelMaxRecorder(layers) as recorder:
        for x in batches:
            logits = model(x)
            maxima = recorder.pop()
            masks = class_masks(_probabilities(logits, num_classes), cfg.lamda_l, cfg.lamda_h)
            for layer in layers:
                acts = maxima[layer.name]
                if layer.name not in stats:
                    stats[layer.name] = ChannelClassStats(acts.shape[1], num_classes, acts.device)
                stats[layer.name].update(acts, masks)
            if cache is not None:
                cached_bytes += sum(a.numel() * a.element_size() for a in maxima.values())
                cache = cache if cached_bytes <= budget else None  # over budget: drop it, a second pass follows
            if cache is not None:
                cache.append(maxima)
                held = cached_bytes
    if not stats:
        raise ValueError("analyse() got no batches")
    return stats, cache, held


def _second_pass(
    model: nn.Module, batches: Iterable[Tensor], layers: Sequence[MonitoredLayer], detect: dict[str, Tensor]
) -> Tensor:
    """Run the model again and fold each batch's sample scores as soon as its maxima are recorded."""
    parts = []
    with ChannelMaxRecorder(layers) as recorder:
        for x in batches:
            model(x)
            parts.append(_batch_sample_scores(recorder.pop(), detect))
    return torch.cat(parts)


def _probabilities(logits: Tensor, num_classes: int) -> Tensor:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] != num_classes:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"the model must return logits [B, {num_classes}], got {shape}")
    return torch.softmax(logits.float(), dim=1)


def _batch_sample_scores(maxima: LayerMaxima, detect: dict[str, Tensor]) -> Tensor:
    """Per sample of one batch, the sum over layers of its detection channels' maxima (float64).

    The cached and the two-pass path both call this on the same per-batch tensors, so they agree exactly.
    """
    per_layer = [maxima[name].index_select(1, channels).double().sum(1) for name, channels in detect.items()]
    return torch.stack(per_layer).sum(0)
