"""Dataset descriptions, the dataset registry and the one loading entry point.

Everything downstream sees one shape of data: uint8 images ``[N, C, H, W]`` and int64 labels on the CPU,
so attacks, the trainer and the defense never branch on the dataset. :func:`dataset_info` is static (no I/O)
so configs can be checked before any file is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..config.paths import default_root
from ..config.schema import DataConfig
from ..errors import DataError
from ..registry import Registry

AUGMENTATIONS = ("crop_flip", "crop", "none")


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the code needs to know about a dataset without loading it."""

    name: str
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean and std need one entry per channel ({self.channels})")


@dataclass
class ImageData:
    """A loaded dataset: uint8 ``[N, C, H, W]`` images and int64 ``[N]`` labels, on the CPU."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    info: DatasetInfo


class Splits(NamedTuple):
    """What a dataset loader returns before subsetting and checking."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


LoadFn = Callable[[DataConfig, int], Splits]


@dataclass(frozen=True)
class DatasetLoader:
    """A registry entry: the static description plus the function that reads the files."""

    info: DatasetInfo
    load: LoadFn

    def __call__(self, cfg: DataConfig, seed: int) -> Splits:
        return self.load(cfg, seed)


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> Callable[[LoadFn], LoadFn]:
    """Register ``fn(cfg, seed) -> Splits`` under ``info.name``; the info travels with it."""

    def decorator(fn: LoadFn) -> LoadFn:
        DATASETS.add(info.name, DatasetLoader(info, fn))
        return fn

    return decorator


def dataset_info(name: str) -> DatasetInfo:
    """The static description of dataset ``name``; raises ConfigError for an unknown name."""
    return DATASETS.get(name).info


def data_root(cfg: DataConfig) -> Path:
    return Path(cfg.root).expanduser() if cfg.root else default_root()


def load_dataset(cfg: DataConfig, seed: int) -> ImageData:
    """Read dataset ``cfg.name``, check its shapes, and apply the seeded train/test subsets."""
    loader = DATASETS.get(cfg.name)
    splits = loader(cfg, seed)
    _check_splits(loader.info, splits)
    generator = torch.Generator().manual_seed(seed)
    train = _subset(splits.train_x, splits.train_y, cfg.train_subset, generator, "data.train_subset", cfg.name)
    test = _subset(splits.test_x, splits.test_y, cfg.test_subset, generator, "data.test_subset", cfg.name)
    return ImageData(*train, *test, info=loader.info)


def _subset(
    x: Tensor, y: Tensor, size: int | None, generator: torch.Generator, key: str, name: str
) -> tuple[Tensor, Tensor]:
    """A seeded random subset in dataset order (sorted indices), so runs with one seed see the same images."""
    if size is None:
        return x, y
    if size > len(y):
        raise DataError(f"{key}={size} exceeds the {len(y)} images {name} has; lower it or set it to null")
    idx = torch.randperm(len(y), generator=generator)[:size].sort().values
    return x[idx], y[idx]


def _check_splits(info: DatasetInfo, splits: Splits) -> None:
    """Catch files that parse but hold the wrong thing (another dataset, a half-written array)."""
    try:
        _check_shapes(info, splits)
    except DataError as exc:
        raise DataError(
            f"{exc}; the files hold another dataset or are damaged: check data.name and data.root"
        ) from None


def _check_shapes(info: DatasetInfo, splits: Splits) -> None:
    for part, x, y in (("train", splits.train_x, splits.train_y), ("test", splits.test_x, splits.test_y)):
        expected = (info.channels, info.size, info.size)
        if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise DataError(
                f"{info.name}: {part} images must be uint8 [N, {', '.join(map(str, expected))}], "
                f"got {x.dtype} {list(x.shape)}"
            )
        if y.dtype != torch.int64 or y.shape != (len(x),):
            raise DataError(f"{info.name}: {part} labels must be int64 [{len(x)}], got {y.dtype} {list(y.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
            raise DataError(
                f"{info.name}: {part} labels must be in [0, {info.num_classes - 1}], "
                f"got [{int(y.min())}, {int(y.max())}]"
            )
