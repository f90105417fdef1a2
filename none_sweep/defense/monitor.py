"""Which layers NONE watches, and the forward hooks that record each channel's maximum per sample.

A neuron is an output channel of a conv (or an output feature of a linear layer), identified by
``(layer name, channel index)``. Its activation for one sample is the maximum over the spatial map of the
layer's output as the forward hook sees it: before any BatchNorm or ReLU that follows (the published analysis
hooks the ResNet downsample branch after its BatchNorm; here every conv is hooked on its own output, which
keeps the rule architecture-free).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ..config.schema import DefenseConfig
from ..errors import ConfigError
from ._graph import as_layer, forward_order, layer_kind, trace

LAYER_TYPES = ("conv", "linear")


@dataclass(frozen=True, eq=False)
class MonitoredLayer:
    """One analysed layer: its qualified module name, the module, and ``"conv"`` or ``"linear"``."""

    name: str
    module: nn.Module
    kind: str

    @property
    def channels(self) -> int:
        """Number of neurons (output channels or output features)."""
        return int(as_layer(self.module).weight.shape[0])


def find_monitored_layers(model: nn.Module, cfg: DefenseConfig) -> list[MonitoredLayer]:
    """The layers NONE analyses, input side first.

    Rules, in order:
    1. Candidates are the ``Conv1d/2d/3d`` and ``Linear`` modules in forward order (from the fx graph; module
       registration order when the model cannot be traced).
    2. The last candidate of either kind is the classifier (its outputs are the logits, or class maps pooled into
       them as in NiN) and is never monitored, whatever the globs say.
    3. Keep the kinds in ``cfg.layer_types``; if ``cfg.include_layers`` is non-empty keep names matching one of
       its globs; drop names matching any ``cfg.exclude_layers`` glob (``fnmatch``, case-sensitive).
    4. Drop the first ``cfg.skip_first`` of what is left (published ResNet-18: stem + layer1 = 5).
    """
    unknown = sorted(set(cfg.layer_types) - set(LAYER_TYPES))
    if unknown or not cfg.layer_types:
        raise ConfigError(f"defense.layer_types must be a non-empty list of {list(LAYER_TYPES)}, got {cfg.layer_types}")
    modules = dict(model.named_modules())
    order = forward_order(model, trace(model))
    if len(order) < 2:
        raise ConfigError(f"the model has no conv or linear layer besides its classifier to monitor (found {order})")
    kept = [name for name in order[:-1] if _wanted(name, layer_kind(modules[name]), cfg)]
    kept = kept[cfg.skip_first :]
    if not kept:
        raise ConfigError(
            f"no layer left to monitor after defense.layer_types={cfg.layer_types}, include_layers="
            f"{cfg.include_layers}, exclude_layers={cfg.exclude_layers}, skip_first={cfg.skip_first}; "
            f"candidates in forward order (classifier {order[-1]!r} excluded): {order[:-1]}"
        )
    return [MonitoredLayer(name, modules[name], str(layer_kind(modules[name]))) for name in kept]


def _wanted(name: str, kind: str | None, cfg: DefenseConfig) -> bool:
    if kind not in cfg.layer_types:
        return False
    if cfg.include_layers and not any(fnmatch.fnmatchcase(name, g) for g in cfg.include_layers):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in cfg.exclude_layers)


def channel_max(output: Tensor, kind: str) -> Tensor:
    """Reduce one layer output to ``[B, C]`` float32: max over spatial dims (conv) or token dims (linear)."""
    if kind == "conv":
        reduced = output.amax(dim=tuple(range(2, output.ndim))) if output.ndim > 2 else output
    else:
        reduced = output.flatten(1, -2).amax(dim=1) if output.ndim > 2 else output
    return reduced.detach().float()


@dataclass
class ChannelMaxRecorder:
    """Context manager: forward hooks that keep each monitored layer's ``[B, C]`` channel maxima, on the device.

    Use ``with ChannelMaxRecorder(layers) as rec: model(x); maxima = rec.pop()``. Hooks are removed on exit,
    also when the body raises. A module called twice in one forward pass keeps the elementwise maximum of both
    calls (a neuron's maximum over all its uses).
    """

    layers: Sequence[MonitoredLayer]
    _maxima: dict[str, Tensor] = field(default_factory=dict, init=False)
    _handles: list[RemovableHandle] = field(default_factory=list, init=False)

    def __enter__(self) -> ChannelMaxRecorder:
        for layer in self.layers:
            self._handles.append(layer.module.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._maxima.clear()

    def _hook(self, layer: MonitoredLayer) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            reduced = channel_max(output, layer.kind)
            previous = self._maxima.get(layer.name)
            self._maxima[layer.name] = reduced if previous is None else torch.maximum(previous, reduced)

        return hook

    def pop(self) -> dict[str, Tensor]:
        """The maxima recorded since the last pop, by layer name; raises if a layer's hook did not fire."""
        missing = [layer.name for layer in self.layers if layer.name not in self._maxima]
        if missing:
            raise RuntimeError(f"monitored layers produced no output in this forward pass: {missing}")
        maxima, self._maxima = self._maxima, {}
        return maxima
