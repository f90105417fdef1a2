"""Label-consistent backdoor (Turner, Tsipras and Madry 2019), what NONE's own code evaluates as "clean-label".

Target-class training images are first made hard to classify by their own content (an untargeted PGD
perturbation within an L∞ ball of ``epsilon`` pixel values, against a surrogate trained on clean data), then
stamped with a small patch in the image corners; labels never change. A model that can no longer rely on the
(perturbed-away) natural features of those images learns the patch instead, so at test time the patch alone
(no perturbation) pulls any image to the target class.

The patch follows Turner et al.'s code: each lit pixel gets ``+amplitude``, each unlit one ``-amplitude``, clipped
to [0, 255]. At 255 that is the full-contrast stamp (lit 255, unlit 0); below it, their reduced-amplitude
trigger, a perturbation added to the image rather than a patch of fixed values.

The surrogate comes from the training layer (:attr:`Attack.needs_surrogate`, :meth:`surrogate_request`):
attacks never train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config.schema import AttackConfig
from ..config.validation import fail, spec
from ..data import DatasetInfo, normalize
from ..errors import ConfigError
from ..models import check_model_name
from ._base import ATTACKS, Attack, Surrogate, SurrogateRequest

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
PATTERNS = ("checker", "white")


@dataclass
class LabelConsistentParams:
    epsilon: float = spec(32.0, low=0.0, high=255.0, help="L∞ bound of the PGD perturbation, in pixel values")
    steps: int = spec(10, low=1, high=10000, help="PGD iterations")
    step_size: float | None = spec(
        None, low=0.0, low_open=True, help="PGD step in pixel values; null: 2.5 * epsilon / steps (Madry et al.)"
    )
    corners: list[str] = spec(list(CORNERS), help=f"corners that get the patch, from {list(CORNERS)} (Turner: all)")
    patch_size: int = spec(3, low=1, help="side of each square corner patch in pixels")
    margin: int = spec(0, low=0, help="pixels between each patch and the image border")
    amplitude: int = spec(
        255, low=1, high=255, help="added to lit, subtracted from unlit patch pixels, clipped (255: full contrast)"
    )
    pattern: str = spec("checker", choices=PATTERNS, help="checker (lit at the corner pixel, mirrored); white")
    surrogate_model: str | None = spec(None, help="model PGD attacks, trained on clean data; null: the experiment's")
    surrogate_epochs: int = spec(4, low=1, high=1000, help="epochs the surrogate is trained")
    batch_size: int = spec(512, low=1, help="images per PGD batch")


@ATTACKS.register("label_consistent")
class LabelConsistent(Attack):
    """PGD-perturbed, corner-stamped target-class images at training time; the stamp alone at test time."""

    Params = LabelConsistentParams
    clean_label = True
    needs_surrogate = True

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__(cfg, info, seed)
        self.origins = [corner_origin(c, self.params, info.size) for c in self.params.corners]
        self.signs = [patch_signs(c, self.params, info.channels) for c in self.params.corners]

    @classmethod
    def check_params(cls, p: LabelConsistentParams, info: DatasetInfo) -> None:
        key = "attack.params."
        if not p.corners:
            raise fail(key + "corners", f"{key}corners must name at least one of {list(CORNERS)}")
        for corner in p.corners:
            if corner not in CORNERS:
                raise fail(key + "corners", f"{key}corners entries must be in {list(CORNERS)}, got {corner!r}")
        if len(set(p.corners)) != len(p.corners):
            raise fail(key + "corners", f"{key}corners lists a corner twice: {p.corners}")
        if 2 * (p.patch_size + p.margin) > info.size:
            raise fail(
                key + "patch_size",
                f"{key}patch_size ({p.patch_size}) plus margin ({p.margin}) must fit twice across the {info.size}px "
                f"images of {info.name} (the corner patches may not overlap)",
            )
        if p.surrogate_model is not None:
            try:
                check_model_name(p.surrogate_model)
            except ConfigError as exc:
                raise fail(key + "surrogate_model", f"{key}surrogate_model: {exc}") from None

    # --- the trigger ---------------------------------------------------------------------------------------

    def apply_trigger(self, x: Tensor) -> Tensor:
        out = x.clone()
        s, amplitude = self.params.patch_size, self.params.amplitude
        for (top, left), sign in zip(self.origins, self.signs, strict=True):
            box = out[:, :, top : top + s, left : left + s].to(torch.int16)
            stamped = (box + amplitude * sign.to(x.device)).clamp_(0, 255)
            out[:, :, top : top + s, left : left + s] = stamped.to(torch.uint8)
        return out

    def trigger_description(self) -> dict[str, Any]:
        return {"patch_origins": [list(o) for o in self.origins], "pgd_step_size": self.step_size()}

    # --- the poison: PGD, then the stamp ---------------------------------------------------------------------

    def surrogate_request(self) -> SurrogateRequest:
        return SurrogateRequest(self.params.surrogate_model, self.params.surrogate_epochs)

    def step_size(self) -> float:
        p = self.params
        return p.step_size if p.step_size is not None else 2.5 * p.epsilon / p.steps

    def poison_images(self, x: Tensor, y: Tensor, surrogate: Surrogate | None) -> Tensor:
        assert surrogate is not None  # Attack.poison checks needs_surrogate
        p = self.params
        adv = perturb(surrogate, x, y, self.info, p.epsilon, self.step_size(), p.steps, p.batch_size)
        return self.apply_trigger(adv)


def perturb(
    surrogate: Surrogate, x: Tensor, y: Tensor, info: DatasetInfo, epsilon: float, step: float, steps: int,
    batch_size: int,
) -> Tensor:  # fmt: skip
    """Untargeted L∞ PGD from the clean image (no random start, so the poison is deterministic): ascend the
    surrogate's cross-entropy on the true label, project onto ``|x' - x| <= epsilon`` and ``[0, 255]``.

    Batches run on the surrogate's device; the result is uint8 on ``x``'s device, still within ``floor(epsilon)``
    of ``x`` after rounding. An ``nn.Module`` surrogate is evaluated in eval mode and left in the mode it had.
    """
    module = surrogate if isinstance(surrogate, nn.Module) else None
    params = list(module.parameters()) if module is not None else []
    device = params[0].device if params else x.device
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    bound = float(math.floor(epsilon))
    out = []
    try:
        with torch.enable_grad():
            for start in range(0, x.shape[0], batch_size):
                x0 = x[start : start + batch_size].to(device, torch.float32)
                yb = y[start : start + batch_size].to(device)
                adv = x0.clone()
                for _ in range(steps if epsilon > 0 else 0):
                    adv.requires_grad_(True)
                    loss = F.cross_entropy(surrogate(normalize(adv, info)).float(), yb, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, adv)
                    adv = adv.detach() + step * grad.sign()
                    adv = torch.minimum(torch.maximum(adv, x0 - epsilon), x0 + epsilon).clamp_(0, 255)
                adv = torch.minimum(torch.maximum(adv.round(), x0 - bound), x0 + bound).clamp_(0, 255)
                out.append(adv.to(torch.uint8).to(x.device))
    finally:
        if module is not None and was_training:
            module.train()
    return torch.cat(out) if out else x.clone()


def corner_origin(corner: str, p: LabelConsistentParams, size: int) -> tuple[int, int]:
    """Top-left pixel (row, column) of the patch at ``corner``."""
    far = size - p.margin - p.patch_size
    row = p.margin if corner.startswith("top") else far
    col = p.margin if corner.endswith("left") else far
    return row, col


def patch_signs(corner: str, p: LabelConsistentParams, channels: int) -> Tensor:
    """The int16 ``[C, s, s]`` signs of the patch at ``corner``: +1 on lit pixels, -1 on the others.

    The checker is lit at the pixel nearest the image corner and mirrored per corner (as Turner et al.'s four
    patches are), so a horizontal flip maps the stamped image's patches onto each other.
    """
    s = p.patch_size
    if p.pattern == "white":
        lit = torch.ones(s, s, dtype=torch.bool)
    else:
        lit = (torch.arange(s)[:, None] + torch.arange(s)[None, :]) % 2 == 0
        if corner.startswith("bottom"):
            lit = lit.flip(0)
        if corner.endswith("right"):
            lit = lit.flip(1)
    return torch.where(lit, 1, -1).to(torch.int16).expand(channels, s, s).clone()
