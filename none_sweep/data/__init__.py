"""Datasets as resident uint8 tensors, a registry of loaders, and batch augmentation (see docs/architecture.md).

Importing the package registers every dataset: fashion-mnist (default, offline from the Debian package),
digits (bundled with scikit-learn), and mnist, cifar10, cifar100, gtsrb through torchvision.
"""

from . import digits, fashion_mnist, torchvision_sets  # noqa: F401  (registration)
from ._base import DATASETS, DatasetInfo, DatasetLoader, ImageData, Splits, dataset_info, default_root, load_dataset
from .augment import augment_batch, crop_padding, normalize
from .idx import read_idx

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetLoader",
    "ImageData",
    "Splits",
    "augment_batch",
    "crop_padding",
    "dataset_info",
    "default_root",
    "load_dataset",
    "normalize",
    "read_idx",
]
