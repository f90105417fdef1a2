"""The experiment config: one dataclass per concern, each field with its allowed values.

A YAML key reaches its use in few hops: ``defense.max_reset_fraction`` → :attr:`DefenseConfig.max_reset_fraction`
→ :func:`none_sweep.defense.select_compromised` → the reset. ``none-sweep train`` and every sweep trial take
this schema; a sweep's ``space:`` addresses the same dotted keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .validation import spec


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how much of it to use."""

    name: str = spec("fashion-mnist", help="registered dataset name (see `none-sweep list datasets`)")
    root: str | None = spec(None, help="data root in torchvision's layout; default: the dataset's standard place")
    download: bool = spec(False, help="let torchvision download the dataset when it is missing (needs network)")
    train_subset: int | None = spec(None, low=10, help="use a seeded random subset of this many training images")
    test_subset: int | None = spec(None, low=10, help="use a seeded random subset of this many test images")
    augment: bool = spec(True, help="the dataset's standard augmentation (crop+flip for CIFAR-like)")


@dataclass
class AttackConfig:
    """The poisoning attack; ``params`` are validated by the attack's own params dataclass."""

    name: str = spec("badnets", help="registered attack name; 'none' trains on clean data")
    poison_rate: float = spec(0.05, low=0.0, high=1.0, low_open=True, help="fraction of the training set poisoned")
    target: int = spec(0, low=0, help="target class (all-to-one)")
    mode: str = spec("all_to_one", choices=("all_to_one", "all_to_all"), help="all_to_all maps y to (y+1) mod C")
    params: dict[str, Any] = spec({}, help="attack-specific parameters (patch_size, alpha, ...)")


@dataclass
class ModelConfig:
    """The network; ``torchvision:NAME`` takes any torchvision classification model."""

    name: str = spec("small_cnn", help="registered model name, or torchvision:NAME")


@dataclass
class TrainConfig:
    """The main training schedule (what the undefended baseline runs in full)."""

    epochs: int = spec(8, low=1, high=10000)
    batch_size: int = spec(128, low=1, high=65536)
    lr: float = spec(0.05, low=0.0, high=10.0, low_open=True)
    momentum: float = spec(0.9, low=0.0, high=1.0, high_open=True)
    weight_decay: float = spec(5e-4, low=0.0, high=1.0)
    lr_schedule: str = spec("cosine", choices=("cosine", "step", "constant"))
    lr_step_every: int = spec(80, low=1, help="step schedule: epochs between lr decays")
    lr_gamma: float = spec(0.1, low=0.0, high=1.0, low_open=True, help="step schedule: decay factor")
    device: str = spec("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = spec(True, help="bf16 autocast on CUDA (on CPU only with cpu_fast_paths)")
    channels_last: bool = spec(True, help="channels-last memory format on CUDA (on CPU only with cpu_fast_paths)")
    compile: bool = spec(False, help="torch.compile the model (CUDA; on CPU only with cpu_fast_paths)")
    cpu_fast_paths: bool = spec(
        False, help="honour amp, channels_last and compile on CPU too (tests of the CUDA paths)"
    )
    analysis_cache_mb: float = spec(
        2048.0, low=0.0, help="device memory the NONE analysis may keep for one pass; beyond it, a second pass"
    )
    eval_batch_size: int = spec(1024, low=1)
    num_threads: int | None = spec(None, low=1, help="torch CPU threads; default: torch's choice")


@dataclass
class DefenseConfig:
    """NONE: when to analyse and reset, which thresholds, and what follows a reset."""

    enabled: bool = spec(True, help="false gives the undefended baseline")
    pretrain_epochs: int | None = spec(
        None, low=0, help="epochs before the first reset (epoch_num_1); null: train.epochs"
    )
    reset_interval: int = spec(2, low=1, high=10000, help="epochs between resets (epoch_num_2)")
    rounds: int = spec(1, low=1, high=1000, help="number of analyse/reset rounds (round_num)")
    after_reset: str = spec(
        "finetune",
        choices=("finetune", "continue", "retrain"),
        help="finetune at finetune_lr (published); continue the main schedule; retrain from scratch on the "
        "filtered data for train.epochs",
    )
    finetune_lr: float = spec(1e-4, low=0.0, high=10.0, low_open=True, help="none_lr")
    freeze_bn: bool = spec(True, help="BatchNorm in eval mode while fine-tuning (published)")
    max_reset_fraction: float = spec(0.05, low=0.0, high=1.0, low_open=True)
    lamda_l: float = spec(0.1, low=0.0, high=1.0, low_open=True, high_open=True)
    lamda_h: float = spec(0.9, low=0.0, high=1.0, low_open=True, high_open=True)
    reset_mode: str = spec("zero", choices=("zero", "reinit"))
    filter_samples: bool | str = spec(
        "auto",
        choices=("auto", True, False),
        help="drop suspected poisoned samples (two-class natural breaks); true / false as said; auto (the default): "
        "only when the attack injects a trigger (published: no filtering without an attack), so a natural-backdoor "
        "run filters only when true is set explicitly; see none_sweep.defense.filters_samples",
    )
    removal: str = spec("cumulative", choices=("cumulative", "per_round"), help="per_round is the published behaviour")
    max_removed_fraction: float | None = spec(
        None,
        low=0.0,
        high=1.0,
        low_open=True,
        help="cap on the fraction of the training set removed (highest sample scores kept); null: no cap, as published",
    )
    detect_fraction: float | None = spec(
        None, low=0.0, high=1.0, low_open=True, help="num_for_detect_biased; null: top-1 channel per layer"
    )
    layer_types: list[str] = spec(["conv"], help="module kinds monitored: conv, linear")
    include_layers: list[str] = spec([], help="glob patterns of module names to monitor (empty: all of layer_types)")
    exclude_layers: list[str] = spec([], help="glob patterns of module names never monitored")
    skip_first: int = spec(
        0, low=0, help="skip this many monitored layers from the input side (published ResNet: stem+layer1)"
    )
    analysis_batch_size: int = spec(1024, low=1)


@dataclass
class EvalConfig:
    """Extra evaluation; REASR is the natural-backdoor metric (there is no ASR without an attack)."""

    reasr: str = spec("auto", choices=("auto", "always", "never"), help="auto: only when the attack has no trigger")
    reasr_patch_fraction: float = spec(0.06, low=0.0, high=0.5, low_open=True, help="patch area bound (ABS: 2-12%)")
    reasr_steps: int = spec(100, low=1, high=100000, help="Adam steps of the patch optimisation")
    reasr_images: int = spec(256, low=8, help="held-in test images the patches are optimised on")
    reasr_holdout: int | None = spec(
        None, low=8, help="held-out test images the flip rate is measured on (a forward pass only); null: reasr_images"
    )
    reasr_labels: int | None = spec(
        None,
        low=1,
        help="invert only this many target labels to the end, the ones whose bounded patch flips the most held-in "
        "images after reasr_screen_steps steps on all labels (a pre-screen); null, or the class count or more: every "
        "label",
    )
    reasr_screen_steps: int | None = spec(
        None,
        low=1,
        help="steps on all labels before the pre-screen picks reasr_labels (at most reasr_steps; only with "
        "reasr_labels); null: half of reasr_steps",
    )


@dataclass
class ExperimentConfig:
    """Everything one training run needs; ``none-sweep train`` and each sweep trial take this."""

    seed: int = spec(0, low=0, high=2**31 - 1)
    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
