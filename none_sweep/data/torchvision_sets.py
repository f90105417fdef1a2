"""MNIST, CIFAR-10/100 and GTSRB through torchvision, converted once to uint8 tensors.

torchvision owns the on-disk layouts and the downloads; we only turn its datasets into resident tensors and
its exceptions into :class:`DataError` naming the folder and the fix.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from PIL import UnidentifiedImageError
from torch import Tensor

from ..config.schema import DataConfig
from ..errors import DataError
from ._base import DatasetInfo, Splits, data_root, register_dataset

Reader = Callable[[Path, bool, bool], tuple[Tensor, Tensor]]
"""``read(root, train, download) -> (uint8 [N, C, H, W], int64 [N])``."""

_READ_ERRORS = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    pickle.UnpicklingError,
    UnidentifiedImageError,
)


@dataclass(frozen=True)
class TorchvisionSet:
    """One torchvision dataset: its description, the folder under the root that holds it, and its reader."""

    info: DatasetInfo
    folder: str
    read: Reader

    def load(self, cfg: DataConfig, seed: int) -> Splits:
        """Both splits; a missing folder without ``download`` and any read failure become DataError."""
        root = data_root(cfg)
        where = root / self.folder
        if not cfg.download and not where.exists():
            raise DataError(
                f"{self.info.name}: no data in {where}; set data.download: true to let torchvision fetch it "
                f"(needs network), or set data.root to the folder that holds {self.folder}/"
            )
        try:
            return Splits(*self.read(root, True, cfg.download), *self.read(root, False, cfg.download))
        except _READ_ERRORS as exc:
            raise DataError(
                f"{self.info.name}: cannot load it from {where} ({type(exc).__name__}: {exc}); "
                "restore the files, or delete the folder and set data.download: true"
            ) from None


def _read_mnist(root: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    ds = MNIST(str(root), train=train, download=download)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.long()


def _cifar_reader(base: str) -> Reader:
    """A reader for CIFAR-10 (``base='CIFAR10'``) or CIFAR-100 that trusts file presence instead of MD5s."""

    def read(root: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
        ds = _unverified_cifar(base)(str(root), train=train, download=download)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    return read


@cache
def _unverified_cifar(base: str) -> type:
    """torchvision's CIFAR class with presence checks instead of MD5 checks.

    torchvision rejects any file whose MD5 differs from the official archive's, which would also reject a
    re-packed or test copy; a truncated pickle still fails loudly when read.
    """
    import torchvision.datasets as tvd

    parent = getattr(tvd, base)

    class Unverified(parent):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return all((folder / name).is_file() for name in names)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as infile:
                self.classes = pickle.load(infile, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return Unverified


GTSRB_CLASSES = 43
GTSRB_SIZE = 32


def _read_gtsrb(root: Path, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    """Signs of varying size, resized to 32×32 as they are read (the only per-image step: file decoding)."""
    from torchvision import transforms
    from torchvision.datasets import GTSRB

    to_tensor = transforms.Compose([transforms.Resize((GTSRB_SIZE, GTSRB_SIZE)), transforms.PILToTensor()])
    ds = GTSRB(str(root), split="train" if train else "test", transform=to_tensor, download=download)
    if train:
        _check_gtsrb_classes(root / "gtsrb" / "GTSRB" / "Training")
    if len(ds) == 0:
        raise DataError(f"gtsrb: no images in {root / 'gtsrb'} for the {'train' if train else 'test'} split")
    images, labels = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.int64)


def _check_gtsrb_classes(folder: Path) -> None:
    """torchvision numbers classes by sorted folder name, so a missing class folder would shift every label."""
    count = sum(1 for entry in folder.iterdir() if entry.is_dir())
    if count != GTSRB_CLASSES:
        raise DataError(f"gtsrb: {folder} has {count} class folders, expected {GTSRB_CLASSES} (00000 .. 00042)")


_SETS = (
    TorchvisionSet(
        DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), "crop"),
        "MNIST",
        _read_mnist,
    ),
    TorchvisionSet(
        DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip"),
        "cifar-10-batches-py",
        _cifar_reader("CIFAR10"),
    ),
    TorchvisionSet(
        DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip"),
        "cifar-100-python",
        _cifar_reader("CIFAR100"),
    ),
    TorchvisionSet(
        DatasetInfo("gtsrb", GTSRB_CLASSES, 3, GTSRB_SIZE, (0.3403, 0.3121, 0.3214), (0.2724, 0.2608, 0.2669), "crop"),
        "gtsrb",
        _read_gtsrb,
    ),
)

for _set in _SETS:
    register_dataset(_set.info)(_set.load)
