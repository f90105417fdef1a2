"""scikit-learn's 8×8 digits: bundled with scikit-learn, so tests and smoke runs need no files at all."""

from __future__ import annotations

import numpy as np
import torch

from ..config.schema import DataConfig
from ._base import DatasetInfo, Splits, register_dataset

INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    channels=1,
    size=8,
    mean=(0.3053,),
    std=(0.3759,),
    augmentation="none",
)

TEST_FRACTION = 0.2


@register_dataset(INFO)
def load_sklearn_digits(cfg: DataConfig, seed: int) -> Splits:
    """A seeded stratified 80/20 split (the dataset has none); pixel values 0..16 scaled to 0..255."""
    # Imported here: scikit-learn costs ~5 s of import time, paid by every fresh trial worker otherwise.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, random_state=seed, stratify=bunch.target
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return Splits(x[train_idx], y[train_idx], x[test_idx], y[test_idx])
