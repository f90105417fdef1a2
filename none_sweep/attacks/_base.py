"""The attack contract: one base class owns index choice, relabelling and the triggered test set.

A subclass is a ``Params`` dataclass plus :meth:`Attack.apply_trigger` (a vectorised uint8 → uint8 batch
op) and whatever it adds on top; so every attack poisons exactly ``round(poison_rate * N)`` samples the
same seeded way, and the defense's precision/recall compare like with like.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..config.schema import AttackConfig
from ..config.validation import ConfigIssue, build, fail, to_dict
from ..data import DatasetInfo
from ..errors import ConfigError
from ..registry import Registry

ALL_TO_ONE = "all_to_one"
ALL_TO_ALL = "all_to_all"

# Salts separating the seeded random streams of one attack, so changing how the trigger is drawn never
# changes which samples are poisoned.
STREAM_INDICES = 1
STREAM_TRIGGER = 2
STREAM_EXTRA = 3


@dataclass
class PoisonedData:
    """The training set after poisoning (a copy) and which samples carry the trigger."""

    x: Tensor
    y: Tensor
    poison_idx: Tensor
    extra: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class TriggeredSet:
    """Test images with the trigger, the label the attacker wants, and the true label (for robust accuracy)."""

    x: Tensor
    target: Tensor
    true_y: Tensor


Surrogate = Callable[[Tensor], Tensor]
"""A model an attack optimises its poison against: normalised float32 images ``[B, C, H, W]`` (what
``data.normalize`` gives) → logits ``[B, num_classes]``, differentiable in its input. An ``nn.Module`` in eval
mode qualifies; the attack runs on the device of its parameters."""


@dataclass(frozen=True)
class SurrogateRequest:
    """What an attack that needs a surrogate asks the training layer to train on the clean training set.

    The attack never trains (attacks sit below ``train``): it says which model and how long, the training layer
    trains it once (seeded, cached), and hands it to :meth:`Attack.poison` as ``surrogate``.
    """

    model: str | None
    """A registered model name; None: the experiment's own ``model.name``."""
    epochs: int


@dataclass
class NoParams:
    """An attack without parameters; ``attack.params`` must then be empty."""


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) of one seed; streams are statistically independent."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def poison_count(rate: float, n: int) -> int:
    """``rate * n`` rounded half up, at least 1: the rule every attack uses (0.005 × 60000 = 300)."""
    return max(1, math.floor(rate * n + 0.5))


class Attack(ABC):
    """A poisoning attack built from ``attack.*``; subclasses implement :meth:`apply_trigger`."""

    Params: ClassVar[type] = NoParams
    clean_label: ClassVar[bool] = False
    """Clean-label attacks poison only target-class samples and keep every label."""
    injects_trigger: ClassVar[bool] = True
    """False for clean training (``none``): no trigger, so no ASR; REASR (natural backdoors) is measured instead."""
    needs_surrogate: ClassVar[bool] = False
    """True when :meth:`poison` optimises against a model trained on clean data (see :meth:`surrogate_request`)."""

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        try:
            self.check(cfg, info)
            self.params = self.parse_params(cfg)
        except ConfigIssue as issue:
            raise ConfigError(issue.message) from None
        self.cfg = cfg
        self.info = info
        self.seed = seed

    # --- what subclasses provide -------------------------------------------------------------------------

    @abstractmethod
    def apply_trigger(self, x: Tensor) -> Tensor:
        """``x`` (uint8 ``[B, C, H, W]``) with the trigger, as a new uint8 tensor on ``x``'s device."""

    def poison_images(self, x: Tensor, y: Tensor, surrogate: Surrogate | None) -> Tensor:
        """The poisoned form of the chosen training images ``x`` (labels ``y``); by default just the trigger.

        Attacks that alter training images beyond the trigger (label-consistent: an adversarial perturbation
        first) override this; the test-time trigger stays :meth:`apply_trigger`.
        """
        return self.apply_trigger(x)

    def surrogate_request(self) -> SurrogateRequest | None:
        """What surrogate :meth:`poison` needs, or None (the default: none). Overridden with ``needs_surrogate``."""
        return None

    def trigger_description(self) -> dict[str, Any]:
        """Derived trigger facts beyond the params (e.g. the patch's pixel box); recorded by :meth:`describe`."""
        return {}

    # --- config --------------------------------------------------------------------------------------------

    @classmethod
    def parse_params(cls, cfg: AttackConfig) -> Any:
        """``attack.params`` as this attack's ``Params`` dataclass; raises ConfigIssue."""
        return build(cls.Params, cfg.params, prefix="attack.params.")

    @classmethod
    def path_params(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """The entries of ``attack.params`` that name files (param name → path), for the path confinement.

        ``params`` is the plain mapping (``attack.params``, normalised or as written); most attacks read no file.
        """
        return {}

    @classmethod
    def check(cls, cfg: AttackConfig, info: DatasetInfo) -> None:
        """Cross-field checks that need the dataset; raises ``fail(key, message)`` (a ConfigIssue)."""
        params = cls.parse_params(cfg)
        cls.check_mode(cfg, info)
        cls.check_params(params, info)

    @classmethod
    def check_params(cls, params: Any, info: DatasetInfo) -> None:
        """Hook for trigger checks against the dataset (patch fits the image, file exists, ...)."""
        return None

    @classmethod
    def check_mode(cls, cfg: AttackConfig, info: DatasetInfo) -> None:
        """Target in range; clean-label attacks cannot be all-to-all."""
        if not 0 <= cfg.target < info.num_classes:
            raise fail(
                "attack.target",
                f"attack.target must be in [0, {info.num_classes - 1}] for {info.name}, got {cfg.target}",
            )
        if cls.clean_label and cfg.mode == ALL_TO_ALL:
            raise fail(
                "attack.mode",
                f"attack {cfg.name!r} is clean-label (labels are never changed), so attack.mode must be all_to_one",
            )

    # --- the shared mechanics ---------------------------------------------------------------------------------

    def poison(self, x: Tensor, y: Tensor, surrogate: Surrogate | None = None) -> PoisonedData:
        """A poisoned copy of the training set: exactly ``poison_count(rate, N)`` seeded samples triggered.

        ``surrogate`` is the model asked for by :meth:`surrogate_request` (trained by the caller on the clean
        ``x, y``); attacks without ``needs_surrogate`` ignore it.
        """
        if self.needs_surrogate and surrogate is None:
            raise ValueError(f"attack {self.cfg.name!r} perturbs against a surrogate model; pass surrogate=")
        idx = self.choose_indices(y)
        x_out, y_out = x.clone(), y.clone()
        if len(idx):
            x_out[idx] = self.poison_images(x[idx], y[idx], surrogate)
            y_out[idx] = self.poison_labels(y[idx])
        return PoisonedData(x_out, y_out, idx, self.extra(x, y, x_out, idx))

    def extra(self, x: Tensor, y: Tensor, x_out: Tensor, poison_idx: Tensor) -> dict[str, Tensor]:
        """Hook for attacks that also alter non-poisoned samples (WaNet's noise mode), writing into ``x_out``."""
        return {}

    def candidates(self, y: Tensor) -> Tensor:
        """Indices eligible for poisoning: non-target (all-to-one), target only (clean-label), or all."""
        if self.clean_label:
            return torch.nonzero(y == self.cfg.target).flatten()
        if self.cfg.mode == ALL_TO_ALL:
            return torch.arange(len(y), device=y.device)
        return torch.nonzero(y != self.cfg.target).flatten()

    def choose_indices(self, y: Tensor) -> Tensor:
        """Sorted int64 indices of the samples to poison, drawn with this attack's seeded generator."""
        pool = self.candidates(y)
        count = poison_count(self.cfg.poison_rate, len(y))
        if count > len(pool):
            raise ConfigError(
                f"attack.poison_rate={self.cfg.poison_rate} asks for {count} poisoned samples of {len(y)}, but only "
                f"{len(pool)} are eligible ({self._pool_name()}); lower attack.poison_rate"
            )
        order = torch.randperm(len(pool), generator=seeded_generator(self.seed, STREAM_INDICES))[:count]
        return pool[order.to(pool.device)].sort().values

    def _pool_name(self) -> str:
        if self.clean_label:
            return f"the target class {self.cfg.target}"
        return "all samples" if self.cfg.mode == ALL_TO_ALL else f"samples not of class {self.cfg.target}"

    def poison_labels(self, y: Tensor) -> Tensor:
        """The labels poisoned samples get: the target, ``(y + 1) % C``, or unchanged (clean-label)."""
        if self.clean_label:
            return y.clone()
        if self.cfg.mode == ALL_TO_ALL:
            return (y + 1) % self.info.num_classes
        return torch.full_like(y, self.cfg.target)

    def triggered_test(self, x: Tensor, y: Tensor) -> TriggeredSet:
        """Triggered test images for the attack success rate; all-to-one drops images already of the target."""
        if self.cfg.mode == ALL_TO_ALL:
            return TriggeredSet(self.apply_trigger(x), (y + 1) % self.info.num_classes, y.clone())
        keep = y != self.cfg.target
        return TriggeredSet(self.apply_trigger(x[keep]), torch.full_like(y[keep], self.cfg.target), y[keep])

    def describe(self) -> dict[str, Any]:
        """Every attack and trigger parameter, flat, for recording beside each result."""
        return {
            "name": self.cfg.name,
            "mode": self.cfg.mode,
            "target": self.cfg.target,
            "poison_rate": self.cfg.poison_rate,
            "clean_label": self.clean_label,
            "seed": self.seed,
            **to_dict(self.params),
            **self.trigger_description(),
            "trigger_digest": self.trigger_digest(),
        }

    def trigger_digest(self) -> str:
        """A short hash of the trigger applied to a fixed probe image: equal digests mean identical triggers
        (random patches, noise patterns and warp fields included), whatever the params say."""
        c, s = self.info.channels, self.info.size
        probe = (torch.arange(c * s * s) * 37 % 256).to(torch.uint8).view(1, c, s, s)
        return hashlib.sha256(self.apply_trigger(probe).numpy().tobytes()).hexdigest()[:16]


ATTACKS: Registry[type[Attack]] = Registry("attack")


def params_class(name: str) -> type:
    """The ``Params`` dataclass of attack ``name`` (validated by ``config.validation.build``)."""
    return ATTACKS.get(name).Params


def injects_trigger(name: str) -> bool:
    """Whether attack ``name`` plants a trigger (so ASR is measured); raises ConfigError for an unknown name."""
    return ATTACKS.get(name).injects_trigger


def path_params(name: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The params of attack ``name`` that name files (see :meth:`Attack.path_params`)."""
    return ATTACKS.get(name).path_params(params)


def create_attack(cfg: AttackConfig, info: DatasetInfo, seed: int) -> Attack:
    """The registered attack ``cfg.name``, built and checked."""
    return ATTACKS.get(cfg.name)(cfg, info, seed)
