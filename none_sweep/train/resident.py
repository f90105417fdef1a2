"""Device-resident data: the whole (poisoned) training set lives on the training device as uint8.

Batches are index permutations on the device, augmentation and normalisation are batch tensor ops,
and sample filtering is a boolean mask (airbench's approach); there are no DataLoader workers. The
same code runs on CPU, which keeps CPU and GPU results equivalent.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..data import DatasetInfo, augment_batch, normalize


class ResidentData:
    """Training and test tensors on ``device``; yields ready-to-use float batches."""

    def __init__(
        self, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, trig_x: Tensor, trig_target: Tensor,
        trig_true: Tensor, info: DatasetInfo, device: torch.device, fmt: torch.memory_format,
    ) -> None:  # fmt: skip
        def to(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=True)

        self.train_x, self.train_y = to(train_x), to(train_y)
        self.test_x, self.test_y = to(test_x), to(test_y)
        self.trig_x, self.trig_target, self.trig_true = to(trig_x), to(trig_target), to(trig_true)
        self.info, self.device, self.fmt = info, device, fmt

    @property
    def num_train(self) -> int:
        return int(self.train_y.numel())

    def prepare(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return normalize(x_uint8, self.info).contiguous(memory_format=self.fmt)

    def train_batches(
        self, active: torch.Tensor, batch_size: int, generator: torch.Generator, augment: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A shuffled epoch over the active (not removed) samples; a last batch of one is dropped (BatchNorm)."""
        index = active.nonzero().squeeze(1)
        order = index[torch.randperm(index.numel(), generator=generator, device=self.device)]
        for start in range(0, order.numel(), batch_size):
            batch = order[start : start + batch_size]
            if batch.numel() < 2:
                continue
            x = self.train_x[batch]
            if augment:
                x = augment_batch(x, self.info.augmentation, generator)
            yield self.prepare(x), self.train_y[batch]

    def ordered_batches(self, x_uint8: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Batches in dataset order with the test-time transform (what the NONE analysis reads)."""
        for start in range(0, x_uint8.shape[0], batch_size):
            yield self.prepare(x_uint8[start : start + batch_size])
