"""REASR for natural backdoors: how easily a small patch trigger can be inverted from the trained model.

With no injected attack there is no ASR. The paper reports REASR from ABS (a trigger-inversion scanner);
we measure the same quantity the same way in spirit: for every candidate target label, optimise a
patch (mask + pattern, area bounded by ``patch_fraction`` of the image) on held-in test images of the
other classes, then stamp the hard-bounded patch (its top-k mask pixels) on held-out images of the
other classes and count how many flip to that label. REASR is the largest flip rate over labels.
All labels are optimised together as one batch (chunked only to bound memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetInfo, normalize


@dataclass
class InversionResult:
    reasr: float
    label: int
    per_label: list[float]


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
    seed: int = 0,
    max_batch: int = 4096,
) -> InversionResult:
    """Optimise one bounded patch per label and report the held-out flip rates (see module doc)."""
    device = x_uint8.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(x_uint8.shape[0], generator=gen)[: 2 * images].to(device)
    half = order.numel() // 2
    fit_x, fit_y = x_uint8[order[:half]].float() / 255.0, y[order[:half]]
    test_x, test_y = x_uint8[order[half:]].float() / 255.0, y[order[half:]]
    k = info.num_classes
    h, w = x_uint8.shape[-2:]
    budget = max(1, round(patch_fraction * h * w))
    chunk = max(1, max_batch // max(1, half))
    model.eval()
    rates: list[float] = []
    for start in range(0, k, chunk):
        labels = torch.arange(start, min(k, start + chunk), device=device)
        mask, pattern = _optimise(model, fit_x, fit_y, labels, info, budget, steps, gen)
        rates.extend(_flip_rates(model, test_x, test_y, labels, mask, pattern, info, budget))
    best = max(range(k), key=lambda i: rates[i])
    return InversionResult(reasr=rates[best], label=best, per_label=rates)


def _optimise(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    budget: int,
    steps: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    n_lab, (c, h, w) = labels.numel(), x.shape[1:]
    mask_logit = torch.randn(n_lab, 1, h, w, generator=gen).to(x.device).mul_(0.1).sub_(2.0).requires_grad_()
    pattern_logit = torch.randn(n_lab, c, h, w, generator=gen).to(x.device).requires_grad_()
    opt = torch.optim.Adam([mask_logit, pattern_logit], lr=0.1)
    target = labels.repeat_interleave(x.shape[0])
    valid = (y[None, :] != labels[:, None]).reshape(-1).float()
    for _ in range(steps):
        mask, pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
        logits = model(_to_model(_stamp(x, mask, pattern), info))
        ce = (F.cross_entropy(logits.float(), target, reduction="none") * valid).sum() / valid.sum().clamp_min(1)
        area = F.relu(mask.flatten(1).sum(1) - budget).sum() / (h * w)
        loss = ce + 10.0 * area
        grads = torch.autograd.grad(loss, [mask_logit, pattern_logit])
        mask_logit.grad, pattern_logit.grad = grads
        opt.step()
    return torch.sigmoid(mask_logit).detach(), torch.sigmoid(pattern_logit).detach()


@torch.no_grad()
def _flip_rates(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    pattern: torch.Tensor,
    info: DatasetInfo,
    budget: int,
) -> list[float]:
    """Hard area bound: keep each label's top-``budget`` mask pixels as a binary patch."""
    flat = mask.flatten(1)
    top = flat.topk(budget, dim=1).indices
    hard = torch.zeros_like(flat).scatter_(1, top, 1.0).view_as(mask)
    pred = model(_to_model(_stamp(x, hard, pattern), info)).argmax(1).view(labels.numel(), -1)
    valid = y[None, :] != labels[:, None]
    flips = ((pred == labels[:, None]) & valid).sum(1).float() / valid.sum(1).clamp_min(1).float()
    return flips.tolist()
