"""REASR for natural backdoors: how easily a small patch trigger can be inverted from the trained model.

With no injected attack there is no ASR. The paper reports REASR from ABS (a trigger-inversion scanner);
we measure the same quantity the same way in spirit: for every candidate target label, optimise a
patch (mask + pattern, area bounded by ``patch_fraction`` of the image) on held-in test images of the
other classes, then stamp the hard-bounded patch (its top-k mask pixels) on held-out images of the
other classes and count how many flip to that label. REASR is the largest flip rate over labels.

Cost (bench/RESULTS.md, "REASR cost"): every step is a forward and a backward pass over ``labels × images``
stamped images, so a sweep trial pays for it in steps, held-in images and labels. Two things make it cheap
without making it blind:

- **a pre-screen** (``labels``): all labels are optimised for the first ``screen_steps`` steps, then only the
  ``labels`` whose bounded patch flips the most held-in images go on; the label a natural (or injected) trigger
  favours leads that count after a few steps (its soft loss does not: see :func:`_screen`);
- **a separate hold-out** (``holdout``): the flip rate is a forward pass only, once, so it can use more images
  than the optimisation (less noise in the reported rate for almost no time).

Labels are optimised together as one batch, chunked only to bound memory; each label's loss is its own mean,
so chunking (and screening) does not change any label's trajectory. The model is frozen while it runs (its
parameters' ``requires_grad`` is restored afterwards): only the patches get gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetInfo, normalize

#: Each label's soft area penalty weight against its mean cross-entropy (the hard top-k bound at evaluation is what
#: counts; a weaker penalty lets the soft mask spread past the bound and overstates natural triggers).
AREA_WEIGHT = 100.0


@dataclass
class InversionResult:
    reasr: float
    label: int
    per_label: dict[int, float]  # the labels inverted to the end (all of them without a pre-screen)


@dataclass
class _Patches:
    """The optimised logits of every label's mask ``[K,1,H,W]`` and pattern ``[K,C,H,W]``, and their Adam."""

    mask_logit: torch.Tensor
    pattern_logit: torch.Tensor
    opt: torch.optim.Optimizer

    def mask(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mask_logit[idx])

    def pattern(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.pattern_logit[idx])


def _stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """x [n,C,H,W] in [0,1]; mask [k,1,H,W]; pattern [k,C,H,W] → [k*n,C,H,W]."""
    out = (1 - mask[:, None]) * x[None] + mask[:, None] * pattern[:, None]
    return out.reshape(-1, *x.shape[1:])


def _to_model(x01: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    # normalize expects uint8 semantics (x/255); feed it x01*255 without rounding so gradients flow.
    return normalize(x01 * 255.0, info)


def invert_triggers(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    info: DatasetInfo,
    *,
    patch_fraction: float = 0.06,
    steps: int = 100,
    images: int = 256,
    holdout: int | None = None,
    labels: int | None = None,
    screen_steps: int | None = None,
    seed: int = 0,
    max_batch: int = 4096,
) -> InversionResult:
    """Optimise one bounded patch per label and report the held-out flip rates (see module doc).

    ``images`` held-in images drive the optimisation, ``holdout`` others (default: as many) measure it;
    ``labels``: invert only this many labels to the end, picked after ``screen_steps`` (default: half of
    ``steps``) steps on all of them; None: every label, no screen.
    """
    device = x_uint8.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = x_uint8.shape[0]
    n_fit = min(images, n // 2)
    n_hold = min(images if holdout is None else holdout, n - n_fit)
    order = torch.randperm(n, generator=gen)[: n_fit + n_hold].to(device)
    fit_x, fit_y = x_uint8[order[:n_fit]].float() / 255.0, y[order[:n_fit]]
    test_x, test_y = x_uint8[order[n_fit:]].float() / 255.0, y[order[n_fit:]]
    k = info.num_classes
    c, h, w = x_uint8.shape[1:]
    budget = max(1, round(patch_fraction * h * w))
    keep = k if labels is None else max(1, min(labels, k))
    # half by default: a bounded patch needs some steps to concentrate its mask before its flip count means much
    # (8x8 digits, 40 steps: a screen at step 10 dropped the injected trigger's label, at 15 and 20 it kept it)
    screen = 0 if keep == k else min(steps, max(1, steps // 2) if screen_steps is None else screen_steps)
    patches = _init_patches(k, c, h, w, device, gen)
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        active = _optimise(model, fit_x, fit_y, patches, info, budget, steps, (screen, keep), max_batch)
        rates = _flip_rates(model, test_x, test_y, active, patches, info, budget, max_batch)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    per_label = dict(zip(active.tolist(), rates, strict=True))
    best = max(per_label, key=lambda lab: (per_label[lab], -lab))
    return InversionResult(reasr=per_label[best], label=best, per_label=per_label)


def _init_patches(k: int, c: int, h: int, w: int, device: torch.device, gen: torch.Generator) -> _Patches:
    """Masks start small (sigmoid(-2) ≈ 0.12 per pixel), patterns random; drawn for all labels, screened or not."""
    mask_logit = torch.randn(k, 1, h, w, generator=gen).to(device).mul_(0.1).sub_(2.0).requires_grad_()
    pattern_logit = torch.randn(k, c, h, w, generator=gen).to(device).requires_grad_()
    return _Patches(mask_logit, pattern_logit, torch.optim.Adam([mask_logit, pattern_logit], lr=0.1))


def _optimise(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, patches: _Patches, info: DatasetInfo, budget: int,
    steps: int, screening: tuple[int, int], max_batch: int,
) -> torch.Tensor:  # fmt: skip
    """``steps`` Adam steps on every label; at step ``screen`` of ``screening = (screen, keep)`` only the ``keep``
    most promising labels go on. Returns the labels optimised to the end."""
    screen, keep = screening
    active = torch.arange(patches.mask_logit.shape[0], device=x.device)
    losses = torch.zeros(active.numel(), device=x.device)
    for step in range(steps):
        if step == screen and keep < active.numel():
            active = _screen(model, x, y, active, patches, losses, keep, info, budget, max_batch)
        losses = _step(model, x, y, active, patches, info, budget, max_batch)
    if keep < active.numel():  # the screen took every step
        active = _screen(model, x, y, active, patches, losses, keep, info, budget, max_batch)
    return active


def _screen(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor, patches: _Patches, losses: torch.Tensor,
    keep: int, info: DatasetInfo, budget: int, max_batch: int,
) -> torch.Tensor:  # fmt: skip
    """The ``keep`` labels of ``active`` whose hard-bounded patch flips the most held-in images now (what REASR
    measures; ties: the lower held-in loss, then the lower label), in label order.

    Not the soft loss alone: the soft mask is not yet bounded, and pushes most easily towards labels that are close
    to many classes, which a bounded patch cannot flip to (Fashion-MNIST, small CNN: the loss ranked 6, 2, 4 first
    and kept none of the default's top labels; the bounded flip rate ranks them first from a few steps on).
    """
    rates = torch.tensor(_flip_rates(model, x, y, active, patches, info, budget, max_batch), device=x.device)
    by_loss = losses[active].argsort(stable=True)
    order = by_loss[(-rates[by_loss]).argsort(stable=True)]
    return active[order[:keep]].sort().values


def _chunks(active: torch.Tensor, per_label: int, max_batch: int) -> list[torch.Tensor]:
    return list(active.split(max(1, max_batch // max(1, per_label))))


def _step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    active: torch.Tensor,
    patches: _Patches,
    info: DatasetInfo,
    budget: int,
    max_batch: int,
) -> torch.Tensor:
    """One Adam step for the ``active`` labels; returns every label's held-in loss (stale for inactive ones)."""
    h, w = x.shape[-2:]
    patches.opt.zero_grad(set_to_none=False)
    losses = torch.zeros(patches.mask_logit.shape[0], device=x.device)
    for idx in _chunks(active, x.shape[0], max_batch):
        mask, pattern = patches.mask(idx), patches.pattern(idx)
        logits = model(_to_model(_stamp(x, mask, pattern), info)).float()
        target = idx.repeat_interleave(x.shape[0])
        valid = (y[None, :] != idx[:, None]).float()
        ce = F.cross_entropy(logits, target, reduction="none").view(idx.numel(), -1)
        per_label = (ce * valid).sum(1) / valid.sum(1).clamp_min(1)  # each label its own mean
        area = F.relu(mask.flatten(1).sum(1) - budget) / (h * w)
        (per_label + AREA_WEIGHT * area).sum().backward()
        losses[idx] = per_label.detach()
    patches.opt.step()
    return losses


@torch.inference_mode()
def _flip_rates(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    active: torch.Tensor,
    patches: _Patches,
    info: DatasetInfo,
    budget: int,
    max_batch: int,
) -> list[float]:
    """Hard area bound: keep each label's top-``budget`` mask pixels as a binary patch."""
    rates: list[float] = []
    for idx in _chunks(active, x.shape[0], max_batch):
        flat = patches.mask(idx).flatten(1)
        hard = torch.zeros_like(flat).scatter_(1, flat.topk(budget, dim=1).indices, 1.0).view(-1, 1, *x.shape[-2:])
        pred = model(_to_model(_stamp(x, hard, patches.pattern(idx)), info)).argmax(1).view(idx.numel(), -1)
        valid = y[None, :] != idx[:, None]
        flips = ((pred == idx[:, None]) & valid).sum(1).float() / valid.sum(1).clamp_min(1).float()
        rates.extend(flips.tolist())
    return rates
